"""The `tuner` command: a thin layer over the Python API.

Exit codes: 0 success, 1 unexpected failure, 2 bad input (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from tuner._errors import TunerError
from tuner._spec import PRUNERS, STRATEGIES

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's usage errors are bad input too
        self.print_usage(sys.stderr)
        print(f"tuner: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuner", description="Hyperparameter tuning for PyTorch MLPs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="create or resume a study and run it")
    run.add_argument("space", help="search-space YAML file")
    run.add_argument("--strategy", choices=STRATEGIES, help="default: the space's study.strategy")
    run.add_argument("--trials", type=int, help="trial budget of the study (default: the space's)")
    run.add_argument("--seed", type=int, help="study seed (default: the space's study.seed)")
    run.add_argument("--pruner", choices=PRUNERS, help="default: the space's study.pruner")
    run.add_argument("--storage", help="Optuna storage: a journal file path (default "
                     "tuner.journal), sqlite:///, postgresql://, redis://")
    run.add_argument("--study", help="study name (default: SPACE-STRATEGY-seedN)")
    run.add_argument("--experiment", help="MLflow experiment (default: the space's name)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI "
                     "or sqlite:///mlflow.db)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    run.add_argument("--no-model", action="store_true", help="do not log the best model")
    run.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    validate = sub.add_parser("validate", help="check a space file; list parameters, grid size")
    validate.add_argument("space")
    validate.add_argument("--json", action="store_true")

    studies = sub.add_parser("studies", help="list the studies in a storage")
    studies.add_argument("--storage")
    studies.add_argument("--json", action="store_true")

    best = sub.add_parser("best", help="print a study's best trial and its MLflow run")
    best.add_argument("study")
    best.add_argument("--storage")
    best.add_argument("--tracking-uri")
    best.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return _dispatch(args)
    except TunerError as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("tuner: aborted; the study can be resumed with the same command", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        from tuner._storage import redact

        print(f"tuner: failed: {type(exc).__name__}: {redact(str(exc)).splitlines()[0] if str(exc) else ''}"
              " (--debug shows the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _quiet_libraries() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _dispatch(args: argparse.Namespace) -> int:
    from tuner import _commands

    handler = getattr(_commands, f"cmd_{args.command}")
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())


