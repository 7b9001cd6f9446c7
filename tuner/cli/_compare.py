"""Subcommands `compare`, `report` and `ui`: comparing strategies and looking at the results."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from tuner import _collector as collector
from tuner.cli._study import browse_hint, report_outcome
from tuner.cli._worker import add_device_flags, device_options
from tuner.errors import OptionError, TunerError, is_plain_name
from tuner.space import PRUNERS, load_space

if TYPE_CHECKING:
    from tuner.analysis import Comparison, GridPlan, StudyPlan

_out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_err = Console(file=sys.stderr, highlight=False, width=None if sys.stderr.isatty() else 200)


def register(sub: Any) -> None:
    compare = sub.add_parser(
        "compare", help="run every strategy with the same budget, repeated; summarise",
        description="One study per (strategy, repeat), all with the same trial budget, data "
        "split, pruner and epochs; re-running the same command resumes the comparison.")
    compare.add_argument("space", help="search-space YAML file")
    compare.add_argument("--strategies", metavar="LIST", default="grid,random,tpe,gp",
                         help="comma-separated (default: grid,random,tpe,gp)")
    compare.add_argument("--trials", metavar="N", type=int, help="trials per study (default: the space's)")
    compare.add_argument("--repeats", metavar="N", type=int, default=3, help="studies per strategy, each "
                         "with its own seed (default: 3)")
    compare.add_argument("--seed", metavar="N", type=int, help="seed from which each repeat's "
                         "seed is derived (default: the space's study.seed)")
    compare.add_argument("--pruner", choices=PRUNERS, help="the pruner of every study "
                         "(default: the space's study.pruner)")
    compare.add_argument("--target", metavar="X", type=float, help="objective value to reach (default: the "
                         "best value any study reached, 0.5%% worse)")
    compare.add_argument("--name", metavar="NAME", help="comparison name; studies are NAME-STRATEGY-rREPEAT "
                         "(default: SPACE-compare)")
    compare.add_argument("--out", metavar="DIR", help="report folder (default: reports/NAME)")
    compare.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    compare.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: the "
                         "comparison name)")
    compare.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: "
                         "MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    compare.add_argument("--no-model", action="store_true", help="do not log final models "
                         "(default: log them)")
    compare.add_argument("--no-refit", action="store_true", help="each study's final model is "
                         "its chosen trial's own, not retrained on train + validation "
                         "(default: retrained)")
    compare.add_argument("--no-views", action="store_true", help="no Optuna views per study "
                         "(default: the interactive views page on each study's run)")
    add_device_flags(compare)  # --threads, --pack, --device
    compare.add_argument("--jobs", metavar="N", type=int, default=1, help="studies run side by "
                         "side, each in a process of its own; each study's trials and results "
                         "are those it has alone, its times include the others' (default: 1)")
    compare.add_argument("--json", action="store_true", help="print the summary as one JSON "
                         "object (default: a table)")
    compare.add_argument("--quiet", action="store_true", help="no live progress (default: a "
                         "line per strategy on stderr)")
    compare.set_defaults(handler=cmd_compare)

    report = sub.add_parser("report", help="write Optuna's views of a stored study to a folder")
    report.add_argument("study", help="study name (as `tuner studies` lists them)")
    report.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    report.add_argument("--out", metavar="DIR", help="folder (default: reports/STUDY)")
    report.set_defaults(handler=cmd_report)



@collector.pausing  # while the studies' libraries load (see tuner._collector)
def cmd_compare(args: argparse.Namespace) -> int:
    space = load_space(args.space)  # before the heavy imports: a bad file fails in a second
    from tuner.execution import CompareOptions

    options = CompareOptions(
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        trials=args.trials, repeats=args.repeats, seed=args.seed, pruner=args.pruner,
        name=args.name, experiment=args.experiment, storage=args.storage,
        tracking_uri=args.tracking_uri, target=args.target, out=args.out,
        **device_options(args), log_model=not args.no_model, views=not args.no_views,
        refit=not args.no_refit, jobs=args.jobs)
    from tuner.execution import (
        discard_prestarted_study_processes,
        prestart_study_processes,
    )
    from tuner.tracking import discard_prestarted_writers, prestart_writer, spare_core

    # They make their imports while this process makes its own.
    if options.jobs > 1:
        prestart_study_processes(space, options)
    elif spare_core(options.threads or 1):
        prestart_writer(options.tracking_uri, options.experiment_name(space.name),
                        options.log_model)
    import optuna

    from tuner.execution import run_comparison

    # GPSampler warns once per conditional parameter per trial (it samples those at random),
    # which would bury the live view; the README says so once.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    view = LiveView(space.objective.direction, enabled=not (args.quiet or args.json))
    try:
        comparison = run_comparison(space, options, listener=view, on_plan=view.begin)
    finally:
        view.end()
        discard_prestarted_writers()  # what the comparison did not take over: bad input
        discard_prestarted_study_processes()
    return report_outcome(comparison, args.json,
                          lambda c: _print_comparison(c, args.tracking_uri))


class LiveView:
    """One line per strategy on stderr: trials done over all its repeats, the repeat running,
    the best value so far, pruned trials."""

    def __init__(self, direction: str, enabled: bool):
        self.direction = direction
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.fields[mark]} [bold]{task.description:<7}"),
                                 BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[repeat]}"),
                                 TextColumn("best {task.fields[best]}"),
                                 TextColumn("pruned {task.fields[pruned]}"),
                                 console=_err, disable=not enabled)
        self.tasks: dict[str, Any] = {}
        self.done: dict[tuple[str, int], int] = {}
        self.best: dict[str, float] = {}
        self.pruned: dict[str, int] = {}
        self.running: dict[str, int] = {}  # studies running now, per strategy (--jobs: several)
        self.repeats = 0

    def begin(self, name: str, plans: list[StudyPlan], grid: GridPlan | None, run_id: str,
              notes: tuple[str, ...] = ()) -> None:
        for note in notes:  # said before the wait, also with --quiet or --json
            _err.print(f"note: {note}")
        if not self.enabled:
            return
        from tuner.analysis import plural

        strategies = list(dict.fromkeys(p.strategy for p in plans))
        self.repeats = max(p.repeat for p in plans) + 1
        first = plans[0]
        _err.print(f"comparison {name}: {', '.join(strategies)} x "
                   f"{plural(self.repeats, 'repeat')} x {plural(first.trials, 'trial')}; MLflow "
                   f"comparison run {run_id}")
        if grid is not None:
            _err.print(grid.describe())
        for strategy in strategies:
            total = sum(p.trials for p in plans if p.strategy == strategy)
            self.tasks[strategy] = self.progress.add_task(
                strategy, total=total, mark=" ", repeat="", best="-", pruned=0)
        self.progress.start()

    def study_started(self, plan: StudyPlan, done: int, skipped: bool, best: float | None,
                      pruned: int) -> None:
        self.done[(plan.strategy, plan.repeat)] = done
        self.pruned[plan.strategy] = self.pruned.get(plan.strategy, 0) + pruned
        if best is not None:
            self._better(plan.strategy, best)
        if not skipped:
            self.running[plan.strategy] = self.running.get(plan.strategy, 0) + 1
        self._mark()
        note = " (finished: skipped)" if skipped else (" (resumed)" if done else "")
        self._refresh(plan, repeat=f"repeat {plan.repeat + 1}/{self.repeats}{note}")

    def study_ended(self, plan: StudyPlan) -> None:
        self.running[plan.strategy] = max(0, self.running.get(plan.strategy, 0) - 1)
        self._mark()

    def _mark(self) -> None:
        if self.enabled:
            for strategy, task in self.tasks.items():
                self.progress.update(task, mark="▶" if self.running.get(strategy) else " ")

    def trial_done(self, plan: StudyPlan, state: str, value: float | None) -> None:
        key = (plan.strategy, plan.repeat)
        if state != "INTERRUPTED":
            self.done[key] = self.done.get(key, 0) + 1
        if state == "PRUNED":
            self.pruned[plan.strategy] = self.pruned.get(plan.strategy, 0) + 1
        if value is not None and state == "COMPLETE":
            self._better(plan.strategy, value)
        self._refresh(plan)

    def _better(self, strategy: str, value: float) -> None:
        best = self.best.get(strategy)
        if best is None or (value > best if self.direction == "maximize" else value < best):
            self.best[strategy] = value

    def _refresh(self, plan: StudyPlan, **fields: Any) -> None:
        if not self.enabled:
            return
        done = sum(n for (s, _), n in self.done.items() if s == plan.strategy)
        best = self.best.get(plan.strategy)
        self.progress.update(self.tasks[plan.strategy], completed=done,
                             best="-" if best is None else f"{best:.4g}",
                             pruned=self.pruned.get(plan.strategy, 0), **fields)

    def end(self) -> None:
        if self.enabled and self.tasks:
            for task in self.tasks.values():
                self.progress.update(task, mark=" ")
            self.progress.stop()


def _print_comparison(comparison: Comparison, tracking_uri: str | None) -> None:
    from tuner.analysis import SUMMARY_HEADERS, summary_rows

    target = "-" if comparison.target is None else f"{comparison.target:.4g}"
    table = Table(title=f"comparison {comparison.name}: {comparison.objective} "
                  f"({comparison.direction}), target {target}")
    for header in SUMMARY_HEADERS:
        table.add_column(header, justify="left" if header in ("rank", "strategy") else "right")
    for row in summary_rows(comparison):
        table.add_row(*row)
    _out.print(table)
    _out.print(f"ranked by the repeats that reached the target, the trials they took, then the "
               f"best value; test: {comparison.test_metric} of each study's best trial (held-out "
               "split); time: the time trials ran (trials trained together count once), mean ± "
               "std over the repeats that reached the target")
    for note in comparison.notes:
        _out.print(f"note: {note}")
    if comparison.grid is not None:
        _out.print(comparison.grid.describe())
    _out.print(f"report: {comparison.out / 'report.md'} (summary.csv, studies.csv, trials.csv, "
               "curves)")
    _out.print(f"MLflow: experiment {comparison.experiment_id}, comparison run "
               f"{comparison.run_id}")
    _out.print(f"MLflow UI: {browse_hint(tracking_uri, comparison.experiment_id)}")


def cmd_report(args: argparse.Namespace) -> int:
    from tuner.analysis import write_study_views
    from tuner.search import find_study

    if args.out is None and not is_plain_name(args.study):  # reports/STUDY stays in reports/
        raise OptionError("out", f"the study name {args.study!r} cannot name a folder (letters, "
                          "digits, '_', '.', '-' only): pass --out FOLDER")
    study = find_study(args.storage, args.study)
    folder = Path(args.out or Path("reports") / args.study)
    if folder.exists() and not folder.is_dir():
        raise TunerError(f"--out {str(folder)!r} exists and is not a folder")
    written = write_study_views(study, folder)
    _out.print(f"study {args.study}: {len(written)} files in {folder}: "
               f"{', '.join(p.name for p in written)}")
    return 0

