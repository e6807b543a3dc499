"""The engine's facilities that regularizers meet it through, named for what they are rather than
for a regularizer: one mechanism of random streams (regbench.engine.member), checkpoints of the
current format and of the one before every stream was a named one, tensors' roles
(regbench.engine.network.tensor_roles), the batch-norm momentum in force
(Stack.norm_statistics) and the loss of soft targets (regbench.engine.steps.training_losses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.nn import functional as F

from regbench.engine import checkpoint, sweep as stacking
from regbench.engine.checkpoint import CHECKPOINT_FILE
from regbench.engine.member import NETWORK_STREAM
from regbench.engine.network import tensor_names, tensor_roles, tensors
from regbench.engine.runner import run
from regbench.engine.steps import training_losses
from regbench.models import build_model
from regbench.regularizers import augment, dropout
from tests.helpers.compare import SAME, ends_alike
from tests.helpers.configs import make_cfg
from tests.helpers.engine import stack_of
from tests.helpers.interrupt import ctrl_c_after_row, interrupt_stack_after
from tests.helpers.rundirs import epochs_in, metrics_rows

# Images (digits are 8 x 8), so that augmentation acts; dropout's masks, cutout's boxes (a host
# stream) and mixup's weights: every kind of stream a run has.
STREAMS = ["dataset=digits", "dataset.train_size=200", "model.hidden_sizes=[32]", "optim.lr=0.01",
           "reg=[dropout,augment,cutout,mixup]", "trainer.patience=null"]


def as_main_wrote_it(share: dict, seed: int) -> dict:
    """A member's share (checkpoint.share) as regbench wrote it up to commit 5be3e05: the
    network's stream under the key "dropout", augmentation's under "augment" (written whether or
    not augmentation was on: then still at its seed + 1), the other named streams in "streams"."""
    old = dict(share)
    streams = dict(old["streams"])
    old["dropout"] = streams.pop(NETWORK_STREAM)
    old["augment"] = streams.pop("augment") if "augment" in streams else torch.Generator().manual_seed(seed + 1).get_state()
    old["streams"] = streams
    return old


def test_regularizers_name_the_streams_the_engine_opens_and_old_checkpoints_kept():
    assert dropout.NETWORK_STREAM is NETWORK_STREAM  # one name, the contract's, for the engine and the regularizers
    assert checkpoint.LEGACY_STREAMS == {"dropout": NETWORK_STREAM, "augment": augment.Augment.name}


def test_a_new_checkpoint_keeps_every_stream_as_a_named_one(tmp_path):
    run(make_cfg(*STREAMS, "trainer.max_epochs=2", "trainer.checkpoint_seconds=0", "keep_checkpoint=true"), tmp_path)
    share = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["member"]
    assert "dropout" not in share and "augment" not in share
    assert set(share["streams"]) == {NETWORK_STREAM, "augment", "cutout", "mixing"}


@pytest.mark.parametrize("regs", [STREAMS, ["reg=[dropout,l1]", "dataset.train_size=300", "model.hidden_sizes=[32]"]],
                         ids=["images", "table-without-augmentation"])
def test_a_last_pt_written_before_streams_were_named_resumes_bit_for_bit(tmp_path, monkeypatch, regs):
    """last.pt as regbench wrote it up to 5be3e05 (`as_main_wrote_it`) continues to the numbers
    of the run never interrupted: its dropout and augmentation streams become the named ones."""
    args = (*regs, "trainer.max_epochs=10", "trainer.checkpoint_seconds=2.5")
    clean = run(make_cfg(*args), tmp_path / "clean")
    folder = tmp_path / "interrupted"
    let_run = ctrl_c_after_row(monkeypatch, 7)  # last.pt after epoch 6
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(*args), folder)
    let_run()
    payload = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    payload["member"] = as_main_wrote_it(payload["member"], seed=0)
    torch.save(payload, folder / CHECKPOINT_FILE)
    resumed = run(make_cfg(*args), folder)
    assert resumed["resumed_from_epoch"] == 6 and epochs_in(folder / "metrics.csv") == 10
    ends_alike(resumed, folder, clean, tmp_path / "clean")


def test_a_stack_pt_written_before_streams_were_named_resumes_bit_for_bit(tmp_path, monkeypatch):
    variants = [["reg.dropout=0.1"], ["reg.dropout=0.3", "seed=1"]]
    cfgs = [make_cfg(*STREAMS, "trainer.max_epochs=6", "trainer.checkpoint_seconds=0", *v) for v in variants]
    quiet = Console(quiet=True)
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], quiet)
    jobs = [(c, tmp_path / f"cut{i}") for i, c in enumerate(cfgs)]
    interrupt_stack_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        stacking.train(jobs, quiet)
    monkeypatch.undo()
    for (cfg, out), name in [(job, name) for job in jobs for name in (stacking.STACK_CHECKPOINT, stacking.STACK_PREVIOUS)]:
        payload = torch.load(out / name, weights_only=True)
        payload["member"] = as_main_wrote_it(payload["member"], seed=cfg.seed)
        torch.save(payload, out / name)
    resumed = stacking.train(jobs, quiet)
    assert [r["resumed_from_epoch"] for r in resumed] == [3, 3]
    for i, w in enumerate(whole):
        cut = json.loads((tmp_path / f"cut{i}" / "result.json").read_text())
        assert {k: cut[k] for k in SAME} == {k: w[k] for k in SAME}
        assert metrics_rows(tmp_path / f"cut{i}") == metrics_rows(tmp_path / f"whole{i}")


def test_a_stack_that_starts_afresh_has_the_streams_of_a_fresh_start(tmp_path, monkeypatch):
    """A checkpoint that fails half-way through loading (here: the second member's) leaves no
    stream of the first one behind: the stack starts as if there had been no checkpoint."""
    variants = [["reg.dropout=0.1"], ["reg.dropout=0.3", "seed=1"]]
    cfgs = [make_cfg(*STREAMS, "trainer.max_epochs=4", "trainer.checkpoint_seconds=0", *v) for v in variants]
    quiet = Console(quiet=True)
    whole = stacking.train([(c, tmp_path / f"whole{i}") for i, c in enumerate(cfgs)], quiet)
    jobs = [(c, tmp_path / f"cut{i}") for i, c in enumerate(cfgs)]
    interrupt_stack_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        stacking.train(jobs, quiet)
    monkeypatch.undo()
    for name in (stacking.STACK_CHECKPOINT, stacking.STACK_PREVIOUS):
        path = jobs[1][1] / name
        payload = torch.load(path, weights_only=True)
        payload["member"]["order"] = torch.zeros(3, dtype=torch.uint8)  # not a generator's state: set_state fails
        torch.save(payload, path)
    console = Console(record=True, width=300)
    again = stacking.train(jobs, console)
    assert "the stack starts afresh" in console.export_text()
    assert [r["resumed_from_epoch"] for r in again] == [None, None]
    for i, w in enumerate(whole):
        assert metrics_rows(tmp_path / f"cut{i}") == metrics_rows(tmp_path / f"whole{i}")


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize("overrides", [["model=mlp", "reg.batchnorm=true"], ["model=cnn", "reg.batchnorm=true"],
                                       ["model=resnet", "reg.batchnorm=true"], ["model=linear"]])
def test_the_builtin_models_tensors_have_the_roles_of_their_layers(overrides):
    cfg = make_cfg(*overrides)
    shape = (1, 8, 8) if "model=linear" not in overrides else (64,)
    model = build_model(cfg.model, cfg.reg, shape, 10, "classification")
    params, penalised, buffers = tensors(model)
    param_roles, buffer_roles = tensor_roles(model)
    names, buffer_names = tensor_names(model)
    for p, role, name, pen in zip(params, param_roles, names, penalised, strict=True):
        layer = model.get_submodule(name.rpartition(".")[0])
        norm = isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d))
        assert role == {("weight", False): "weight", ("bias", False): "bias",
                        ("weight", True): "norm_weight", ("bias", True): "norm_bias"}[(name.rpartition(".")[2], norm)]
        assert pen == (p.dim() >= 2) == (role == "weight")  # penalised: the weight matrices and kernels, as before
    assert buffer_roles == [name.rpartition(".")[2] for name in buffer_names] and len(buffer_roles) == len(buffers)
    assert ("norm_weight" in param_roles) == ("reg.batchnorm=true" in overrides)


class _NoBias(nn.Module):
    """A custom network whose first layer has no bias, a layer norm and a PReLU: positions say nothing."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8, bias=False)
        self.norm = nn.LayerNorm(8)
        self.act = nn.PReLU(8)
        self.bn = nn.BatchNorm1d(8)
        self.b = nn.Linear(8, 3)


def test_a_custom_models_roles_come_from_its_layers_not_from_positions():
    model = _NoBias()
    model.regbench_custom = True
    roles, buffer_roles = tensor_roles(model)
    assert dict(zip([n for n, _ in model.named_parameters()], roles, strict=True)) == {
        "a.weight": "weight", "norm.weight": "norm_weight", "norm.bias": "norm_bias", "act.weight": "other",
        "bn.weight": "norm_weight", "bn.bias": "norm_bias", "b.weight": "weight", "b.bias": "bias"}
    assert buffer_roles == ["running_mean", "running_var"]
    assert tensors(model)[1] == [p.dim() >= 2 for p in model.parameters()]  # penalised as before: two or more dimensions


# --------------------------------------------------------------------------- batch-norm momentum


def test_norm_statistics_sets_the_momentum_for_its_block_only():
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[8]", "reg.batchnorm=true")
    model = build_model(cfg.model, cfg.reg, (6,), 3, "classification")
    stack = stack_of(cfg, model)
    x = torch.randn(1, 16, 6)
    mean = stack.buffers[stack.buffer_roles.index("running_mean")]
    before = mean.clone()
    with stack.norm_statistics(momentum=0.0):
        assert stack.norm_momentum == 0.0
        with stack.norm_statistics(momentum=0.5):
            assert stack.norm_momentum == 0.5
        assert stack.norm_momentum == 0.0
        stack.forward(x, train=True)
    assert stack.norm_momentum is None and torch.equal(mean, before)  # momentum 0: untouched
    with stack.norm_statistics(momentum=1.0):  # the batch's own statistics
        stack.forward(x, train=True)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))  # the batch norm's input
    torch.testing.assert_close(mean[0], first(x[0]).mean(0), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- soft targets


def test_a_classification_target_may_be_class_indices_or_class_probabilities():
    """Probabilities (K, B, C) get each member's own cross-entropy, exactly its lone run's; a
    one-hot probability gives what the class index gives."""
    cfg = make_cfg("model=mlp", "model.hidden_sizes=[8]")
    stack = stack_of(cfg, build_model(cfg.model, cfg.reg, (6,), 3, "classification"))
    out = torch.randn(2, 5, 3)
    labels = torch.randint(0, 3, (2, 5))
    soft = torch.softmax(torch.randn(2, 5, 3), dim=-1)
    got = training_losses(stack, out, soft, True, (2, 5))
    assert torch.equal(got, torch.stack([F.cross_entropy(out[k], soft[k]) for k in range(2)]))
    hard = training_losses(stack, out, labels, True, (2, 5))
    torch.testing.assert_close(training_losses(stack, out, F.one_hot(labels, 3).float(), True, (2, 5)), hard)
