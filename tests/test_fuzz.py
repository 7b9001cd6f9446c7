"""Generated bad input (Hypothesis): space files and tables. Every input is either refused with a
one-line `SpaceError` / `DataError` naming the file (exit code 2 in the CLI, before anything is
created), or accepted and usable: its parameters sample, its grid counts, its rows are finite.
Nothing else may escape: an internal exception is exit code 1 with a bare Python message.

The parser and the loader run in this process (a subprocess per example would cost seconds);
tests/test_bad_data.py and tests/test_cli.py show that these exceptions are exit code 2."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner import DataError, SpaceError, TunerError, parse_space
from tuner.data import load_dataset
from tuner.space import TrialConfig

FUZZ = settings(max_examples=400, deadline=3000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Values that break naive code: wrong types, non-finite and huge numbers, empty containers.
odd_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 20), st.sampled_from([0, -1, 10**12, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "x", "1e-3", "relu"]))
odd_values = st.recursive(odd_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "low"]), inner,
                                                 max_size=2)), max_leaves=4)

PARAM_NAMES = ["n_layers", "units", "activation", "dropout", "optimizer", "lr", "momentum",
               "batch_size", "nesterov", "width"]
PARAM_KEYS = ["type", "low", "high", "log", "step", "choices", "value", "when", "per_layer",
              "grid", "grid_points"]


@st.composite
def sane_parameter(draw: st.DrawFn, name: str, names: list[str]) -> Any:
    """A definition that may well be valid: bounds, choices and extra keys near the real ones."""
    kind = draw(st.sampled_from(["float", "int", "categorical", "fixed"]))
    spec: dict[str, Any] = {"type": kind}
    if kind == "float":
        low = draw(st.sampled_from([0.0, 1e-4, 0.1, 0.5]))
        spec.update(low=low, high=low + draw(st.sampled_from([0.0, 0.3, 0.49, 1e6])))
    elif kind == "int":
        low = draw(st.sampled_from([1, 2, 8]))
        spec.update(low=low, high=low + draw(st.sampled_from([0, 1, 2, 56, 10**6])))
    elif kind == "categorical":
        spec["choices"] = draw(st.sampled_from([["relu", "tanh"], ["adam", "sgd"], [1, 2, 3],
                                                [True, False], [0.1, "x", None]]))
    else:
        spec["value"] = draw(st.sampled_from([1, 0.5, "relu", True, "adam"]))
    extras = {
        "when": st.sampled_from(names).flatmap(lambda parent: st.fixed_dictionaries(
            {parent: st.sampled_from(["relu", "sgd", 1, 2, True, [1, 2], "adam"])}))
        if names else st.just(None),
        "per_layer": st.sampled_from([*names, "n_layers"]),
        "grid": st.sampled_from([[1], [0.1, 0.2], [2, 3], []]),
        "grid_points": st.sampled_from([1, 2, 5, 1000, 0]),
        "log": st.booleans(), "step": st.sampled_from([1, 0.1, 2])}
    for key in draw(st.lists(st.sampled_from(sorted(extras)), max_size=2, unique=True)):
        value = draw(extras[key])
        if value is not None:
            spec[key] = value
    return spec


@st.composite
def parameter(draw: st.DrawFn, names: list[str]) -> Any:
    kind = draw(st.sampled_from(["float", "int", "categorical", "fixed", None, "odd"]))
    if kind is None:
        return draw(odd_scalars)  # a plain value: fixed
    spec: dict[str, Any] = {} if kind == "odd" else {"type": kind}
    if kind in ("float", "int"):
        low = draw(st.one_of(st.integers(-2, 40), st.floats(-1, 1), odd_scalars))
        spec.update(low=low, high=draw(st.one_of(st.integers(-2, 70), st.floats(0, 2),
                                                 odd_scalars)))
    if kind == "categorical":
        spec["choices"] = draw(st.one_of(st.lists(odd_scalars, max_size=4), odd_values))
    for key in draw(st.lists(st.sampled_from(PARAM_KEYS), max_size=3, unique=True)):
        if key == "when" and names:
            spec[key] = {draw(st.sampled_from(names)): draw(st.one_of(odd_scalars,
                                                                     st.lists(odd_scalars)))}
        elif key == "per_layer":
            spec[key] = draw(st.one_of(st.sampled_from(names or ["n_layers"]), odd_scalars))
        elif key == "grid_points":
            spec[key] = draw(st.one_of(st.integers(-1, 5), odd_scalars))
        else:
            spec[key] = draw(odd_values)
    return spec


@st.composite
def space_documents(draw: st.DrawFn) -> dict[str, Any]:
    sane = draw(st.integers(0, 3)) > 0  # most documents are near-valid: deeper code runs
    custom = draw(st.integers(0, 3)) > 0 if sane else draw(st.booleans())
    doc: dict[str, Any] = {"name": draw(st.sampled_from(["fz", "a b"] if sane
                                                        else ["fz", "", "../x", "a b"]))}
    if custom:
        doc["model"] = "custom"
    names = draw(st.lists(st.sampled_from(PARAM_NAMES), min_size=int(sane), max_size=5,
                          unique=True))
    params: dict[str, Any] = {}
    for i, name in enumerate(names):
        others = names[:i] + names[i + 1:]
        params[name] = draw(sane_parameter(name, names[:i]) if sane
                            else st.one_of(sane_parameter(name, names[:i]), parameter(others)))
    doc["params"] = params if sane or draw(st.integers(0, 9)) else draw(odd_values)
    if sane:
        doc["study"] = {"strategy": draw(st.sampled_from(["grid", "tpe", "random"])),
                        "grid_points": draw(st.integers(1, 4))}
        doc["data"] = {"source": "iris"}
        return doc
    sections = {
        "data": st.fixed_dictionaries({}, optional={
            "source": st.sampled_from(["iris", "digits", "csv", "synthetic", "npz", "nope"]),
            "val_fraction": odd_scalars, "test_fraction": odd_scalars, "cv_folds": odd_scalars,
            "seed": odd_scalars, "task": st.sampled_from(["classification", "regression", 3]),
            "class_weight": odd_values, "synthetic": odd_values}),
        "training": st.fixed_dictionaries({}, optional={
            "max_epochs": odd_scalars, "loss": odd_scalars, "early_stopping": odd_values}),
        "study": st.fixed_dictionaries({}, optional={
            "strategy": st.sampled_from(["grid", "tpe", "nsga2", "x"]), "trials": odd_scalars,
            "grid_points": odd_scalars, "pruner": odd_values, "seed": odd_scalars}),
        "objective": st.fixed_dictionaries({}, optional={
            "metric": st.sampled_from(["accuracy", "rmse", "params", "score"]),
            "direction": odd_scalars}),
        "objectives": st.lists(st.sampled_from(["accuracy", "params", "latency"]), max_size=3),
        "constraints": odd_values, "enqueue": odd_values,
    }
    for key in draw(st.lists(st.sampled_from(sorted(sections)), max_size=4, unique=True)):
        doc[key] = draw(sections[key])
    return doc


def _check_usable(text: str) -> None:
    """Parse; a refusal must be one line naming the file, an accepted space must work."""
    try:
        space = parse_space(text, file="fuzz.yaml")
    except SpaceError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("fuzz.yaml"), message
        return
    # Accepted: its grid counts (or refuses in one line), its parameters sample and train.
    size = space.params.grid_size()
    assert size is None or size >= 1
    try:
        space.params.grid_target(3, space.file)
    except SpaceError as exc:
        assert "\n" not in str(exc) and "grid has" in str(exc)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        params = space.params.suggest(study.ask())
        assert all(p.contains(params[p.name]) for p in space.params if p.name in params)
        if space.model == "mlp":
            config = TrialConfig.from_params(params)
            assert len(config.units) >= 1 and all(u >= 1 for u in config.units)
            assert math.isfinite(config.lr) and config.batch_size >= 1


@FUZZ
@given(space_documents())
def test_generated_space_files_are_refused_in_one_line_or_usable(doc: dict[str, Any]) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _check_usable(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(st.lists(st.sampled_from([*"{}[]:,-&*!|>'\"#%@` \n\t\\ab1.eE<", "params:", "lr:",
                                 "type:", "<<:", "&a", "*a", "!!", "\n  "]),
                max_size=80).map("".join))
def test_generated_yaml_text_is_refused_in_one_line_or_usable(text: str) -> None:
    _check_usable(text)


SECRET = "s3cret-cell"  # in cells only: a message may name a column, never quote a cell


@st.composite
def tables(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows = draw(st.integers(0, 30))
    cells = {
        "num": st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf")),
                         st.just(-float("inf")), st.just(1e308)),
        "int": st.integers(-5, 5),
        "text": st.sampled_from(["a", "b", "", SECRET, "1.5", "inf"]),
        "bool": st.booleans(),
    }
    columns: dict[str, list[Any]] = {}
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(sorted(cells)))
        columns[f"c{i}_{kind}"] = draw(st.lists(cells[kind], min_size=rows, max_size=rows))
    frame = pd.DataFrame(columns)
    target = draw(st.sampled_from([*frame.columns, "absent"]))
    spec: dict[str, Any] = {"source": "csv", "path": "t.csv", "target": target,
                            "task": draw(st.sampled_from(["classification", "regression"]))}
    options = {"missing": st.sampled_from(["drop", "mean", "median", "most_frequent",
                                           "constant", "interpolate"]),
               "oversample": st.booleans(), "class_weight": st.just("balanced"),
               "cv_folds": st.integers(2, 3),
               "features": st.lists(st.sampled_from(list(frame.columns)), min_size=1,
                                    max_size=2, unique=True),
               "categorical": st.lists(st.sampled_from(list(frame.columns)), max_size=1)}
    for key in draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True)):
        spec[key] = draw(options[key])
    return frame, spec


@FUZZ
@given(tables())
def test_generated_tables_load_finite_or_are_refused_naming_file_and_column(
        tmp_path: Path, table: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    frame, data = table
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = {**data, "path": str(tmp_path / "t.csv")}
    try:
        space = parse_space(yaml.safe_dump({"data": data, "params": {"lr": 0.01}}), file="t.yaml")
    except SpaceError as exc:  # e.g. class_weight with a regression task
        assert "\n" not in str(exc)
        return
    try:
        dataset = load_dataset(space.data)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and SECRET not in message, message
        assert message.startswith(str(tmp_path / "t.csv")), message
        return
    except TunerError as exc:  # any other one-line refusal is fine too
        assert "\n" not in str(exc)
        return
    for split in (dataset.train, dataset.val, dataset.test, *(f.train for f in dataset.folds)):
        assert len(split) > 0 and bool(np.isfinite(split.x.numpy()).all())
        assert bool(np.isfinite(split.y.numpy().astype(float)).all())


def test_the_classes_fuzzing_found_are_refused_naming_the_key(tmp_path: Path) -> None:
    """Each class found by the generators above, as a plain example."""
    cases = [
        ("params:\n  activation: {type: categorical, choices: [relu, tanh]}\n"
         "  units: {type: int, low: 8, high: 16, per_layer: activation}\n",
         "params.units.per_layer", "must name an int parameter"),
        ("params:\n  optimizer: {type: categorical, choices: [adam, sgd]}\n"
         "  n_layers: {type: int, low: 1, high: 3}\n"
         "  units: {type: int, low: 8, high: 16, per_layer: n_layers, when: {optimizer: sgd}}\n",
         "params.units.when", "cannot be combined with per_layer"),
        ("params:\n  nesterov: {type: categorical, choices: [true, false]}\n"
         "  units: {type: int, low: 8, high: 16, per_layer: nesterov}\n",
         "params.units.per_layer", "must name an int parameter"),
        ("data: {source: iris, val_fraction: .nan}\nparams: {lr: 0.1}\n",
         "data.val_fraction", "must be a finite number"),
        ("params:\n  optimizer: {type: categorical, choices: [adam, sgd]}\n"
         "  momentum: {type: float, low: 0, high: 0.9, when: {optimizer: [[sgd]]}}\n",
         "params.momentum.when", "values must be scalars"),
        ("params:\n  dropout: {type: float, low: 0.1, high: 0.4, step: 1}\n",
         "params.dropout.step", "is not a whole number of steps"),  # Optuna shrank it silently
    ]
    for text, key, words in cases:
        with pytest.raises(SpaceError) as caught:
            parse_space(text, file="s.yaml")
        assert caught.value.key_path == key and words in str(caught.value), str(caught.value)
    frame = pd.DataFrame({"age": [1.0, float("inf"), 3.0, 4.0] * 5, "label": ["a", "b"] * 10})
    frame.to_csv(tmp_path / "t.csv", index=False)
    spec = parse_space(f"data: {{source: csv, path: {tmp_path / 't.csv'}, target: label, "
                       "task: classification}\nparams: {lr: 0.1}\n").data
    with pytest.raises(DataError, match=r"t\.csv: column 'age' has 5 infinite values"):
        load_dataset(spec)
    # finite, but infinite once standardised as a 32-bit float
    frame.assign(age=[0.0] * 19 + [1e308]).to_csv(tmp_path / "big.csv", index=False)
    spec = parse_space(f"data: {{source: csv, path: {tmp_path / 'big.csv'}, target: label, "
                       "task: classification, seed: 3}\nparams: {lr: 0.1}\n").data
    with pytest.raises(DataError, match=r"big\.csv: column 'age' has values too large"):
        load_dataset(spec)
    images = np.zeros((6, 2, 2))
    images[1, 0, 0] = np.nan
    np.savez(tmp_path / "m.npz", x_train=images, y_train=np.arange(6) % 2, x_test=images,
             y_test=np.arange(6) % 2)
    spec = parse_space(f"data: {{source: npz, path: {tmp_path / 'm.npz'}}}\n"
                       "params: {lr: 0.1}\n").data
    with pytest.raises(DataError, match=r"m\.npz: train images hold 1 values that are not fin"):
        load_dataset(spec)
