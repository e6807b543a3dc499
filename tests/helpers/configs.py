"""Composing real configs, and shrinking them for speed."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

from hydra import compose, initialize_config_dir

from regbench.cli.app import config_dir

REPO = Path(__file__).resolve().parents[2]

# Every test run is shrunk to this: a few epochs of a small MLP on a few hundred samples.
TINY = ["trainer.max_epochs=3", "dataset.train_size=300", "model.hidden_sizes=[32]"]

# Small residual models (model=resmlp, model=resnet) for the tests of them and of their branches' regularizers.
RESMLP = ["model=resmlp", "model.width=16", "model.groups=1", "model.blocks=2"]
RESNET = ["model=resnet", "model.depth=8"]


@lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=["device=cpu", *overrides])


def make_cfg(*overrides: str):
    """Composes conf/config.yaml with overrides, exactly as `regbench run` would (on the CPU);
    cached per overrides, a fresh copy each call."""
    return copy.deepcopy(_composed(tuple(overrides)))
