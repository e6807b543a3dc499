"""The typed schema behind conf/*.yaml, registered in Hydra's ConfigStore (`register`, called
when the app is imported), and the one declaration of every key.

Every YAML file and every command-line override is merged into these dataclasses, so an
unknown key or a value of the wrong type fails when Hydra composes the config, before
anything runs. Each field is declared with `key()` (regbench.config.declare): its doc, its
range, when it applies, whether stack members may differ in it, whether it changes a result and
how it enters the run's identity. regbench.config.keys gathers these into the table that the
checks, config_hash, the stacking key, the report and the back-fill of older runs read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import II, MISSING

from regbench.config.declare import NEVER, UNLESS_DEFAULT, WHERE_APPLIES, When, key, node
from regbench.data.corrupt import IMAGE_ONLY
from regbench.data.files import OWN_DATA

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
# Learning-rate schedules (optim.schedule; computed by regbench.engine.schedules).
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step", "cosine_restarts", "plateau")
LOGGERS = ("none", "tensorboard")

SYNTHETIC = ("synthetic", "synthetic_regression")
TORCHVISION = ("mnist", "fashion_mnist", "cifar10")
IMAGES = (*TORCHVISION, "image_folder")  # stored as pixels; dataset=arrays is, when its x holds uint8 images
# The corruptions of `shift` (ShiftConfig's fields) that need pixels: every one but gaussian_noise.
IMAGE_CORRUPTIONS = IMAGE_ONLY
SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers
SEED_RANGE = f"in [0, {SEED_MAX}]"
NEXT = "0.2"  # `since` of the keys added after the first release (0.1)


def _seed(value: int) -> bool:
    return 0 <= value <= SEED_MAX


def _at_least(low: float) -> Any:
    return lambda value: value >= low


def _train_size(size: float | None) -> str | None:
    """dataset.train_size: null, a fraction in (0, 1], or a whole count above 1."""
    if size is None:
        return None
    if size <= 0:
        return f"dataset.train_size must be > 0 (got {size})"
    if size > 1 and size != int(size):
        return f"dataset.train_size above 1 is a count and must be whole (got {size})"
    return None


def _threads(value: Any) -> bool:
    return value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def _device(value: str) -> bool:
    return value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())


def _schedules(knob: str) -> When:
    """The schedules that read `knob` (regbench.engine.schedules), in SCHEDULES' order."""
    return When("optim.schedule", tuple(s for s in SCHEDULES if knob in _SCHEDULE_READS[s]))


# The optim.* knobs each schedule reads (besides optim.lr and trainer.max_epochs): the schedule
# knobs' `applies`, written per schedule because a schedule is read as a whole.
_SCHEDULE_READS = {
    "constant": (),
    "cosine": ("min_lr",),
    "warmup_cosine": ("min_lr", "warmup_epochs"),
    "step": ("step_size", "gamma"),
    "cosine_restarts": ("min_lr", "restart_period", "restart_mult"),
    "plateau": ("min_lr", "plateau_patience", "plateau_factor"),
}


def _schedule_knob(name: str, default: Any, doc: str, range: str, valid: Any) -> Any:
    """A knob of some schedules: added with the schedules, each member of a stack follows its own,
    and it enters config_hash only for a schedule that reads it."""
    return key(default, doc, range=range, valid=valid, applies=_schedules(name), member=True, since=NEXT,
               hashed=WHERE_APPLIES)


def _model_knob(default: Any, doc: str, models: tuple[str, ...], **declared: Any) -> Any:
    """A knob of the models added after the first release: in config_hash only for them."""
    return key(default, doc, applies=When("model.name", models), since=NEXT, hashed=WHERE_APPLIES, **declared)


def _own_data(default: Any, doc: str, datasets: tuple[str, ...], **declared: Any) -> Any:
    """A key of a user's data (dataset=table, arrays, image_folder), added after the first release:
    left out of config_hash at its default, so that the bundled datasets' runs keep theirs."""
    return key(default, doc, applies=When("dataset.name", datasets), since=NEXT, hashed=UNLESS_DEFAULT, **declared)


@dataclass
class DatasetConfig:
    """Which data, and how it is split, subsampled and corrupted."""

    name: str = key(MISSING, "One of DATASETS.", choices=DATASETS)
    root: str = key("${oc.env:REGBENCH_DATA,'~/.cache/regbench/data'}",
                    "Folder of the torchvision datasets (mnist, fashion_mnist, cifar10).",
                    applies=When("dataset.name", TORCHVISION))
    download: bool = key(True, "Let torchvision download missing files into `root`.",
                         applies=When("dataset.name", TORCHVISION))
    train_size: Optional[float] = key(
        None, "Subsample the training split: a count (> 1) or a fraction (<= 1); null keeps it all.",
        range="> 0 (above 1: a whole count)", problem_of=_train_size)
    val_fraction: float = key(0.2, "Fraction of the training split held out, stratified, for validation.",
                              range="in (0, 1)", valid=lambda v: 0 < v < 1)
    test_fraction: float = key(0.2, "Held-out stratified test fraction, for datasets without an official test split.",
                               range="in (0, 1)", valid=lambda v: 0 < v < 1,
                               applies=When("dataset.name", ("digits", "breast_cancer", "wine", "diabetes", *SYNTHETIC,
                                                             *OWN_DATA)))
    label_noise: float = key(0.0, "Fraction of training labels replaced at random (uniform class, or a random "
                             "training target).", range="in [0, 1]", valid=lambda v: 0 <= v <= 1)
    split_seed: int = key(II("seed"), "Seed of the split, the subsample and the label noise; defaults to `seed`.",
                          range=SEED_RANGE, valid=_seed)
    n_samples: int = key(1000, "synthetic / synthetic_regression only: number of samples generated.",
                         range=">= 10", valid=_at_least(10), checked=False, applies=When("dataset.name", SYNTHETIC))
    n_features: int = key(100, "synthetic / synthetic_regression only: number of features.",
                          range=">= 1", valid=_at_least(1), checked=False, applies=When("dataset.name", SYNTHETIC))
    n_informative: int = key(10, "synthetic / synthetic_regression only: features that carry signal; the rest "
                             "are noise.", applies=When("dataset.name", SYNTHETIC))
    noise: float = key(10.0, "synthetic_regression only: standard deviation of the Gaussian noise on the target.",
                       range=">= 0", valid=_at_least(0), checked=False,
                       applies=When("dataset.name", ("synthetic_regression",)))
    generator_seed: int = key(0, "synthetic / synthetic_regression only: seed of the ground truth, fixed across runs.",
                              range=SEED_RANGE, valid=_seed, checked=False, applies=When("dataset.name", SYNTHETIC))
    hflip: bool = key(False, "With reg.augment: also flip images horizontally (off for digits, where a flip "
                      "changes the class).", applies=When("reg.augment", (True,)))
    path: Optional[str] = _own_data(None, "table, arrays, image_folder: your file (CSV, TSV, Parquet, Feather; .npz) "
                                    "or image folder.", OWN_DATA)
    target: Optional[str] = _own_data(None, "table only: the column to predict.", ("table",))
    task: str = _own_data("auto", "table, arrays: auto (a numeric target with many distinct values is a regression), "
                          "classification or regression.", ("table", "arrays"), choices=TASKS, checked=False)
    drop: List[str] = _own_data(dataclasses.MISSING, "table only: columns ignored (ids, leaks), e.g. "
                                "dataset.drop=[id,name].", ("table",), factory=list)
    test_path: Optional[str] = _own_data(None, "table only: a file of the same columns holding the official test "
                                         "rows (else a held-out test_fraction).", ("table",))
    split_column: Optional[str] = _own_data(None, "table only: a column whose value, train or test, marks the "
                                            "official test rows (then ignored as a feature).", ("table",))
    index_col: Optional[int] = _own_data(
        None, "table only (CSV, TSV): how many leading fields of each row are row labels the header does not name "
        "(as R's write.table writes them); set aside, not features. Unset, such rows are refused.", ("table",),
        range=">= 1, the number of leading unnamed fields", valid=lambda v: v is None or v >= 1, checked=False)
    image_size: Optional[int] = _own_data(
        None, "image_folder only: resize every image to image_size x image_size (required when their sizes differ).",
        ("image_folder",), range=">= 1", valid=lambda v: v is None or v >= 1, checked=False)


@dataclass
class ModelConfig:
    """The architecture; dropout and batch norm come from the `reg` node."""

    name: str = key(MISSING, "One of MODELS.", choices=MODELS)
    hidden_sizes: List[int] = key(doc="mlp: width of each hidden layer; cnn: width of the hidden fully connected "
                                  "layers.", factory=lambda: [256, 128], applies=When("model.name", ("mlp", "cnn")))
    activation: str = key("relu", "One of ACTIVATIONS.", choices=ACTIVATIONS,
                          applies=When("model.name", ("mlp", "cnn", "resmlp", "resnet")))
    channels: List[int] = key(doc="cnn only: output channels of each 3x3 conv block (each block halves the image).",
                              factory=lambda: [32, 64], applies=When("model.name", ("cnn",)))
    # The residual models' knobs are checked whatever the model: a sweep may share them across models.
    groups: int = _model_knob(2, "resmlp only: groups of residual blocks (Cocktails' num_groups).", ("resmlp",),
                              range=">= 1", valid=_at_least(1))
    blocks: int = _model_knob(2, "resmlp only: residual blocks per group (Cocktails' blocks_per_group), each two "
                              "linear layers.", ("resmlp",), range=">= 1", valid=_at_least(1))
    width: int = _model_knob(256, "resmlp only: units of every layer.", ("resmlp",), range=">= 1", valid=_at_least(1))
    depth: int = _model_knob(20, "resnet only: layers, 6n+2 (20, 32, 44, 56, 110: n basic blocks per stage).",
                             ("resnet",), range="6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110...",
                             valid=lambda v: v >= 8 and (v - 2) % 6 == 0)
    width_mult: int = _model_knob(1, "resnet only: multiplies the stage widths 16, 32, 64.", ("resnet",),
                                  range=">= 1", valid=_at_least(1))
    _target_: Optional[str] = _model_knob(
        None, "custom only: your factory, module.name: called as f(input_shape, n_outputs, **model.kwargs), plus "
        "reg=<the reg node as a dict> when it takes a `reg` argument; returns a torch.nn.Module.", ("custom",))
    kwargs: Dict[str, Any] = _model_knob(dataclasses.MISSING, "custom only: keyword arguments of your factory.",
                                         ("custom",), factory=dict)


def _reg_config() -> type:
    """The `reg` node: every built-in regularizer's knobs, from its own module
    (regbench.regularizers), plus `extra`, the user's regularizers by name. Their declarations
    are the Knobs themselves (regbench.config.keys makes their Keys)."""
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

    name: str = key(MISSING, "One of OPTIMIZERS.", choices=OPTIMIZERS)
    lr: float = key(1e-3, "Learning rate (also the step size of the L1 proximal step); fista: the first step size of "
                    "its line search.", range="> 0", valid=lambda v: v > 0, member=True)
    momentum: float = key(0.0, "sgd only: heavy-ball momentum.", range="in [0, 1)", valid=lambda v: 0 <= v < 1,
                          applies=When("optim.name", ("sgd",)))
    # optim=fista's own keys: in config_hash only for it, so the other runs keep the hash they had before it.
    # Added after the first release but without `since`: runs from before are not back-filled with them (as
    # of 5be3e05; the report reads such a run beside newer ones as another configuration).
    tol: float = key(1e-9, "fista only: stop once the optimality violation of the float64 iterate is at most this "
                     "(absolute).", range="> 0", valid=lambda v: v > 0, applies=When("optim.name", ("fista",)),
                     hashed=WHERE_APPLIES)
    max_iter: int = key(50_000, "fista only: stop after this many iterations, converged or not (a warning says so).",
                        range=">= 1", valid=_at_least(1), applies=When("optim.name", ("fista",)),
                        hashed=WHERE_APPLIES)
    log_every: int = key(100, "fista only: one metrics.csv row per this many iterations (its `epoch` numbers these "
                         "blocks).", range=">= 1", valid=_at_least(1), applies=When("optim.name", ("fista",)),
                         hashed=WHERE_APPLIES)
    # constant, the default, stays out of config_hash: a constant-rate run keeps the hash it had before schedules
    schedule: str = key("constant", "Learning-rate schedule, stepped once per epoch: constant, cosine, warmup_cosine, "
                        "step, cosine_restarts, plateau.", choices=SCHEDULES, member=True, since=NEXT,
                        hashed=UNLESS_DEFAULT)
    # The schedule knobs' own ranges hold whatever the schedule (a sweep may share them across schedules).
    min_lr: float = _schedule_knob(
        "min_lr", 0.0, "cosine, warmup_cosine, cosine_restarts: the rate annealed to (eta_min); plateau: the floor "
        "(min_lr).", ">= 0", _at_least(0))
    warmup_epochs: int = _schedule_knob(
        "warmup_epochs", 5, "warmup_cosine: epochs of linear warm-up (lr * e / (warmup_epochs + 1) in epoch e), then "
        "cosine from lr.", ">= 1", _at_least(1))
    step_size: int = _schedule_knob(
        "step_size", 30, "step: multiply the rate by gamma every step_size epochs (StepLR's step_size).", ">= 1",
        _at_least(1))
    gamma: float = _schedule_knob(
        "gamma", 0.1, "step: the factor applied every step_size epochs (StepLR's gamma).", "in (0, 1]",
        lambda v: 0 < v <= 1)
    restart_period: int = _schedule_knob(
        "restart_period", 15, "cosine_restarts: epochs of the first cosine cycle (CosineAnnealingWarmRestarts' T_0).",
        ">= 1", _at_least(1))
    restart_mult: int = _schedule_knob(
        "restart_mult", 2, "cosine_restarts: each cycle is this many times longer than the one before (T_mult).",
        ">= 1", _at_least(1))
    plateau_patience: int = _schedule_knob(
        "plateau_patience", 4, "plateau: epochs without a val_loss improvement tolerated; the next one cuts the rate "
        "(ReduceLROnPlateau's patience).", ">= 0", _at_least(0))
    plateau_factor: float = _schedule_knob(
        "plateau_factor", 0.1, "plateau: the factor a cut multiplies the rate by (ReduceLROnPlateau's factor).",
        "in (0, 1)", lambda v: 0 < v < 1)


@dataclass
class TrainerConfig:
    """The training loop and early stopping."""

    max_epochs: int = key(200, "Upper bound on the number of epochs.", range=">= 1", valid=_at_least(1))
    batch_size: int = key(64, "Training mini-batch size.", range=">= 1", valid=_at_least(1))
    eval_batch_size: int = key(8192, "Batch size of the end-of-epoch evaluation (memory only; results do not depend "
                               "on it).", range=">= 1", valid=_at_least(1))
    patience: Optional[int] = key(10, "Epochs without a val_loss improvement before stopping; null disables early "
                                  "stopping.", range=">= 1 or null", valid=lambda v: v is None or v >= 1)
    min_delta: float = key(0.0, "Smallest decrease of val_loss that counts as an improvement.", range=">= 0",
                           valid=_at_least(0))
    ece_bins: int = key(15, "Equal-width confidence bins of the expected calibration error (classification: "
                        "`<split>_ece` in result.json, and its reliability diagram).", range=">= 1",
                        valid=_at_least(1), since=NEXT, hashed=UNLESS_DEFAULT)
    # Hashed since the first release, though a thread count changes only the last bits; a stack runs on one.
    num_threads: Any = key("auto", "torch's CPU threads per job: a count, or auto (the cores divided by the jobs a "
                           "launcher runs at once).", range="auto or a positive count", valid=_threads, computed=False)
    checkpoint_seconds: float = key(30.0, "Write last.pt after an epoch once this many seconds have passed since the "
                                    "last write; 0: every epoch.", range=">= 0", valid=_at_least(0), computed=False,
                                    hashed=NEVER)


def _severities(low: float, high: float | None) -> Any:
    """A list of distinct severities, each in [low, high] (high None: unbounded)."""
    return lambda values: all(low <= v and (high is None or v <= high) for v in values) and len(set(values)) == len(values)


def _shift_key(doc: str, range_: str, valid: Any) -> Any:
    # Added after the first release: an empty list (off) stays out of config_hash. A member knob: it changes what a
    # member is evaluated on at the end, never how the stack trains.
    return key(doc=doc, factory=list, range=range_, valid=valid, member=True, since=NEXT, hashed=UNLESS_DEFAULT)


@dataclass
class ShiftConfig:
    """Robustness under shift: the reported weights evaluated again, at the end of the run, on corrupted copies of
    the test split (regbench.engine.shift); each key lists the severities of one corruption, empty (off) by default.
    The clean metrics are unchanged; the shifted ones are named `test_acc@<corruption>=<severity>`."""

    gaussian_noise: List[float] = _shift_key(
        "Severities of additive Gaussian noise: its standard deviation in standardised units (the features' after "
        "the dataset's standardisation; images: each channel's, then clipped to the pixels' range).",
        "a list of distinct values >= 0", _severities(0.0, None))
    gaussian_blur: List[float] = _shift_key(
        "Images only: severities of Gaussian blur, its sigma in pixels (torchvision's gaussian_blur, kernel "
        "2*ceil(3*sigma)+1 capped by the image's size).", "a list of distinct values >= 0", _severities(0.0, None))
    contrast: List[float] = _shift_key(
        "Images only: severities of a contrast loss, 1 - torchvision's contrast factor (0: clean, 1: each image its "
        "mean gray).", "a list of distinct values in [0, 1]", _severities(0.0, 1.0))
    brightness: List[float] = _shift_key(
        "Images only: severities of darkening, 1 - torchvision's brightness factor (0: clean, 1: black).",
        "a list of distinct values in [0, 1]", _severities(0.0, 1.0))


@dataclass
class LoggerConfig:
    """Where a run's numbers are also sent while it trains (conf/logger/); not part of `params`."""

    name: str = key(MISSING, "One of LOGGERS: none (the default) or tensorboard.", choices=LOGGERS)
    histogram_every: int = key(10, "Weight histograms (and the weights' sparsity) every N epochs; 0: none.",
                               range=">= 0", valid=_at_least(0))


@dataclass
class SearchConfig:
    """How a sweeper's trial is scored (the Optuna presets, conf/search/)."""

    # how a trial is scored, not what any of its runs computes (each seed's run has its own seed)
    seeds: int = key(1, "Seeds per trial: the trial runs seed, seed+1, ... (the same for every trial: paired) and "
                     "returns their mean val_loss; each seed's run in its own folder seed_<n>/ of the trial's.",
                     range=">= 1", valid=_at_least(1), since=NEXT, computed=False, hashed=NEVER)


@dataclass
class Config:
    """The whole run: what `regbench run` composes and `regbench.engine.runner.run` consumes."""

    dataset: DatasetConfig = node(DatasetConfig)
    model: ModelConfig = node(ModelConfig)
    reg: RegConfig = node(RegConfig)
    optim: OptimConfig = node(OptimConfig)
    trainer: TrainerConfig = node(TrainerConfig)
    shift: ShiftConfig = node(ShiftConfig)
    # where a run's numbers are also sent, not what it computes: a sweep resumes with or without a
    # logger, and a sweep logged to TensorBoard compares with one that was not
    logger: LoggerConfig = node(LoggerConfig, "A live logger (`logger=tensorboard`); `none` by default.", params=False)
    seed: int = key(0, "Seeds the initial weights, the data order, dropout and (by default) the split.",
                    range=SEED_RANGE, valid=_seed, member=True)
    device: str = key("auto", "auto | cpu | cuda | cuda:N; auto takes CUDA when available.",
                      range="auto, cpu, cuda or cuda:N", valid=_device)
    save_model: bool = key(False, "Write the best weights to model.pt in the run folder.", computed=False,
                           hashed=NEVER)
    # No `since`: the back-fill gives a newer key's default to the records that lack it, the value their run ran
    # with; a run recorded before this key kept no predictions, which `auto` would deny.
    save_predictions: Any = key("auto", "Write the reported weights' validation and test outputs to predictions.npz in "
                                "the run folder (what `regbench report --ensemble/--temperature` reads): auto "
                                "(up to 10 million output values, e.g. 500 000 rows of 10 classes), true or false.",
                                range="auto, true or false", valid=lambda v: v == "auto" or isinstance(v, bool),
                                computed=False, hashed=NEVER)
    keep_checkpoint: bool = key(False, "Keep last.pt (the resume point, see trainer.checkpoint_seconds) when the run "
                                "finishes.", computed=False, hashed=NEVER)
    overwrite: bool = key(False, "Single runs: replace the finished result of another configuration in "
                          "hydra.run.dir (refused otherwise).", computed=False, hashed=NEVER)
    search: SearchConfig = node(SearchConfig)


def register() -> None:
    """Registers the schema as `regbench_schema`, the first entry of conf/config.yaml's defaults."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="regbench_schema", node=Config)
