"""`dataset=mnist`, `fashion_mnist`, `cifar10`: torchvision's datasets, with their official test split.

Read offline from the original files where they are (MNIST's `.gz` files checked against their
published MD5 and unpacked as torchvision's download would), or downloaded with
`dataset.download=true`; images kept uint8 (N, C, H, W).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from regbench import UserInputError

# name -> (torchvision class name, folder under root, folder that holds the files)
TORCHVISION = {
    "mnist": ("MNIST", "MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "cifar-10-batches-py"),
}


def read(ds: Any) -> dict[str, Any]:
    """The official training and test splits of `ds`, as regbench.data.datasets.Source's fields.

    Raises:
        UserInputError: files missing with download=false, damaged originals, or a download
            that failed (one line naming the folder and what to do).
    """
    from hydra.utils import to_absolute_path
    from torchvision import datasets as tvd

    cls_name, _, files_dir = TORCHVISION[ds.name]
    cls = getattr(tvd, cls_name)
    # Relative to where regbench was started, not to the run folder (hydra.job.chdir=true).
    root = Path(to_absolute_path(str(Path(ds.root).expanduser())))
    damaged = _damaged_originals(cls, root)
    if damaged and not ds.download:
        raise UserInputError(f"{damaged}; copy the original file there again (or delete it and set dataset.download=true)")
    if not ds.download:
        _unpack_originals(cls, root)
    try:
        train = cls(root=str(root), train=True, download=ds.download)
        test = cls(root=str(root), train=False, download=ds.download)
    except Exception as e:  # torchvision raises RuntimeError, URLError or OSError here
        if not ds.download:
            originals = ", ".join(Path(url).name for url, _ in cls.resources) if hasattr(cls, "resources") else (
                f"the folder unpacked from {cls.filename}")
            raise UserInputError(
                f"{ds.name} files not found under {root / files_dir} and dataset.download=false: "
                f"set dataset.download=true, or copy the dataset's original files there ({originals})"
            ) from e
        first_line = (str(e).strip().splitlines() or [""])[0]
        if damaged:  # torchvision tried to download it again, and could not
            raise UserInputError(f"{damaged}, and a fresh copy could not be downloaded ({type(e).__name__}: "
                                 f"{first_line}); copy the original file there again") from e
        raise UserInputError(
            f"could not download {ds.name} into {root} ({type(e).__name__}: {first_line}); without network, "
            f"copy the dataset's original files into {root / files_dir} or point dataset.root at them"
        ) from e

    def arrays(split: Any) -> tuple[np.ndarray, np.ndarray]:
        x = split.data.numpy() if isinstance(split.data, torch.Tensor) else np.asarray(split.data)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
        y = np.asarray(split.targets, dtype=np.int64)
        return x, y

    (x_train, y_train), (x_test, y_test) = arrays(train), arrays(test)
    return {"x": x_train, "y": y_train, "task": "classification", "x_test": x_test, "y_test": y_test}


def _damaged_originals(cls: Any, root: Path) -> str:
    """Names the original `.gz` files in `<root>/<Name>/raw` whose MD5 is not the published one
    (and that are not unpacked already), with both digests; "" when there is none."""
    if not hasattr(cls, "resources"):
        return ""
    from torchvision.datasets.utils import calculate_md5

    raw = root / cls.__name__ / "raw"
    damaged = []
    for url, md5 in cls.resources:
        packed = raw / Path(url).name
        if packed.is_file() and not (raw / packed.stem).is_file():
            actual = calculate_md5(str(packed))
            if actual != md5:
                damaged.append(f"{packed} is damaged: its MD5 is {actual}, the original's is {md5}")
    return "; ".join(damaged)


def _unpack_originals(cls: Any, root: Path) -> None:
    """Unpacks the original `.gz` files of MNIST and Fashion-MNIST found in `<root>/<Name>/raw`
    whose MD5 is the published one, as torchvision itself does with download=true when it
    finds them; torchvision's download=false reads only the unpacked files."""
    if not hasattr(cls, "resources"):  # CIFAR-10 reads its unpacked folder
        return
    from torchvision.datasets.utils import check_integrity, extract_archive

    raw = root / cls.__name__ / "raw"
    for url, md5 in cls.resources:
        packed = raw / Path(url).name
        if packed.is_file() and not (raw / packed.stem).is_file() and check_integrity(str(packed), md5):
            extract_archive(str(packed), str(raw))
