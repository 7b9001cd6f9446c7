"""`tuner evaluate`, `tuner export`, `tuner train`: the final model of a study or of a file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from tuner.errors import OptionError, is_plain_name

if TYPE_CHECKING:
    from tuner.execution import FinalOptions, FinalResult

_out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def register(sub: Any) -> None:
    evaluate = sub.add_parser(
        "evaluate", help="retrain a study's best configuration on train + validation, "
        "evaluate it once on the test split, log the model")
    evaluate.add_argument("study", help="study name (as `tuner studies` lists them)")
    evaluate.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    evaluate.add_argument("--front-index", metavar="I", type=int, help="multi-objective study: the Pareto-"
                          "front member at this position of `tuner best` (default 0)")
    evaluate.add_argument("--where", metavar="CONDITION", help="multi-objective study: the "
                          "best front member on the first objective meeting this condition, e.g. "
                          "'params<50000' (default: none, --front-index decides)")
    _final_flags(evaluate, "default: the best trial's best epoch")
    evaluate.set_defaults(handler=cmd_evaluate)

    export = sub.add_parser("export", help="write a study's best configuration as a YAML file "
                            "for `tuner train`")
    export.add_argument("study", help="study name (as `tuner studies` lists them)")
    export.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    export.add_argument("--output", "-o", metavar="FILE", help="file to write (default: STUDY.yaml)")
    export.add_argument("--force", action="store_true", help="overwrite an existing file "
                        "(default: refuse)")
    export.set_defaults(handler=cmd_export)

    train = sub.add_parser("train", help="train the one configuration of a file on train + "
                           "validation and evaluate it once on the test split (no search)")
    train.add_argument("config", help="space file whose parameters are all fixed")
    train.add_argument("--seed", metavar="N", type=int, help="torch seed (default: the file's study.seed)")
    _final_flags(train, "default: the file's training.max_epochs")
    train.set_defaults(handler=cmd_train)


def _final_flags(parser: argparse.ArgumentParser, epochs_default: str) -> None:
    parser.add_argument("--epochs", metavar="N", type=int, help=f"training epochs ({epochs_default})")
    parser.add_argument("--early-stopping", action="store_true",
                        help="keep a validation-sized slice apart and stop early on it (default: "
                        "train for --epochs on all of train + validation)")
    parser.add_argument("--register", metavar="NAME", help="register the model under NAME "
                        "(default: not registered)")
    parser.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: the "
                        "study's, or the file's name)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: "
                        "MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow "
                        "(default: log)")
    parser.add_argument("--no-model", action="store_true", help="do not log the model (default: "
                        "log it)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: all "
                        "cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                        "(default: a table)")


def _options(args: argparse.Namespace) -> FinalOptions:
    from tuner.execution import FinalOptions

    return FinalOptions(
        epochs=args.epochs, early_stopping=args.early_stopping,
        seed=getattr(args, "seed", None), register=args.register,
        tracking_uri=args.tracking_uri, experiment=args.experiment,
        tracking=not args.no_tracking, log_model=not args.no_model, threads=args.threads,
        front_index=getattr(args, "front_index", None), where=getattr(args, "where", None),
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    options = _options(args)
    from tuner.api import evaluate  # it starts the MLflow writer before the heavy imports

    _show(evaluate(args.study, args.storage, options), args.json)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tuner.analysis import export_study

    if args.output is None and not is_plain_name(args.study):  # STUDY.yaml stays here
        raise OptionError("output", f"the study name {args.study!r} cannot name a file (letters, "
                          "digits, '_', '.', '-' only): pass --output FILE")
    output = Path(args.output or f"{args.study}.yaml")
    written = export_study(args.study, args.storage, output, force=args.force)
    print(f"wrote {written}; train it with: tuner train {written}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tuner.space import load_space

    space = load_space(args.config)
    options = _options(args)
    from tuner.api import train  # it starts the MLflow writer before the heavy imports

    _show(train(space, options), args.json)
    return 0


def _show(result: FinalResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
        return
    table = Table(title=f"{result.name}: {result.origin}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    held = result.rows["early_stopping"]
    apart = f", less {held} kept apart for early stopping" if held else ""
    table.add_row("trained on", f"{result.rows['train']} rows (train + validation{apart}), "
                  f"{result.epochs} epochs, seed {result.seed}")
    table.add_row("test (held out)", f"{result.rows['test']} rows")
    for key, value in result.test_metrics.items():
        table.add_row(f"  {key}", f"{value:.4f}")
    if result.residuals:
        table.add_row("residuals", ", ".join(f"{k} {v:.4g}" for k, v in result.residuals.items()))
    if result.mlflow_run_id:
        table.add_row("MLflow", f"{result.tracking_uri}, run {result.mlflow_run_id}")
    for label, uri in (("model", result.model_uri), ("raw-row scorer", result.scorer_uri),
                       ("registered", result.registered)):
        if uri:
            table.add_row(label, uri)
    _out.print(table)
    if result.confusion is not None:
        _out.print(_confusion_table(result.classes, result.confusion))


def _confusion_table(classes: list[str], matrix: list[list[int]]) -> Table:
    table = Table(title="test confusion matrix")
    table.add_column("true \\ predicted", style="bold")
    for name in classes:
        table.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(classes, matrix, strict=True)):
        table.add_row(name, *(f"[bold]{v}[/bold]" if i == j else str(v) for j, v in enumerate(row)))
    return table
