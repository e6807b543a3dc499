"""`dataset=arrays`: an .npz file with `x` and `y` (and optionally `x_test` and `y_test`).

`x` of 2 dimensions is a table of numbers, standardised with training statistics; of 3
(N, H, W) or 4 dimensions (N, C, H, W, or N, H, W, C with 1, 3 or 4 channels last) it is
images: kept uint8 when they are, and normalised per batch on the device as MNIST is.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from regbench import UserInputError
from regbench.data import files, labels


def read(ds: Any) -> dict[str, Any]:
    """The arrays, as regbench.data.datasets.Source's fields.

    Raises:
        UserInputError: not an npz, `x` or `y` absent, arrays of the wrong shape or dtype.
    """
    path = files.resolve(ds.path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:  # not an npz, or object arrays (pickles)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"{path}: not a readable .npz of plain arrays ({first}); save it with "
                             "numpy.savez(path, x=..., y=...)") from e
    absent = [k for k in ("x", "y") if k not in arrays]
    if absent or ("x_test" in arrays) != ("y_test" in arrays):
        raise UserInputError(f"{path} holds {', '.join(sorted(arrays)) or 'no array'}; it needs x and y (and "
                             "x_test with y_test, or neither)")
    x, x_test = _features(arrays["x"], path, "x"), None
    if "x_test" in arrays:
        x_test = _features(arrays["x_test"], path, "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise UserInputError(f"{path}: x_test's samples have the shape {x_test.shape[1:]}, x's {x.shape[1:]}")
    y_parts = [arrays["y"]] + ([arrays["y_test"]] if x_test is not None else [])
    for name, xs, ys in zip(("y", "y_test"), (x, x_test), y_parts):
        if ys.ndim != 1 or len(ys) != len(xs):
            raise UserInputError(f"{path}: {name} must be one value per sample of "
                                 f"{'x' if name == 'y' else 'x_test'} ({len(xs)}), not of shape {ys.shape}")
    y, task, classes = labels.encode(np.concatenate(y_parts), ds.task, f"{path} array y")
    summary = {"kind": "arrays", "path": str(path), "samples": len(x),
               "test_samples": len(x_test) if x_test is not None else None, "sample_shape": list(x.shape[1:]),
               "dtype": str(arrays["x"].dtype)}
    out = {"x": x, "y": y[: len(x)], "task": task, "classes": classes, "summary": summary}
    if x_test is not None:
        out.update(x_test=x_test, y_test=y[len(x):])
    return out


def summary_line(s: dict[str, Any]) -> str:
    """`arrays data.npz: 1000 + 200 test samples of (1, 28, 28), 10 classes`: the samples of
    each split the file holds, their shape (features, or images' channels, height, width), the
    classes."""
    samples = f"{s['samples']}" + (f" + {s['test_samples']} test" if s["test_samples"] is not None else "")
    shape = s["sample_shape"]
    of = f"{shape[0]} features" if len(shape) == 1 else f"{tuple(shape)}"
    outcome = f"{s['classes']} classes" if s["task"] == "classification" else "regression"
    return f"arrays {Path(s['path']).name}: {samples} samples of {of}, {outcome}"


def _features(x: np.ndarray, path: Path, name: str) -> np.ndarray:
    """(N, F) floats, or images as (N, C, H, W): uint8 kept, anything else float64."""
    if x.dtype.kind not in "biuf":
        raise UserInputError(f"{path}: {name} holds {x.dtype} values; it must hold numbers")
    if x.ndim == 2:
        return x.astype(np.float64)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)  # channels last, as PIL and TensorFlow keep them
    elif x.ndim != 4:
        raise UserInputError(f"{path}: {name} has {x.ndim} dimensions {x.shape}; give (samples, features) for a "
                             "table or (samples, [channels,] height, width) for images")
    return np.ascontiguousarray(x) if x.dtype == np.uint8 else x.astype(np.float64)
