"""dataset=arrays (an .npz) and dataset=image_folder (ImageFolder's layout): what they load,
checked against numpy and torchvision; the image cache; one-line errors; a run and a sweep each."""

from __future__ import annotations

import json
import os
from io import StringIO

import numpy as np
import pytest
import torch
from PIL import Image

from regbench import UserInputError
from regbench.data import datasets, files, image_folder
from regbench.data.datasets import image_stats, load
from tests.helpers.cli import regbench
from tests.helpers.configs import make_cfg

CPU = torch.device("cpu")


def npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, 5)) + y[:, None], np.array(["cat", "dog", "emu"])[y]


def test_arrays_are_split_and_standardised_like_a_bundled_table(tmp_path):
    x, y = blobs()
    ds = make_cfg("dataset=arrays", f"dataset.path={npz(tmp_path, x=x, y=y)}").dataset
    d = load(ds, CPU)
    train, val, test = datasets.split_rows(datasets.read(ds), ds)
    mu, sd = x[train].mean(0), x[train].std(0)
    np.testing.assert_allclose(d.x_test.numpy(), (x[test] - mu) / sd, rtol=1e-5, atol=1e-6)
    assert d.classes == ["cat", "dog", "emu"] and [d.classes[i] for i in d.y_val.tolist()] == y[val].tolist()
    assert len(d.y_test) == 40 and d.task == "classification"  # ceil(0.2 * 200)


@pytest.mark.parametrize("layout", ["NHW", "NCHW", "NHWC"])
def test_uint8_images_stay_uint8_and_are_normalised_per_batch(tmp_path, layout):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(120, 3, 6, 6), dtype=np.uint8)
    stored = {"NHW": images[:, 0], "NCHW": images, "NHWC": images.transpose(0, 2, 3, 1)}[layout]
    y, y_test = np.arange(120) % 2, np.arange(30) % 2
    x_test = stored[:30].copy()
    ds = make_cfg("dataset=arrays",
                  f"dataset.path={npz(tmp_path, x=stored, y=y, x_test=x_test, y_test=y_test)}").dataset
    d = load(ds, CPU)
    channels = 1 if layout == "NHW" else 3
    assert d.is_image and d.x_train.dtype == torch.uint8 and d.x_train.shape[1:] == (channels, 6, 6)
    train, _, _ = datasets.split_rows(datasets.read(ds), ds)
    expected = images[:, :channels][train]
    assert torch.equal(d.x_train, torch.from_numpy(expected))  # the pixels as given, channels first
    assert torch.equal(d.x_test, torch.from_numpy(images[:30, :channels]))  # the official test split, as is
    mu, sd = image_stats(expected)
    batch = d.prepare(d.x_train[:4]).numpy()
    np.testing.assert_allclose(batch, (expected[:4] / 255.0 - mu[:, None, None]) / sd[:, None, None], rtol=1e-5, atol=1e-5)


def test_a_numeric_target_with_many_values_is_a_regression(tmp_path):
    x, _ = blobs()
    d = load(make_cfg("dataset=arrays", f"dataset.path={npz(tmp_path, x=x, y=x[:, 0] * 2.5)}").dataset, CPU)
    assert d.task == "regression" and d.n_outputs == 1 and d.classes is None


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((10, 2))}, "holds x; it needs x and y"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(9)}, "y must be one value per sample of x (10)"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(10), "x_test": np.zeros((3, 2))}, "x_test with y_test, or neither"),
        ({"x": np.zeros((10, 2, 2, 2, 2)), "y": np.zeros(10)}, "x has 5 dimensions"),
        ({"x": np.zeros((10, 2)), "y": np.ones(10)}, "the target has a single class (1)"),
    ],
)
def test_bad_arrays_are_one_line_naming_the_file(tmp_path, arrays, message):
    path = npz(tmp_path, **arrays)
    with pytest.raises(UserInputError) as info:
        load(make_cfg("dataset=arrays", f"dataset.path={path}").dataset, CPU)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_is_no_npz_is_one_line(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("not a zip")
    with pytest.raises(UserInputError, match=f"{path}: not a readable .npz of plain arrays"):
        load(make_cfg("dataset=arrays", f"dataset.path={path}").dataset, CPU)


# ---- image folders ----


def image_tree(root, n=12, size=(10, 8), mode="RGB", seed=0, test=False):
    """Two classes of PNGs, ImageFolder's layout (under train/ and test/ when `test`)."""
    rng = np.random.default_rng(seed)
    parts = [("train", n), ("test", 4)] if test else [("", n)]
    for part, count in parts:
        for c, name in enumerate(("ants", "bees")):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                pixels = rng.integers(0, 128, size=shape, dtype=np.uint8) + 100 * c
                Image.fromarray(pixels.astype(np.uint8), mode).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_image_folder_is_torchvisions_imagefolder(tmp_path):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor

    root = image_tree(tmp_path / "photos", test=True)
    ds = make_cfg("dataset=image_folder", f"dataset.path={root}").dataset
    src = datasets.read(ds)
    theirs, their_test = ImageFolder(root / "train"), ImageFolder(root / "test")
    assert src.classes == theirs.classes == ["ants", "bees"]
    assert src.y.tolist() == theirs.targets and src.y_test.tolist() == their_test.targets
    assert torch.equal(torch.from_numpy(src.x), torch.stack([pil_to_tensor(theirs[i][0]) for i in range(len(theirs))]))
    assert torch.equal(torch.from_numpy(src.x_test),
                       torch.stack([pil_to_tensor(their_test[i][0]) for i in range(len(their_test))]))
    d = load(ds, CPU)
    assert d.is_image and d.x_train.dtype == torch.uint8 and len(d.y_test) == 8 and d.n_outputs == 2


def test_images_are_resized_and_grayscale_keeps_one_channel(tmp_path):
    root = image_tree(tmp_path / "gray", mode="L", size=(9, 7))
    ds = make_cfg("dataset=image_folder", f"dataset.path={root}", "dataset.image_size=5").dataset
    src = datasets.read(ds)
    assert src.x.shape == (24, 1, 5, 5) and src.x.dtype == np.uint8 and src.x_test is None
    with Image.open(root / "bees" / "003.png") as im:
        expected = np.asarray(im.resize((5, 5), Image.Resampling.BILINEAR))
    assert np.array_equal(src.x[12 + 3, 0], expected)
    assert len(load(ds, CPU).y_test) == 5  # no test/ folder: the held-out fraction, ceil(0.2 * 24)


def test_the_cache_is_used_until_a_file_changes(tmp_path, cache, monkeypatch):
    root = image_tree(tmp_path / "photos")
    ds = make_cfg("dataset=image_folder", f"dataset.path={root}").dataset
    first = datasets.read(ds).x
    assert list(cache.glob("image_folder/*.npz")) and not list(root.rglob("*.npz"))  # never in the data folder

    def no_decoding(*args):
        raise AssertionError("decoded again although nothing changed")

    monkeypatch.setattr(image_folder, "decode", no_decoding)
    assert np.array_equal(datasets.read(ds).x, first)
    monkeypatch.undo()
    monkeypatch.setenv("REGBENCH_CACHE", str(cache))
    changed = root / "ants" / "000.png"
    Image.fromarray(np.full((8, 10, 3), 7, dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))  # even with an old modification time: the size or the time differs
    again = datasets.read(ds).x
    assert (again[0] == 7).all() and np.array_equal(again[1:], first[1:])


def test_mixed_sizes_need_image_size(tmp_path):
    root = image_tree(tmp_path / "photos")
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(root / "bees" / "big.png")
    with pytest.raises(UserInputError) as info:
        datasets.read(make_cfg("dataset=image_folder", f"dataset.path={root}").dataset)
    text = str(info.value)
    assert "the images have different sizes" in text and "set dataset.image_size=N" in text and "\n" not in text
    resized = datasets.read(make_cfg("dataset=image_folder", f"dataset.path={root}", "dataset.image_size=8").dataset)
    assert resized.x.shape == (25, 3, 8, 8)


def test_an_image_that_does_not_decode_is_named(tmp_path):
    root = image_tree(tmp_path / "photos")
    broken = root / "bees" / "005.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated: the header opens, the pixels do not
    with pytest.raises(UserInputError) as info:
        datasets.read(make_cfg("dataset=image_folder", f"dataset.path={root}").dataset)
    assert str(info.value).startswith(f"{broken}: ") and "\n" not in str(info.value)
    (root / "bees" / "006.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match="006.png: not an image PIL can decode"):
        datasets.read(make_cfg("dataset=image_folder", f"dataset.path={root}").dataset)


def test_one_class_folder_and_too_large_for_memory(tmp_path, monkeypatch):
    root = image_tree(tmp_path / "photos")
    with pytest.raises(UserInputError, match="needs one subfolder of images per class, at least two"):
        datasets.read(make_cfg("dataset=image_folder", f"dataset.path={root / 'ants'}").dataset)
    monkeypatch.setattr(files, "available_memory", lambda device=None: 100)
    with pytest.raises(UserInputError, match=rf"{root} needs 5\.6 KiB in memory but only 100 B of host memory is free"):  # 24 x 3x8x10 bytes
        datasets.read(make_cfg("dataset=image_folder", f"dataset.path={root}").dataset)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["arrays", "image_folder"])
def test_a_run_and_a_stacked_2x2_sweep(tmp_path, kind):
    if kind == "arrays":
        x, y = blobs()
        path = npz(tmp_path, x=x, y=y)
    else:
        path = image_tree(tmp_path / "photos", test=True)
    env = {**os.environ, "REGBENCH_CACHE": str(tmp_path / "cache")}
    common = [f"dataset={kind}", f"dataset.path={path}", "trainer.max_epochs=2", "model.hidden_sizes=[16]",
              "trainer.num_threads=1"]
    out = regbench("run", *common, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").rglob("result.json")]
    names = ["cat", "dog", "emu"] if kind == "arrays" else ["ants", "bees"]
    assert result["status"] == "ok" and result["classes"] == names and result["epochs_run"] == 2
    sweep = regbench("run", "-m", "hydra/launcher=stacked", *common, "reg=l2", "reg.alpha=1e-4,1e-2",
                     "optim.lr=1e-3,1e-2", "hydra.sweep.dir=sweep", cwd=tmp_path, env=env)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    assert "train as one model (4 members)" in sweep.stdout and "sweep done: 4 ok" in sweep.stdout
    assert len(list((tmp_path / "sweep").rglob("result.json"))) == 4


@pytest.mark.slow
def test_the_cli_answers_a_bad_image_folder_in_one_line(tmp_path):
    root = image_tree(tmp_path / "photos")
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(root / "bees" / "big.png")
    out = regbench("run", "dataset=image_folder", f"dataset.path={root}", cwd=tmp_path,
                   env={**os.environ, "REGBENCH_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 2 and out.stderr.startswith("regbench: error: ") and "dataset.image_size" in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    missing = regbench("run", "dataset=image_folder", "dataset.path=nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist; give the path of your image folder" in missing.stderr
    assert missing.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("kind", ["arrays", "images", "image_folder", "image_folder_resized"])
def test_a_run_records_and_prints_the_data_summary(tmp_path, kind):
    from rich.console import Console

    from regbench.engine.runner import run

    if kind == "arrays":
        x, y = blobs()
        overrides = ["dataset=arrays", f"dataset.path={npz(tmp_path, x=x, y=y)}"]
        line = "arrays data.npz: 200 samples of 5 features, 3 classes"
    elif kind == "images":
        images = np.random.default_rng(0).integers(0, 256, size=(50, 6, 7), dtype=np.uint8)
        path = npz(tmp_path, "digits.npz", x=images, y=np.arange(50) % 4, x_test=images[:10], y_test=np.arange(10) % 4)
        overrides = ["dataset=arrays", f"dataset.path={path}"]
        line = "arrays digits.npz: 50 + 10 test samples of (1, 6, 7), 4 classes"
    else:
        root = image_tree(tmp_path / "photos", test=True)
        resized = kind == "image_folder_resized"
        overrides = ["dataset=image_folder", f"dataset.path={root}", *(["dataset.image_size=5"] if resized else [])]
        line = ("image_folder photos: 24 train + 8 test images of (3, 5, 5) (resized to 5x5), 2 classes" if resized
                else "image_folder photos: 24 train + 8 test images of (3, 8, 10), 2 classes")
    out = StringIO()
    result = run(make_cfg(*overrides, "trainer.max_epochs=1", "model.hidden_sizes=[8]"), tmp_path / "run",
                 Console(file=out, width=80))
    assert result["status"] == "ok" and result["data_summary"]["line"] == line
    assert line + "\n" in out.getvalue()
    recorded = json.loads((tmp_path / "run" / "result.json").read_text())["data_summary"]
    assert recorded["line"] == line and recorded["kind"] == overrides[0].split("=")[1]
    if kind.startswith("image_folder"):
        assert recorded["per_class"] == {"ants": 12, "bees": 12} and recorded["test_images"] == 8
