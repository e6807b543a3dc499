"""The run record: result.json, declared once, and the one loader that reads it.

`Record` declares every key of result.json with its type and one line on what it means (the
table of result.json in docs/reference/output.md is rendered from it: `markdown`). The runner
(regbench.engine.runner, and its stacked driver regbench.engine.sweep) is the only code that
fills a record; regbench.results writes it. Every reader of a run folder (the report's
collector, a job that checks whether its folder holds its finished result, the exporters, the
study) goes through `load` or `read`, which upgrade a folder written by an older regbench to
the current format, so that the rules for old runs live here and nowhere else.

RECORD_VERSION is the format of the file. A folder without `record_version` is version 1:
everything regbench wrote before the format was declared (keys were added over time; the
loader's upgrade gives an old run the values it ran with). Only the standard library at module
level: regbench.jobs reads records before a job imports torch.
"""

import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

RESULT_FILE = "result.json"

# 2: the format declared by `Record`, with `record_version` itself; 1: no `record_version`.
RECORD_VERSION = 2

_Number = float | None  # a metric: null when it could not be computed (JSON has no NaN either)


class Record(TypedDict):
    """result.json: one finished run (ok, diverged or failed), as the runner writes it.

    Each key's type is its value's in the file (NotRequired: present only when its line says so);
    the string beside it is what the key means (the table of result.json in docs/reference/output.md).
    """

    record_version: Annotated[int, "the format of this file (2); a folder without it was written by regbench before "
                                   "the format was declared (version 1), which the loader upgrades"]
    status: Annotated[Literal["ok", "diverged", "failed"],
                      "`ok`, `diverged` (a NaN/infinite loss stopped the run; metrics are those of the best finite "
                      "epoch, null if none) or `failed`"]
    error: Annotated[str | None, "null unless failed: one line"]
    task: Annotated[Literal["classification", "regression"], "`classification` or `regression`"]
    dataset: Annotated[str, "the dataset's name (`dataset.name`)"]
    model: Annotated[str, "the model's name (`model.name`)"]
    reg: Annotated[str, "the derived label of the regularizers, e.g. `elasticnet+dropout`, or `none`"]
    seed: Annotated[int, "the run's seed"]
    params: Annotated[dict[str, Any], "every config value, flat with dotted keys (`reg.alpha`, `trainer.patience`, …)"]
    config_hash: Annotated[str, "digest of the resolved config's keys that make the run's identity (each key "
                                "declares how, in `regbench/config/schema.py`: never `save_model`, `keep_checkpoint`, "
                                "`overwrite`, `trainer.checkpoint_seconds`, `search.seeds`; the schedule knobs only for a "
                                "schedule that reads them, `optim.tol`/`max_iter`/`log_every` only for `optim=fista`, the "
                                "residual and custom models' knobs only for those models; `optim.schedule`, the newer "
                                "regularizer knobs and your own data's keys only away from their defaults, so that older "
                                "runs keep their hash) and, for your own data, of its fingerprint: resuming a sweep "
                                "compares it"]
    metrics: Annotated[dict[str, _Number], "`train_loss, val_loss, test_loss, train_acc, val_acc, test_acc` (`_r2` "
                                           "for regression) of the reported weights (the loss of a classification is its "
                                           "NLL, the mean cross-entropy); for a classification also `train_ece, "
                                           "val_ece, test_ece` (top-label expected calibration error over "
                                           "`trainer.ece_bins` equal-width confidence bins) and `train_brier, "
                                           "val_brier, test_brier` (the mean over samples of the sum over classes of "
                                           "(p − one-hot)², in [0, 2]), both lower better; and where a regularizer "
                                           "adds its own beside them, those: `test_acc_fgsm` (`test_r2_fgsm`) with "
                                           "`reg.fgsm_eval`, the test accuracy under FGSM; with `shift`, the test "
                                           "split's metrics on each corrupted copy, `test_loss@<corruption>=<severity>` "
                                           "and `test_acc@<corruption>=<severity>` (`test_r2@...`), e.g. "
                                           "`test_acc@gaussian_noise=0.5`"]
    gap: Annotated[dict[str, _Number], "`acc` = train_acc − val_acc (or `r2`), `loss` = val_loss − train_loss"]
    best_epoch: Annotated[int | None, "the epoch of the last val-loss improvement (by more than `trainer.min_delta`; "
                                      "with the default 0, the lowest val loss): the reported one when early stopping "
                                      "is on"]
    epochs_run: Annotated[int, "epochs trained (with `optim=fista`: blocks of `optim.log_every` iterations)"]
    stopped_early: Annotated[bool, "whether early stopping ended the run"]
    early_best: Annotated[bool | None, "true when early stopping reported an epoch within the first "
                                       "`trainer.patience` epochs (`best_epoch <= patience`): the model barely trained "
                                       "before the validation loss stopped improving, typically under a penalty too "
                                       "strong to learn with. Its numbers describe that early model, not what the "
                                       "regularizer does to a trained one; the run also says so when it ends, and the "
                                       "report counts such runs. A run cut short by `trainer.max_epochs` is not "
                                       "flagged; null for a failed run"]
    weights: Annotated[str | None, "which weights the metrics belong to: `trained`, or `ema` / `swa` (the average the "
                                   "run evaluated, monitored and reported; see EMA and SWA above), or `snapshot "
                                   "ensemble of n` (the ensemble of the last n snapshots, `reg.snapshots`); null for a "
                                   "failed run"]
    sparsity: Annotated[float | None, "fraction of penalised weights exactly 0.0 (of the reported weights: an average "
                                      "of sparse weights is rarely sparse)"]
    optimality: Annotated[float | None, "for `model=linear` with only the weight penalty (no dropout, batch norm, "
                                        "label smoothing, augmentation, weight decay), whatever the optimizer: the "
                                        "largest violation of the objective's first-order optimality conditions by "
                                        "the reported weights (absolute, float64; 0 at the optimum; see "
                                        "`optim=fista`); null for other runs"]
    n_params: Annotated[int | None, "trainable parameters"]
    seconds: Annotated[float, "wall time of the run (data loading included, Python start-up excluded)"]
    device: Annotated[str | None, "where it ran, e.g. `cpu`, `cuda:0`"]
    threads: Annotated[int, "torch's CPU thread count during the run"]
    resumed_from_epoch: Annotated[int | None, "null, or the checkpoint epoch this run continued from"]
    versions: Annotated[dict[str, str], "`regbench`, `torch`, `python`"]
    data_fingerprint: NotRequired[Annotated[dict[str, Any], "only for `dataset=table`, `arrays`, `image_folder`: "
                                                            "`sha256` (the version of your data the run read) and "
                                                            "`files` (each file's absolute path and sha256); see Data "
                                                            "fingerprints"]]
    classes: NotRequired[Annotated[list[str], "only where the data names its classes (your own data): the class names, "
                                              "in the order of the model's outputs"]]
    data_summary: NotRequired[Annotated[dict[str, Any], "only for your own data: the summary line (`line`) and its "
                                                        "numbers: rows, columns, features and their one-hot "
                                                        "expansions, classes"]]
    calibration: NotRequired[Annotated[dict[str, Any], "only for a classification whose metrics were computed: "
                                                       "`bins` (`trainer.ece_bins`) and `test`, the test split's "
                                                       "reliability diagram of the reported weights: per confidence "
                                                       "bin (equal-width, [b/M, (b+1)/M), the last one including 1) "
                                                       "its `count`, mean `confidence` and `accuracy` (null for an "
                                                       "empty bin); the report draws it"]]
    shift: NotRequired[Annotated[dict[str, Any], "only where `shift` asked for corruptions and the metrics were "
                                                 "computed: {corruption: {severity: {`loss`, `acc` or `r2`}}}, the "
                                                 "reported weights' test metrics on each corrupted copy of the test "
                                                 "split (the same numbers as `metrics`' `test_acc@<corruption>="
                                                 "<severity>`; see [Robustness](../how-to/robustness.md))"]]
    split_sizes: NotRequired[Annotated[dict[str, int], "only once the data was loaded (every run but one that failed "
                                                       "before): `train`, `val`, `test`, the rows of each split the run "
                                                       "used (training after `dataset.train_size`); the report's "
                                                       "corrected t-test reads them"]]
    stack_size: NotRequired[Annotated[int, "only in a job of a stacked sweep (`hydra/launcher=stacked`): the members "
                                           "its stack started with"]]
    error_type: NotRequired[Annotated[str, "only for a failed run: the exception's class name"]]
    traceback: NotRequired[Annotated[str, "only for a failed run whose exception was not bad input: its traceback"]]
    files_not_written: NotRequired[Annotated[dict[str, str], "only when a final file could not be written (a full "
                                                             "disk): file -> why"]]
    finished_at: Annotated[str, "when result.json was written (UTC, ISO 8601): of several runs of one configuration "
                                "and seed, the report keeps the newest"]


# What a folder's result.json must hold to be read at all: every regbench version wrote these.
REQUIRED = ("status", "task", "dataset", "model", "reg", "seed", "params", "metrics", "gap")


def declared() -> dict[str, tuple[Any, str, bool]]:
    """Every key of `Record`, in the order of the file: (its type, what it means, whether every record has it)."""
    out = {}
    for key, hint in typing.get_type_hints(Record, include_extras=True).items():
        if typing.get_origin(hint) is NotRequired:
            (hint,) = typing.get_args(hint)
        kind, doc = typing.get_args(hint)
        out[key] = (kind, doc, key in Record.__required_keys__)
    return out


def problems(record: dict[str, Any]) -> list[str]:
    """What keeps `record` from being a `Record`: a key missing or not declared, a value of another
    type (a JSON number is a float even when it has no fraction). Empty when it conforms."""
    keys = declared()
    out = [f"missing {k}" for k, (_, _, required) in keys.items() if required and k not in record]
    out += [f"undeclared {k}" for k in record if k not in keys]
    out += [f"{k}={record[k]!r} is not {kind}" for k, (kind, _, _) in keys.items()
            if k in record and not _is(record[k], kind)]
    return out


def _is(value: Any, kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if kind is None or kind is type(None):
        return value is None
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_is(value, a) for a in args)
    if origin is dict:
        return isinstance(value, dict) and all(_is(k, args[0]) and _is(v, args[1]) for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_is(v, args[0]) for v in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def markdown() -> str:
    """The table of result.json's keys (docs/reference/output.md), rendered from `Record`."""
    rows = [f"| `{key}` | {doc} |" for key, (_, doc, _) in declared().items()]
    return "\n".join(["| key | meaning |", "| --- | --- |", *rows])


class Unreadable(ValueError):
    """A folder's result.json cannot be read as a record; the message says why, in a few words."""


@dataclass(frozen=True)
class Loaded:
    """A run folder's record, upgraded to RECORD_VERSION, with its `params` as the folder recorded
    them: the report puts the upgrade's values into its table only in the columns some run
    recorded, as the table was before the loader existed (regbench.reporting.collect)."""

    record: Record
    recorded_params: dict[str, Any]

    @property
    def filled(self) -> dict[str, Any]:
        """The `params` keys the upgrade gave a value to (the folder lacked them, or held null), with that value."""
        recorded = self.recorded_params
        params = self.record["params"] if isinstance(self.record["params"], dict) else {}
        return {k: v for k, v in params.items() if k not in recorded or recorded[k] != v}


def read(folder: Path) -> Loaded:
    """Reads `folder`/result.json and upgrades it (`upgrade`).

    Raises:
        Unreadable: no result.json (a run still going, killed, or refused at start), an empty,
            unreadable or malformed one (not an object, or missing a key of REQUIRED).
    """
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        raise Unreadable("no result.json (still running, killed, or refused at start)")
    try:
        text = path.read_text()
        if not text.strip():
            raise Unreadable("empty result.json")
        raw = json.loads(text)
        written = path.stat().st_mtime
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Unreadable(f"unreadable result.json ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise Unreadable("malformed result.json (not an object)")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise Unreadable(f"malformed result.json (missing {', '.join(missing)})")
    return upgrade(raw, written)


def load(folder: Path) -> Record:
    """The record of `folder`, upgraded to RECORD_VERSION (see `read`, which raises Unreadable)."""
    return read(folder).record


def upgrade(raw: dict[str, Any], written: float) -> Loaded:
    """`raw` (a result.json as read) as the current format has it. Version 1: `finished_at`, when
    the file had none, is when it was written (`written`, its modification time, a POSIX
    timestamp). Every version: `params` keys added to regbench since the run get the value the
    run ran with (`backfill`), so that old and new runs of one configuration are one. What an
    older regbench did not record and cannot be known (its `threads`, `weights`, `early_best`,
    `split_sizes`...) stays absent: the readers treat an absent key as unknown, as before."""
    record: dict[str, Any] = {"record_version": RECORD_VERSION, **raw}
    if not record.get("finished_at"):
        record["finished_at"] = datetime.fromtimestamp(written, timezone.utc).isoformat()
    params = raw["params"] if isinstance(raw.get("params"), dict) else {}
    if isinstance(raw.get("params"), dict):
        record["params"] = backfill(params)
    return Loaded(typing.cast(Record, record), params)


def backfill(params: dict[str, Any]) -> dict[str, Any]:
    """`params` (a run's flattened config), with every key added to regbench since the run was
    recorded at the value the run ran with (each key's declared `since` and default:
    regbench.config.keys.backfill): the learning-rate schedule's, the newer regularizer, model
    and search knobs, and the keys of a user's own data. A key the run recorded keeps its value;
    a key recorded as null counts as not recorded."""
    from regbench.config.keys import backfill as declared

    return declared(params)
