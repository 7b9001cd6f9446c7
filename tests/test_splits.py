"""tuner's splits are scikit-learn's, row for row, without importing it (tuner.data._splits)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from tuner.data._splits import k_folds, split_off

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "digits_mlp.yaml"


def _labels(rng: np.random.Generator, n: int, classes: int, skew: float) -> np.ndarray:
    weights = np.exp(-skew * np.arange(classes))
    y = rng.choice(classes, size=n, p=weights / weights.sum())
    y[:2 * classes] = np.repeat(np.arange(classes), 2)  # every class at least twice
    return rng.permutation(y)


CASES = [(n, classes, skew, seed) for n, classes, skew, seed in (
    (40, 2, 0.0, 0), (41, 2, 2.0, 1), (150, 3, 0.0, 42), (1797, 10, 0.0, 0), (1437, 10, 0.3, 7),
    (97, 5, 1.0, 123), (1000, 2, 3.0, 2**31 - 1), (33, 4, 0.5, 5), (500, 7, 0.1, 9))]


@pytest.mark.parametrize(("n", "classes", "skew", "seed"), CASES)
@pytest.mark.parametrize("share", [0.1, 0.2, 0.25, 0.33])
def test_split_off_takes_the_rows_train_test_split_takes(n: int, classes: int, skew: float,
                                                         seed: int, share: float) -> None:
    y = _labels(np.random.default_rng(seed), n, classes, skew)
    rows = np.arange(n)
    for stratify in (None, y):
        try:
            expected = train_test_split(rows, test_size=share, random_state=seed,
                                        stratify=stratify)
        except ValueError as exc:
            with pytest.raises(ValueError) as caught:
                split_off(n, share, seed, stratify)
            assert str(caught.value).split(".")[0] in str(exc)
            continue
        kept, taken = split_off(n, share, seed, stratify)
        np.testing.assert_array_equal(kept, expected[0])
        np.testing.assert_array_equal(taken, expected[1])


@pytest.mark.parametrize(("n", "classes", "skew", "seed"), CASES)
@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_k_folds_are_kfold_and_stratified_kfold(n: int, classes: int, skew: float, seed: int,
                                                k: int) -> None:
    y = _labels(np.random.default_rng(seed + 1), n, classes, skew)
    for stratify, splitter in ((None, KFold(k, shuffle=True, random_state=seed)),
                               (y, StratifiedKFold(k, shuffle=True, random_state=seed))):
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            expected = list(splitter.split(np.zeros((n, 1)), y))
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            folds = k_folds(n, k, seed, stratify)
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
        assert len(folds) == len(expected) == k
        for (train, test), (train_sk, test_sk) in zip(folds, expected, strict=True):
            np.testing.assert_array_equal(train, train_sk)
            np.testing.assert_array_equal(test, test_sk)


def test_impossible_splits_say_what_scikit_learn_says() -> None:
    y = np.array([0] * 39 + [1])
    with pytest.raises(ValueError, match="least populated classes in y have only 1 member"):
        split_off(40, 0.2, 0, y)
    with pytest.raises(ValueError, match="resulting train set will be empty"):
        split_off(1, 0.2, 0)
    with pytest.raises(ValueError, match="test_size = 2 should be greater or equal to the "
                                         "number of classes = 3"):
        split_off(9, 0.2, 0, np.repeat([0, 1, 2], 3))
    with pytest.raises(ValueError, match="n_splits=5 greater than the number of samples"):
        k_folds(4, 5, 0)
    with pytest.raises(ValueError, match="n_splits=5 cannot be greater than the number of "
                                         "members in each class"):
        k_folds(8, 5, 0, np.repeat([0, 1], 4))


def test_loading_and_splitting_the_default_data_imports_no_scikit_learn() -> None:
    """scikit-learn (with SciPy's statistics) is most of a second of every study's start; the
    default space's data, its splits, folds and metrics need none of it."""
    code = (
        "import sys\n"
        "from tuner import load_space\n"
        "from tuner.data import load_dataset, reshuffled_folds\n"
        "from tuner.data._metrics import classification_metrics\n"
        "import numpy as np\n"
        f"spec = load_space({str(SPACE)!r}).data\n"
        "data = load_dataset(spec)\n"
        "folds = reshuffled_folds(spec, 4, 0)\n"
        "classification_metrics(data.val.y.numpy(), np.zeros((len(data.val), 10)))\n"
        "print(len(data.train), len(data.val), len(data.test), len(folds),\n"
        "      sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["1077", "360", "360", "4", "[]"], done.stdout + done.stderr


def test_digits_read_without_scikit_learn_are_load_digits() -> None:
    from sklearn.datasets import load_digits

    from tuner.data._sources import _bundled

    raw, expected = _bundled("digits"), load_digits()
    assert raw.x.dtype == np.float64 and raw.x.shape == (1797, 64)
    np.testing.assert_array_equal(raw.x, expected.data)
    np.testing.assert_array_equal(raw.y, expected.target)
    assert raw.class_names == tuple(str(c) for c in expected.target_names)
