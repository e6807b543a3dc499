"""`dataset=image_folder`: torchvision's ImageFolder layout, one subfolder of images per class
(class indices in the sorted order of the subfolders' names, as ImageFolder gives them),
optionally under `train/` and `test/` for an official test split.

The images are decoded once with PIL, resized to `dataset.image_size` (square) when set, and
kept as one uint8 (N, C, H, W) array: 1 channel when every image is grayscale, else RGB. The
decoded array is cached in regbench's cache folder (regbench.data.files.cache_dir), keyed by
the folder and the image size, and used while every file's name, size and modification time
are those it was decoded from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from regbench import UserInputError
from regbench.data import files

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
GRAY = ("1", "L", "I", "I;16", "F")  # PIL modes of one channel


def read(ds: Any) -> dict[str, Any]:
    """The decoded images and their classes, as regbench.data.datasets.Source's fields.

    Raises:
        UserInputError: fewer than two classes, no images, mixed sizes without
            dataset.image_size, an image that does not decode, a folder too large for memory.
    """
    root = files.resolve(ds.path)
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "test" if train_dir != root and (root / "test").is_dir() else None
    classes = sorted(d.name for d in os.scandir(train_dir) if d.is_dir())
    paths, y = _listing(train_dir, classes)
    if len(classes) < 2 or not paths:
        raise UserInputError(f"{train_dir}: an image folder needs one subfolder of images per class, at least two "
                             f"(found {len(classes)} subfolders, {len(paths)} images)")
    n_train = len(paths)
    if test_dir is not None:
        unknown = sorted({d.name for d in os.scandir(test_dir) if d.is_dir()} - set(classes))
        if unknown:
            raise UserInputError(f"{test_dir}: the classes {', '.join(unknown)} have no folder in {train_dir}; "
                                 "give the training images of every class")
        more, y_test = _listing(test_dir, classes)
        paths, y = paths + more, np.concatenate([y, y_test])
    x = _cached_or_decoded(root, paths, ds.image_size)
    summary = {"kind": "image_folder", "path": str(root), "images": n_train,
               "test_images": len(paths) - n_train if test_dir is not None else None,
               "image_shape": list(x.shape[1:]), "image_size": ds.image_size,
               "per_class": {c: int(k) for c, k in zip(classes, np.bincount(y[:n_train], minlength=len(classes)))}}
    out = {"x": x[:n_train], "y": y[:n_train], "task": "classification", "classes": classes, "summary": summary}
    if test_dir is not None:
        out.update(x_test=x[n_train:], y_test=y[n_train:])
    return out


def summary_line(s: dict[str, Any]) -> str:
    """`image_folder photos: 24 train + 8 test images of (3, 32, 32), resized, 2 classes`: the
    images of each split (train/ and test/, or the one folder), their shape (channels, height,
    width; whether resized to dataset.image_size), the classes."""
    images = (f"{s['images']} train + {s['test_images']} test images" if s["test_images"] is not None
              else f"{s['images']} images")
    resized = f" (resized to {s['image_size']}x{s['image_size']})" if s["image_size"] is not None else ""
    return f"image_folder {Path(s['path']).name}: {images} of {tuple(s['image_shape'])}{resized}, {s['classes']} classes"


def _listing(folder: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Every image under each class's subfolder (recursively, sorted, as ImageFolder walks)."""
    paths, y = [], []
    for index, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            continue
        for dirpath, _, names in sorted(os.walk(sub, followlinks=True)):
            for f in sorted(names):
                if f.lower().endswith(EXTENSIONS):
                    paths.append(Path(dirpath) / f)
                    y.append(index)
    return paths, np.asarray(y, dtype=np.int64)


def fingerprint(paths: list[Path]) -> str:
    """A digest of the files' names, sizes and modification times: it changes when any file does."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_file(root: Path, image_size: int | None) -> Path:
    """Where the decoded array of `root` at `image_size` is kept: one file per folder and size,
    overwritten when the files change."""
    key = hashlib.sha256(f"{root.resolve()}\0{image_size}".encode()).hexdigest()[:24]
    return files.cache_dir() / "image_folder" / f"{key}.npz"


def _cached_or_decoded(root: Path, paths: list[Path], image_size: int | None) -> np.ndarray:
    stamp = fingerprint(paths)
    cached = cache_file(root, image_size)
    try:
        with np.load(cached, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) == stamp:
                return npz["x"]
    except (OSError, KeyError, ValueError):  # none yet, or a partial or foreign file: decode again
        pass
    x = decode(paths, image_size, root)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
        np.savez(partial, x=x, fingerprint=np.array(stamp), listing=np.array(json.dumps([str(p) for p in paths])))
        os.replace(partial, cached)  # whole or absent: a concurrent run never reads half a file
    except OSError as e:  # a read-only home: the next run decodes again
        log.warning("could not cache the decoded images in %s (%s)", cached, e.strerror or e)
    return x


def decode(paths: list[Path], image_size: int | None, root: Path) -> np.ndarray:
    """The images as one uint8 (N, C, H, W) array, with a progress bar on a terminal.

    Raises:
        UserInputError: an image that does not open, mixed sizes without image_size, or an
            array larger than the host memory free.
    """
    from PIL import Image
    from rich.console import Console

    from regbench.console import count_bar

    sizes, gray = {}, True
    for p in paths:  # headers only: sizes and modes, before any pixel is decoded
        try:
            with Image.open(p) as im:
                sizes.setdefault(im.size, p)
                gray = gray and im.mode in GRAY
        except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError...
            raise UserInputError(f"{p}: not an image PIL can decode ({type(e).__name__}); remove or replace it") from e
    if image_size is None and len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise UserInputError(f"{root}: the images have different sizes ({pa} is {a[0]}x{a[1]}, {pb} is {b[0]}x{b[1]}); "
                             "set dataset.image_size=N to resize them all to NxN")
    w, h = (image_size, image_size) if image_size is not None else next(iter(sizes))
    channels = 1 if gray else 3
    files.check_fits(len(paths) * channels * h * w, root, None,
                     "set a smaller dataset.image_size, or use fewer images")
    x = np.empty((len(paths), channels, h, w), dtype=np.uint8)
    bar, task = count_bar(Console(stderr=True), len(paths), f"decoding {root.name}", "images")
    with bar:
        for i, p in enumerate(paths):
            try:
                with Image.open(p) as im:
                    im = im.convert("L" if gray else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                    pixels = np.asarray(im, dtype=np.uint8)
            except Exception as e:  # a truncated file opens but does not decode
                raise UserInputError(f"{p}: the image does not decode ({type(e).__name__}: {e}); remove or replace it") from e
            x[i] = pixels[None] if gray else pixels.transpose(2, 0, 1)
            bar.advance(task)
    return x
