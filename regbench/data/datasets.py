"""Loads a dataset, splits it train/val/test, and puts it on the device as tensors.

Order of operations, the same for every dataset: (1) the test split (official where the
dataset has one, else a held-out stratified fraction), (2) a stratified validation fraction
of what remains, (3) the `train_size` subsample of the training part, (4) label noise on the
training labels only, (5) standardisation with statistics of the final training split (for a
user's table, its encoder: regbench.data.tables). Every random choice is drawn from
`split_seed`, so for one seed every regularizer sees the same split, subsample and noise.

Each source is read by the module named for it, into the same `Source`: the bundled datasets
by regbench.data.toy (digits, breast_cancer, wine, diabetes), synthetic (synthetic,
synthetic_regression) and torchvision_sets (mnist, fashion_mnist, cifar10); a user's
(dataset=table, arrays, image_folder) by regbench.data.tables, arrays and image_folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from regbench import UserInputError
from regbench.data import files, streaming, synthetic, torchvision_sets, toy
from regbench.data.files import OWN_DATA
from regbench.data.splitting import train_test_split

log = logging.getLogger(__name__)

# name -> the reader of a bundled dataset, in the module named for its source (a user's: see `read`)
BUNDLED: dict[str, Callable[[Any], dict[str, Any]]] = {
    **dict.fromkeys(toy.TASKS, toy.read),
    **dict.fromkeys(synthetic.TASKS, synthetic.read),
    **dict.fromkeys(torchvision_sets.TORCHVISION, torchvision_sets.read),
}
# the bundled regression datasets: their task is known before they are read (`configured_task`)
REGRESSION = tuple(name for name, task in {**toy.TASKS, **synthetic.TASKS}.items() if task == "regression")


@dataclass
class Data:
    """Train/val/test tensors on one device, ready for index-slice batching.

    Images are kept as uint8 (N, C, H, W) and turned into standardised floats per batch by
    `prepare`; tables (and digits, shaped 1x8x8) are stored already standardised.
    """

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_outputs: int
    is_image: bool
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    classes: list[str] | None = None
    """The name of each class index (a user's labels), None where the indices are the names."""
    summary: dict[str, Any] | None = None
    """A user's data (table, arrays, image_folder): what was read and what it became, with its
    one-line description under `line` (see `summarise`); None for the bundled datasets."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def input_range(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(low, high) of a prepared input where the data bounds it: an image's pixels [0, 1],
        standardised per channel ((C, 1, 1) each: exactly what `prepare` makes of pixels 0 and
        255); None for tables, whose standardised features have no bound."""
        if self.mean is None:
            return None
        return (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Turns a stored batch into the model's float input (in place on one float copy: an
        evaluation chunk of 8192 MNIST images is 26 MB per temporary)."""
        if self.mean is None:
            return x
        return x.float().div_(255.0).sub_(self.mean).div_(self.std)


@dataclass
class Source:
    """A dataset as read, before any split: every row's features and target, and the official
    test rows apart where the dataset has them (`x_test` None: a held-out fraction)."""

    x: Any
    y: np.ndarray
    task: str
    x_test: Any = None
    y_test: np.ndarray | None = None
    classes: list[str] | None = None
    featurize: Callable[[Any], Callable[[Any], np.ndarray]] | None = None
    """Fitted on the training rows, returns the function that turns rows into float features;
    None: numeric arrays, standardised here (or uint8 images, per batch)."""
    summary: dict[str, Any] | None = None
    """A user's data: the facts its reader knows (its `kind`, file, rows...), completed by `load`."""


def load(ds: Any, device: torch.device, stream: bool | None = None) -> Data:
    """Builds the splits of `ds` (the `dataset` config node) on `device`.

    A user's dataset (table, arrays, image_folder) that would take more than its share of the
    device's free memory keeps its inputs in pinned host memory, streamed to the device batch
    by batch (regbench.data.streaming); `stream` forces (True) or forbids (False) that.

    Raises:
        UserInputError: files missing with download=false, a download that failed, or a
            user's file that cannot be read (one line naming the file and what to do).
    """
    src = read(ds)
    task = src.task
    train, val, test = split_rows(src, ds)
    x_pool = src.x if src.x_test is None else src.x_test
    y_test = (src.y if src.x_test is None else src.y_test)[test]
    if task == "classification":  # every label of the dataset, whichever split it fell in
        labels = src.y.max() if src.y_test is None else max(src.y.max(), src.y_test.max())
        n_classes = len(src.classes) if src.classes is not None else int(labels) + 1
    else:
        n_classes = 0
    y_train = _label_noise(src.y[train], ds.label_noise, ds.split_seed + 3, n_classes)
    y_val = src.y[val]

    if task == "regression":
        mu, sd = y_train.mean(), _safe_std(y_train.std())
        y_train, y_val, y_test = ((y - mu) / sd for y in (y_train, y_val, y_test))
        n_outputs = 1
        y_dtype = torch.float32
    else:
        n_outputs = n_classes
        y_dtype = torch.int64

    x_train, x_val, x_test = _rows(src.x, train), _rows(src.x, val), _rows(x_pool, test)
    is_image = src.featurize is None and x_train.dtype == np.uint8
    mean = std = None
    summary = None if src.summary is None else {**src.summary, "task": task, "classes": n_classes or None}
    if src.featurize is not None:  # a table's columns: an encoder fitted on the training rows only
        encode = src.featurize(x_train)
        if summary is not None:
            summary.update(encode.describe())
        # before encoding: a text column of ids becomes one column per id
        n_rows = len(x_train) + len(x_val) + len(x_test)
        files.check_fits(n_rows * encode.n_features * 12, files.resolve(ds.path), None,
                         f"its columns encode into {encode.n_features} features: dataset.drop the text columns "
                         "with many distinct values (ids, names), or use dataset.train_size")
        x_train, x_val, x_test = encode(x_train), encode(x_val), encode(x_test)
    elif is_image:
        # Per-channel statistics of the training split; the uint8 pixels stay compact on the device.
        mu, sd = image_stats(x_train)
        mean = torch.from_numpy(mu).to(torch.float32).reshape(-1, 1, 1).to(device)
        std = torch.from_numpy(sd).to(torch.float32).reshape(-1, 1, 1).clamp_min(1e-6).to(device)
    else:
        mu = x_train.mean(axis=0)
        sd = _safe_std(x_train.std(axis=0))
        x_train, x_val, x_test = ((x - mu) / sd for x in (x_train, x_val, x_test))
    host = False  # True: the inputs stay in host memory, streamed to the device per batch
    if ds.name in OWN_DATA:  # the bundled datasets are known to fit
        per_value = 1 if is_image else 4
        n_bytes = sum(x.size * per_value + 8 * len(x) for x in (x_train, x_val, x_test))
        hint = "use dataset.train_size, drop columns, or a smaller dataset.image_size"
        where = files.resolve(ds.path)
        host = stream if stream is not None else (
            streaming.placement(n_bytes, device, files.available_memory(device)) == "host")
        if host:
            files.check_fits(n_bytes, where, None, hint)
            log.info("%s: %.1f GiB of inputs stay in pinned host memory, streamed to %s per batch",
                     where, n_bytes / 2**30, device)
        else:
            files.check_fits(n_bytes, where, device, hint)

    def tensor(a: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(device=device, dtype=dtype if dtype is not None else t.dtype)

    def inputs(a: np.ndarray, dtype: torch.dtype | None) -> Any:
        if not host:
            return tensor(a, dtype)
        t = torch.from_numpy(np.ascontiguousarray(a))
        return streaming.HostSplit(t.to(dtype) if dtype is not None else t, device)

    xf = None if is_image else torch.float32
    return Data(
        task=task,
        x_train=inputs(x_train, xf),
        y_train=tensor(y_train, y_dtype),
        x_val=inputs(x_val, xf),
        y_val=tensor(y_val, y_dtype),
        x_test=inputs(x_test, xf),
        y_test=tensor(y_test, y_dtype),
        n_outputs=n_outputs,
        is_image=is_image,
        mean=mean,
        std=std,
        classes=src.classes,
        summary=summarise(summary) if summary is not None else None,
    )


def summarise(summary: dict[str, Any]) -> dict[str, Any]:
    """A user's data summary with its one line first, `line`, written by its reader's module."""
    from regbench.data import arrays, image_folder, tables

    line = {"table": tables.summary_line, "arrays": arrays.summary_line,
            "image_folder": image_folder.summary_line}[summary["kind"]](summary)
    return {"line": line, **summary}


def configured_task(ds: Any) -> str:
    """The task the `dataset` node says before anything is read: a bundled dataset's own, or
    `dataset.task` (auto taken for classification until the data says otherwise)."""
    if ds.name in OWN_DATA:
        return "regression" if ds.get("task") == "regression" else "classification"
    return "regression" if ds.name in REGRESSION else "classification"


def split_rows(src: Source, ds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training, validation and test rows of `src`: indices into `src.x` (the test rows into
    `src.x_test` where the dataset has an official test split), the same samples in the same
    order as splitting the arrays themselves would give, without copying the features per step."""
    task = src.task
    name = str(files.resolve(ds.path)) if ds.name in OWN_DATA else ds.name  # what a refusal names
    if src.x_test is None:
        trainval, test = _split(np.arange(len(src.y)), src.y, ds.test_fraction, ds.split_seed, name, task)[:2]
    else:
        trainval, test = np.arange(len(src.y)), np.arange(len(src.y_test))
    y_trainval = src.y[trainval]
    train, val = _split(np.arange(len(trainval)), y_trainval, ds.val_fraction, ds.split_seed + 1, name, task)[:2]
    train = train[_subsample(y_trainval[train], ds.train_size, ds.split_seed + 2, task)]
    return trainval[train], trainval[val], test


def read(ds: Any) -> Source:
    """The dataset `ds` names, as read from disk (or generated), before any split."""
    if ds.name in OWN_DATA:
        from regbench.data import arrays, image_folder, tables  # a table's reader imports pandas

        readers = {"table": tables.read, "arrays": arrays.read, "image_folder": image_folder.read}
    else:
        readers = BUNDLED
    if ds.name not in readers:
        raise UserInputError(f"unknown dataset {ds.name!r}")
    return Source(**readers[ds.name](ds))


def _rows(x: Any, rows: np.ndarray) -> Any:
    return x.iloc[rows] if hasattr(x, "iloc") else x[rows]


def image_stats(x: np.ndarray, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W) scaled to [0, 1].

    Exact, in float64, from each channel's histogram of the 256 pixel values: no float copy of
    the images (MNIST's would be 147 MiB). The standard deviation is the unbiased one (n - 1),
    as torch's `.std()`. bincount counts `chunk` pixels at a time: it widens its input to
    int64, 8 bytes per pixel.
    """
    n_images, n_channels = x.shape[0], x.shape[1]
    per_image = int(np.prod(x.shape[2:]))
    step = max(1, chunk // max(per_image, 1))
    counts = np.zeros((n_channels, 256), dtype=np.int64)
    for c in range(n_channels):
        for start in range(0, n_images, step):
            counts[c] += np.bincount(x[start : start + step, c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum(axis=1).astype(np.float64)
    mean = counts @ values / n
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / np.maximum(n - 1, 1)
    return mean, np.sqrt(var)


def _safe_std(sd: Any) -> Any:
    # Constant features (the blank borders of digits) would divide by zero.
    return np.where(sd > 0, sd, 1.0) if isinstance(sd, np.ndarray) else (sd if sd > 0 else 1.0)


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, name: str, task: str) -> list[np.ndarray]:
    """Returns x_keep, x_held, y_keep, y_held; stratified for classification."""
    stratify = None if task == "regression" else y
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as e:
        raise UserInputError(f"cannot split {name} with fraction {fraction}: {e}") from e


def _subsample(y: np.ndarray, size: float | None, seed: int, task: str) -> np.ndarray:
    """The indices of the `train_size` subsample of a training split with targets `y`."""
    everything = np.arange(len(y))
    if size is None or size == 1.0:
        return everything
    n = int(size) if size > 1 else int(round(size * len(y)))
    if n > len(y):
        raise UserInputError(f"dataset.train_size={int(size)} but the training split has only {len(y)} samples")
    if n == len(y):
        return everything
    n_classes = len(np.unique(y)) if task == "classification" else 0
    if n < max(n_classes, 2):
        raise UserInputError(f"dataset.train_size={size} leaves {n} training samples; need at least {max(n_classes, 2)}")
    stratify = y if task == "classification" and min(n, len(y) - n) >= n_classes else None
    return train_test_split(everything, y, train_size=n, random_state=seed, stratify=stratify)[0]


def _label_noise(y: np.ndarray, fraction: float, seed: int, n_classes: int) -> np.ndarray:
    """Replaces round(fraction * n) training labels: a uniformly drawn class (which may be the
    true one, as in Zhang et al. 2017), or for regression (n_classes=0) the target of a random
    training sample."""
    n_noisy = int(round(fraction * len(y)))
    if n_noisy == 0:
        return y
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=n_noisy, replace=False)
    y = y.copy()
    if n_classes:
        y[idx] = rng.integers(0, n_classes, size=n_noisy)
    else:
        y[idx] = y[rng.integers(0, len(y), size=n_noisy)]
    log.info("label noise: replaced %d of %d training labels", n_noisy, len(y))
    return y
