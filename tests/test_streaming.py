"""A user's dataset larger than the device's memory: inputs kept in host memory and streamed
per batch (regbench.data.streaming). On the CPU the streamed run must give every number of the
run whose inputs are whole tensors; the choice between them follows the memory free."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from rich.console import Console

from regbench.data import datasets, streaming
from regbench.data.streaming import HostSplit, placement
from regbench.engine import runner, sweep
from tests.helpers.configs import make_cfg
from tests.helpers.data import people
from tests.helpers.rundirs import metrics_rows

CPU = torch.device("cpu")


def test_a_host_split_reads_like_the_tensor_it_holds():
    x = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 2, 3)
    split = HostSplit(x, CPU)
    idx = torch.tensor([[4, 0, 2], [1, 1, 3]])
    assert torch.equal(split[idx], x[idx]) and torch.equal(split[1:4], x[1:4])
    assert split.shape == x.shape and split.dtype == x.dtype and len(split) == 5 and split.device == CPU


def test_the_inputs_stay_on_the_host_only_where_the_device_lacks_room():
    cuda = torch.device("cuda")
    assert placement(800, cuda, 1000) == "device"
    assert placement(801, cuda, 1000) == "host"  # DEVICE_SHARE: room left for the model
    assert placement(10**12, CPU, 1000) == "device"  # the CPU's memory is the host's: nothing to stream
    assert placement(10**12, cuda, None) == "device"


@pytest.fixture
def sources(tmp_path):
    people().to_csv(tmp_path / "people.csv", index=False)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "images.npz", x=rng.integers(0, 256, (150, 1, 6, 6), dtype=np.uint8), y=np.arange(150) % 3)
    return {
        "table": ["dataset=table", f"dataset.path={tmp_path / 'people.csv'}", "dataset.target=label",
                  "dataset.drop=[id]"],
        "images": ["dataset=arrays", f"dataset.path={tmp_path / 'images.npz'}"],
    }


@pytest.mark.parametrize("kind", ["table", "images"])
def test_a_streamed_run_gives_the_numbers_of_a_run_on_tensors(tmp_path, monkeypatch, sources, kind):
    cfg = make_cfg(*sources[kind], "trainer.max_epochs=3", "model.hidden_sizes=[16]", "reg=dropout",
                   "trainer.batch_size=32", "trainer.eval_batch_size=50")
    plain = runner.run(cfg, tmp_path / "plain", Console(quiet=True))
    streamed_loads = []

    def streamed(ds, device):
        data = datasets.load(ds, device, stream=True)
        streamed_loads.append(isinstance(data.x_train, streaming.HostSplit))
        return data

    monkeypatch.setattr(runner, "load", streamed)
    again = runner.run(cfg, tmp_path / "streamed", Console(quiet=True))
    assert streamed_loads == [True]
    assert again["metrics"] == plain["metrics"] and again["status"] == "ok"
    assert metrics_rows(tmp_path / "streamed") == metrics_rows(tmp_path / "plain")


def test_a_streamed_stack_gives_the_numbers_of_a_stack_on_tensors(tmp_path, monkeypatch, sources):
    cfgs = [make_cfg(*sources["table"], "trainer.max_epochs=3", "model.hidden_sizes=[16]", "reg=l2",
                     f"reg.alpha={a}", "trainer.num_threads=1") for a in (1e-4, 1e-2)]
    plain = sweep.train([(c, tmp_path / f"plain{i}") for i, c in enumerate(cfgs)], Console(quiet=True))
    monkeypatch.setattr(sweep, "load", lambda ds, device: datasets.load(ds, device, stream=True))
    again = sweep.train([(c, tmp_path / f"streamed{i}") for i, c in enumerate(cfgs)], Console(quiet=True))
    for i, (a, b) in enumerate(zip(plain, again)):
        assert a["metrics"] == b["metrics"]
        assert metrics_rows(tmp_path / f"plain{i}") == metrics_rows(tmp_path / f"streamed{i}")
