"""The CLI's subcommands: parse flags into API calls, print tables or JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from tuner import _collector as collector
from tuner.cli._worker import add_device_flags, add_run_flags, device_options, run_options
from tuner.errors import TunerError
from tuner.space import GRID_LIMIT, PRUNERS, STRATEGIES, load_space

if TYPE_CHECKING:
    from tuner.execution import StudyResult

def register(sub: Any) -> None:
    run = sub.add_parser("run", help="create or resume a study and run it")
    run.add_argument("space", help="search-space YAML file")
    run.add_argument("--strategy", choices=STRATEGIES, help="how parameters are chosen "
                     "(default: the space's study.strategy)")
    run.add_argument("--trials", metavar="N", type=int, help="trial budget of the study "
                     "(default: the space's study.trials)")
    run.add_argument("--seed", metavar="N", type=int, help="study seed (default: the space's study.seed)")
    run.add_argument("--pruner", choices=PRUNERS, help="how unpromising trials are stopped "
                     "early (default: the space's study.pruner)")
    run.add_argument("--storage", metavar="URL", help="Optuna storage: a journal file path, "
                     "sqlite:///, postgresql:// (postgres extra), redis:// (redis extra) "
                     "(default: tuner.journal)")
    run.add_argument("--study", metavar="NAME", help="study name (default: SPACE-STRATEGY-seedN)")
    run.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default: the space's name)")
    run.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: "
                     "MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    run.add_argument("--no-tracking", action="store_true", help="do not log to MLflow "
                     "(default: log)")
    run.add_argument("--no-model", action="store_true", help="do not log the final model "
                     "(default: log it)")
    run.add_argument("--no-refit", action="store_true", help="the final model is the chosen "
                     "trial's own (trained on the train split), not the chosen configuration "
                     "retrained on train + validation (default: retrained)")
    add_device_flags(run)  # --threads, --pack, --device
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                     "(default: a table)")
    run.add_argument("--quiet", action="store_true", help="no progress bar (default: a progress "
                     "bar on stderr)")
    add_run_flags(run)  # --workers, --dask, --heartbeat-timeout, --allow-space-change
    run.add_argument("--enqueue", metavar="FILE", help="known configurations to run first: a "
                     "YAML list of {param: value}, or a file written by `tuner export` "
                     "(default: only the space's enqueue: list)")
    run.add_argument("--warm-start", metavar="STUDY", help="start a new study from the trials "
                     "of STUDY (same storage) that fit this space (default: start empty)")
    run.add_argument("--patience", type=int, metavar="N", help="stop the study after N trials "
                     "without a better best value (default: no limit)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="wall-clock budget: no "
                     "trial starts after it; the running one finishes (default: no limit)")
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a space file; list parameters, grid size")
    validate.add_argument("space", help="search-space YAML file")
    validate.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                          "(default: a table)")
    validate.set_defaults(handler=cmd_validate)

    studies = sub.add_parser("studies", help="list the studies in a storage")
    studies.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    studies.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                         "(default: a table)")
    studies.set_defaults(handler=cmd_studies)

    best = sub.add_parser("best", help="print a study's best trial and its MLflow run")
    best.add_argument("study", help="study name (as `tuner studies` lists them)")
    best.add_argument("--storage", metavar="URL", help="Optuna storage (default: tuner.journal)")
    best.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI, to find the "
                      "trial's run where the study did not record it at its end (default: "
                      "MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    best.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                      "(default: text)")
    best.set_defaults(handler=cmd_best)


# What a strategy costs beyond training, said where a user picks it.
STRATEGY_COSTS = {
    "gp": "the GP sampler's cost per trial grows cubically with the number of trials (about "
          "0.25-0.8 s near trial 200); when choosing parameters takes over 25% of the recent "
          "trial time, tuner warns and continues the study with TPE",
    "grid": "grid runs every grid point once; its size multiplies with each parameter",
}

_out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@collector.pausing  # while the study's libraries load (see tuner._collector)
def cmd_run(args: argparse.Namespace) -> int:
    # The space and the flags are checked before the heavy imports: bad input fails at once.
    space = load_space(args.space)
    if (args.strategy or space.study.strategy) == "grid":  # counted: a second, not the OOM killer
        space.params.grid_target(args.trials, space.file)
    from tuner.execution import RunOptions

    options = RunOptions(
        strategy=args.strategy, trials=args.trials, seed=args.seed, pruner=args.pruner,
        storage=args.storage, study_name=args.study, experiment=args.experiment,
        tracking_uri=args.tracking_uri, tracking=not args.no_tracking,
        log_model=not args.no_model, **device_options(args),
        progress=not (args.quiet or args.json), **run_options(args),
        enqueue_file=args.enqueue, warm_start=args.warm_start, patience=args.patience,
        timeout=args.timeout, refit=not args.no_refit,
    )
    from tuner.api import run_study  # it starts the MLflow writer before the heavy imports

    result = run_study(space, options)
    return report_outcome(result, args.json, lambda r: _print_result(r, args.tracking_uri))


def report_outcome(outcome: Any, as_json: bool, show: Any) -> int:
    """Print a run's or a comparison's outcome (JSON or a table); 130 if it was interrupted."""
    if as_json:
        print(json.dumps(outcome.to_dict(), default=str))
    else:
        show(outcome)
    if outcome.interrupted:
        print("tuner: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if getattr(outcome, "all_failed", False):  # nothing to show for it: not a success
        print(f"tuner: every trial of study {outcome.study} failed (see the note above)",
              file=sys.stderr)
        return 1
    return 0


def browse_hint(tracking_uri: str | None, experiment_id: str | None) -> str | None:
    """Where the runs can be seen in the MLflow UI (the link `tuner ui` prints)."""
    if experiment_id is None:
        return None
    from tuner.cli._ui import where_to_browse

    # Only a server's URI makes a difference, and a server is never MLflow's default: no need
    # to import MLflow to resolve one (a second, after a study that never imported it).
    return where_to_browse(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""),
                           experiment_id)


def _print_result(result: StudyResult, tracking_uri: str | None) -> None:
    table = Table(title=f"study {result.study} ({result.strategy})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    best = "-" if result.best_value is None else f"{result.best_value:.4f} (trial {result.best_trial})"
    table.add_row("best value", best)
    table.add_row("best params", ", ".join(f"{k}={_fmt(v)}" for k, v in result.best_params.items()))
    table.add_row("trials", f"{result.n_complete} complete, {result.n_pruned} pruned, "
                  f"{result.n_failed} failed")
    if result.final.get("reason"):
        table.add_row("final choice", f"{result.final['kind']}: {result.final['reason']}")
    if result.test_metrics:
        table.add_row("test (held out)", ", ".join(f"{k}={v:.4f}" for k, v in
                                                   result.test_metrics.items()))
        table.add_row("test model", result.test_model or "-")
    table.add_row("wall time", f"{result.wall_s:.1f} s (MLflow: {result.tracking_s:.2f} s on the "
                  f"trials' path, {result.tracking_background_s:.2f} s in the background)")
    table.add_row("study storage", result.storage)
    if result.tracking_uri:
        table.add_row("MLflow", f"{result.tracking_uri}, parent run {result.mlflow_parent_run_id}")
        table.add_row("MLflow UI", browse_hint(tracking_uri, result.mlflow_experiment_id) or "-")
    for note in result.notes:
        table.add_row("note", note)
    _out.print(table)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_validate(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    rows = [(p.name, p.describe(), p.when.describe() if p.when else "") for p in space.params]
    if space.study.strategy == "grid":  # a grid study of this file would run it whole
        space.params.grid_target(None, space.file)
    grid = space.params.grid_size()  # counted, never built; None: too many to count
    notes = [STRATEGY_COSTS[space.study.strategy]] if space.study.strategy in STRATEGY_COSTS else []
    if grid is None or grid > GRID_LIMIT:
        notes.append(f"the grid has {'more than ' if grid is None else ''}"
                     f"{grid or GRID_LIMIT:,} points: too many for `--strategy grid` to run "
                     f"whole (at most {GRID_LIMIT:,}); --trials N samples N of them")
    if args.json:
        print(json.dumps({"file": space.file, "name": space.name, "hash": space.hash,
                          "grid_size": grid, "objective": space.objective.key,
                          "direction": space.objective.direction, "notes": notes,
                          "params": [{"name": n, "kind": d, "when": w} for n, d, w in rows]}))
        return 0
    table = Table(title=f"{space.file}: {space.name} (ok)")
    for column in ("parameter", "values", "only when"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    _out.print(table)
    goal = ", ".join(f"{o.key} ({o.direction})" for o in space.objectives or (space.objective,))
    _out.print(f"objective{'s' if space.multi else ''}: {goal}; data: "
               f"{space.data.source}; strategy {space.study.strategy}, {space.study.trials} "
               f"trials; grid size: {'>' if grid is None else ''}{grid or GRID_LIMIT:,}")
    for note in notes:
        _out.print(f"note: {note}")
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from tuner.search import ATTR_STRATEGY, describe, open_storage

    storage = open_storage(args.storage)
    rows: list[dict[str, Any]] = []
    for summary in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(summary.study_name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        best = None
        multi = len(summary.directions) > 1  # no single best value: `tuner best` lists the front
        if counts.get("COMPLETE") and not multi:
            best = storage.get_best_trial(study_id).value
        rows.append({"study": summary.study_name, "strategy": summary.user_attrs.get(ATTR_STRATEGY),
                     "direction": ",".join(d.name.lower() for d in summary.directions),
                     "trials": len(trials),
                     "states": counts, "best_value": best})
    if args.json:
        print(json.dumps({"storage": describe(args.storage), "studies": rows}))
        return 0
    table = Table(title=f"studies in {describe(args.storage)}")
    for column in ("study", "strategy", "direction", "trials", "complete", "pruned", "failed",
                   "best"):
        table.add_column(column)
    for r in rows:
        states = r["states"]
        table.add_row(r["study"], str(r["strategy"] or "-"), r["direction"], str(r["trials"]),
                      str(states.get("COMPLETE", 0)), str(states.get("PRUNED", 0)),
                      str(states.get("FAIL", 0)),
                      "-" if r["best_value"] is None else f"{r['best_value']:.4f}")
    _out.print(table)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from tuner.search import (
        ATTR_EXPERIMENT,
        ATTR_FINAL,
        TRIAL_PARAMS,
        best_run,
        best_trial,
        find_study,
    )

    study = find_study(args.storage, args.study)
    if len(study.directions) > 1:
        return _print_front(study, args.json)
    best = best_trial(study)
    run_id = None
    experiment = study.user_attrs.get(ATTR_EXPERIMENT)
    if experiment is not None:
        run_id = best_run(study, best.number)
    if experiment is not None and run_id is None:  # not recorded: MLflow is asked (seconds)
        from tuner.tracking import find_trial_run

        run_id = find_trial_run(args.tracking_uri, experiment, args.study, best.number)
    final = study.user_attrs.get(ATTR_FINAL) or {}
    info = {"study": args.study, "trial": best.number, "value": best.value,
            "params": best.user_attrs.get(TRIAL_PARAMS, best.params),
            "mlflow_experiment_id": experiment, "mlflow_run_id": run_id, "final": final}
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    _out.print(f"study {args.study}: best trial {best.number}, value {best.value:.6g}")
    for key, value in info["params"].items():
        _out.print(f"  {key} = {_fmt(value)}")
    for line in _final_lines(final):
        _out.print(line)
    _out.print(f"MLflow run: {run_id or 'not tracked'} (experiment {experiment or '-'})")
    return 0


def _final_lines(final: dict[str, Any]) -> list[str]:
    """How the study chose its final model, and how much of the best value was luck."""
    if not final:
        return []
    lines = [f"final model: {final['kind']}, trial{'s' if len(final['trials']) > 1 else ''} "
             f"{', '.join(map(str, final['trials']))} ({final['reason']})"]
    if final.get("optimism") is not None:
        lines.append(f"optimism of the best value: {final['optimism']:+.4g} (best "
                     f"{final['raw_best_value']:.4g} on validation, "
                     f"{final['raw_best_reevaluated']:.4g} re-evaluated: {final['plan']})")
    return lines


def _print_front(study: Any, as_json: bool) -> int:
    """A multi-objective study has no single best trial: list its Pareto front."""
    from tuner.search import format_front, front_table, objectives_of

    rows = front_table(study)
    if as_json:
        print(json.dumps({"study": study.study_name, "objectives": objectives_of(study),
                          "front": rows}, default=str))
        return 0
    if not rows:
        raise TunerError(f"study {study.study_name!r} has no complete trial yet")
    _out.print(format_front(study))
    _out.print("pick one with: tuner evaluate STUDY --front-index I, or --where 'params<50000'")
    return 0
