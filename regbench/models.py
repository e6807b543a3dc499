"""Builds the model named by the `model` node, with the layers regularizers insert (dropout,
batch norm: each regularizer's `layers` hook, regbench.regularizers).

Layers are created in the same order whatever the regularizers (batch norm and dropout
draw no random numbers at construction), so for one seed every regularizer starts from the
same weights.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from regbench import UserInputError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class Regressor(nn.Module):
    """Wraps a network with one output so that it returns shape (N,), like the targets."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def build_model(model: Any, reg: Any, input_shape: tuple[int, ...], n_outputs: int, task: str,
                regularizers: Sequence[type] | None = None) -> nn.Module:
    """Returns the network for `model.name`: linear, mlp or cnn.

    Args:
        model: the `model` config node.
        reg: the `reg` config node, read by the regularizers' `layers` hooks.
        input_shape: shape of one stored sample, (features,) or (C, H, W).
        n_outputs: number of classes, or 1 for regression.
        task: "classification" or "regression".
        regularizers: the regularizer classes whose `layers` hooks insert layers; the
            built-in ones when None.

    Raises:
        UserInputError: a cnn asked of tabular data, or an image too small for its blocks.
    """
    if regularizers is None:
        from regbench.regularizers import builtin

        regularizers = builtin()
    inserted = _Inserted(reg, [cls for cls in regularizers if hasattr(cls, "layers")])
    builders = {"linear": _linear, "mlp": _mlp, "cnn": _cnn}
    net = builders[model.name](model, inserted, input_shape, n_outputs)
    return Regressor(net) if task == "regression" else net


class _Inserted:
    """The layers the regularizers insert at a place of the network, each tagged with the name
    of the regularizer that owns it (the engine runs such a layer through its owner's
    `forward` hook, unless it is a layer the engine holds tensors of, like batch norm)."""

    def __init__(self, reg: Any, classes: list[type]) -> None:
        self.reg, self.classes = reg, classes

    def __call__(self, where: str, width: int, dims: int) -> list[nn.Module]:
        out = []
        for cls in self.classes:
            for layer in cls.layers(self.reg, where, width, dims):
                if not isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    layer.regbench_regularizer = cls.name
                out.append(layer)
        return out


def _hidden_block(n_in: int, n_out: int, model: Any, inserted: _Inserted) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), *inserted("norm", n_out, 1), ACTIVATIONS[model.activation](),
            *inserted("hidden", n_out, 1)]


def _flat_size(input_shape: tuple[int, ...]) -> int:
    size = 1
    for s in input_shape:
        size *= s
    return size


def _linear(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    # input layers (dropout): the only place a linear model has
    layers: list[nn.Module] = [nn.Flatten(), *inserted("input", _flat_size(input_shape), 1)]
    layers.append(nn.Linear(_flat_size(input_shape), n_outputs))
    return nn.Sequential(*layers)


def _mlp(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = _flat_size(input_shape)
    for width in model.hidden_sizes:
        layers += _hidden_block(n_in, width, model, inserted)
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return nn.Sequential(*layers)


def _cnn(model: Any, inserted: _Inserted, input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    if len(input_shape) != 3:
        raise UserInputError(
            "model=cnn needs image data (digits, mnist, fashion_mnist, cifar10); "
            f"this dataset has {input_shape[0]} tabular features"
        )
    c_in, h, w = input_shape
    n_blocks = len(model.channels)
    if h >> n_blocks < 1 or w >> n_blocks < 1:
        raise UserInputError(
            f"model.channels has {n_blocks} blocks, each halving the image, too many for {h}x{w} inputs"
        )
    layers: list[nn.Module] = []
    for c_out in model.channels:
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        layers += [*inserted("norm", c_out, 2), ACTIVATIONS[model.activation](), nn.MaxPool2d(2)]
        c_in = c_out
    layers.append(nn.Flatten())
    n_in = c_in * (h >> n_blocks) * (w >> n_blocks)
    # Dropout sits in the fully connected head, where conv nets conventionally put it.
    for width in model.hidden_sizes:
        layers += _hidden_block(n_in, width, model, inserted)
        n_in = width
    layers.append(nn.Linear(n_in, n_outputs))
    return nn.Sequential(*layers)
