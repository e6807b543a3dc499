"""Splits, subsampling, label noise and standardisation; torchvision datasets offline."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from regbench import UserInputError

from regbench.data import datasets, splitting, toy
from regbench.data.datasets import REGRESSION, image_stats, load
from tests.helpers.configs import make_cfg
from tests.helpers.data import torchvision_root

CPU = torch.device("cpu")


def data_of(*overrides: str):
    return load(make_cfg(*overrides).dataset, CPU)


def test_digits_split_sizes_are_stratified_fractions():
    d = data_of("dataset=digits")
    n_test, n_val, n_train = len(d.y_test), len(d.y_val), len(d.y_train)
    assert n_train + n_val + n_test == 1797
    assert n_test == 360  # ceil(0.2 * 1797), scikit-learn's rounding of test_size
    assert n_val == 288  # ceil(0.2 * 1437)
    assert d.x_train.shape[1:] == (1, 8, 8) and d.task == "classification" and d.n_outputs == 10
    # Stratified: each class's share of the test split is within one sample of its share overall.
    overall = np.bincount(np.concatenate([d.y_train, d.y_val, d.y_test]), minlength=10) / 1797
    test_share = np.bincount(d.y_test.numpy(), minlength=10)
    assert np.all(np.abs(test_share - overall * n_test) <= 1.0)


def test_tabular_features_are_standardised_with_training_statistics_only():
    d = data_of("dataset=breast_cancer")
    mean, std = d.x_train.mean(0), d.x_train.std(0, unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-4)
    # The held-out splits are transformed with the training statistics, so they are not exactly standard.
    assert not torch.allclose(d.x_val.mean(0), torch.zeros_like(mean), atol=1e-3)


def test_same_split_seed_gives_the_same_split_whatever_the_regularizer():
    a = load(make_cfg("dataset=wine", "reg=l1", "seed=3").dataset, CPU)
    b = load(make_cfg("dataset=wine", "reg=[l2,dropout]", "seed=3").dataset, CPU)
    c = load(make_cfg("dataset=wine", "seed=4").dataset, CPU)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_split_seed_can_be_pinned_apart_from_seed():
    a = load(make_cfg("dataset=wine", "seed=1", "dataset.split_seed=7").dataset, CPU)
    b = load(make_cfg("dataset=wine", "seed=2", "dataset.split_seed=7").dataset, CPU)
    assert torch.equal(a.x_train, b.x_train)


@pytest.mark.parametrize("size, expected", [("100", 100), ("0.25", 287)])
def test_train_size_is_a_count_or_a_fraction(size, expected):
    full = data_of("dataset=digits")
    d = data_of("dataset=digits", f"dataset.train_size={size}")
    assert len(d.y_train) == expected  # 0.25 * 1149 training samples, rounded
    assert len(d.y_val) == len(full.y_val) and torch.equal(d.y_test, full.y_test)


def test_train_size_larger_than_the_split_is_refused():
    with pytest.raises(UserInputError, match="train_size"):
        data_of("dataset=wine", "dataset.train_size=5000")


def test_label_noise_replaces_that_fraction_of_training_labels_only():
    clean = data_of("dataset=digits")
    noisy = data_of("dataset=digits", "dataset.label_noise=0.4")
    changed = (clean.y_train != noisy.y_train).float().mean().item()
    # 40% are redrawn uniformly over 10 classes, so about 36% end up different.
    assert 0.30 < changed < 0.42
    assert torch.equal(clean.y_val, noisy.y_val) and torch.equal(clean.y_test, noisy.y_test)
    assert torch.equal(clean.x_train, noisy.x_train)


def test_regression_targets_are_standardised_and_noise_draws_training_targets():
    d = data_of("dataset=diabetes")
    assert d.task == "regression" and d.n_outputs == 1 and d.y_train.dtype == torch.float32
    assert abs(d.y_train.mean().item()) < 1e-5
    noisy = data_of("dataset=diabetes", "dataset.label_noise=0.5")
    assert (noisy.y_train != d.y_train).float().mean().item() > 0.3


def test_synthetic_datasets_have_the_configured_shapes():
    c = data_of("dataset=synthetic", "dataset.n_samples=500", "dataset.n_features=40")
    r = data_of("dataset=synthetic_regression")
    assert c.x_train.shape[1] == 40 and c.n_outputs == 2
    assert r.x_train.shape[1] == 100 and r.task == "regression"
    assert len(c.y_train) + len(c.y_val) + len(c.y_test) == 500


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_datasets_load_offline_from_the_original_files(tmp_path, name, folder):
    root = torchvision_root(tmp_path, folder)
    d = data_of(f"dataset={name}", f"dataset.root={root}", "dataset.download=true")
    assert d.is_image and d.x_train.dtype == torch.uint8  # kept compact, normalised per batch
    assert len(d.y_test) == 10000 and len(d.y_train) + len(d.y_val) == 60000
    assert d.x_train.shape[1:] == (1, 28, 28)
    x = d.prepare(d.x_train[:5000])
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


@pytest.mark.parametrize("shape, chunk", [((300, 1, 28, 28), 1 << 20), ((200, 3, 32, 32), 5000), ((9, 2, 5, 5), 1)])
def test_image_statistics_from_the_histogram_are_exact(shape, chunk):
    x = np.random.default_rng(7).integers(0, 256, size=shape, dtype=np.uint8)
    x[:, 0, 0, 0] = 255  # a skewed channel, not just uniform noise
    mean, std = image_stats(x, chunk=chunk)
    pixels = x.astype(np.float64) / 255.0  # the float64 reference, and the old float32 computation
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-12, atol=0)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3), ddof=1), rtol=1e-12, atol=0)
    old = torch.from_numpy(x).float().div_(255.0)
    np.testing.assert_allclose(mean, old.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(std, old.std(dim=(0, 2, 3)).numpy(), rtol=1e-6)
    assert mean.dtype == std.dtype == np.float64 and mean.shape == std.shape == (shape[1],)


def test_image_data_keeps_float32_statistics_of_the_training_split(tmp_path):
    root = torchvision_root(tmp_path, "MNIST")
    d = data_of("dataset=mnist", f"dataset.root={root}", "dataset.train_size=2000")
    assert d.mean.dtype == d.std.dtype == torch.float32 and d.mean.shape == d.std.shape == (1, 1, 1)
    pixels = d.x_train.double() / 255.0
    assert d.mean.item() == np.float32(pixels.mean().item())
    assert d.std.item() == np.float32(pixels.std().item())


def test_missing_files_without_download_name_the_root(tmp_path):
    with pytest.raises(UserInputError, match=str(tmp_path)) as info:
        data_of("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false")
    assert "dataset.download=true" in str(info.value) and "\n" not in str(info.value)
    assert "train-images-idx3-ubyte.gz" in str(info.value)  # which files it wants


def test_without_download_the_original_gz_files_are_unpacked_in_place(tmp_path, monkeypatch):
    """torchvision's download=false reads only unpacked files; regbench unpacks the published
    originals (MD5 checked) itself, so download=false works offline with the .gz files alone."""
    root = torchvision_root(tmp_path / "a", "MNIST")
    d = data_of("dataset=mnist", f"dataset.root={root}", "dataset.download=false")
    assert len(d.y_test) == 10000 and (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    damaged = torchvision_root(tmp_path / "b", "MNIST")
    (damaged / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the original")
    gz = damaged / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    md5 = hashlib.md5(b"not the original").hexdigest()
    with pytest.raises(UserInputError) as info:  # named, with both digests, not "files not found"
        data_of("dataset=mnist", f"dataset.root={damaged}", "dataset.download=false")
    assert str(info.value).startswith(f"{gz} is damaged: its MD5 is {md5}, the original's is ")
    assert "not found" not in str(info.value) and "\n" not in str(info.value)
    assert not (damaged / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()
    import torchvision.datasets.mnist
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(UserInputError) as info:  # download=true, offline: torchvision tried to fetch it again
        data_of("dataset=mnist", f"dataset.root={damaged}", "dataset.download=true")
    assert str(info.value).startswith(f"{gz} is damaged: its MD5 is {md5}") and "could not be downloaded" in str(info.value)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "diabetes", "synthetic", "synthetic_regression"])
def test_splits_are_index_for_index_those_of_scikit_learn(name):
    """regbench.data.splitting replaces scikit-learn's train_test_split (whose import costs more than
    a digits run trains): same test fractions and train counts, same seeds, same arrays."""
    from sklearn.model_selection import train_test_split as reference

    src = datasets.read(make_cfg(f"dataset={name}").dataset)
    x, y = src.x, src.y
    stratify = None if name in REGRESSION else y
    cases = [{"test_size": f} for f in (0.1, 0.2, 0.25, 1 / 3, 0.5, 0.77)]
    cases += [{"train_size": n} for n in (12, 57, 100, len(y) // 2, len(y) - 12)]
    for seed in range(0, 60, 3):
        for sizes in cases:
            ours = splitting.train_test_split(x, y, random_state=seed, stratify=stratify, **sizes)
            theirs = reference(x, y, random_state=seed, stratify=stratify, **sizes)
            for a, b in zip(ours, theirs, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b), (seed, sizes)


@pytest.mark.parametrize("sizes", [{"test_size": 0.01}, {"train_size": 2}, {"test_size": 0.999}, {"train_size": 178}])
def test_impossible_splits_fail_with_scikit_learns_message(sizes):
    from sklearn.model_selection import train_test_split as reference

    src = datasets.read(make_cfg("dataset=wine").dataset)
    x, y = src.x, src.y
    with pytest.raises(ValueError) as ours:
        splitting.train_test_split(x, y, random_state=0, stratify=y, **sizes)
    with pytest.raises(ValueError) as theirs:
        reference(x, y, random_state=0, stratify=y, **sizes)
    assert str(ours.value) == str(theirs.value)
    lonely = np.array([0, 0, 0, 1, 1, 1, 2])  # a class with one member cannot be stratified
    with pytest.raises(ValueError) as ours:
        splitting.train_test_split(lonely, lonely, test_size=0.5, random_state=0, stratify=lonely)
    with pytest.raises(ValueError) as theirs:
        reference(lonely, lonely, test_size=0.5, random_state=0, stratify=lonely)
    assert str(ours.value) == str(theirs.value)


def test_digits_are_scikit_learns_without_importing_it(monkeypatch):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = toy._digits()
    assert np.array_equal(x.reshape(len(x), -1), bunch.data) and np.array_equal(y, bunch.target)
    assert x.dtype == bunch.data.dtype and y.dtype == bunch.target.dtype and x.shape == (1797, 1, 8, 8)
    monkeypatch.setattr(toy.importlib.util, "find_spec", lambda name: None)  # another package layout
    x2, y2 = toy._digits()
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    probe = subprocess.run([sys.executable, "-c", "import sys, regbench.engine.runner, regbench.data.datasets, "
                            "regbench.data.toy as t; t._digits(); print(any(m.startswith('sklearn') for m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"
