"""The example's own model: a small residual MLP for tables, written as a user would write it
(plain PyTorch, no regbench import), with dropout and batch norm where regbench's knobs ask.

regbench calls make_net(input_shape, n_outputs, **model.kwargs, reg=<the reg node as a dict>):
input_shape is (features,) after regbench's preprocessing of the table (standardised numbers,
one-hot categories, missing-value indicators).
"""

import math

from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, dropout: float, batchnorm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(width) if batchnorm else nn.Identity(),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return x + self.body(x)


class ChurnNet(nn.Module):
    def __init__(self, n_in: int, n_out: int, width: int, blocks: int, dropout: float, batchnorm: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.Sequential(*[Block(width, dropout, batchnorm) for _ in range(blocks)])
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, n_out))

    def forward(self, x):
        return self.head(self.blocks(self.inp(x.flatten(1))))


def make_net(input_shape, n_outputs, width=64, blocks=2, reg=None):
    reg = reg or {}
    return ChurnNet(math.prod(input_shape), n_outputs, width, blocks, reg.get("dropout", 0.0), reg.get("batchnorm", False))
