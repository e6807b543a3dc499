"""Robustness under shift: the reported weights evaluated again, once, at the end of a run, on
corrupted copies of the test split (the `shift` config node; the corruptions are
regbench.data.corrupt's), each severity of each corruption in turn.

The numbers go into result.json twice: flat in `metrics`, named `test_acc@gaussian_noise=0.5`
and `test_loss@gaussian_noise=0.5` (`test_r2@...` for a regression), which the report and a study
read like any metric; and by corruption and severity under `shift`. The clean metrics are the same
numbers with or without shift: this runs after them, on the same network, and draws from none of
the run's random streams.

The noise of `gaussian_noise` is drawn in blocks of BLOCK test rows, each from its own generator
seeded by the run's seed, the severity and the block (`noise_seed`): one seed's runs are evaluated
on the same noisy copy whatever their regularizer, a stacked member on the same as its lone run,
and the copy does not depend on trainer.eval_batch_size. (The noise of one seed is drawn anew on
another kind of device: CPU and CUDA generators give different numbers.)
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch
from torch import nn

from regbench.data import corrupt
from regbench.data.corrupt import COLOUR_CHANNELS, CORRUPTIONS, IMAGE_ONLY, NOISE
from regbench.data.datasets import Data
from regbench.engine.loop import evaluate
from regbench.record import Record
from regbench.results import metric_name

BLOCK = 1024  # test rows per noise generator: the noise of a row is the same in any evaluation batch


def asked(cfg: Any) -> list[tuple[str, float]]:
    """(corruption, severity) pairs the config asks for, in CORRUPTIONS' order then the listed one;
    none for a config without the `shift` node (one a program composed by hand)."""
    node = cfg.get("shift")
    if node is None:
        return []
    return [(name, float(s)) for name in CORRUPTIONS for s in (node.get(name) or ())]


def label(severity: float) -> str:
    """A severity as metric names and result.json's `shift` write it: 0.5, 1, 1e-05."""
    return f"{severity:g}"


def metric_key(metric: str, name: str, severity: float) -> str:
    """The flat name of a shifted test metric: `test_acc@gaussian_noise=0.5`."""
    return f"test_{metric}@{name}={label(severity)}"


def problem(cfg: Any, data: Data) -> str | None:
    """Why the loaded data cannot take the corruptions `cfg` asks for, or None: an image corruption
    of a table (dataset=arrays is known to hold images only once read), contrast or brightness of
    images of neither 1 nor 3 channels (torchvision's adjust_* take only those)."""
    names = [n for n, _ in asked(cfg) if n in IMAGE_ONLY]
    if not names:
        return None
    if not data.is_image:
        return (f"shift.{names[0]} applies to images stored as pixels; dataset={cfg.dataset.name} holds a table of "
                f"{'x'.join(map(str, data.input_shape))} standardised features: use shift.gaussian_noise")
    channels = data.input_shape[0]
    colour = [n for n in names if n in ("contrast", "brightness")]
    if colour and channels not in COLOUR_CHANNELS:
        return (f"shift.{colour[0]} takes images of 1 or 3 channels (torchvision's adjust_{colour[0]}); "
                f"dataset={cfg.dataset.name} has {channels}")
    return None


def noise_seed(seed: int, name: str, severity: float, block: int) -> int:
    """The seed of one block's noise: a digest of the run's seed, the corruption, the severity and
    the block, apart from every stream training draws from."""
    text = f"regbench.shift/{seed}/{name}/{severity!r}/{block}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def noise(shape: tuple[int, ...], first: int, seed: int, name: str, severity: float,
          device: torch.device) -> torch.Tensor:
    """Standard normal noise of the test rows first .. first + shape[0] - 1 (float32, on `device`),
    each BLOCK of rows from its own generator (`noise_seed`)."""
    n, parts = shape[0], []
    for block in range(first // BLOCK, -(-(first + n) // BLOCK)):
        generator = torch.Generator(device=device)
        generator.manual_seed(noise_seed(seed, name, severity, block))
        drawn = torch.randn((BLOCK, *shape[1:]), generator=generator, device=device)
        lo, hi = max(first - block * BLOCK, 0), min(first + n - block * BLOCK, BLOCK)
        parts.append(drawn[lo:hi])
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def inputs(data: Data, seed: int, name: str, severity: float) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The network's input made of a stored test batch and its first row, corrupted (for
    regbench.engine.loop.evaluate's `inputs`)."""
    if name == NOISE:
        bounds = data.input_range  # images: clipped to what pixels 0 and 255 become; tables: unbounded

        def with_noise(stored: torch.Tensor, first: int) -> torch.Tensor:
            x = data.prepare(stored)
            return corrupt.noisy(x, severity, noise(tuple(x.shape), first, seed, name, severity, x.device), bounds)

        return with_noise

    def in_pixels(stored: torch.Tensor, first: int) -> torch.Tensor:
        # as Data.prepare does, with torchvision's corruption of the [0, 1] pixels between its two steps
        pixels = corrupt.pixels(stored.float().div_(255.0), name, severity)
        return pixels.sub(data.mean).div_(data.std)

    return in_pixels


def evaluate_shift(model: nn.Module, data: Data, cfg: Any) -> tuple[list[tuple[str, float]], torch.Tensor]:
    """The asked (corruption, severity) pairs and, on the device, their test metrics: [loss, acc]
    (or [mse, r2]) per pair, concatenated (regbench.engine.loop.evaluate's, on the corrupted copy)."""
    pairs = asked(cfg)
    batch = cfg.trainer.eval_batch_size
    scores = [evaluate(model, data, "test", batch, inputs(data, int(cfg.seed), n, s)) for n, s in pairs]
    return pairs, torch.cat(scores) if scores else torch.zeros(0)


def record(result: Record, model: nn.Module, data: Data, cfg: Any) -> None:
    """Adds the shifted test metrics of `model` (the reported weights) to `result`, read back in
    one host sync: `metrics`' `test_<loss|acc|r2>@<corruption>=<severity>` and `shift`
    ({corruption: {severity: {loss, acc or r2}}}). Nothing when the config asks for none."""
    pairs, scores = evaluate_shift(model, data, cfg)
    if not pairs:
        return
    m = metric_name(data.task)
    read = scores.tolist()
    shifted: dict[str, dict[str, dict[str, float]]] = {}
    for i, (name, severity) in enumerate(pairs):
        loss, value = read[2 * i : 2 * i + 2]
        result["metrics"][metric_key("loss", name, severity)] = loss
        result["metrics"][metric_key(m, name, severity)] = value
        shifted.setdefault(name, {})[label(severity)] = {"loss": loss, m: value}
    result["shift"] = shifted
