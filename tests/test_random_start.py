"""TPE and GP draw their first trials at random and then from their model. A pack, or several
workers, asks trials before earlier ones are told: without a rule, the trials after the random
start were asked before the start was told, and drawn at random too (a 16-trial TPE study was a
random search). Trials are asked so that every trial after the start is the model's choice."""

from __future__ import annotations

import datetime
import math
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from tests.conftest import TINY_SPACE, write_space
from tests.helpers import load_study
from tuner import RunOptions, load_space, run_study
from tuner.search import (
    STARTUP_TRIALS,
    batch_limit,
    random_start_note,
    seeded_sampler,
    uncounted,
)
from tuner.search._asking import random_start

# The samplers are built here as a study builds them (TPE's `group`, QMC: experimental in Optuna).
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
T0 = datetime.datetime(2026, 1, 1)


def _trial(number: int, state: TrialState, start: float, end: float | None = None) -> FrozenTrial:
    """A trial asked `start` seconds in and told `end` seconds in (None: still running)."""
    return FrozenTrial(
        number=number, state=state, value=0.5 if state == TrialState.COMPLETE else None,
        datetime_start=T0 + datetime.timedelta(seconds=start),
        datetime_complete=None if end is None else T0 + datetime.timedelta(seconds=end),
        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, user_attrs={},
        system_attrs={}, intermediate_values={}, trial_id=number)


def _states(told: int, pruned: int, running: int) -> list[FrozenTrial]:
    trials = [_trial(i, TrialState.COMPLETE, i, i + 0.5) for i in range(told)]
    trials += [_trial(told + i, TrialState.PRUNED, told + i, told + i + 0.5)
               for i in range(pruned)]
    trials += [_trial(told + pruned + i, TrialState.RUNNING, 100 + i) for i in range(running)]
    return trials


def test_tpe_and_gp_are_not_asked_while_the_running_trials_complete_their_start() -> None:
    tpe = random_start(seeded_sampler("tpe", 0))
    gp = random_start(seeded_sampler("gp", 0))
    assert tpe is not None and gp is not None and tpe.trials == gp.trials == STARTUP_TRIALS
    # Start-up trials may be asked as long as they are needed to make up the start.
    assert tpe.room(_states(0, 0, 0)) == 10 and tpe.room(_states(2, 1, 4)) == 3
    # Running trials complete the start: the next trial waits for them (the model's choice).
    assert tpe.room(_states(4, 2, 4)) == 0 and tpe.room(_states(9, 0, 1)) == 0
    # TPE counts pruned trials, GP does not: with 3 of 10 pruned, GP still draws at random.
    assert tpe.room(_states(7, 3, 0)) is None
    assert gp.room(_states(7, 3, 2)) == 1 and gp.room(_states(7, 3, 3)) == 0
    # Failed trials count for neither: the start still needs ten.
    failed = [_trial(i, TrialState.FAIL, i, i + 0.5) for i in range(12)]
    assert tpe.room(failed) == 10
    # Nothing running and nothing left to make up the start: never 0 (no deadlock).
    assert tpe.room(_states(9, 0, 0)) == 1
    # Samplers that learn nothing from finished trials have no start, and no batch limit.
    for strategy in ("random", "grid", "qmc", "cmaes"):
        assert random_start(seeded_sampler(strategy, 0)) is None
    assert batch_limit(seeded_sampler("random", 0), 16) is None
    assert batch_limit(seeded_sampler("qmc", 0), 16) is None
    assert batch_limit(seeded_sampler("tpe", 0), 16) == 6 == batch_limit(
        seeded_sampler("gp", 0), 16)


def test_a_study_whose_model_never_started_says_so() -> None:
    # 12 trials, 10 finished before the last two were asked: TPE chose them.
    trials = [_trial(i, TrialState.PRUNED if i % 2 else TrialState.COMPLETE, i, i + 0.5)
              for i in range(12)]
    assert random_start_note("tpe", trials) is None
    # For GP only the 6 complete ones count: every trial was random.
    note = random_start_note("gp", trials)
    assert note is not None and note.startswith("gp drew all 12 trials at random")
    assert "does not count pruned" in note and "the study has 6" in note
    # Asked before the start was told (as packs did): all random, also for TPE.
    early = [_trial(i, TrialState.COMPLETE, i * 0.01, 5 + i) for i in range(12)]
    assert "tpe drew all 12 trials at random" in (random_start_note("tpe", early) or "")
    assert random_start_note("random", early) is None


def _tpe_space(workdir: Path, epochs: int = 2) -> Path:
    return write_space(workdir, TINY_SPACE.replace("max_epochs: 3", f"max_epochs: {epochs}")
                       .replace("early_stopping: {patience: 2}", "early_stopping: false")
                       .replace("strategy: random", "strategy: tpe"))


def _counted(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials less the surplus ones (two workers asked at once; one gave way)."""
    return [t for t in study.get_trials(deepcopy=False) if not uncounted(t)]


def _model_choices(study: optuna.Study) -> int:
    start = random_start(seeded_sampler("tpe", 0))
    assert start is not None
    return start.model_trials(_counted(study))


def _most_open_after_the_start(study: optuna.Study) -> int:
    """The most trials open at once when a trial after the random start was asked."""
    trials = study.get_trials(deepcopy=False)
    ends = sorted(t.datetime_complete for t in trials if t.datetime_complete is not None)
    most = 0
    for trial in trials:
        if trial.number < STARTUP_TRIALS:
            continue
        started = sum(t.datetime_start <= trial.datetime_start for t in trials
                      if t.datetime_start is not None)
        told = sum(end <= trial.datetime_start for end in ends)
        most = max(most, started - told)
    return most


def test_a_packed_tpe_study_asks_its_model_for_every_trial_after_the_start(
        workdir: Path, one_thread) -> None:
    journal = workdir / "s.journal"
    trials = 14
    result = run_study(load_space(_tpe_space(workdir)), RunOptions(
        trials=trials, storage=str(journal), tracking=False, progress=False, threads=1))
    study = load_study(result.study, journal)
    assert result.n_complete == trials
    assert _model_choices(study) == trials - STARTUP_TRIALS  # before the fix: 0
    # Packs ask TPE for at most a third of the budget at once (constant liar keeps them apart).
    assert 1 <= _most_open_after_the_start(study) <= math.ceil(trials / 3)


def test_three_workers_ask_tpe_for_every_trial_after_the_start(workdir: Path) -> None:
    journal = workdir / "s.journal"
    result = run_study(load_space(_tpe_space(workdir)), RunOptions(
        trials=13, storage=str(journal), tracking=False, progress=False, threads=1, workers=3,
        pack=1))
    study = load_study(result.study, journal)
    assert result.n_complete == 13
    # Every counted trial after the start was asked once the start was told: of two workers
    # that asked at once for the start's last room, the later gave way (failed as surplus).
    assert _model_choices(study) == len(_counted(study)) - STARTUP_TRIALS


@pytest.mark.parametrize("strategy", ["random", "grid"])
def test_samplers_that_do_not_learn_are_asked_without_waiting(
        workdir: Path, strategy: str, one_thread) -> None:
    journal = workdir / "s.journal"
    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 2"))
    result = run_study(load_space(space), RunOptions(
        strategy=strategy, trials=12 if strategy == "random" else 4, storage=str(journal),
        tracking=False, progress=False, threads=1))
    study = load_study(result.study, journal)
    assert result.n_complete == (12 if strategy == "random" else 4)
    # One pack: every trial asked before the first is told (no batch limit, no start).
    first_end = min(t.datetime_complete for t in study.trials if t.datetime_complete)
    assert all(t.datetime_start <= first_end for t in study.trials)


def test_dask_tasks_ask_tpe_for_every_trial_after_the_start(workdir: Path) -> None:
    from distributed import LocalCluster

    journal = workdir / "s.journal"  # a file system both Dask workers share
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        # Trials of a second or so: several run at once (the client looks every half second).
        result = run_study(load_space(_tpe_space(workdir, epochs=30)), RunOptions(
            trials=13, storage=str(journal), tracking=False, progress=False,
            dask=cluster.scheduler_address))
    assert result.n_complete == 13
    study = load_study(result.study, journal)
    assert _model_choices(study) == len(_counted(study)) - STARTUP_TRIALS


def test_nsga2_is_not_asked_while_the_running_trials_complete_its_generation() -> None:
    """NSGA-II breeds each generation from the complete trials of the one before; a trial asked
    while the running ones would fill the current generation would join it instead."""
    from tuner.search._asking import Generations

    def member(number: int, generation: int, state: TrialState) -> FrozenTrial:
        trial = _trial(number, state, number, None if state == TrialState.RUNNING else number + 1)
        trial.system_attrs["NSGAIISampler:generation"] = generation  # see test_optuna_internals
        return trial

    rule = Generations(4)
    first = [member(i, 0, TrialState.COMPLETE) for i in range(2)]
    assert rule.room([]) == 4 and rule.room(first) == 2
    assert rule.room([*first, member(2, 0, TrialState.RUNNING)]) == 1
    assert rule.room(first + [member(i, 0, TrialState.RUNNING) for i in (2, 3)]) == 0
    done = [member(i, 0, TrialState.COMPLETE) for i in range(4)]
    assert rule.room(done) is None  # the next trial opens generation 1
    assert rule.room(done + [member(4, 1, TrialState.COMPLETE)] +
                     [member(i, 1, TrialState.RUNNING) for i in (5, 6, 7)]) == 0


def test_a_multi_objective_study_inside_nsga2s_first_generation_says_so(
        workdir: Path, one_thread) -> None:
    from tests.test_multi import MLP_MULTI

    journal = workdir / "m.journal"
    space = load_space(write_space(workdir, MLP_MULTI.replace("trials: 4", "trials: 6")))
    result = run_study(space, RunOptions(storage=str(journal), tracking=False, progress=False,
                                         threads=1))
    assert result.n_complete == 6
    assert any(n.startswith("nsga2 drew all 6 trials at random: its first generation is 50")
               for n in result.notes)
    assert random_start_note("nsga2", []) is None


def _start_short_of_one(workdir: Path) -> tuple[Any, Any, list[FrozenTrial]]:
    """A TPE study with 8 trials told and trial 8 running elsewhere (room for one more trial
    of the random start): its handle, its storage, and the snapshot two workers both saw."""
    from tuner.search import StudyHandle, open_storage

    storage = open_storage(str(workdir / "s.journal"))
    study = optuna.create_study(study_name="race", storage=storage, direction="maximize",
                                sampler=seeded_sampler("tpe", 0))
    x = FloatDistribution(0.0, 1.0)
    for i in range(8):
        study.add_trial(optuna.trial.create_trial(params={"x": i / 10}, distributions={"x": x},
                                                  value=i / 10))
    study.ask({"x": x})  # trial 8, running elsewhere
    handle = StudyHandle(study, storage.get_study_id_from_name("race"), storage, False)
    return handle, storage, storage.get_all_trials(handle.study_id, deepcopy=False)


def test_of_two_workers_that_ask_at_once_for_the_starts_last_room_the_later_gives_way(
        workdir: Path) -> None:
    """Both saw 8 trials told and 1 running (room for 1 more random trial) and both asked: the
    later trial number is failed as surplus, not counted, and its worker asks again later."""
    from tuner.search import TRIAL_REASON, next_trial

    handle, storage, seen = _start_short_of_one(workdir)
    first, _ = next_trial(handle, False, 20, seen)
    second, running = next_trial(handle, False, 20, seen)
    assert first is not None and first.number == 9
    assert second is None and running == 2  # trial 10 gave way; 8 and 9 run
    surplus = storage.get_all_trials(handle.study_id, deepcopy=False)[10]
    assert surplus.state == TrialState.FAIL and uncounted(surplus)
    assert "random start" in surplus.user_attrs[TRIAL_REASON]


def test_a_trial_asked_before_the_start_was_told_gives_way_though_it_was_told_meanwhile(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The later of two workers asked while trials 8 and 9 completed the random start, and
    they finished (short trials, a busy machine) before it looked again: its trial was still
    asked before the start was told (TPE's multivariate draw is made as it is asked), so it
    gives way as well. Seen only under load in the three-worker study above."""
    from tuner.search import TRIAL_REASON, next_trial

    handle, storage, seen = _start_short_of_one(workdir)
    study = handle.study
    first, _ = next_trial(handle, False, 20, seen)
    assert first is not None and first.number == 9
    ask = study.ask

    def ask_while_the_start_ends(*args: Any, **kwargs: Any) -> Any:
        trial = ask(*args, **kwargs)  # trial 10, asked while 8 and 9 run
        time.sleep(0.01)  # what finishes after it was asked finishes later than it
        for number in (8, 9):
            study.tell(number, 0.9)
        return trial

    monkeypatch.setattr(study, "ask", ask_while_the_start_ends)
    second, _ = next_trial(handle, False, 20, seen)
    assert second is None
    late = storage.get_all_trials(handle.study_id, deepcopy=False)[10]
    assert late.state == TrialState.FAIL and uncounted(late)
    assert "random start" in late.user_attrs[TRIAL_REASON]
