"""The small built-in models the model tests and the dropout tests build, by name."""

from __future__ import annotations

from tests.helpers.configs import make_cfg

SMALL_MODELS = {
    "mlp": ["model=mlp", "model.hidden_sizes=[12,10]"],
    "cnn": ["model=cnn", "model.channels=[3,5]", "model.hidden_sizes=[9]"],
    "linear": ["model=linear"],
}
# (input_shape, n_outputs) each model is built for in the switch tests
SHAPES = {"mlp": ((7,), 3), "cnn": ((1, 8, 8), 10), "linear": ((6,), 4)}


def build(name: str, *overrides: str, input_shape=None, n_outputs=None, task="classification"):
    """The small model `name` of SMALL_MODELS with `overrides`, and its config."""
    from regbench.models import build_model

    cfg = make_cfg(*SMALL_MODELS[name], *overrides)
    shape, n_out = SHAPES[name]
    return build_model(cfg.model, cfg.reg, input_shape or shape, n_outputs or n_out, task), cfg


def count(model, kind) -> int:
    """How many of `model`'s modules are of type `kind`."""
    return sum(isinstance(m, kind) for m in model.modules())
