"""The `tuner` command: a thin layer over the Python API.

Exit codes: 0 success, 1 unexpected failure, 2 bad input (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from tuner.errors import OptionError, TunerError, first_line, redact_logs, redacted_traceback

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's usage errors are bad input too
        self.print_usage(sys.stderr)
        print(f"tuner: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


# Each module adds its subcommands with `register(subparsers)` and imports heavy libraries
# (torch, mlflow) only inside its handlers, so `tuner --help` and `tuner validate` stay fast.
COMMAND_MODULES = ("tuner.cli._study", "tuner.cli._worker", "tuner.cli._compare",
                   "tuner.cli._final", "tuner.cli._browse")
# An option's flag where it is not `--` + the option's name with dashes.
_FLAGS = {"study_name": "--study", "enqueue_file": "--enqueue", "log_model": "--no-model",
          "tracking": "--no-tracking", "study": "--study"}


def flag_of(option: str) -> str:
    """The CLI flag of a Python API option (`study_name` -> `--study`)."""
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    from tuner import __version__

    parser = _Parser(prog="tuner", description="Hyperparameter tuning for PyTorch MLPs.")
    parser.add_argument("--version", action="version", version=f"tuner {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (default: one line "
                        "per error)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.command)
    try:
        return _dispatch(args)
    except OptionError as exc:
        print(f"tuner: error: {exc.as_flag(flag_of)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TunerError as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("tuner: aborted; the study can be resumed with the same command", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:  # the traceback, with passwords masked like every other message
            sys.stderr.write(redacted_traceback(exc))
            return EXIT_FAILURE
        print(f"tuner: failed: {type(exc).__name__}: {first_line(exc)} (--debug shows the "
              "traceback)", file=sys.stderr)
        return EXIT_FAILURE


# Commands that load Optuna only through `tuner.api` (which quiets it while it works), quiet it
# themselves (`compare`) or do not load it: importing it here would delay `tuner validate`, and
# the MLflow writer process that `run` and `compare` start, by a quarter of a second.
_OPTUNA_QUIETED_ELSEWHERE = frozenset({"run", "compare", "validate"})


def _quiet_libraries(command: str) -> None:
    redact_logs()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if command in _OPTUNA_QUIETED_ELSEWHERE:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _dispatch(args: argparse.Namespace) -> int:
    return int(args.handler(args))


def entry() -> None:
    """The `tuner` command: `main`, then a quick exit. By then every file and run is written and
    closed; what is left is the interpreter tearing down torch, MLflow and their thousands of
    modules one by one, which takes a second or two after every command."""
    import logging
    import os

    code = main()
    kept = sys.modules.get("tuner.tracking._pool")
    if kept is not None:  # a writer process kept for a next study: there is none
        kept.close_kept()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()


