"""Packed trials: several MLP trials trained at once as one stacked model mean exactly what the
same trials trained one at a time mean (same seed: same initial weights, data order, dropout
masks; per-trial optimizer, schedule, early stopping, pruning, failure), and a packed study is
recorded as a one-at-a-time study is."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tests.conftest import TINY_SPACE, write_space
from tests.helpers import load_study, metric_history, runs_of
from tests.reference_loop import reference_fit
from tuner import OptionError, RunOptions, TunerError, load_space, parse_space, run_study
from tuner.data import Split, load_dataset
from tuner.execution import Session, work
from tuner.execution._pack import batch_sizes, packs_trials
from tuner.search import TRIAL_BEST_EPOCH, open_storage, open_study, seeded_sampler
from tuner.space import EarlyStopping, TrialConfig
from tuner.training import (
    NonFiniteLoss,
    Pack,
    PackedTrial,
    fit,
    fit_packed,
    micro_batch,
    pack_key,
    resolve_device,
)

DIGITS = """\
name: packs
data: {source: digits, val_fraction: 0.2, test_fraction: 0.2, seed: 0}
objective: {metric: accuracy}
training: {max_epochs: 4, early_stopping: {patience: 2}}
params: {lr: 0.01}
"""
MIXED = [  # activations, optimizers, widths, dropout, batch sizes and schedules all differ
    TrialConfig(units=(24, 12), activation="relu", dropout=0.2, optimizer="adam", lr=3e-3,
                batch_size=32),
    TrialConfig(units=(16, 40), activation="tanh", optimizer="sgd", lr=1e-2, momentum=0.9,
                nesterov=True, weight_decay=1e-4, batch_size=64),
    TrialConfig(units=(40, 8), activation="sigmoid", dropout=0.1, optimizer="rmsprop", lr=1e-3,
                momentum=0.5, batch_size=128, lr_schedule="inverse_time", lr_decay=1e-3),
    TrialConfig(units=(12, 12), activation="gelu", dropout=0.3, optimizer="adamw", lr=2e-3,
                weight_decay=1e-2, batch_size=128, lr_schedule="cosine"),
    TrialConfig(units=(20, 28), activation="relu", optimizer="sgd", lr=5e-2,
                batch_size=32, lr_schedule="exponential", lr_decay=0.1),
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_dataset(parse_space(DIGITS).data)


def _options(epochs: int = 4, patience: int | None = 2) -> dict:
    early = EarlyStopping("accuracy", "maximize", patience=patience) if patience else None
    return {"max_epochs": epochs, "early_stopping": early, "monitor": "val_accuracy",
            "monitor_direction": "maximize"}


def _same_history(alone: list[Mapping[str, float]], packed: list[Mapping[str, float]],
                  rel: float = 1e-4) -> None:
    assert len(alone) == len(packed)
    for a, p in zip(alone, packed, strict=True):
        assert a.keys() == p.keys()
        for key in a:
            assert p[key] == pytest.approx(a[key], rel=rel, abs=1e-6), key


def test_a_trial_trained_in_a_pack_is_the_same_trial_trained_alone(digits, one_thread) -> None:
    alone = [reference_fit(c, digits, seed=10 + i, **_options()) for i, c in enumerate(MIXED)]
    packed = fit_packed([PackedTrial(i, c, 10 + i) for i, c in enumerate(MIXED)], digits,
                        micro=32, **_options())
    for a, p in zip(alone, packed, strict=True):
        assert p.error is None and p.result is not None
        _same_history(a.history, p.result.history)
        assert (p.result.epochs_run, p.result.best_epoch, p.result.stopped_early) == \
            (a.epochs_run, a.best_epoch, a.stopped_early)
        # The kept weights are the same weights, in a model of the trial's own shape.
        kept, mine = a.model.state_dict(), p.result.model.state_dict()
        assert kept.keys() == mine.keys()
        for key in kept:
            assert torch.allclose(kept[key], mine[key], rtol=1e-4, atol=1e-5), key


def test_trials_with_their_own_rows_and_epochs_train_as_alone(digits, one_thread) -> None:
    """A re-evaluation's folds train as one pack: each trial on its own rows (here three
    counts, so two trials' last batches end early) for its own epochs, as it trains alone."""
    n = len(digits.train)
    cuts = [(0, n - 3), (5, n), (40, n - 7)]
    configs = [MIXED[0], MIXED[2], MIXED[3]]  # dropout, batch 32/128, schedules
    epochs = [4, 2, 3]
    own = [Split(digits.train.x[a:b], digits.train.y[a:b]) for a, b in cuts]
    packed = fit_packed([PackedTrial(i, c, 30 + i, train=rows, epochs=e)
                         for i, (c, rows, e) in enumerate(zip(configs, own, epochs,
                                                              strict=True))],
                        digits, micro=32, **_options(4, None))
    for i, (config, rows, e) in enumerate(zip(configs, own, epochs, strict=True)):
        alone = reference_fit(config, replace(digits, train=rows), seed=30 + i,
                              **_options(e, None))
        p = packed[i]
        assert p.error is None and p.result is not None
        assert p.result.epochs_run == e
        _same_history(alone.history, p.result.history)
        for key, value in alone.model.state_dict().items():
            assert torch.allclose(value, p.result.model.state_dict()[key], rtol=1e-4,
                                  atol=1e-5), key


def test_fit_trains_one_trial_as_the_textbook_loop_does(digits, one_thread) -> None:
    """`fit` is a pack of one: every optimizer, activation, schedule and dropout gives the
    textbook loop's epochs and weights; a callback's exception and a diverging loss propagate."""
    for i, config in enumerate(MIXED):
        alone, mine = reference_fit(config, digits, seed=i, **_options()), \
            fit(config, digits, seed=i, **_options())
        _same_history(alone.history, mine.history)
        assert (mine.epochs_run, mine.best_epoch, mine.stopped_early) == \
            (alone.epochs_run, alone.best_epoch, alone.stopped_early)

    class Stop:
        def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(MIXED[0], digits, seed=0, callbacks=[Stop()], **_options())
    with pytest.raises(NonFiniteLoss):
        fit(TrialConfig(units=(16,), optimizer="sgd", lr=1e12), digits, seed=0,
            **_options(3, None))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu",
                                        "selu", "silu"])
def test_the_written_out_backward_pass_gives_autograds_gradients(activation: str) -> None:
    """Every activation beside a padded sigmoid trial, with dropout masks or unit masks, a
    ragged pack (rows past a trial's end count for nothing), class weights, and each loss."""
    from types import SimpleNamespace

    from tuner.space import Loss
    from tuner.training._backward import forward_backward, written_out
    from tuner.training._fit import RowLoss
    from tuner.training._stack import SlotState, Stack, order_slots

    generator = torch.Generator().manual_seed(0)
    configs = [TrialConfig(units=(6, 5), activation=activation, dropout=0.3),
               TrialConfig(units=(3, 5), activation="sigmoid")]
    configs = [configs[i] for i in order_slots(configs)]
    classes = SimpleNamespace(task="classification", class_weights=None)
    weighted = SimpleNamespace(task="classification", class_weights=(0.5, 1.0, 2.0, 1.5))
    values = SimpleNamespace(task="regression", class_weights=None)
    scale = torch.tensor([[1 / 9] * 9, [1 / 6] * 6 + [0.0] * 3])
    x = torch.randn(2, 9, 7, generator=generator)
    for data, loss, outputs in [(classes, None, 4), (weighted, None, 4), (values, Loss("mse"), 1),
                                (values, Loss("mae"), 1), (values, Loss("huber", 0.5), 1)]:
        target = torch.randint(0, 4, (2, 9), generator=generator) if outputs > 1 else \
            torch.randn(2, 9, generator=generator)
        dropout = [torch.bernoulli(torch.full((2, 9, w), 0.7), generator=generator) / 0.7
                   for w in (6, 5)]
        for masks in (dropout, []):
            states = [SlotState.initial(c, 7, outputs, seed=k) for k, c in enumerate(configs)]
            graph, hand = (Stack(configs, states, 7, outputs, torch.device("cpu"))
                           for _ in range(2))
            assert written_out(hand) and hand.mask_units
            row_loss = RowLoss(data, loss)  # type: ignore[arg-type]
            rows = row_loss(graph.forward(x, masks), target)
            (rows * scale).sum().backward()
            hand_rows = forward_backward(hand, x, masks, row_loss, target, scale)
            torch.testing.assert_close(hand_rows, rows.detach())
            for mine, autograds in zip(hand.params, graph.params, strict=True):
                assert mine.grad is not None and autograds.grad is not None
                torch.testing.assert_close(mine.grad, autograds.grad, rtol=1e-5, atol=1e-7)
                assert torch.count_nonzero(mine.grad) > 0
    batch_norm = TrialConfig(units=(4,), batch_norm=True)
    assert not written_out(Stack([batch_norm], [SlotState.initial(batch_norm, 7, 4, seed=0)], 7,
                                 4, torch.device("cpu")))


def test_training_loads_no_torch_optim_compiler() -> None:
    """torch.optim's first optimizer imports torch's compiler (1-3 s on a study's path); the
    final model's re-evaluation and refit train with `train` too, so none of it may load it."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys\n"
            "from tuner import parse_space\n"
            "from tuner.data import load_dataset\n"
            "from tuner.training import train\n"
            f"space = parse_space({DIGITS!r})\n"
            "data = load_dataset(space.data)\n"
            "for opt in ('adam', 'sgd', 'rmsprop', 'adamw'):\n"
            "    train(space, {'optimizer': opt, 'units': 8}, data, seed=0, max_epochs=1)\n"
            "print('torch._dynamo' in sys.modules)\n"
            "import torch\n"  # the probe sees what torch.optim would load
            "torch.optim.Adam([torch.zeros(1, requires_grad=True)]).zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True, timeout=120)
    assert done.stdout.split() == ["False", "True"]


def test_batch_norm_trials_share_a_pack_of_their_batch_size(digits, one_thread) -> None:
    # SGD: Adam's update of the bias in front of batch norm follows float noise (its gradient
    # is zero but for rounding), so only SGD makes the two computations comparable digit by
    # digit.
    configs = [TrialConfig(units=(16, 8), batch_norm=True, dropout=0.1, optimizer="sgd",
                           lr=0.05, momentum=0.9, batch_size=64),
               TrialConfig(units=(12, 7), batch_norm=True, activation="elu", optimizer="sgd",
                           lr=0.02, batch_size=64)]
    assert len({pack_key(c, len(digits.train), 32) for c in configs}) == 1
    alone = [reference_fit(c, digits, seed=i, **_options(3)) for i, c in enumerate(configs)]
    packed = fit_packed([PackedTrial(i, c, i) for i, c in enumerate(configs)], digits,
                        **_options(3))
    for a, p in zip(alone, packed, strict=True):
        assert p.result is not None
        _same_history(a.history, p.result.history)


def test_padded_units_stay_exactly_zero(digits, one_thread) -> None:
    pack = Pack(digits, micro=32, **_options(2, None))
    for i, units in enumerate([(4,), (32,)]):
        pack.add(PackedTrial(i, TrialConfig(units=units, activation="sigmoid", dropout=0.2,
                                            optimizer="adam", batch_size=32), i))
    pack.run_epoch()
    stack = pack.stack
    assert stack is not None and stack.widths == [32]
    narrow = next(k for k, c in enumerate(stack.configs) if c.units == (4,))
    w1, b1, w2 = stack.params[0], stack.params[1], stack.params[2]
    assert torch.count_nonzero(w1[narrow, :, 4:]) == 0
    assert torch.count_nonzero(b1[narrow, :, 4:]) == 0
    assert torch.count_nonzero(w2[narrow, 4:, :]) == 0
    assert torch.count_nonzero(w1[narrow, :, :4]) > 0


def test_a_diverging_trial_fails_alone_and_the_others_are_unharmed(digits, one_thread) -> None:
    configs = [TrialConfig(units=(16,), optimizer="sgd", lr=10.0, momentum=0.9, batch_size=32),
               TrialConfig(units=(16,), optimizer="adam", lr=3e-3, batch_size=32)]
    packed = fit_packed([PackedTrial(i, c, i) for i, c in enumerate(configs)], digits,
                        micro=32, **_options(3, None))
    assert isinstance(packed[0].error, NonFiniteLoss) and packed[0].result is None
    healthy = reference_fit(configs[1], digits, seed=1, **_options(3, None))
    assert packed[1].result is not None
    _same_history(healthy.history, packed[1].result.history)


class _StopAfter:
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if epoch >= self.epoch:
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")


def test_a_stopped_trial_leaves_and_a_trial_that_joins_later_trains_as_alone(
        digits, one_thread) -> None:
    first, late = MIXED[0], MIXED[1]
    pack = Pack(digits, micro=32, **_options(3, None))
    pack.add(PackedTrial("pruned", first, 1, [_StopAfter(1)]))
    pack.add(PackedTrial("steady", MIXED[3], 2))
    left = pack.run_epoch()
    assert [(f.trial.name, type(f.error)) for f in left] == [("pruned", optuna.TrialPruned)]
    assert len(left[0].history) == 1
    pack.add(PackedTrial("late", late, 3))  # takes the free slot at the next epoch
    done = {}
    while len(pack):
        done.update({f.trial.name: f for f in pack.run_epoch()})
    assert done["late"].result is not None and done["steady"].result is not None
    _same_history(reference_fit(late, digits, seed=3, **_options(3, None)).history,
                  done["late"].result.history)
    _same_history(reference_fit(MIXED[3], digits, seed=2, **_options(3, None)).history,
                  done["steady"].result.history)


def test_what_a_pack_shares_and_the_micro_batch() -> None:
    assert micro_batch([32, 64, 128]) == 32 and micro_batch([50, 64]) is None
    a = TrialConfig(units=(8, 8), batch_size=32)
    # Batch sizes (multiples of the micro-batch), activations, optimizers differ in a pack;
    # each layer's width within a factor of two.
    assert pack_key(a, 1000, 32) == pack_key(TrialConfig(units=(7, 5), batch_size=128,
                                                         activation="tanh", optimizer="sgd"),
                                             1000, 32)
    assert pack_key(a, 1000, 32) != pack_key(TrialConfig(units=(8, 9), batch_size=32), 1000, 32)
    assert pack_key(a, 1000, 32) != pack_key(TrialConfig(units=(8,), batch_size=32), 1000, 32)
    assert pack_key(a, 1000, None) != pack_key(TrialConfig(units=(8, 8), batch_size=64), 1000,
                                               None)
    bn = TrialConfig(units=(8, 8), batch_norm=True, batch_size=32)
    assert pack_key(bn, 1000, 32) != pack_key(TrialConfig(units=(8, 8), batch_norm=True,
                                                          batch_size=64), 1000, 32)
    assert batch_sizes(load_space(Path(__file__).parents[1] / "search_spaces" /
                                  "digits_mlp.yaml")) == [32, 64, 128]


def _values(result_study: str, journal: Path) -> dict[int, tuple[str, float | None, int]]:
    study = load_study(result_study, journal)
    return {t.number: (t.state.name, t.value, t.user_attrs.get(TRIAL_BEST_EPOCH, 0))
            for t in study.trials}


def test_a_packed_study_gives_each_trial_the_value_it_has_one_at_a_time(
        workdir: Path, one_thread) -> None:
    """Random strategy, no pruner: trial n has the same parameters and seed either way, so the
    same value, epochs and best epoch."""
    space = load_space(write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 4")))
    runs = {}
    for pack in (1, 3):
        journal = workdir / f"p{pack}.journal"
        result = run_study(space, RunOptions(trials=5, storage=str(journal), tracking=False,
                                             progress=False, threads=1, pack=pack))
        runs[pack] = _values(result.study, journal)
    assert runs[1].keys() == runs[3].keys() and len(runs[1]) == 5
    for number, (state, value, best_epoch) in runs[1].items():
        other = runs[3][number]
        assert other[0] == state == "COMPLETE" and other[2] == best_epoch
        assert other[1] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe"])
def test_a_packed_study_records_trials_pruning_and_early_stopping_as_before(
        workdir: Path, tracking_uri: str, strategy: str, one_thread) -> None:
    text = TINY_SPACE.replace("max_epochs: 3", "max_epochs: 6").replace(
        "pruner: none", "pruner: {name: median, startup_trials: 1}").replace(
        "early_stopping: {patience: 2}", "early_stopping: {patience: 1, min_delta: 0.05}")
    space = load_space(write_space(workdir, text))
    journal = workdir / "s.journal"
    result = run_study(space, RunOptions(strategy=strategy, trials=6, storage=str(journal),
                                         tracking_uri=tracking_uri, experiment=f"pack-{strategy}",
                                         log_model=False, views=False, progress=False,
                                         threads=1, pack=4))
    study = load_study(result.study, journal)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 6 == result.n_complete + result.n_pruned  # grid: 6 of its 8 points
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in finished)
    _, runs = runs_of(tracking_uri, f"pack-{strategy}")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == \
        sorted(t.number for t in finished)
    for run in runs:
        trial = study.trials[int(run.data.tags["trial_number"])]
        assert run.data.tags["state"] == trial.state.name
        epochs = int(run.data.tags["epochs"])
        history = metric_history(tracking_uri, run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))
        if trial.state == TrialState.COMPLETE:
            assert run.data.metrics["objective"] == pytest.approx(trial.value)
            assert 1 <= int(run.data.tags["best_epoch"]) <= epochs
            assert trial.user_attrs[TRIAL_BEST_EPOCH] == int(run.data.tags["best_epoch"])
            # Early stopping (patience 1): a complete trial ends one epoch after its best, or
            # at max_epochs.
            assert epochs in (int(run.data.tags["best_epoch"]) + 1, 6)
        else:
            assert "pruned after epoch" in run.data.tags["reason"]
            assert trial.intermediate_values and max(trial.intermediate_values) == epochs
    assert result.best_value == max(t.value for t in finished if t.value is not None)
    assert result.test_metrics  # the best trial's kept model was evaluated on the test split


def test_a_packed_study_resumes_and_workers_pack_too(workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    journal = workdir / "s.journal"
    first = run_study(space, RunOptions(trials=3, storage=str(journal), tracking=False,
                                        progress=False, threads=1, pack=3))
    assert first.n_complete == 3
    more = run_study(space, RunOptions(trials=6, storage=str(journal), tracking_uri=tracking_uri,
                                       experiment="pack-workers", log_model=False, views=False,
                                       progress=False, threads=1, pack=3, workers=2))
    assert more.n_complete == 6 and more.n_failed == 0
    study = load_study(more.study, journal)
    # Two workers asking at the same moment may both get a trial for the last slot: the later
    # one gives way (failed as surplus, not counted).
    counted = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in counted)
    _, runs = runs_of(tracking_uri, "pack-workers")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == \
        sorted(t.number for t in counted if t.number >= 3)


def test_ctrl_c_in_a_pack_queues_every_open_trial_again(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    space = load_space(write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 5")))
    storage = open_storage(str(workdir / "s.journal"))
    handle = open_study(storage, "stop", space, "random", 0, seeded_sampler("random", 0),
                        optuna.pruners.NopPruner())
    session = Session(space, handle, load_dataset(space.data), 0, "random", 6, False, pack=3)
    assert packs_trials(session)
    stop = threading.Event()
    run_epoch = Pack.run_epoch

    def ctrl_c_during_the_first_epoch(self: Pack) -> list:
        stop.set()
        return run_epoch(self)

    monkeypatch.setattr(Pack, "run_epoch", ctrl_c_during_the_first_epoch)
    recorded: list[str] = []
    ran = work(session, stop, on_trial=lambda outcome: recorded.append(outcome.state))
    begun = [t for t in handle.study.trials if t.state == TrialState.FAIL]
    assert ran == len(recorded) == len(begun) >= 3 and set(recorded) == {"INTERRUPTED"}
    assert all(t.user_attrs["interrupted"] for t in begun)
    waiting = [t for t in handle.study.trials if t.state == TrialState.WAITING]
    assert sorted(str(t.system_attrs["fixed_params"]) for t in waiting) == \
        sorted(str(t.params) for t in begun)
    assert not [t for t in handle.study.trials if t.state == TrialState.RUNNING]


def test_threads_default_to_one_and_devices_are_checked() -> None:
    from tuner.execution import threads_per_worker

    assert threads_per_worker(None, 1) == (1, None)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TunerError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(OptionError, match="device"):
        RunOptions(device="gpu")
    with pytest.raises(OptionError, match="pack"):
        RunOptions(pack=0)


def test_a_pack_trains_on_the_device_it_is_given(digits, one_thread) -> None:
    device = resolve_device("auto")
    config = MIXED[1]
    packed = fit_packed([PackedTrial(0, config, 5)], digits, micro=32, device=device,
                        **_options(2, None))
    assert packed[0].result is not None
    assert next(packed[0].result.model.parameters()).device.type == device.type
    alone = reference_fit(config, digits, seed=5, device=device, **_options(2, None))
    _same_history(alone.history, packed[0].result.history, rel=1e-3)
    assert all(math.isfinite(v) for v in packed[0].result.history[-1].values())


def test_help_and_validate_import_neither_torch_nor_mlflow(workdir: Path) -> None:
    """`tuner --help` and `tuner validate` answer in well under a second: nothing heavy loads
    (not even Optuna: `tuner run` starts its writer process after reading the space file)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    space = write_space(workdir)
    probe = ("import sys\n"
             "from tuner.cli import main\n"
             "try:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\n"
             "heavy = sorted(m for m in ('torch', 'mlflow', 'sklearn', 'matplotlib', 'optuna') "
             "if m in sys.modules)\n"
             "print('HEAVY', heavy, file=sys.stderr)\n")
    for args in (["--help"], ["validate", str(space)]):
        done = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO,
                              capture_output=True, text=True, check=False, timeout=60)
        assert "HEAVY []" in done.stderr, done.stderr[-500:]


def test_a_study_does_not_load_plotting_before_it_ends() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; import tuner.execution._run; "
            "print(sorted(m for m in ('matplotlib', 'plotly') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_trials_of_a_pack_declared_lost_while_they_train_keep_one_outcome_each(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker declares the trials of a training pack lost (after its first epoch): their
    results are dropped (the retries are the trials' outcomes) and their MLflow runs end
    FAILED."""
    from tuner.search import StudyHandle, reap_stale

    space = load_space(write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 4")
                                   .replace("early_stopping: {patience: 2}",
                                            "early_stopping: false")))
    journal = str(workdir / "study.journal")
    reaped: list = []
    run_epoch = Pack.run_epoch

    def another_worker_reaps_after_the_first_epoch(self: Pack) -> list:
        finished = run_epoch(self)
        if not reaped:
            storage = open_storage(journal)
            study = optuna.load_study(study_name="tiny-random-seed0", storage=storage)
            handle = StudyHandle(study, storage.get_study_id_from_name("tiny-random-seed0"),
                                 storage, False)
            reaped.extend(reap_stale(handle, timeout=-1))  # as if their heartbeats had stopped
        return finished

    monkeypatch.setattr(Pack, "run_epoch", another_worker_reaps_after_the_first_epoch)
    result = run_study(space, RunOptions(storage=journal, trials=2, tracking_uri=tracking_uri,
                                         experiment="pack-lost", log_model=False,
                                         progress=False, views=False, threads=1, pack=2))
    assert len(reaped) == 2 and (result.n_complete, result.n_failed) == (2, 0)
    study = load_study("tiny-random-seed0", journal)
    for lost in reaped:
        trial = study.trials[lost.number]
        assert trial.state == TrialState.FAIL and trial.value is None
        retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == lost.number)
        assert retry.state == TrialState.COMPLETE and retry.params == trial.params
    _, runs = runs_of(tracking_uri, "pack-lost")
    status = {int(r.data.tags["trial_number"]): r for r in runs}
    for lost in reaped:
        assert status[lost.number].info.status == "FAILED"
        assert "declared lost" in status[lost.number].data.tags["fail_reason"]
