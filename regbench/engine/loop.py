"""The training loop: optimizer steps with the regularizers, honest evaluation, early stopping.

Batches are index slices of tensors already on the device, and the loop makes one host sync
per epoch (reading that epoch's metrics); nothing in the inner loop waits for the device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from regbench.data.datasets import Data
from regbench.engine.schedules import Schedule
from regbench.regularizers.penalties import decay_, elastic_net, l1_prox_


@dataclass
class FitState:
    """Where training stands: the metrics history and the early-stopping bookkeeping.

    `fit` returns it when done; a checkpoint stores it (at the end of an epoch, see
    regbench.engine.checkpoint), so that a run continues exactly from there.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    best_state: dict[str, torch.Tensor] | list[torch.Tensor] | None = None  # a state dict; a stack member's tensors
    waited: int = 0
    stopped_early: bool = False
    diverged: bool = False
    schedule: dict[str, Any] | None = None  # the learning-rate schedule's state after the last epoch (Schedule.state)

    @property
    def epoch(self) -> int:
        """Epochs completed so far."""
        return len(self.history)


def data_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The random streams of the data order and of augmentation, apart from dropout's, so
    that every regularizer sees the same batches for one seed."""
    return torch.Generator(device=device).manual_seed(seed), torch.Generator(device=device).manual_seed(seed + 1)


def build_optimizer(optim: Any, reg: Any, model: nn.Module, weights: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (heavy-ball momentum), Adam or AdamW over the model's parameters.

    Only AdamW receives reg.weight_decay itself (on the weight group); for SGD and Adam the
    same decoupled decay is applied by `train_epoch`, so reg.weight_decay means the same
    thing under every optimizer.
    """
    weight_ids = {id(w) for w in weights}
    others = [p for p in model.parameters() if id(p) not in weight_ids]
    if optim.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=optim.lr, momentum=optim.momentum)
    if optim.name == "adam":
        return torch.optim.Adam(model.parameters(), lr=optim.lr)
    groups = [{"params": weights, "weight_decay": reg.weight_decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr)


def augment(x: torch.Tensor, generator: torch.Generator, hflip: bool) -> torch.Tensor:
    """Random crop (zero padding of H//8 pixels, at least 1) and optional horizontal flip of a
    whole (N, C, H, W) batch on its device, one random offset per image."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # N, H+2p, W+2p, C
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    cfg: Any,
    weights: list[nn.Parameter],
    order: torch.Generator,
    aug: torch.Generator,
) -> torch.Tensor:
    """One pass over the training split; returns the sum of the step losses (on the device).

    The sum is only used to detect divergence: a NaN or infinite step loss makes it non-finite.
    """
    reg, task = cfg.reg, data.task
    # Config values read once: an OmegaConf attribute costs ~12 µs, too much per step.
    alpha, l1_ratio, weight_decay = reg.alpha, reg.l1_ratio, reg.weight_decay
    smoothing, augmenting, hflip = reg.label_smoothing, reg.augment, cfg.dataset.hflip
    model.train()
    n, batch = data.x_train.shape[0], cfg.trainer.batch_size
    # A trailing batch of one sample is dropped: batch norm cannot train on it.
    n_used = n - 1 if n % batch == 1 and n > 1 else n
    perm = torch.randperm(n, generator=order, device=order.device)
    l1_strength = alpha * l1_ratio
    prox = reg.l1_proximal and l1_strength > 0
    smooth_penalty = alpha > 0 and (l1_ratio < 1 or not prox)
    manual_decay = weight_decay > 0 and not isinstance(optimizer, torch.optim.AdamW)
    total = torch.zeros((), device=data.x_train.device)
    for start in range(0, n_used, batch):
        idx = perm[start : min(start + batch, n_used)]
        x = data.prepare(data.x_train[idx])
        if augmenting:
            x = augment(x, aug, hflip)
        out = model(x)
        if task == "classification":
            loss = F.cross_entropy(out, data.y_train[idx], label_smoothing=smoothing)
        else:
            loss = F.mse_loss(out, data.y_train[idx])
        total = total + loss.detach()
        if smooth_penalty:
            loss = loss + elastic_net(weights, alpha, l1_ratio, include_l1=not prox)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if manual_decay:
            decay_(weights, optimizer.param_groups[0]["lr"] * weight_decay)
        optimizer.step()
        if prox:
            l1_prox_(optimizer, weights, l1_strength)
    return total


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, split: str, batch: int) -> torch.Tensor:
    """Eval-mode, penalty-free metrics of one split: tensor([loss, acc]) or tensor([mse, r2]).

    Train, val and test all go through this one function: no dropout, batch norm with its
    running statistics, plain cross-entropy (no label smoothing) or mean squared error.
    """
    model.eval()
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    hits = torch.zeros((), device=x.device, dtype=torch.float64)
    for start in range(0, x.shape[0], batch):
        out = model(data.prepare(x[start : start + batch]))
        target = y[start : start + batch]
        if data.task == "classification":
            loss_sum += F.cross_entropy(out, target, reduction="sum")
            hits += (out.argmax(dim=1) == target).sum()
        else:
            loss_sum += F.mse_loss(out, target, reduction="sum")
    n = x.shape[0]
    if data.task == "classification":
        return torch.stack([loss_sum / n, hits / n])
    total_ss = (y.double() - y.double().mean()).pow(2).sum()
    return torch.stack([loss_sum / n, 1.0 - loss_sum / total_ss])


def schedule_of(cfg: Any, state: FitState, base_lr: float | None = None) -> Schedule:
    """The run's learning-rate schedule, where `state` left it: restored from its saved state,
    or, for a state saved without one (a checkpoint written before schedules existed, by a
    constant-rate run), stepped through the epochs of its history."""
    schedule = Schedule(cfg.optim, cfg.trainer.max_epochs, base_lr)
    if state.schedule is not None:
        schedule.load(state.schedule)
    else:
        schedule.replay([row["val_loss"] for row in state.history])
    return schedule


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Data,
    cfg: Any,
    weights: list[nn.Parameter],
    on_epoch: Callable[[dict[str, float]], None] = lambda row: None,
    state: FitState | None = None,
    generators: tuple[torch.Generator, torch.Generator] | None = None,
    on_checkpoint: Callable[[FitState], None] = lambda state: None,
) -> FitState:
    """Trains with early stopping on val_loss and leaves the reported weights in `model`.

    With early stopping on (trainer.patience set), training stops after `patience` epochs
    without an improvement of more than `min_delta`, and the best epoch's weights are
    restored. With patience=null it runs max_epochs and keeps the last weights. A
    non-finite loss stops the run as diverged, with the best finite weights restored.

    To resume, pass the `state` and `generators` a checkpoint restored (with the model's and
    optimizer's states already loaded). `on_checkpoint` is called after every epoch that
    training goes on from; it decides whether to write a checkpoint (the runner's does when
    trainer.checkpoint_seconds have passed since its last write).

    The learning rate follows optim.schedule (regbench.engine.schedules): set in every param
    group at the start of each epoch (decoupled decay and the L1 proximal step read it there
    too), stepped at its end with the epoch's val_loss, and recorded in the row's `lr`.
    """
    tr, metric = cfg.trainer, "acc" if data.task == "classification" else "r2"
    order, aug = generators or data_generators(cfg.seed, data.x_train.device)
    state = state or FitState()
    schedule = schedule_of(cfg, state)
    for epoch in range(state.epoch + 1, tr.max_epochs + 1):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr
        step_losses = train_epoch(model, optimizer, data, cfg, weights, order, aug)
        scores = [step_losses.double().reshape(1)] + [evaluate(model, data, s, tr.eval_batch_size) for s in ("train", "val")]
        step_sum, train_loss, train_m, val_loss, val_m = torch.cat(scores).tolist()  # the epoch's one host sync
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            f"train_{metric}": train_m,
            "val_loss": val_loss,
            f"val_{metric}": val_m,
            "lr": schedule.lr,
            "seconds": time.perf_counter() - start,
        }
        state.history.append(row)
        on_epoch(row)
        if not all(math.isfinite(v) for v in (step_sum, train_loss, val_loss)):
            state.diverged = True
            break
        if val_loss < state.best_loss - tr.min_delta:
            state.best_loss, state.best_epoch, state.waited = val_loss, epoch, 0
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state.waited += 1
            if tr.patience is not None and state.waited >= tr.patience:
                state.stopped_early = True
                break
        if epoch < tr.max_epochs:
            schedule.step(val_loss)
            state.schedule = schedule.state()
            on_checkpoint(state)
    if state.best_state is not None and (tr.patience is not None or state.diverged):
        model.load_state_dict(state.best_state)
    return state
