"""The `regbench` console script: a thin dispatcher; `regbench run` is a full Hydra app.

Nothing heavy is imported here: `regbench --help` and `--version` answer at once, and Hydra
(then torch, only when a run needs it) is imported by the subcommand that uses it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from regbench import __version__

from regbench.engine import gcpause

COMMANDS = {
    "run": "train one configuration, or a sweep with -m (a Hydra app: see `regbench run --help`)",
    "report": "aggregate run folders into comparison tables and plots (see `regbench report --help`)",
    "more-seeds": "run the seeds the comparisons a report flags inconclusive need (see `regbench more-seeds --help`)",
    "study": "rank regularizers across datasets: Friedman, Nemenyi/Wilcoxon, CD diagram (see `regbench study --help`)",
    "export": "run folders into TensorBoard or MLflow (see `regbench export --help`)",
}

USAGE = f"""usage: regbench [-h] [-V] COMMAND [ARGS ...]

Measure, with honest numbers, what a regularizer does to a model.

commands:
{chr(10).join(f"  {name:<10} {text}" for name, text in COMMANDS.items())}

options:
  -h, --help     show this message and exit
  -V, --version  print the version and exit

examples:
  regbench run reg=elasticnet
  regbench run -m reg=l1,l2,elasticnet reg.alpha=1e-5,1e-4,1e-3 seed=0,1,2
  regbench report outputs/sweeps/<sweep> --pivot reg.alpha --metric gap.acc --plots
  regbench more-seeds outputs/sweeps/<sweep> --dry-run   # the seeds inconclusive comparisons need
  regbench study outputs/sweeps/<sweep> --rope 0.01   # a sweep over several datasets
  regbench export mlflow outputs/sweeps/<sweep>   # then: mlflow ui --backend-store-uri sqlite:///outputs/sweeps/mlflow.db
  eval "$(regbench run -sc install=bash)"     # tab completion of overrides
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `regbench` command; returns the exit code."""
    if argv is not None:
        return _dispatch(list(argv))
    try:
        return _dispatch(sys.argv[1:])
    finally:
        gcpause.at_exit()  # the process ends next (regbench.engine.gcpause)


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if args[0] in ("-V", "--version"):
        print(f"regbench {__version__}")
        return 0
    if args[0] in ("-sc", "--shell-completion"):
        return _complete(args)
    if args[0] == "run":
        return _run(args[1:])
    if args[0] == "export":
        from regbench.reporting.export import main as export_main

        try:
            return export_main(args[1:])
        except KeyboardInterrupt:  # a rerun updates what was exported, never duplicates it
            print("regbench: interrupted", file=sys.stderr)
            return 130
    if args[0] in ("report", "study", "more-seeds"):
        with gcpause.imports():
            if args[0] == "report":
                from regbench.reporting.report_command import main as command
            elif args[0] == "more-seeds":
                from regbench.reporting.more_seeds import main as command
            else:
                from regbench.reporting.study_command import main as command

        try:
            return command(args[1:])
        except KeyboardInterrupt:  # it reads and writes nothing a rerun cannot redo
            print("regbench: interrupted", file=sys.stderr)
            return 130
    print(f"regbench: error: unknown command {args[0]!r} (choose from: {', '.join(COMMANDS)})", file=sys.stderr)
    return 2


def _run(args: list[str]) -> int:
    from regbench.cli.app import hydra_main

    from regbench.engine.interrupt import exit_code, report, terminate_as_interrupt

    sys.argv = [sys.argv[0], *args]  # Hydra reads its arguments from sys.argv
    try:
        with terminate_as_interrupt():  # SIGTERM (kill, SLURM, docker stop) ends it as Ctrl-C does
            return _run_hydra(hydra_main)
    except KeyboardInterrupt as e:
        print(report(e, args), file=sys.stderr)
        return exit_code(e)


def _run_hydra(hydra_main: Any) -> int:
    if os.environ.get("HYDRA_FULL_ERROR"):  # the user asked for Hydra's full traces
        hydra_main()
        return 0
    # With HYDRA_FULL_ERROR set, Hydra raises its errors instead of printing them over several
    # lines: a bad override (unknown key, wrong type, missing option, bad syntax) becomes one.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except Exception as e:
        if isinstance(e, OSError) and not _bad_input(e):  # the environment: a read-only or full file system
            from regbench.cli.callbacks import os_error

            print(f"regbench: error: {os_error(e)} (HYDRA_FULL_ERROR=1 shows where)", file=sys.stderr)
            return 1
        if not _bad_input(e):
            raise
        from regbench.config.errors import describe

        print(f"regbench: error: {describe(e)}", file=sys.stderr)
        return 2
    finally:
        del os.environ["HYDRA_FULL_ERROR"]
    return 0


def _bad_input(error: Exception) -> bool:
    """A composition error (Hydra's or OmegaConf's), or Hydra refusing its command line
    (`-m --cfg job`: a ValueError raised by Hydra itself)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, (HydraException, OmegaConfBaseException)):
        return True
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(error, ValueError) and tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("hydra.")


def _complete(args: list[str]) -> int:
    """Shell completion. The script from `regbench run -sc install=bash` calls back
    `regbench -sc query=bash` with the whole line in COMP_LINE: complete the subcommand
    name, or hand the part after `run` to Hydra's own completion."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    querying = any(a.startswith("query=") for a in args[1:])
    if querying and not (len(words) >= 2 and words[1] == "run" and (len(words) > 2 or line.endswith(" "))):
        prefix = words[1] if len(words) == 2 and not line.endswith(" ") else ""
        print(" ".join(c for c in COMMANDS if c.startswith(prefix)))
        return 0
    if querying:
        os.environ["COMP_LINE"] = "regbench " + line.split(None, 2)[2] if len(words) > 2 else "regbench "
    return _run(args)
