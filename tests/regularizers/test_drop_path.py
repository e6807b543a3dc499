"""Stochastic depth (regbench/regularizers/drop_path.py, its tensor operation in branch.py) against
torchvision's stochastic_depth with the same draws, its properties, a resumed run and the command
line. ShakeDrop, the other branch regularizer: test_shakedrop.py; both together: tests/test_residual.py."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from regbench.engine import checkpoint
from regbench.engine.runner import run
from regbench.regularizers import branch
from tests.helpers.cli import regbench
from tests.helpers.compare import ends_alike
from tests.helpers.configs import RESMLP
from tests.helpers.interrupt import ctrl_c_after_row


@pytest.mark.parametrize("shape", [(64, 5), (64, 3, 4, 4)])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_drop_path_is_torchvisions_stochastic_depth_for_the_same_draws(shape, p):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    expected = torchvision.ops.stochastic_depth(x, p, mode="row", training=True)
    mine = branch.drop_path(x, p, True, torch.Generator().manual_seed(7))
    assert torch.equal(mine, expected)
    torch.manual_seed(7)
    layer = branch.DropPath(p)  # the plain network's layer draws from torch's global stream, as torchvision
    assert torch.equal(layer.train()(x), expected)
    assert (expected == 0).any() and (expected != 0).any()  # some rows dropped, some kept


def test_drop_path_at_rate_zero_and_in_evaluation_is_the_identity():
    x = torch.randn(8, 5)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert branch.drop_path(x, 0.0, True, g) is x
    assert torch.equal(g.get_state(), state)  # and draws nothing
    assert branch.drop_path(x, 0.5, False, g) is x
    assert torch.equal(branch.DropPath(0.3).eval()(x), x)


def test_drop_path_drops_rows_at_its_rate_and_scales_the_kept_ones():
    p, n = 0.3, 20_000
    out = branch.drop_path(torch.ones(n, 4), p, True, torch.Generator().manual_seed(0))
    dropped = (out[:, 0] == 0).float().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / n) ** 0.5  # four standard errors
    assert torch.equal(out, out[:, :1].expand(n, 4))  # a whole row is dropped or kept
    kept = out[out != 0]
    assert torch.equal(kept, torch.full_like(kept, 1.0) / (1 - p))


def test_a_drop_path_run_interrupted_mid_way_resumes_bit_for_bit(tiny_cfg, tmp_path, monkeypatch):
    """As tests/test_resume.py's interrupted runs: last.pt after epochs 3 and 6 on a fake clock,
    Ctrl-C after epoch 8; the resumed run retrains 7 and 8 with the drop_path and ShakeDrop
    streams restored, and ends where the uninterrupted one does."""
    args = (*RESMLP, "reg=[drop_path,shakedrop]", "reg.drop_path=0.3", "trainer.max_epochs=10",
            "trainer.patience=null", "trainer.checkpoint_seconds=2.5")
    clean = run(tiny_cfg(*args), tmp_path / "clean")
    folder = tmp_path / "interrupted"
    let_run = ctrl_c_after_row(monkeypatch, 8)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cfg(*args), folder)
    saved = torch.load(folder / checkpoint.CHECKPOINT_FILE, weights_only=True)["member"]
    assert {"drop_path", "shakedrop"} <= set(saved["streams"])
    let_run()
    resumed = run(tiny_cfg(*args), folder)
    assert resumed["resumed_from_epoch"] == 6
    ends_alike(resumed, folder, clean, tmp_path / "clean")


@pytest.mark.slow
def test_a_resnet_with_stochastic_depth_runs_from_the_command_line(tmp_path):
    out = regbench("run", "model=resnet", "reg=drop_path", "trainer.max_epochs=2", "dataset.train_size=300",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "ok" and result["reg"] == "drop_path" and result["epochs_run"] == 2
    assert result["params"]["reg.drop_path"] == 0.1 and result["params"]["model.depth"] == 20
    refused = regbench("run", "reg=drop_path", f"hydra.run.dir={tmp_path / 'mlp'}", cwd=tmp_path)
    assert refused.returncode != 0 and not (tmp_path / "mlp" / "result.json").exists()
    assert "reg.drop_path=0.1 drops residual branches; model=mlp has none" in refused.stderr
