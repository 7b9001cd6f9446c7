"""Multi-objective studies through the public API: objectives, constraints, the Pareto front."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import tuner
from tests.conftest import subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of

MLP_MULTI = """\
name: digits_multi
data: {source: digits, val_fraction: 0.2, test_fraction: 0.2, seed: 0}
objectives:
  - {metric: accuracy}
  - {metric: params}
  - {metric: latency}
constraints:
  params: {max: 3000}
training: {max_epochs: 2, early_stopping: false}
study: {strategy: nsga2, trials: 4, seed: 0}
params:
  n_layers: 1
  units: {type: int, low: 8, high: 96, log: true}
  lr: {type: float, low: 3e-3, high: 1e-2, log: true}
  batch_size: 64
"""

CUSTOM_MULTI = """\
name: toy_multi
model: custom
objectives:
  - {metric: val_gain, direction: maximize}
  - {metric: cost, key: cost, direction: minimize}
constraints:
  cost: {max: 50}
study: {strategy: STRATEGY, trials: 8, seed: 1}
params:
  x: {type: float, low: 0.0, high: 10.0}
"""


def toy(params: Mapping[str, Any], reporter: tuner.Reporter) -> dict[str, float]:
    """gain rises with x, cost with x squared: every x is a trade-off (all on the front)."""
    x = params["x"]
    reporter.report(1, {"val_gain": x})
    return {"cost": x * x}


def opts(tmp: Path, **kw: Any) -> tuner.RunOptions:
    base: dict[str, Any] = dict(storage=str(tmp / "multi.journal"), progress=False,
                                tracking=False, threads=1)
    base.update(kw)
    return tuner.RunOptions(**base)


def test_mlp_accuracy_params_latency_front_tracked_and_picked_under_a_constraint(
        workdir: Path, tracking_uri: str) -> None:
    space = tuner.parse_space(MLP_MULTI)
    assert [o.key for o in space.objectives] == ["val_accuracy", "params", "latency"]
    result = tuner.run_study(space, opts(workdir, tracking=True, tracking_uri=tracking_uri,
                                         experiment="multi-mlp"))
    assert result.n_complete == 4 and result.best_value is None
    assert any("pruning is off" in n for n in result.notes)
    front = tuner.pareto_front(result.study, str(workdir / "multi.journal"))
    assert front and [m.values[0] for m in front] == sorted((m.values[0] for m in front),
                                                             reverse=True)
    study = load_study(result.study, workdir / "multi.journal")
    for trial in study.trials:
        units = trial.params["units"]
        assert trial.values[1] == 64 * units + units + units * 10 + 10  # measured param count
        assert trial.values[2] > 0  # ms per 1,000 rows
        assert trial.user_attrs["constraints"] == [pytest.approx(trial.values[1] - 3000)]
    # Pareto optimality: no front member is dominated by any trial.
    for m in front:
        assert not any(t.values[0] >= m.values[0] and t.values[1] <= m.values[1] and
                       t.values[2] <= m.values[2] and list(t.values) != list(m.values)
                       for t in study.trials)
    parents, runs = runs_of(tracking_uri, "multi-mlp")
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    assert parent.data.tags["objectives"] == \
        "val_accuracy:maximize,params:minimize,latency:minimize"
    assert json.loads(parent.data.tags["pareto_front"]) == [m.number for m in front]
    names = {a.path for a in MlflowClient(tracking_uri).list_artifacts(parent.info.run_id,
                                                                       "pareto")}
    assert {"pareto/front.csv", "pareto/pareto.html", "pareto/pareto.png"} <= names
    report = subprocess.run([*tuner_command(), "report", result.study, "--storage",
                             str(workdir / "multi.journal"), "--out", "rep"], cwd=workdir,
                            env=subprocess_env(tracking_uri), capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr
    table = pd.read_csv(workdir / "rep" / "front.csv")
    assert list(table["trial"]) == [m.number for m in front]
    assert list(table["params"]) == [m.values[1] for m in front]
    assert (workdir / "rep" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    feasible = [m for m in front if m.metrics["params"] < 3000]
    if feasible:
        picked = tuner.pick(result.study, str(workdir / "multi.journal"), where="params<3000")
        assert picked == feasible[0]
    final = tuner.evaluate(result.study, str(workdir / "multi.journal"),
                           tuner.FinalOptions(tracking=False, where="params<100000"))
    assert 0.5 < final.test_metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("strategy", ["tpe", "gp"])
def test_custom_objectives_front_constraint_and_picks(workdir: Path, strategy: str) -> None:
    space = tuner.parse_space(CUSTOM_MULTI.replace("STRATEGY", strategy))
    result = tuner.run_study(space, opts(workdir, study_name=strategy), objective=toy)
    journal = str(workdir / "multi.journal")
    front = tuner.pareto_front(strategy, journal)
    assert len(front) == result.n_complete == 8  # every trial is a trade-off
    assert [m.values[0] for m in front] == sorted((m.values[0] for m in front), reverse=True)
    assert all(m.feasible == (m.values[1] <= 50) for m in front)
    best_under = tuner.pick(strategy, journal, where="cost<=50")
    assert best_under.values[1] <= 50
    assert best_under.values[0] == max(m.values[0] for m in front if m.values[1] <= 50)
    assert tuner.pick(strategy, journal, index=-1) == front[-1]
    with pytest.raises(tuner.TunerError, match="out of range"):
        tuner.pick(strategy, journal, index=8)
    with pytest.raises(tuner.TunerError, match="no front member"):
        tuner.pick(strategy, journal, where="cost<0")


def test_unsupported_strategies_are_refused_by_name(workdir: Path, tracking_uri: str) -> None:
    with pytest.raises(tuner.SpaceError, match="strategy 'random' cannot search several"):
        tuner.parse_space(CUSTOM_MULTI.replace("STRATEGY", "random"))
    space_file = write_space(workdir, CUSTOM_MULTI.replace("STRATEGY", "nsga2") +
                             "trainer: toy.py:train\n", "toy.yaml")
    (workdir / "toy.py").write_text("def train(params, reporter):\n"
                                    "    reporter.report(1, {'val_gain': params['x']})\n"
                                    "    return {'cost': params['x'] ** 2}\n")
    run = subprocess.run([*tuner_command(), "run", str(space_file), "--strategy", "cmaes",
                          "--storage", "s.journal", "--experiment", "never-multi"],
                         cwd=workdir, env=subprocess_env(tracking_uri), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "'cmaes' cannot search several objectives" in run.stderr
    compare = subprocess.run([*tuner_command(), "compare", str(space_file), "--storage",
                              "s.journal", "--experiment", "never-multi"], cwd=workdir,
                             env=subprocess_env(tracking_uri), capture_output=True, text=True,
                             timeout=300)
    assert compare.returncode == 2 and "2 objectives" in compare.stderr
    assert not (workdir / "s.journal").exists() or not load_studies(workdir / "s.journal")
    assert MlflowClient(tracking_uri).get_experiment_by_name("never-multi") is None
    # nsga2 from the CLI, then `tuner best` lists the front
    run = subprocess.run([*tuner_command(), "run", str(space_file), "--storage", "s.journal",
                          "--no-tracking", "--trials", "3", "--quiet"], cwd=workdir,
                         env=subprocess_env(tracking_uri), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    best = subprocess.run([*tuner_command(), "best", "toy_multi-nsga2-seed1", "--storage",
                           "s.journal", "--json"], cwd=workdir,
                          env=subprocess_env(tracking_uri), capture_output=True, text=True,
                          timeout=300)
    assert best.returncode == 0, best.stderr
    listed = json.loads(best.stdout)
    assert listed["objectives"] == [["val_gain", "maximize"], ["cost", "minimize"]]
    assert len(listed["front"]) == 3 and {"trial", "val_gain", "cost", "feasible"} <= \
        set(listed["front"][0])


def load_studies(path: Path) -> list[Any]:
    import optuna

    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))).get_all_studies()
