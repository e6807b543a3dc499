"""The typed schema behind conf/*.yaml, registered in Hydra's ConfigStore (`register`, called
when the app is imported).

Every YAML file and every command-line override is merged into these dataclasses, so an
unknown key or a value of the wrong type fails when Hydra composes the config, before
anything runs. Range checks that a type cannot express live in regbench.config.checks, what
else is known about each key (which model, schedule or dataset reads it, whether it changes a
result) in regbench.config.keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import II, MISSING

DATASETS = (
    "digits",
    "breast_cancer",
    "wine",
    "diabetes",
    "synthetic",
    "synthetic_regression",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "table",
    "arrays",
    "image_folder",
)
TASKS = ("auto", "classification", "regression")
MODELS = ("linear", "mlp", "cnn", "resmlp", "resnet", "custom")
OPTIMIZERS = ("sgd", "adam", "adamw", "fista")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "elu", "silu")


@dataclass
class DatasetConfig:
    """Which data, and how it is split, subsampled and corrupted."""

    name: str = MISSING
    """One of DATASETS."""
    root: str = "${oc.env:REGBENCH_DATA,'~/.cache/regbench/data'}"
    """Folder of the torchvision datasets (mnist, fashion_mnist, cifar10)."""
    download: bool = True
    """Let torchvision download missing files into `root`."""
    train_size: Optional[float] = None
    """Subsample the training split: a count (> 1) or a fraction (<= 1); null keeps it all."""
    val_fraction: float = 0.2
    """Fraction of the training split held out, stratified, for validation."""
    test_fraction: float = 0.2
    """Held-out stratified test fraction, for datasets without an official test split."""
    label_noise: float = 0.0
    """Fraction of training labels replaced at random (uniform class, or a random training target)."""
    split_seed: int = II("seed")
    """Seed of the split, the subsample and the label noise; defaults to `seed`."""
    n_samples: int = 1000
    """synthetic / synthetic_regression only: number of samples generated."""
    n_features: int = 100
    """synthetic / synthetic_regression only: number of features."""
    n_informative: int = 10
    """synthetic / synthetic_regression only: features that carry signal; the rest are noise."""
    noise: float = 10.0
    """synthetic_regression only: standard deviation of the Gaussian noise on the target."""
    generator_seed: int = 0
    """synthetic / synthetic_regression only: seed of the ground truth, fixed across runs."""
    hflip: bool = False
    """With reg.augment: also flip images horizontally (off for digits, where a flip changes the class)."""
    path: Optional[str] = None
    """table, arrays, image_folder: your file (CSV, TSV, Parquet, Feather; .npz) or image folder."""
    target: Optional[str] = None
    """table only: the column to predict."""
    task: str = "auto"
    """table, arrays: auto (a numeric target with many distinct values is a regression), classification or regression."""
    drop: List[str] = field(default_factory=list)
    """table only: columns ignored (ids, leaks), e.g. dataset.drop=[id,name]."""
    test_path: Optional[str] = None
    """table only: a file of the same columns holding the official test rows (else a held-out test_fraction)."""
    split_column: Optional[str] = None
    """table only: a column whose value, train or test, marks the official test rows (then ignored as a feature)."""
    index_col: Optional[int] = None
    """table only (CSV, TSV): how many leading fields of each row are row labels the header does not name (as R's
    write.table writes them); set aside, not features. Unset, such rows are refused."""
    image_size: Optional[int] = None
    """image_folder only: resize every image to image_size x image_size (required when their sizes differ)."""


@dataclass
class ModelConfig:
    """The architecture; dropout and batch norm come from the `reg` node."""

    name: str = MISSING
    """One of MODELS."""
    hidden_sizes: List[int] = field(default_factory=lambda: [256, 128])
    """mlp: width of each hidden layer; cnn: width of the hidden fully connected layers."""
    activation: str = "relu"
    """One of ACTIVATIONS."""
    channels: List[int] = field(default_factory=lambda: [32, 64])
    """cnn only: output channels of each 3x3 conv block (each block halves the image)."""
    groups: int = 2
    """resmlp only: groups of residual blocks (Cocktails' num_groups)."""
    blocks: int = 2
    """resmlp only: residual blocks per group (Cocktails' blocks_per_group), each two linear layers."""
    width: int = 256
    """resmlp only: units of every layer."""
    depth: int = 20
    """resnet only: layers, 6n+2 (20, 32, 44, 56, 110: n basic blocks per stage)."""
    width_mult: int = 1
    """resnet only: multiplies the stage widths 16, 32, 64."""
    _target_: Optional[str] = None
    """custom only: your factory, module.name: called as f(input_shape, n_outputs, **model.kwargs), plus
    reg=<the reg node as a dict> when it takes a `reg` argument; returns a torch.nn.Module."""
    kwargs: Dict[str, Any] = field(default_factory=dict)
    """custom only: keyword arguments of your factory."""


def _reg_config() -> type:
    """The `reg` node: every built-in regularizer's knobs, from its own module
    (regbench.regularizers), plus `extra`, the user's regularizers by name."""
    from regbench.regularizers import builtin_knobs

    fields = [(k.name, type(k.default), field(default=k.default)) for k in builtin_knobs()]
    fields.append(("extra", Dict[str, Any], field(default_factory=dict)))
    cls = dataclasses.make_dataclass("RegConfig", fields)
    cls.__module__ = __name__
    cls.__doc__ = "Every regularizer is one number; 0, false or off disables it."
    return cls


RegConfig = _reg_config()


@dataclass
class OptimConfig:
    """The optimizer; weight decay is a regularizer and lives in reg.weight_decay."""

    name: str = MISSING
    """One of OPTIMIZERS."""
    lr: float = 1e-3
    """Learning rate (also the step size of the L1 proximal step); fista: the first step size of its line search."""
    momentum: float = 0.0
    """sgd only: heavy-ball momentum."""
    tol: float = 1e-9
    """fista only: stop once the optimality violation of the float64 iterate is at most this (absolute)."""
    max_iter: int = 50_000
    """fista only: stop after this many iterations, converged or not (a warning says so)."""
    log_every: int = 100
    """fista only: one metrics.csv row per this many iterations (its `epoch` numbers these blocks)."""
    schedule: str = "constant"
    """Learning-rate schedule, stepped once per epoch: constant, cosine, warmup_cosine, step, cosine_restarts, plateau."""
    min_lr: float = 0.0
    """cosine, warmup_cosine, cosine_restarts: the rate annealed to (eta_min); plateau: the floor (min_lr)."""
    warmup_epochs: int = 5
    """warmup_cosine: epochs of linear warm-up (lr * e / (warmup_epochs + 1) in epoch e), then cosine from lr."""
    step_size: int = 30
    """step: multiply the rate by gamma every step_size epochs (StepLR's step_size)."""
    gamma: float = 0.1
    """step: the factor applied every step_size epochs (StepLR's gamma)."""
    restart_period: int = 15
    """cosine_restarts: epochs of the first cosine cycle (CosineAnnealingWarmRestarts' T_0)."""
    restart_mult: int = 2
    """cosine_restarts: each cycle is this many times longer than the one before (T_mult)."""
    plateau_patience: int = 4
    """plateau: epochs without a val_loss improvement tolerated; the next one cuts the rate (ReduceLROnPlateau's patience)."""
    plateau_factor: float = 0.1
    """plateau: the factor a cut multiplies the rate by (ReduceLROnPlateau's factor)."""


@dataclass
class TrainerConfig:
    """The training loop and early stopping."""

    max_epochs: int = 200
    """Upper bound on the number of epochs."""
    batch_size: int = 64
    """Training mini-batch size."""
    eval_batch_size: int = 8192
    """Batch size of the end-of-epoch evaluation (memory only; results do not depend on it)."""
    patience: Optional[int] = 10
    """Epochs without a val_loss improvement before stopping; null disables early stopping."""
    min_delta: float = 0.0
    """Smallest decrease of val_loss that counts as an improvement."""
    num_threads: Any = "auto"
    """torch's CPU threads per job: a count, or auto (the cores divided by the jobs a launcher runs at once)."""
    checkpoint_seconds: float = 30.0
    """Write last.pt after an epoch once this many seconds have passed since the last write; 0: every epoch."""


LOGGERS = ("none", "tensorboard")


@dataclass
class LoggerConfig:
    """Where a run's numbers are also sent while it trains (conf/logger/); not part of `params`."""

    name: str = MISSING
    """One of LOGGERS: none (the default) or tensorboard."""
    histogram_every: int = 10
    """Weight histograms (and the weights' sparsity) every N epochs; 0: none."""


@dataclass
class SearchConfig:
    """How a sweeper's trial is scored (the Optuna presets, conf/search/)."""

    seeds: int = 1
    """Seeds per trial: the trial runs seed, seed+1, ... (the same for every trial: paired) and returns their
    mean val_loss; each seed's run in its own folder seed_<n>/ of the trial's."""


@dataclass
class Config:
    """The whole run: what `regbench run` composes and `regbench.engine.runner.run` consumes."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """A live logger (`logger=tensorboard`); `none` by default."""
    seed: int = 0
    """Seeds the initial weights, the data order, dropout and (by default) the split."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N; auto takes CUDA when available."""
    save_model: bool = False
    """Write the best weights to model.pt in the run folder."""
    keep_checkpoint: bool = False
    """Keep last.pt (the resume point, see trainer.checkpoint_seconds) when the run finishes."""
    overwrite: bool = False
    """Single runs: replace the finished result of another configuration in hydra.run.dir (refused otherwise)."""
    search: SearchConfig = field(default_factory=SearchConfig)


def register() -> None:
    """Registers the schema as `regbench_schema`, the first entry of conf/config.yaml's defaults."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="regbench_schema", node=Config)
