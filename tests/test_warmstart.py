"""Warm starts through the public API: known points first, trials carried over, extensions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuner
from tests.conftest import write_space
from tests.helpers import load_study, runs_of

TOY = """\
name: toy
model: custom
objective: {metric: score, direction: maximize}
study: {strategy: tpe, trials: 4, seed: 0, pruner: none}
params:
  x: {type: float, low: LOW, high: 10.0}
  kind: {type: categorical, choices: [a, b]}
"""


def score(params: Mapping[str, Any], reporter: tuner.Reporter) -> float:
    reporter.report(1, {"val_score": -abs(params["x"] - 7.0)})
    return -abs(params["x"] - 7.0)


def opts(tmp: Path, **kw: Any) -> tuner.RunOptions:
    base: dict[str, Any] = dict(storage=str(tmp / "warm.journal"), progress=False,
                                tracking=False, threads=1)
    base.update(kw)
    return tuner.RunOptions(**base)


def test_known_points_from_the_space_and_a_file_run_first_and_are_tagged(
        workdir: Path, tracking_uri: str) -> None:
    text = TOY.replace("LOW", "0.0") + "enqueue:\n  - {x: 7.0, kind: b}\n"
    (workdir / "known.yaml").write_text(yaml.safe_dump([{"x": 2.5, "kind": "a"}]))
    space = tuner.parse_space(text)
    result = tuner.run_study(space, opts(workdir, tracking=True, tracking_uri=tracking_uri,
                                         experiment="warm-enqueue",
                                         enqueue_file=str(workdir / "known.yaml")),
                             objective=score)
    study = load_study(result.study, workdir / "warm.journal")
    assert [t.params for t in study.trials[:2]] == [{"x": 7.0, "kind": "b"},
                                                    {"x": 2.5, "kind": "a"}]
    assert result.best_trial == 0 and result.best_value == 0.0 and result.n_complete == 4
    assert [bool(t.user_attrs.get("enqueued")) for t in study.trials] == [True, True, False,
                                                                          False]
    _, runs = runs_of(tracking_uri, "warm-enqueue")
    tagged = sorted(int(r.data.tags["trial_number"]) for r in runs
                    if r.data.tags.get("enqueued") == "true")
    assert tagged == [0, 1]
    # Resuming (a larger budget extends the finished study) does not queue them again.
    more = tuner.run_study(space, opts(workdir, trials=6,
                                       enqueue_file=str(workdir / "known.yaml")),
                           objective=score)
    study = load_study(result.study, workdir / "warm.journal")
    assert more.n_complete == 6 and sum(bool(t.user_attrs.get("enqueued"))
                                        for t in study.trials) == 2


def test_an_exported_best_configuration_is_enqueued(workdir: Path) -> None:
    space = tuner.load_space(write_space(workdir))
    first = tuner.run_study(space, opts(workdir, trials=1, tracking=False, study_name="one"))
    exported = tuner.export("one", workdir / "best.yaml", str(workdir / "warm.journal"))
    again = tuner.run_study(space, opts(workdir, trials=2, study_name="two", seed=5,
                                        enqueue_file=str(exported)))
    study = load_study("two", workdir / "warm.journal")
    assert study.trials[0].user_attrs["params"] == first.best_params
    assert study.trials[0].user_attrs["enqueued"] is True
    assert again.n_complete == 2


def test_a_new_study_starts_from_an_old_ones_trials_that_fit_a_narrowed_space(
        workdir: Path) -> None:
    old = tuner.run_study(tuner.parse_space(TOY.replace("LOW", "0.0")),
                          opts(workdir, trials=6, study_name="old"), objective=score)
    narrowed = tuner.parse_space(TOY.replace("LOW", "5.0"))
    old_study = load_study("old", workdir / "warm.journal")
    fitting = [t for t in old_study.trials if t.params["x"] >= 5.0]
    result = tuner.run_study(narrowed, opts(workdir, trials=3, study_name="new",
                                            warm_start="old"), objective=score)
    new = load_study("new", workdir / "warm.journal")
    copied = [t for t in new.trials if "copied_from" in t.user_attrs]
    assert [t.user_attrs["copied_from"] for t in copied] == [f"old#{t.number}" for t in fitting]
    assert [t.value for t in copied] == [t.value for t in fitting]
    assert len(new.trials) == len(fitting) + 3  # copied trials do not use the budget
    assert new.user_attrs["tuner.warm_start"] == {
        "from": "old", "copied": len(fitting), "skipped": 6 - len(fitting)}
    assert any("warm start" in n for n in result.notes)
    assert old.n_complete == 6
    with pytest.raises(tuner.TunerError, match="no study 'nope'"):
        tuner.run_study(narrowed, opts(workdir, study_name="never", warm_start="nope"),
                        objective=score)
    assert "never" not in [s.study_name for s in
                           load_study("old", workdir / "warm.journal")._storage
                           .get_all_studies()]
    (workdir / "bad.yaml").write_text("just text")
    with pytest.raises(tuner.TunerError, match="expected a YAML list"):
        tuner.run_study(narrowed, opts(workdir, study_name="never",
                                       enqueue_file=str(workdir / "bad.yaml")), objective=score)
