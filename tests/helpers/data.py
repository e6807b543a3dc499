"""Data the tests read: the offline MNIST originals, a synthetic table as users have them, and
small random tensors (`table_data`, `image_batch`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.configs import REPO

# The original MNIST / Fashion-MNIST .gz files, beside the repository (see docs/development.md).
SHARED_DATA = Path(os.environ.get("REGBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def torchvision_root(tmp_path: Path, folder: str) -> Path:
    """Copies the original .gz files of `folder` (MNIST or FashionMNIST) into a writable root."""
    source = SHARED_DATA / folder / "raw"
    if not source.is_dir():
        pytest.skip(f"offline {folder} files not found in {source} (set REGBENCH_SHARED_DATA)")
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for gz in source.glob("*.gz"):
        shutil.copy(gz, raw / gz.name)
    return tmp_path


def people(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A table as users have them: an id, numbers with gaps, a constant, categories with gaps
    and a rare one, a string target with three classes."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n).round(1)
    age[rng.random(n) < 0.15] = np.nan
    city = rng.choice(["Lyon", "Oslo", "Kyoto", "Lima"], n).astype(object)
    city[rng.random(n) < 0.1] = None
    plan = rng.choice(["basic", "pro"], n, p=[0.7, 0.3]).astype(object)
    plan[:3] = "enterprise"  # rare: may land in validation or test rows only
    income = rng.lognormal(10, 1, n)
    score = (np.nan_to_num(age, nan=40) - 40) / 12 + (plan == "pro") + rng.normal(0, 0.5, n)
    label = np.where(score > 0.8, "yes", np.where(score < -0.5, "no", "maybe"))
    return pd.DataFrame({"id": np.arange(1000, 1000 + n), "age": age, "city": city, "income": income,
                         "const": 3.0, "plan": plan, "label": label})


def table_data(task: str = "classification", n: int = 60, p: int = 5, n_classes: int = 3, seed: int = 0):
    """A random table as a regbench.data.datasets.Data: n training rows, n // 2 validation and
    test rows of p features; classes drawn at random, or a noisy linear regression target."""
    import torch

    from regbench.data.datasets import Data

    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(m, p, generator=g) for m in (n, n // 2, n // 2)]
    if task == "classification":
        ys = [torch.randint(0, n_classes, (m,), generator=g) for m in (n, n // 2, n // 2)]
        n_out = n_classes
    else:
        ys = [x[:, 0] - 0.5 * x[:, 1] + 0.3 * torch.randn(x.shape[0], generator=g) for x in xs]
        n_out = 1
    return Data(task, xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], n_outputs=n_out, is_image=False)


def image_batch(b=6, c=3, h=8, w=10, classes=4, seed=0):
    """A random batch of b images (c x h x w), its class indices and the number of classes."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randint(0, classes, (b,), generator=g), classes
