"""Calibration of a classifier's probabilities: expected calibration error (ECE), Brier score and
the per-bin counts of a reliability diagram, of one network on one split.

Conventions (docs/reference/output.md says the same):

- Probabilities are the softmax of the network's outputs, taken in float64.
- ECE is top-label, over `bins` equal-width confidence bins: a prediction's confidence is its
  largest probability; bin b holds the confidences in [b/M, (b+1)/M), the last bin includes 1.
  ECE = sum_b |hits_b - confidence_sum_b| / n (= sum_b n_b/n |acc_b - conf_b|), the l1 norm of
  torchmetrics' `MulticlassCalibrationError` (which gives a confidence of exactly 1 a bin of
  its own; here it is in the last bin).
- Brier score: the mean over samples of the sum over classes of (p_c - onehot_c)^2; in [0, 2].
- The NLL is the run's loss (cross-entropy of the same softmax): not repeated here.

Evaluated once, at the end of a run, on its reported weights (regbench.engine.runner.final_metrics);
the per-epoch loop and metrics.csv do not compute it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from regbench.data.datasets import Data

DEFAULT_BINS = 15  # torchmetrics' and Guo et al. (2017)'s default


@torch.no_grad()
def calibration(model: nn.Module, data: Data, split: str, batch: int, bins: int) -> torch.Tensor:
    """Eval-mode calibration of one network on one split, on the device (no host sync).

    Returns:
        A float64 tensor (2 + 3 * bins,): [ece, brier, counts (bins), confidence sums (bins),
        hit sums (bins)]; `summary` turns the bins into means.
    """
    model.eval()
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    counts = torch.zeros(bins, device=x.device, dtype=torch.float64)
    confidence = torch.zeros_like(counts)
    hits = torch.zeros_like(counts)
    brier = torch.zeros((), device=x.device, dtype=torch.float64)
    for start in range(0, x.shape[0], batch):
        probs = F.softmax(model(data.prepare(x[start : start + batch])).double(), dim=1)
        target = y[start : start + batch]
        top, predicted = probs.max(dim=1)
        # floor(conf * M): [b/M, (b+1)/M); a confidence of 1 goes into the last bin
        which = (top * bins).floor().long().clamp_(0, bins - 1)
        counts.index_add_(0, which, torch.ones_like(top))
        confidence.index_add_(0, which, top)
        hits.index_add_(0, which, (predicted == target).double())
        brier += (probs - F.one_hot(target, probs.shape[1]).double()).pow(2).sum()
    n = x.shape[0]
    ece = (hits - confidence).abs().sum() / n
    return torch.cat([torch.stack([ece, brier / n]), counts, confidence, hits])


def summary(read: list[float], bins: int) -> dict[str, list[float | None]]:
    """A reliability diagram's numbers from `calibration`'s values (read back as floats): per bin,
    `count`, mean `confidence` and `accuracy` (null for an empty bin)."""
    counts, confidence, hits = (read[2 + i * bins : 2 + (i + 1) * bins] for i in range(3))
    return {
        "count": [int(c) for c in counts],
        "confidence": [_mean(s, c) for s, c in zip(confidence, counts)],
        "accuracy": [_mean(h, c) for h, c in zip(hits, counts)],
    }


def _mean(total: float, count: float) -> float | None:
    # null, not NaN, for a network whose outputs are not finite: result.json holds no NaN, and its lists are not cleaned
    return total / count if count and math.isfinite(total) else None
