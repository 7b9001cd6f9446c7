"""Bad data: one line naming the file and column, exit code 2, and nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import subprocess_env, tuner_command, write_space
from tuner import DataError, RunOptions, SpaceError, parse_space, run_study
from tuner.data import load_dataset


def load(data: str) -> None:
    load_dataset(parse_space(f"data: {data}\nparams:\n  lr: 0.01\n").data)


def frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"age": rng.normal(40, 9, n), "city": rng.choice(["a", "b"], n),
                         "label": rng.choice(["yes", "no"], n), "price": rng.normal(9, 2, n)})


def tuner(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([*tuner_command(), *args], cwd=cwd, env=subprocess_env(uri),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("case", "data", "words"), [
    ("missing file", "{source: csv, path: nowhere.csv, target: label, task: classification}",
     ["nowhere.csv: file not found"]),
    ("text target for regression", "{source: csv, path: t.csv, target: city, task: regression}",
     ["t.csv: column 'city'", "regression target must be numeric; 40 of its 40 values"]),
])
def test_the_cli_exits_2_with_one_line_and_writes_nothing(
        workdir: Path, tracking_uri: str, case: str, data: str, words: list[str]) -> None:
    frame().to_csv(workdir / "t.csv", index=False)
    space = write_space(workdir, f"data: {data}\ntraining: {{max_epochs: 1}}\nparams:\n  lr: 0.01\n",
                        "bad_data.yaml")
    experiment = f"never-{case.replace(' ', '-')}"
    result = tuner(["run", str(space), "--experiment", experiment], workdir, tracking_uri)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (workdir / "tuner.journal").exists()
    assert MlflowClient(tracking_uri).get_experiment_by_name(experiment) is None


def test_the_api_fails_before_any_study_or_run_exists(workdir: Path, tracking_uri: str) -> None:
    data = frame()
    data["blank"] = np.nan
    data.to_csv(workdir / "t.csv", index=False)
    space = parse_space("data: {source: csv, path: t.csv, target: label, task: classification}\n"
                        "params:\n  lr: 0.01\n")
    with pytest.raises(DataError, match=r"t\.csv: column 'blank' has no values \(all missing\)"):
        run_study(space, RunOptions(storage=str(workdir / "s.journal"), tracking_uri=tracking_uri,
                                    experiment="never-blank", progress=False))
    assert not (workdir / "s.journal").exists()
    assert MlflowClient(tracking_uri).get_experiment_by_name("never-blank") is None


def _write_garbage(folder: Path) -> None:
    (folder / "garbage.parquet").write_bytes(b"this is not a parquet file at all\n" * 20)
    (folder / "garbage.npz").write_bytes(b"\x00\x01not a zip archive")
    np.savez(folder / "partial.npz", x_train=np.zeros((4, 2, 2)), y_train=np.zeros(4, int))
    (folder / "idx").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (folder / "idx" / name).write_bytes(b"\x08\x08\x08\x08 definitely not IDX")


@pytest.mark.parametrize(("case", "data", "prepare", "words"), [
    ("unreadable parquet", "{source: parquet, path: garbage.parquet, target: label, "
     "task: classification}", None, ["garbage.parquet: cannot read as PARQUET"]),
    ("unreadable npz", "{source: npz, path: garbage.npz}", None,
     ["garbage.npz: cannot read as .npz"]),
    ("npz without its test part", "{source: npz, path: partial.npz}", None,
     ["partial.npz: no array 'x_test'"]),
    ("not IDX", "{source: idx, path: idx}", None, ["train-images-idx3-ubyte", "not an IDX file"]),
    ("missing target column", "{source: csv, path: t.csv, target: outcome, "
     "task: classification}", None, ["t.csv: no target column 'outcome'", "age, city"]),
    ("unknown feature column", "{source: csv, path: t.csv, target: label, "
     "task: classification, features: [age, height]}", None,
     ["t.csv: data.features names column 'height'"]),
    ("single class", "{source: csv, path: t.csv, target: label, task: classification}",
     lambda f: f.assign(label="yes"), ["t.csv: column 'label' has a single class ('yes')"]),
    ("all NaN feature", "{source: csv, path: t.csv, target: label, task: classification}",
     lambda f: f.assign(age=np.nan), ["t.csv: column 'age' has no values (all missing)"]),
    ("undeclared missing values", "{source: csv, path: t.csv, target: label, "
     "task: classification}", lambda f: f.assign(age=f["age"].where(f.index % 9 > 0)),
     ["t.csv: column 'age' has 5 missing values", "set data.missing"]),
    ("nothing left after dropping", "{source: csv, path: t.csv, target: label, "
     "task: classification, missing: drop}", lambda f: f.assign(city=None),
     ["t.csv: column 'city' has no values"]),
    ("an empty split after dropping", "{source: csv, path: t.csv, target: price, "
     "task: regression, missing: drop}",
     lambda f: f.assign(age=f["age"].where(f.index < 2)),
     ["t.csv: cannot split 1 row (left after dropping 38 rows with missing values) into "
      "train and validation"]),
    ("every row dropped", "{source: csv, path: t.csv, target: price, task: regression, "
     "missing: drop}", lambda f: f.assign(age=f["age"].where(f.index < 20),
                                          city=f["city"].where(f.index >= 20)),
     ["t.csv: no rows left after dropping the 40 rows with missing values"]),
    ("unknown class weight", "{source: csv, path: t.csv, target: label, "
     "task: classification, class_weight: {maybe: 3}}", None,
     ["t.csv: data.class_weight names class 'maybe'", "no, yes"]),
    ("class weights of the wrong length", "{source: csv, path: t.csv, target: label, "
     "task: classification, class_weight: [1, 2, 3]}", None, ["3 weights for 2 classes"]),
    ("a class with one row", "{source: csv, path: t.csv, target: label, task: classification}",
     lambda f: f.assign(label=["rare"] + ["common"] * (len(f) - 1)),
     ["t.csv: cannot split 40 rows into train and test", "least populated class"]),
])
def test_bad_data_is_one_line_naming_file_and_column(workdir: Path, case: str, data: str,
                                                     prepare, words: list[str]) -> None:
    table = frame()
    (prepare(table) if prepare else table).to_csv(workdir / "t.csv", index=False)
    _write_garbage(workdir)
    with pytest.raises(DataError) as caught:
        load(data)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(("data", "key", "words"), [
    ("{source: csv, path: t.csv, task: regression}", "data.target", ["needs `target:`"]),
    ("{source: csv, path: t.csv, target: y}", "data.task", ["needs `task:`"]),
    ("{source: parquet, target: y, task: regression}", "data.path", ["needs `path:`"]),
    ("{source: csv, path: t.csv, target: y, task: regression, missing: guess}", "data.missing",
     ["'guess'", "interpolate"]),
    ("{source: csv, path: t.csv, target: y, task: regression, fill_value: 0}",
     "data.fill_value", ["missing: constant"]),
    ("{source: diabetes, oversample: true}", "data.oversample", ["classification"]),
    ("{source: npz, path: m.npz, test_fraction: 0.3}", "data.test_fraction", ["own test part"]),
    ("{source: idx, path: m, task: regression}", "data.task", ["classification data"]),
    ("{source: digits, cv_folds: 1}", "data.cv_folds", [">= 2"]),
    ("{source: digits, path: x.csv}", "data.path", ["unknown key 'path'"]),
    ("{source: iris, class_weight: [1, -2, 1]}", "data.class_weight", ["> 0"]),
    ("{source: synthetic, synthetic: {classes: 3, weights: [0.5, 0.5]}}",
     "data.synthetic.weights", ["3 positive class proportions"]),
    ("{source: csv, path: t.csv, target: y, task: regression, features: [a, y]}",
     "data.features", ["target column 'y'"]),
])
def test_a_bad_data_section_names_its_key_and_line(data: str, key: str, words: list[str]) -> None:
    with pytest.raises(SpaceError) as caught:
        parse_space(f"name: x\ndata: {data}\nparams:\n  lr: 0.01\n", file="s.yaml")
    assert caught.value.key_path == key and caught.value.line == 2
    for word in words:
        assert word in str(caught.value)
