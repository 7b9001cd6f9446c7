"""Every metric against scikit-learn's own implementation; losses and objective directions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from tuner import SpaceError, parse_space
from tuner.data import classification_metrics, load_dataset, log_softmax, regression_metrics
from tuner.space import METRICS, Loss, TrialConfig
from tuner.training import fit, predict

pytestmark = pytest.mark.usefixtures("one_thread")


# name -> scikit-learn's value from (labels, predicted labels, class probabilities)
REFERENCE = {
    "accuracy": lambda y, p, prob: skm.accuracy_score(y, p),
    "balanced_accuracy": lambda y, p, prob: skm.balanced_accuracy_score(y, p),
    "precision_macro": lambda y, p, prob: skm.precision_score(y, p, average="macro",
                                                              zero_division=0),
    "precision_weighted": lambda y, p, prob: skm.precision_score(y, p, average="weighted",
                                                                 zero_division=0),
    "recall_macro": lambda y, p, prob: skm.recall_score(y, p, average="macro", zero_division=0),
    "recall_weighted": lambda y, p, prob: skm.recall_score(y, p, average="weighted",
                                                           zero_division=0),
    "f1_macro": lambda y, p, prob: skm.f1_score(y, p, average="macro", zero_division=0),
    "f1_weighted": lambda y, p, prob: skm.f1_score(y, p, average="weighted", zero_division=0),
    "roc_auc": lambda y, p, prob: (skm.roc_auc_score(y, prob[:, 1]) if prob.shape[1] == 2
                                   else skm.roc_auc_score(y, prob, multi_class="ovr")),
    "log_loss": lambda y, p, prob: skm.log_loss(y, prob, labels=range(prob.shape[1])),
}
CLASSIFICATION = [m.name for m in METRICS.values() if m.task == "classification"]


def _logits(k: int, seed: int, never_predicted: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, 300)
    logits = rng.normal(size=(300, k)) * 2.0
    logits[np.arange(300), y] += 1.5  # better than chance, far from perfect
    if never_predicted is not None:
        logits[:, never_predicted] -= 50.0
    return y, logits


def test_every_classification_metric_has_a_reference() -> None:
    assert sorted(CLASSIFICATION) == sorted(REFERENCE)


@pytest.mark.parametrize("metric", CLASSIFICATION)
@pytest.mark.parametrize(("k", "never_predicted"), [(2, None), (4, None), (5, 3)],
                         ids=["binary", "multiclass", "class-never-predicted"])
def test_classification_metric_matches_scikit_learn(metric: str, k: int,
                                                    never_predicted: int | None) -> None:
    y, logits = _logits(k, seed=k, never_predicted=never_predicted)
    probs = np.exp(log_softmax(logits))
    expected = REFERENCE[metric](y, logits.argmax(axis=1), probs)
    assert classification_metrics(y, logits)[metric] == pytest.approx(expected, abs=1e-10)


def test_roc_auc_with_tied_scores_matches_scikit_learn() -> None:
    y, logits = _logits(3, seed=7)
    logits = np.round(logits)  # many equal probabilities: ties get average ranks
    probs = np.exp(log_softmax(logits))
    expected = skm.roc_auc_score(y, probs, multi_class="ovr")
    assert classification_metrics(y, logits)["roc_auc"] == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("constant", [False, True], ids=["varied", "constant-target"])
def test_regression_metrics_match_scikit_learn(constant: bool) -> None:
    rng = np.random.default_rng(3)
    y = np.full(50, 2.5) if constant else rng.normal(10, 3, 50)
    pred = y + rng.normal(0, 1, 50)
    got = regression_metrics(y, pred)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_logged_validation_metrics_are_those_of_the_model_on_the_validation_rows() -> None:
    space = parse_space("data: {source: wine}\ntraining: {max_epochs: 2, early_stopping: false}\n"
                        "params:\n  units: 16\n  lr: 0.01\n")
    data = load_dataset(space.data)
    result = fit(TrialConfig.from_params({"units": 16, "lr": 0.01}), data, max_epochs=2,
                 early_stopping=None, seed=1)
    last = result.history[-1]
    logits = predict(result.model, data.val.x).numpy()
    y = data.val.y.numpy()
    probs = np.exp(log_softmax(logits))
    for metric in CLASSIFICATION:
        expected = REFERENCE[metric](y, logits.argmax(axis=1), probs)
        assert last[f"val_{metric}"] == pytest.approx(expected, abs=1e-6), metric


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regression_losses_are_the_ones_trained_and_reported(loss: str) -> None:
    extra = "\n  huber_delta: 0.5" if loss == "huber" else ""
    space = parse_space(f"data: {{source: diabetes}}\ntraining:\n  max_epochs: 1\n  loss: {loss}"
                        f"{extra}\nparams:\n  units: 8\n")
    assert space.training.loss == Loss(loss, 0.5 if loss == "huber" else 1.0)
    data = load_dataset(space.data)
    result = fit(TrialConfig.from_params({"units": 8}), data, max_epochs=1, early_stopping=None,
                 seed=0, loss=space.training.loss)
    # The reported loss is the chosen criterion on standardised targets.
    error = predict(result.model, data.val.x).squeeze(1).numpy() - data.val.y.numpy()
    abs_error = np.abs(error)
    expected = {"mse": np.mean(error ** 2), "mae": np.mean(abs_error),
                "huber": np.mean(np.where(abs_error < 0.5, 0.5 * error ** 2,
                                          0.5 * (abs_error - 0.25)))}[loss]
    assert result.history[-1]["val_loss"] == pytest.approx(expected, rel=1e-5)
    # ... while RMSE is reported in the target's own units.
    pred = data.to_original_units(predict(result.model, data.val.x).squeeze(1).numpy())
    y = data.to_original_units(data.val.y.numpy())
    assert result.history[-1]["val_rmse"] == pytest.approx(
        np.sqrt(skm.mean_squared_error(y, pred)), rel=1e-5)


@pytest.mark.parametrize(("metric", "direction"), [
    ("balanced_accuracy", "maximize"), ("f1_macro", "maximize"), ("roc_auc", "maximize"),
    ("log_loss", "minimize"), ("precision_weighted", "maximize"), ("loss", "minimize")])
def test_every_metric_can_be_the_objective_with_its_own_direction(metric: str,
                                                                  direction: str) -> None:
    space = parse_space(f"data: {{source: breast_cancer}}\nobjective: {{metric: {metric}}}\n"
                        "params:\n  lr: 0.01\n")
    assert (space.objective.key, space.objective.direction) == (f"val_{metric}", direction)


def test_a_classification_metric_on_regression_and_a_wrong_loss_are_refused() -> None:
    with pytest.raises(SpaceError, match=r"objective\.metric: unknown value 'f1_macro'"):
        parse_space("data: {source: diabetes}\nobjective: {metric: f1_macro}\nparams:\n  lr: 0.1\n")
    with pytest.raises(SpaceError, match=r"training\.loss: unknown value 'huber'"):
        parse_space("data: {source: iris}\ntraining: {loss: huber}\nparams:\n  lr: 0.1\n")


def test_class_weights_enter_the_training_loss() -> None:
    space = parse_space("data: {source: iris, class_weight: [1, 2, 3]}\nparams:\n  lr: 0.1\n")
    data = load_dataset(space.data)
    assert data.class_weights == (1.0, 2.0, 3.0)
    from tuner.training import criterion

    loss = criterion(data)
    assert torch.equal(loss.weight, torch.tensor([1.0, 2.0, 3.0]))


def test_average_ranks_are_scipys_rankdata() -> None:
    from scipy.stats import rankdata

    from tuner.data._metrics import average_ranks

    rng = np.random.default_rng(11)
    values = np.round(rng.normal(size=(200, 4)), 1)  # many ties
    values[5, 2] = np.nan  # a column with NaN ranks NaN throughout
    np.testing.assert_array_equal(average_ranks(values), rankdata(values, axis=0))
    assert np.isnan(average_ranks(values)[:, 2]).all()
