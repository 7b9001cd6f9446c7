"""Data sources (files the tests write), missing values, imbalance, splits, cross-validation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.class_weight import compute_class_weight

from tests.helpers import metric_history, runs_of
from tuner import RunOptions, Space, parse_space, run_study
from tuner.data import Dataset, clean, fit_preprocessor, load_dataset, read_source

pytestmark = pytest.mark.usefixtures("one_thread")


def space(data: str, extra: str = "") -> Space:
    return parse_space(f"data: {data}\n{extra}params:\n  units: 8\n  lr: 0.01\n")


def dataset(data: str) -> Dataset:
    return load_dataset(space(data).data)


def table_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.normal(40, 10, n).round(1),
        "visits": rng.integers(0, 9, n),
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "id": np.arange(n),
        "label": rng.choice(["yes", "no"], n, p=[0.4, 0.6]),
    })


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                        *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def images(seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny MNIST-like set: 5x5 images whose bright row is the label."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", 60), ("test", 20)):
        y = np.arange(n) % 3
        x = rng.integers(0, 40, (n, 5, 5))
        x[np.arange(n), y] = 255
        out[f"x_{part}"], out[f"y_{part}"] = x.astype(np.uint8), y.astype(np.uint8)
    return out


# --- sources ---------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_idx_files_keep_their_own_test_part_and_scale_pixels(workdir: Path, compress: bool) -> None:
    arrays = images()
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    (workdir / "mnist").mkdir()
    for key, name in names.items():
        write_idx(workdir / "mnist" / name, arrays[key], compress)
    data = dataset("{source: idx, path: mnist, val_fraction: 0.25}")
    assert (len(data.train), len(data.val), len(data.test)) == (45, 15, 20)
    assert data.n_features == 25 and data.classes == ("0", "1", "2")
    # The file's test images, in order, scaled to [0, 1] as the Keras recipe does.
    expected = arrays["x_test"].reshape(20, 25) / 255.0
    assert np.allclose(data.test.x.numpy(), expected, atol=1e-6)
    assert data.test.y.tolist() == arrays["y_test"].tolist()


def test_a_keras_npz_is_read_like_the_idx_files(workdir: Path) -> None:
    arrays = images(seed=1)
    np.savez(workdir / "mnist.npz", **arrays)
    data = dataset("{source: npz, path: mnist.npz}")
    assert len(data.test) == 20 and len(data.train) + len(data.val) == 60
    assert data.test.y.tolist() == arrays["y_test"].tolist()
    assert float(data.train.x.max()) == pytest.approx(1.0)
    assert data.example.shape[1] == 25 and data.example.max() == 255  # raw pixels


def test_csv_and_parquet_give_the_same_tensors_with_one_hot_categories(workdir: Path) -> None:
    frame = table_frame()
    frame.to_csv(workdir / "t.csv", index=False)
    frame.to_parquet(workdir / "t.parquet")
    spec = "target: label, task: classification, drop: [id]"
    csv = dataset(f"{{source: csv, path: t.csv, {spec}}}")
    parquet = dataset(f"{{source: parquet, path: t.parquet, {spec}}}")
    assert csv.n_features == 2 + 3  # age, visits, one column per city; id dropped
    assert csv.classes == ("no", "yes")
    for a, b in ((csv.train, parquet.train), (csv.val, parquet.val), (csv.test, parquet.test)):
        assert np.allclose(a.x.numpy(), b.x.numpy()) and a.y.tolist() == b.y.tolist()
    # Numeric columns are standardised with the training rows' statistics only.
    train = csv.train.x.numpy()
    assert np.allclose(train[:, :2].mean(axis=0), 0, atol=1e-6)
    assert np.allclose(train[:, :2].std(axis=0), 1, atol=1e-3)
    assert not np.allclose(csv.test.x.numpy()[:, :2].mean(axis=0), 0, atol=1e-3)
    assert set(np.unique(train[:, 2:])) == {0.0, 1.0}  # one-hot, not scaled
    assert csv.test_rows is not None and len(csv.test_rows) == len(csv.test)


def test_a_feature_list_and_declared_categorical_columns(workdir: Path) -> None:
    table_frame().to_csv(workdir / "t.csv", index=False)
    data = dataset("{source: csv, path: t.csv, target: label, task: classification, "
                   "features: [visits, city], categorical: [visits]}")
    assert data.n_features == 9 + 3  # visits as categories 0..8, and the cities


def test_synthetic_sets_follow_their_declared_shape_and_imbalance() -> None:
    data = dataset("{source: synthetic, synthetic: {samples: 2000, features: 6, informative: 3, "
                   "classes: 3, weights: [0.7, 0.2, 0.1], seed: 4}}")
    assert data.n_features == 6 and data.n_outputs == 3
    y = np.concatenate([data.train.y.numpy(), data.val.y.numpy(), data.test.y.numpy()])
    assert np.allclose(np.bincount(y) / len(y), [0.7, 0.2, 0.1], atol=0.02)
    regression = dataset("{source: synthetic, task: regression, "
                         "synthetic: {samples: 300, features: 4, noise: 0.5}}")
    assert regression.task == "regression" and regression.n_outputs == 1
    assert len(regression.train) + len(regression.val) + len(regression.test) == 300


def test_stratified_splits_keep_class_shares() -> None:
    data = dataset("{source: synthetic, synthetic: {samples: 1000, features: 4, "
                   "weights: [0.9, 0.1]}, val_fraction: 0.2, test_fraction: 0.2}")
    for split in (data.train, data.val, data.test):
        assert np.bincount(split.y.numpy())[1] / len(split) == pytest.approx(0.1, abs=0.006)


def test_a_rewritten_file_is_read_again(workdir: Path) -> None:
    frame = table_frame()
    frame.to_csv(workdir / "t.csv", index=False)
    first = dataset("{source: csv, path: t.csv, target: label, task: classification}")
    frame.iloc[:60].to_csv(workdir / "t.csv", index=False)
    second = dataset("{source: csv, path: t.csv, target: label, task: classification}")
    assert first.report["rows"] == 120 and second.report["rows"] == 60


# --- missing values --------------------------------------------------------------------------

ORDERED = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0, 10.0, np.nan],
                        "c": ["a", "b", "b", np.nan, "b", "a"],
                        "y": [0, 1, 0, 1, 0, 1]})


def _impute(strategy: str, fill: str = "") -> tuple[np.ndarray, list[str]]:
    """The imputed (unscaled) numeric column and the categories, fitted on all six rows."""
    spec = space(f"{{source: csv, path: unused.csv, target: y, task: classification, "
                 f"missing: {strategy}{fill}}}").data
    from tuner.data import RawData

    table = clean(RawData(ORDERED.copy(), ORDERED["y"], "unused.csv", "y"), spec)
    pre = fit_preprocessor(table, table.x, spec)
    numeric = pre.pipeline.named_transformers_["numeric"]
    scaled = pre.transform(table.x)
    x = scaled[:, 0] * numeric.named_steps["scale"].scale_[0] + numeric.named_steps["scale"].mean_[0]
    onehot = pre.pipeline.named_transformers_["categorical"].named_steps["onehot"]
    names = list(onehot.categories_[0])
    categories = [names[i] for i in scaled[:, 1:].argmax(axis=1)]
    return x, categories


@pytest.mark.parametrize(("strategy", "fill", "numbers", "categories"), [
    ("mean", "", [4.25, 4.25], "b"),
    ("median", "", [3.0, 3.0], "b"),
    ("most_frequent", "", [1.0, 1.0], "b"),  # a tie: the smallest value, as scikit-learn does
    ("constant", ", fill_value: -1", [-1.0, -1.0], "missing"),
    ("interpolate", "", [3.0, 10.0], "b"),  # between rows 2 and 4; the last row takes row 5's
])
def test_each_imputation_strategy(strategy: str, fill: str, numbers: list[float],
                                  categories: str) -> None:
    x, cats = _impute(strategy, fill)
    assert x[[2, 5]] == pytest.approx(numbers)
    assert x[[0, 1, 3, 4]] == pytest.approx([1.0, 2.0, 4.0, 10.0])
    assert cats[3] == categories


def test_drop_removes_rows_with_missing_values_and_reports_them(workdir: Path) -> None:
    frame = table_frame()
    frame.loc[[3, 50], "age"] = np.nan
    frame.loc[7, "city"] = None
    frame.loc[9, "label"] = None  # no target: dropped whatever the strategy
    frame.to_csv(workdir / "t.csv", index=False)
    data = dataset("{source: csv, path: t.csv, target: label, task: classification, "
                   "missing: drop}")
    report = data.report
    assert (report["rows"], report["rows_missing_target"], report["missing_cells"],
            report["rows_dropped"], report["cells_imputed"]) == (120, 1, 3, 3, 0)
    assert len(data.train) + len(data.val) + len(data.test) == 116
    assert data.test_rows is not None and not set(data.test_rows) & {3, 7, 9, 50}


def test_imputation_is_fitted_on_the_training_rows_only(workdir: Path) -> None:
    frame = table_frame()
    frame.loc[0, "age"] = np.nan
    frame.to_csv(workdir / "t.csv", index=False)
    data = dataset("{source: csv, path: t.csv, target: label, task: classification, "
                   "missing: mean}")
    assert data.report["cells_imputed"] == 1
    assert data.preprocessor is not None
    numeric = data.preprocessor.pipeline.named_transformers_["numeric"]
    scale = numeric.named_steps["scale"]
    train_ages = data.train.x.numpy()[:, 0] * scale.scale_[0] + scale.mean_[0]
    imputed = numeric.named_steps["impute"].statistics_[0]
    assert imputed == pytest.approx(train_ages.mean(), rel=1e-5)
    assert imputed != pytest.approx(frame["age"].mean(), rel=1e-5)


# --- imbalance -------------------------------------------------------------------------------

IMBALANCED = "{source: synthetic, synthetic: {samples: 600, features: 5, weights: [0.85, 0.15]}"


def test_oversampling_balances_the_training_split_only() -> None:
    plain = dataset(IMBALANCED + "}")
    data = dataset(IMBALANCED + ", oversample: true}")
    counts = np.bincount(data.train.y.numpy())
    assert counts[0] == counts[1] == np.bincount(plain.train.y.numpy()).max()
    assert data.report["rows_oversampled"] == counts[1] - np.bincount(plain.train.y.numpy())[1]
    assert data.val.y.tolist() == plain.val.y.tolist()
    assert data.test.y.tolist() == plain.test.y.tolist()
    # repeated rows are copies of the minority's own training rows
    minority = {tuple(r) for r in plain.train.x.numpy()[plain.train.y.numpy() == 1]}
    assert {tuple(r) for r in data.train.x.numpy()[data.train.y.numpy() == 1]} == minority


def test_balanced_and_explicit_class_weights() -> None:
    data = dataset(IMBALANCED + ", class_weight: balanced}")
    y = data.train.y.numpy()
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    assert data.class_weights == pytest.approx(tuple(expected))
    assert dataset(IMBALANCED + ", class_weight: {'1': 4}}").class_weights == (1.0, 4.0)
    assert dataset(IMBALANCED + ", class_weight: [2, 3]}").class_weights == (2.0, 3.0)


def test_class_weighting_raises_minority_recall_on_an_imbalanced_set() -> None:
    from tuner.space import TrialConfig
    from tuner.training import fit

    base = ("{source: synthetic, synthetic: {samples: 3000, features: 8, informative: 3, "
            "weights: [0.95, 0.05], noise: 0.02, seed: 1}")
    recall = {}
    for weight in ("none", "balanced"):
        data = dataset(f"{base}, class_weight: {weight}}}")
        result = fit(TrialConfig.from_params({"units": 32, "lr": 0.003}), data, max_epochs=3,
                     early_stopping=None, seed=0)
        recall[weight] = result.history[-1]["val_balanced_accuracy"]
    assert recall["balanced"] > recall["none"] + 0.05


# --- cross-validation ------------------------------------------------------------------------

def test_folds_partition_train_and_validation_with_their_own_preprocessing() -> None:
    data = dataset("{source: wine, cv_folds: 4}")
    assert len(data.folds) == 4
    sizes = [len(f.val) for f in data.folds]
    assert sum(sizes) == len(data.train) + len(data.val)
    for fold in data.folds:
        assert len(fold.test) == 0
        assert len(fold.train) + len(fold.val) == sum(sizes)
        assert np.allclose(fold.train.x.numpy().mean(axis=0), 0, atol=1e-5)  # fitted per fold
    # every row of train + validation is validated exactly once
    seen = np.concatenate([f.val.x.numpy() * f.feature_scaler.scale + f.feature_scaler.mean
                           for f in data.folds])
    rest = np.concatenate([s.x.numpy() * data.feature_scaler.scale + data.feature_scaler.mean
                           for s in (data.train, data.val)])
    assert sorted(map(tuple, np.round(seen, 3))) == sorted(map(tuple, np.round(rest, 3)))


def test_a_cross_validated_study_logs_each_fold_and_the_data_report(
        workdir: Path, tracking_uri: str) -> None:
    frame = table_frame(150)
    frame.loc[[2, 40], "age"] = np.nan
    frame.to_csv(workdir / "t.csv", index=False)
    text = ("data: {source: csv, path: t.csv, target: label, task: classification, "
            "missing: median, cv_folds: 3}\nobjective: {metric: f1_macro}\n"
            "training: {max_epochs: 2, early_stopping: false}\n"
            "study: {strategy: random, pruner: none}\nparams:\n  units: 8\n"
            "  lr: {type: float, low: 1e-3, high: 1e-2}\n")
    result = run_study(parse_space(text, file="cv.yaml", default_name="cv"), RunOptions(
        trials=1, storage=str(workdir / "s.journal"), tracking_uri=tracking_uri,
        experiment="cv-study", log_model=False, progress=False, threads=1, views=False))
    parents, trials = runs_of(tracking_uri, "cv-study")
    run = trials[0]
    folds = sorted(metric_history(tracking_uri, run.info.run_id, "cv_val_f1_macro"),
                   key=lambda m: m.step)
    assert [m.step for m in folds] == [0, 1, 2]
    assert result.best_value == pytest.approx(np.mean([m.value for m in folds]))
    assert run.data.metrics["objective"] == pytest.approx(result.best_value)
    for i in range(3):
        curve = metric_history(tracking_uri, run.info.run_id, f"fold{i}_val_loss")
        assert sorted(m.step for m in curve) == [1, 2]
    report = parents[0].data.metrics
    assert report["data_missing_cells"] == 2 and report["data_cells_imputed"] == 2
    assert report["data_rows"] == 150 and report["data_rows_dropped"] == 0


def test_a_source_reads_what_the_space_declares(workdir: Path) -> None:
    table_frame().to_csv(workdir / "t.csv", index=False)
    raw = read_source(space("{source: csv, path: t.csv, target: label, "
                            "task: classification}").data)
    assert raw.origin == "t.csv" and raw.target == "label" and len(raw.x) == 120
