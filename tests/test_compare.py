"""`tuner compare`: planning, real comparisons on a journal storage and a real MLflow store."""

from __future__ import annotations

import datetime
import io
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from tests.conftest import TINY_SPACE, subprocess_env, tuner_command, write_space
from tests.helpers import load_study, metric_history, writers_started
from tuner import load_space, parse_space
from tuner.analysis import (
    Comparison,
    StudyPlan,
    comparison_files,
    ranked,
    reach,
    summarise,
    trials_frame,
)
from tuner.analysis._views import COLORS
from tuner.cli import main
from tuner.execution import CompareOptions, plan_grid, repeat_seed, run_comparison
from tuner.search import STARTUP_TRIALS, shared_start_note

# Median pruning from the first epoch, so that studies record intermediate values.
PRUNED_SPACE = TINY_SPACE.replace("pruner: none", "pruner: {name: median, startup_trials: 1}") \
    .replace("max_epochs: 3", "max_epochs: 2")


def runs(uri: str, experiment: str) -> dict[str, list[Any]]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    out: dict[str, list[Any]] = {"comparison": [], "study": [], "trial": []}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        out[run.data.tags["tuner.role"]].append(run)
    return out


def test_grid_plan_keeps_the_space_grid_or_refines_it_to_hold_the_budget() -> None:
    space = parse_space(TINY_SPACE, default_name="tiny")
    assert space.params.grid_size() == 8
    plan, same = plan_grid(space, 3)  # larger than the budget: a seeded subset of it
    assert (plan.grid_points, plan.size, plan.trials) == (2, 8, 3) and same is space
    assert "a seeded random 3 of them" in plan.describe()
    plan, same = plan_grid(space, 8)
    assert (plan.size, plan.trials) == (8, 8) and "the whole grid" in plan.describe()
    # 20 trials: n_layers stops growing at its 2 values; lr grows until the grid holds 20.
    plan, finer = plan_grid(space, 20)
    assert (plan.grid_points, plan.size, plan.trials) == (5, 20, 20)
    assert finer.params.grid_size() == 20 and finer.params.grid_points == 5
    assert json.loads(finer.canonical)["study"]["grid_points"] == 5
    assert finer.hash != space.hash
    assert "finer than the space's 2" in plan.describe()
    fixed = parse_space("params:\n  lr: {type: float, low: 0.001, high: 0.01, grid: [0.001]}\n")
    plan, _ = plan_grid(fixed, 5)  # nothing can grow: the grid runs fewer trials
    assert (plan.size, plan.trials) == (1, 1)


def test_repeat_seeds_differ_by_repeat_and_not_by_strategy() -> None:
    seeds = [repeat_seed(0, r) for r in range(3)]
    assert len(set(seeds)) == 3 and seeds == [repeat_seed(0, r) for r in range(3)]
    assert repeat_seed(1, 0) not in seeds


def test_time_counts_trials_that_ran_together_once_and_pauses_not_at_all() -> None:
    """A pack of three trials asked at 0 s and told at 1, 2 and 3 s, then (after a pause: the
    study was resumed) one trial from 10 to 11 s. Summed durations would say 7 s."""
    t0 = datetime.datetime(2026, 1, 1)

    def trial(number: int, value: float, start: float, end: float) -> FrozenTrial:
        made = optuna.trial.create_trial(state=TrialState.COMPLETE, value=value, params={},
                                         distributions={})
        made.number = number
        made.datetime_start = t0 + datetime.timedelta(seconds=start)
        made.datetime_complete = t0 + datetime.timedelta(seconds=end)
        return made

    made = [trial(0, 0.9, 0, 3), trial(1, 0.5, 0, 1), trial(2, 0.8, 0, 2), trial(3, 0.95, 10, 11)]
    frame = trials_frame("c", StudyPlan("tpe", 0, 1, "c-tpe-r0", 4), made, "maximize", {})
    assert list(frame.elapsed_s) == [3.0, 1.0, 2.0, 4.0]
    assert list(frame.best_so_far) == [0.9, 0.9, 0.9, 0.95]  # in trial order
    assert list(frame.best_by_time) == [0.9, 0.5, 0.8, 0.95]  # among those ended by then
    # Target 0.8: trial 0 is the first in trial order (1 trial), but trial 2 reached it first,
    # after 2 s of the study's time.
    assert reach(frame, 0.8, "maximize") == (1.0, 2.0)
    assert all(math.isnan(x) for x in reach(frame, 0.99, "maximize"))


def test_trials_to_target_time_and_the_default_target() -> None:
    def trial(value: float | None, state: str = "COMPLETE") -> Any:
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], value=value if state == "COMPLETE" else None,
            params={}, distributions={}, intermediate_values={1: 0.1} if state == "PRUNED" else {})

    made = [trial(0.5), trial(None, "PRUNED"), trial(0.8), trial(0.7), trial(0.9)]
    for number, t in enumerate(made):
        t.number = number
    frame = trials_frame("c", StudyPlan("tpe", 0, 1, "c-tpe-r0", 5), made, "maximize",
                         {0: {"epochs": "3"}})
    assert list(frame.best_so_far) == [0.5, 0.5, 0.8, 0.8, 0.9]
    assert list(frame.trial) == [1, 2, 3, 4, 5]
    assert frame.epochs.iloc[0] == 3 and frame.epochs.iloc[1] == 1  # MLflow tag, else reports
    empty = trials_frame("c", StudyPlan("tpe", 1, 2, "c-tpe-r1", 5), [], "maximize", {})
    assert empty.empty and {"state", "best_so_far", "elapsed_s", "epochs"} <= set(empty.columns)
    studies = pd.DataFrame([
        {"strategy": "tpe", "repeat": r, "trials": 5, "pruned": 1, "best_value": b,
         "test_accuracy": t, "trials_to_target": n, "time_to_target_s": n * 2.0, "epochs": 10,
         "wall_s": 10.0}
        for r, (b, t, n) in enumerate([(0.9, 0.8, 3.0), (0.7, 0.6, float("nan"))])])
    summary = summarise(studies, ["tpe"], "test_accuracy")["tpe"]
    assert summary["best_mean"] == pytest.approx(0.8)
    assert summary["best_std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["reached"] == 1 and summary["trials_to_target"] == 3.0
    assert summary["time_to_target_s"] == 6.0 and summary["pruned_share"] == pytest.approx(0.2)


def test_compare_cli_creates_studies_runs_and_report_then_resume_skips_them(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(workdir, PRUNED_SPACE)
    args = [*tuner_command(), "compare", str(space), "--strategies", "grid,random",
            "--trials", "2", "--repeats", "2", "--name", "cmp", "--experiment", "cmp-cli",
            "--out", "out", "--no-model", "--no-views", "--threads", "1", "--json"]
    first = subprocess.run(args, cwd=workdir, env=subprocess_env(tracking_uri),
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert set(summary["strategies"]) == {"grid", "random"}
    assert summary["grid"] == "grid: 8 points at grid_points=2; each repeat runs a seeded " \
        "random 2 of them"
    for values in summary["strategies"].values():
        assert values["repeats"] == 2 and values["trials"] == 2
        assert 0 < values["best_mean"] <= 1 and 0 < values["test_mean"] <= 1
    best = pd.read_csv(workdir / "out" / "studies.csv").best_value.max()
    assert summary["target"] == pytest.approx(best * 0.995)  # the best study, 0.5% worse

    names = [f"cmp-{s}-r{r}" for s in ("grid", "random") for r in (0, 1)]
    studies = {n: load_study(n, workdir / "tuner.journal") for n in names}
    for name, study in studies.items():
        assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
        assert study.user_attrs["tuner.seed"] == repeat_seed(0, int(name[-1]))

    found = runs(tracking_uri, "cmp-cli")
    (comparison,) = found["comparison"]
    assert comparison.info.run_id == summary["mlflow_run_id"]
    assert comparison.info.status == "FINISHED"
    assert comparison.data.params["trials"] == "2" and comparison.data.tags["comparison"] == "cmp"
    assert "grid.best_mean" in comparison.data.metrics and "target" in comparison.data.metrics
    assert not [k for k in comparison.data.metrics if "/" in k]
    parents = {r.data.tags["study"]: r for r in found["study"]}
    assert sorted(parents) == sorted(names)
    client = MlflowClient(tracking_uri)
    for name, run in parents.items():
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == comparison.info.run_id
        assert (tags["strategy"], tags["repeat"], tags["comparison"]) == \
            (name.split("-")[1], name[-1], "cmp")
        assert run.info.status == "FINISHED"
        curve = metric_history(tracking_uri, run.info.run_id, "best_so_far")
        assert sorted(m.step for m in curve) == [1, 2]
        assert client.list_artifacts(run.info.run_id, "views") == []  # --no-views
    assert parents["cmp-grid-r0"].data.tags["grid_points"] == "2"
    assert len(found["trial"]) == 8
    assert {r.data.tags["mlflow.parentRunId"] for r in found["trial"]} == \
        {r.info.run_id for r in parents.values()}

    files = {"summary.csv", "studies.csv", "trials.csv", "best_vs_trial.png", "best_vs_time.png",
             "curves.html", "report.md"}
    assert files <= {p.name for p in (workdir / "out").iterdir()}
    assert files <= {f.path for f in client.list_artifacts(comparison.info.run_id)}
    trials = pd.read_csv(workdir / "out" / "trials.csv")
    assert len(trials) == 8 and set(trials.study) == set(names)
    assert {"strategy", "repeat", "trial", "state", "value", "best_so_far", "elapsed_s",
            "epochs", "param_lr"} <= set(trials.columns)
    assert list(pd.read_csv(workdir / "out" / "summary.csv").strategy) == ["grid", "random"]
    report = (workdir / "out" / "report.md").read_text()
    assert "![Best so far against trials](best_vs_trial.png)" in report
    assert "| grid |" in report and "| random |" in report
    assert (workdir / "out" / "best_vs_trial.png").read_bytes()[:4] == b"\x89PNG"

    # The same command again (in this process: it is about the stores, not about processes).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    assert main(args[len(tuner_command()):]) == 0
    assert json.loads(capsys.readouterr().out)["strategies"] == summary["strategies"]
    for name in names:  # finished studies were not run again
        assert len(load_study(name, workdir / "tuner.journal").trials) == 2
    resumed = runs(tracking_uri, "cmp-cli")
    assert [r.info.run_id for r in resumed["comparison"]] == [comparison.info.run_id]
    assert sorted(r.info.run_id for r in resumed["study"]) == \
        sorted(r.info.run_id for r in parents.values())
    assert len(resumed["trial"]) == 8
    assert sorted(m.step for m in metric_history(
        tracking_uri, parents["cmp-grid-r0"].info.run_id, "best_so_far")) == [1, 2]


class _Recorder:
    def __init__(self, stop_after: tuple[str, int] | None = None):
        self.started: list[tuple[str, int, bool]] = []
        self.trials: list[str] = []
        self.ended: list[str] = []
        self.stop_after = stop_after

    def study_started(self, plan: StudyPlan, done: int, skipped: bool, best: float | None,
                      pruned: int) -> None:
        self.started.append((plan.name, done, skipped))
        assert (best is None) == (done == 0) and pruned == 0  # no pruner: every trial completes

    def trial_done(self, plan: StudyPlan, state: str, value: float | None) -> None:
        self.trials.append(plan.name)
        if self.stop_after == (plan.name, self.trials.count(plan.name)):
            raise KeyboardInterrupt  # a second Ctrl-C: abort at once

    def study_ended(self, plan: StudyPlan) -> None:
        self.ended.append(plan.name)


@pytest.mark.parametrize("spare_core", [True, False], ids=["shared-writer", "threads"])
def test_an_aborted_comparison_resumes_its_unfinished_study(
        workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, spare_core: bool) -> None:
    """Its studies write through one shared writer process where a core is spare, else from
    threads: either way, nothing is left RUNNING and the resume finds every run."""
    from tuner.execution import _compare

    monkeypatch.setattr(_compare, "spare_core", lambda threads: spare_core)
    experiment = f"cmp-abort-{spare_core}"  # the store is the session's
    space = load_space(write_space(workdir))
    options = CompareOptions(strategies=("random", "tpe"), trials=2, repeats=1, name="abort",
                             experiment=experiment, storage=str(workdir / "s.journal"),
                             tracking_uri=tracking_uri, target=0.0, out=str(workdir / "out"),
                             threads=1, log_model=False, views=False, pack=1)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(space, options, _Recorder(stop_after=("abort-tpe-r0", 1)))
    found = runs(tracking_uri, experiment)
    assert [r.info.status for r in found["comparison"]] == ["KILLED"]
    status = {r.data.tags["study"]: r.info.status for r in found["study"]}
    assert status == {"abort-random-r0": "FINISHED", "abort-tpe-r0": "KILLED"}
    assert len(load_study("abort-tpe-r0", workdir / "s.journal").trials) == 1

    recorder = _Recorder()
    result = run_comparison(space, options, recorder)
    assert recorder.started == [("abort-random-r0", 2, True), ("abort-tpe-r0", 1, False)]
    assert recorder.trials == ["abort-tpe-r0"]
    assert [t.number for t in load_study("abort-tpe-r0", workdir / "s.journal").trials] == [0, 1]
    found = runs(tracking_uri, experiment)
    assert [r.info.run_id for r in found["comparison"]] == [result.run_id]
    assert {r.info.status for r in found["comparison"] + found["study"]} == {"FINISHED"}
    assert len(found["study"]) == 2 and len(found["trial"]) == 4
    # Without a pruner every trial completes, so the first trial reaches --target 0.
    assert {s: v["trials_to_target"] for s, v in result.strategies.items()} == \
        {"random": 1.0, "tpe": 1.0}
    assert set(result.studies.trials_to_target) == {1.0}

    changed = main(["compare", str(workdir / "tiny.yaml"), "--strategies", "random,tpe",
                    "--trials", "3", "--repeats", "1", "--name", "abort", "--experiment",
                    experiment, "--storage", str(workdir / "s.journal"), "--tracking-uri",
                    tracking_uri, "--quiet"])
    assert changed == 2  # other settings under the same name are refused, before any trial
    assert capsys.readouterr().err.strip().endswith(
        "use the same settings to resume it, or another --name")
    assert len(load_study("abort-tpe-r0", workdir / "s.journal").trials) == 2


@pytest.mark.parametrize("flags, message", [
    (["--strategies", "grid,bogus"], "unknown strategy 'bogus'"),
    (["--strategies", "tpe,tpe"], "lists a strategy twice"),
    (["--repeats", "0"], "--repeats: must be >= 1, got 0"),
    (["--name", "bad name"], "--name: 'bad name': use letters"),
])
def test_bad_flags_exit_2_with_one_line_and_write_nothing(
        workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str],
        flags: list[str], message: str) -> None:
    space = write_space(workdir)
    code = main(["compare", str(space), "--experiment", "never-compared", "--tracking-uri",
                 tracking_uri, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (workdir / "tuner.journal").exists() and not (workdir / "reports").exists()
    assert MlflowClient(tracking_uri).get_experiment_by_name("never-compared") is None


def test_a_writer_started_for_a_comparison_refused_late_is_ended(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`tuner compare` starts its writer process before its heavy imports; input found bad
    after that (here: --out names a file) still exits 2 and leaves no writer behind."""
    from tuner.tracking import _pool, _writer

    started = writers_started(monkeypatch)
    monkeypatch.setattr(_writer, "spare_core", lambda threads: True)
    (workdir / "taken").write_text("a file, not a folder")
    code = main(["compare", str(write_space(workdir)), "--out", str(workdir / "taken"),
                 "--experiment", "refused-late", "--tracking-uri", tracking_uri, "--quiet"])
    assert code == 2 and "exists and is not a folder" in capsys.readouterr().err
    assert len(started) == 1 and started[0]._process.poll() is not None
    assert not _pool._prestarted


def test_a_budget_within_the_start_up_trials_is_said() -> None:
    note = shared_start_note(("grid", "random", "tpe", "gp"), STARTUP_TRIALS)
    assert note is not None and "random, tpe, gp run identical parameters" in note
    assert shared_start_note(("random", "tpe"), STARTUP_TRIALS + 1) is None
    assert shared_start_note(("grid", "tpe", "cmaes"), 5) is None  # nothing else draws the same


def test_strategies_rank_by_reach_then_trials_then_best_and_ties_share_a_rank() -> None:
    def row(reached: int, trials: float | None, best: float) -> dict[str, Any]:
        return {"repeats": 2, "reached": reached, "trials_to_target": trials, "best_mean": best,
                "time_to_target_s": 1.0}

    summary = {"grid": row(0, None, 0.99), "random": row(1, 5.0, 0.9), "gp": row(1, 5.0, 0.9),
               "tpe": row(2, 8.0, 0.8), "qmc": row(1, 5.0, 0.95)}
    ranks = {s: v["rank"] for s, v in ranked(summary, "maximize").items()}
    assert list(ranked(summary, "maximize")) == ["tpe", "qmc", "random", "gp", "grid"]
    assert ranks == {"tpe": 1, "qmc": 2, "random": 3, "gp": 3, "grid": 5}
    assert list(ranked(summary, "minimize"))[:3] == ["tpe", "random", "gp"]  # 0.9 < 0.95


def _comparison(strategies: dict[str, dict[str, Any]], trials: pd.DataFrame,
                notes: tuple[str, ...] = ()) -> Comparison:
    settings = {"space": "tiny", "data": "digits", "strategies": list(strategies), "trials": 3,
                "repeats": 1, "seed": 0, "pruner": "none", "max_epochs": 2}
    return Comparison("c", "1", "run", "maximize", "val_accuracy", "test_accuracy", 0.9, None,
                      Path("out"), settings, strategies, pd.DataFrame(), trials, notes=notes)


def test_the_report_ranks_says_one_repeat_and_keeps_equal_curves_visible() -> None:
    from PIL import Image

    curve = {"repeat": 0, "trial": [1, 2, 3], "best_so_far": [0.5, 0.8, 0.9],
             "best_by_time": [0.5, 0.8, 0.9], "elapsed_s": [1.0, 2.0, 3.0]}
    trials = pd.concat([pd.DataFrame({"strategy": s, **curve}) for s in ("random", "tpe")])
    stats = {"repeats": 1, "reached": 1, "trials_to_target": 3.0, "best_mean": 0.9,
             "best_std": None, "test_mean": 0.88, "test_std": None, "time_to_target_s": 3.0,
             "time_to_target_std": None, "epochs": 6, "pruned_share": 0.0, "wall_s": 3.0}
    comparison = _comparison(ranked({"random": stats, "tpe": dict(stats)}, "maximize"), trials,
                             ("3 trials per study are within ...",))
    files = comparison_files(comparison)
    report = str(files["report.md"])
    assert "3 trials per study, 1 repeat (seed 0)" in report and "1 repeats" not in report
    assert "**Note**: 3 trials per study are within ..." in report
    assert "| rank | strategy | reached target | trials to target | best (mean ± std) |" in report
    assert "| 1 | random | 1/1 | 3.0 | 0.9000 |" in report and "| 1 | tpe |" in report
    # The two identical curves: the one drawn first still shows around the one on top of it.
    with Image.open(io.BytesIO(bytes(files["best_vs_trial.png"]))) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int).reshape(-1, 3)
    for colour in (COLORS[0], COLORS[1]):
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        near = int((np.abs(pixels - rgb).sum(axis=1) < 40).sum())
        assert near > 400, (colour, near)


def test_a_comparison_notes_strategies_that_did_not_run_as_named(workdir: Path) -> None:
    """GP whose model never started (pruned trials do not count for it), GP handed to TPE by its
    guard, and TPE whose model did start (no note)."""
    from tuner.execution._compare import _strategy_notes
    from tuner.search import ATTR_FALLBACK, open_storage

    storage = open_storage(str(workdir / "s.journal"))
    t0 = datetime.datetime(2026, 1, 1)
    plans = []
    for strategy, repeat, fallback in (("gp", 0, None), ("gp", 1, "GPSampler spent 30% ..."),
                                       ("tpe", 0, None)):
        name = f"c-{strategy}-r{repeat}"
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        for i in range(12):  # told one after the other; every other one pruned
            state = TrialState.PRUNED if i % 2 else TrialState.COMPLETE
            trial = optuna.trial.create_trial(
                state=state, value=0.5 if state == TrialState.COMPLETE else None, params={},
                distributions={}, intermediate_values={1: 0.5} if i % 2 else None)
            trial.datetime_start = t0 + datetime.timedelta(seconds=i)
            trial.datetime_complete = t0 + datetime.timedelta(seconds=i + 0.5)
            study.add_trial(trial)
        if fallback:
            study.set_user_attr(ATTR_FALLBACK, fallback)
        plans.append(StudyPlan(strategy, repeat, repeat, name, 12))
    plans.append(StudyPlan("gp", 2, 2, "c-gp-r2", 12))  # not started: not counted
    notes = _strategy_notes(storage, plans)
    assert notes == [
        "gp drew all 12 trials at random: its model starts once 10 trials are complete (it does "
        "not count pruned ones), and the study has 6; give it more trials or `--pruner none` "
        "(in 2 of 2 repeats)",
        "gp: GPSampler spent 30% ... (in 1 of 2 repeats)"]
