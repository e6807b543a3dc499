"""EMA, SWA and SAM together (regbench/regularizers/ema.py, swa.py, sam.py): one averaging per
run, their knobs' ranges, a switched-off knob, and a stack of each reading back from the device
once per epoch. Each one's own tests: tests/regularizers/test_ema.py, test_swa.py, test_sam.py."""

from __future__ import annotations

import pytest
from rich.console import Console

from regbench import UserInputError
from regbench.config.checks import check
from regbench.engine.runner import run
from tests.helpers.configs import make_cfg
from tests.helpers.engine import TWO_LAYERS as SMALL

QUIET = Console(quiet=True)


def test_one_averaging_per_run_and_knob_ranges_in_one_line(tmp_path):
    both = "reg.ema and reg.swa both average the weights that are evaluated: choose one"
    assert check(make_cfg("reg=[ema,swa]")) == [both]  # before any work: the config check
    with pytest.raises(UserInputError) as refused:  # the runner checks it again, and writes nothing
        run(make_cfg(*SMALL, "reg=[ema,swa]", "trainer.max_epochs=2"), tmp_path / "run", QUIET)
    assert str(refused.value) == both and not (tmp_path / "run").exists()
    for key, value, message in [("reg.ema", 1.0, "reg.ema must be in [0, 1)"), ("reg.swa", -0.1, "reg.swa must be in [0, 1)"),
                                ("reg.sam", -1, "reg.sam must be >= 0"), ("reg.swa_lr", -1, "reg.swa_lr must be >= 0")]:
        problems = check(make_cfg(f"{key}={value}"))
        assert len(problems) == 1 and problems[0].startswith(message), problems


@pytest.mark.parametrize("off", [["reg.ema=0"], ["reg.swa=0", "reg.swa_lr=0.1"], ["reg.sam=0", "reg.sam_adaptive=true"]])
def test_a_switched_off_knob_changes_nothing(tmp_path, off):
    base = run(make_cfg(*SMALL, "trainer.max_epochs=3"), tmp_path / "base", QUIET)
    other = run(make_cfg(*SMALL, "trainer.max_epochs=3", *off), tmp_path / "off", QUIET)
    assert other["reg"] == "none" and other["metrics"] == base["metrics"] and other["weights"] == "trained"


@pytest.mark.parametrize("variants", [
    [["reg=ema", "reg.ema=0.9"], ["reg=ema", "reg.ema=0.5", "reg.dropout=0.2"]],
    [["reg=swa", "reg.swa=0.25"], ["reg=swa", "reg.swa=0.5", "reg.swa_lr=1e-2", "reg.dropout=0.2"]],
    [["reg=sam"], ["reg=asam", "reg.dropout=0.2"]],
])
def test_a_stack_of_them_reads_back_from_the_device_once_per_epoch(tmp_path, variants):
    """Averaging (and SWA's batch-norm pass, its rate from host memory) and SAM's second pass add
    no host sync: each epoch's numbers of every member come back in one call (see
    tests/test_stacked.py's test of the same for the other regularizers)."""
    from regbench.engine import sweep as stacking
    from tests.helpers.syncs import HostSyncs

    cfgs = [make_cfg(*SMALL, "reg.batchnorm=true", "trainer.max_epochs=6", *v) for v in variants]
    with HostSyncs() as probe:
        results = stacking.train([(c, tmp_path / str(i)) for i, c in enumerate(cfgs)], QUIET)
    assert all(r["status"] == "ok" for r in results)
    loop = ("train", "_train", "fit")
    assert [call for call in probe.calls if call[1] == loop] == [("tolist", loop)] * 6
    others = [call for call in probe.calls if call[1] != loop]
    assert all(where[:5] == (*loop, "finished", "_finish") for _, where in others), others
