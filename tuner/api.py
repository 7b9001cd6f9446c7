"""The Python API: what the CLI does, one import away (`import tuner`), same names and defaults.

>>> import tuner
>>> space = tuner.parse_space('''
... model: custom
... objectives: [{metric: accuracy}, {metric: params, direction: minimize}]
... study: {strategy: nsga2}
... params: {width: {type: int, low: 4, high: 64}}
... ''')
>>> [(o.key, o.direction) for o in space.objectives]
[('val_accuracy', 'maximize'), ('params', 'minimize')]
>>> def trainer(params, reporter):
...     reporter.report(0, {"val_accuracy": 1 - 1 / params["width"]})
...     return {"params": params["width"] * 10.0}
>>> import pathlib, tempfile
>>> journal = str(pathlib.Path(tempfile.mkdtemp()) / "doc.journal")
>>> result = tuner.run_study(space, tuner.RunOptions(trials=4, storage=journal,
...                          tracking=False, progress=False), objective=trainer)
>>> result.n_complete
4
>>> front = tuner.pareto_front(result.study, journal)
>>> [m.values for m in front] == sorted(m.values for m in front)[::-1] or len(front) >= 1
True
>>> tuner.pick(result.study, journal, where="params<=640").metrics["params"] <= 640
True
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tuner.errors import OptionError, SpaceError, TunerError
from tuner.space import Space

# Heavy packages (torch, optuna, mlflow) load when an API function is first called, so that
# `import tuner` and `tuner validate` stay fast.
if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from tuner.analysis import Comparison
    from tuner.execution import CompareOptions, FinalOptions, FinalResult, RunOptions, StudyResult
    from tuner.search import FrontMember
    from tuner.training import Trainer

F = TypeVar("F", bound=Callable[..., Any])


def _quietly(function: F) -> F:
    """Optuna's INFO lines and ExperimentalWarnings stay off while `function` runs, as in the
    CLI; the caller's logging and warning settings are back afterwards."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tuner.search import quiet_optuna

        with quiet_optuna():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def run_study(space: Space, options: RunOptions | None = None, *,
              objective: Trainer | None = None) -> StudyResult:
    """Create or resume the study of `space` and run it to its budget (`tuner run`).

    `objective`: a custom trainer `fn(params, reporter) -> value | metrics | None` for a
    `model: custom` space (else the space's `trainer:` is imported)."""
    from tuner.execution import RunOptions
    from tuner.tracking import discard_prestarted_writers

    options = options or RunOptions()
    try:
        with _study_writer(space, options):
            return _run_study(space, options, objective)
    finally:
        discard_prestarted_writers()  # one the study did not take over: bad input found late


def _study_writer(space: Space, options: RunOptions) -> contextlib.AbstractContextManager[Any]:
    """The MLflow writer process of a study run in this process (see `_writer`)."""
    if options.workers != 1 or options.dask is not None:
        return contextlib.nullcontext()
    return _writer(options.tracking, options.tracking_uri, options.experiment or space.name,
                   options.log_model, options.threads)


def _writer(tracking: bool, tracking_uri: str | None, experiment: str | None, log_model: bool,
            threads: int | None, final: bool = False) -> contextlib.AbstractContextManager[Any]:
    """The MLflow writer process of a study (or a final model) trained in this process, where
    a core is spare for it: the one kept from this interpreter's last study on the same store
    (a notebook's, a script's), else one started now, unless this process has loaded MLflow.
    Started before torch loads (`tuner run`, a script), MLflow's imports run there meanwhile;
    started later (a notebook that imported torch), they run while the study loads its data
    and plans, and this process would have made them too. Either way the model's export is
    prepared there while the trials train, and MLflow's Python work holds another
    interpreter's lock. A process that holds MLflow writes from a thread at no import cost,
    where a new writer would keep a short study waiting for its imports. The writer is kept
    for the next study (see `tuner.tracking._pool`); one the study did not take over (bad
    input found late) is ended. `experiment` None: not known yet (a stored study's). `final`:
    for a final model, whose run and model are written at its end: model logging is prepared
    there at once."""
    import sys

    if not tracking:
        return contextlib.nullcontext()
    from tuner.tracking import SharedWriter, spare_core

    if not spare_core(threads or 1):
        return contextlib.nullcontext()
    return SharedWriter(tracking_uri, experiment, log_model, start="mlflow" not in sys.modules,
                        warm_up_now=final)


@_quietly
def _run_study(space: Space, options: RunOptions, objective: Trainer | None) -> StudyResult:
    from tuner.execution import run_study as run
    from tuner.training import load_trainer, using

    if objective is None:
        if space.model == "custom":  # a missing trainer fails before any study is written
            if space.trainer is None:
                raise TunerError("a `model: custom` space needs a trainer: pass objective=... "
                                 "to tuner.run_study, or set `trainer: module:function` in the "
                                 "space")
            load_trainer(space.trainer, Path(space.file).parent)
        return run(space, options)
    if space.model != "custom":
        raise SpaceError("objective=... needs a space with `model: custom`", file=space.file)
    if options.workers > 1 or options.dask is not None:
        raise _in_this_process_only("workers" if options.dask is None else "dask")
    with using(space.hash, objective):
        return run(space, options)


@_quietly
def compare(space: Space, options: CompareOptions | None = None, *,
            objective: Trainer | None = None) -> Comparison:
    """One study per (strategy, repeat) with the same budget, then the report (`tuner compare`).
    `objective` as in `run_study`."""
    from tuner.execution import CompareOptions, run_comparison
    from tuner.training import using

    options = options or CompareOptions()
    if objective is None:
        return run_comparison(space, options)
    if options.jobs > 1:
        raise _in_this_process_only("jobs")
    with using(space.hash, objective):
        return run_comparison(space, options)


def _in_this_process_only(option: str) -> OptionError:
    return OptionError(option, "runs trials in other processes, which objective=... does not "
                       "reach (it lives in this one): name the trainer in the space file "
                       "(`trainer: module:function`), which every process imports")


@_quietly
def open_study(study: str, storage: str | None = None) -> optuna.Study:
    """A stored study as an `optuna.Study` (storage as in `tuner run --storage`)."""
    from tuner.search import find_study

    return find_study(storage, study)


@_quietly
def trials(study: str, storage: str | None = None) -> pd.DataFrame:
    """One row per trial of a stored study (Optuna's `trials_dataframe`)."""
    frame: pd.DataFrame = open_study(study, storage).trials_dataframe()
    return frame


@_quietly
def importances(study: str, storage: str | None = None) -> dict[str, float]:
    """Each searched parameter's importance to reaching the study's best complete trials, most
    important first, summing to 1 (Optuna's PED-ANOVA, as on the study's views page); empty
    when it cannot be told (fewer than two complete trials, or all of them as good)."""
    from tuner.analysis import param_importances

    return param_importances(open_study(study, storage))


@_quietly
def runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The MLflow runs of an experiment (parent and trial runs), one row each."""
    from tuner.tracking import runs_frame

    frame: pd.DataFrame = runs_frame(tracking_uri, experiment)
    return frame


@_quietly
def pareto_front(study: str, storage: str | None = None) -> list[FrontMember]:
    """A multi-objective study's Pareto front, best first on the first objective."""
    from tuner.search import pareto_front as front

    return front(open_study(study, storage))


@_quietly
def pick(study: str, storage: str | None = None, *, index: int | None = None,
         where: str | None = None) -> FrontMember:
    """A front member by index, or the best on the first objective meeting `where`
    (e.g. ``"params<50000"``)."""
    from tuner.search import pick as choose

    return choose(open_study(study, storage), index, where)


def evaluate(study: str, storage: str | None = None,
             options: FinalOptions | None = None) -> FinalResult:
    """Retrain the best trial (or the picked front member) on train + validation and test it
    (`tuner evaluate`)."""
    from tuner.execution import FinalOptions

    options = options or FinalOptions()
    with _writer(options.tracking, options.tracking_uri, options.experiment, options.log_model,
                 options.threads, final=True):
        return _evaluate(study, storage, options)


@_quietly
def _evaluate(study: str, storage: str | None, options: FinalOptions) -> FinalResult:
    from tuner.execution import evaluate_study

    return evaluate_study(study, storage, options)


def train(space: Space, options: FinalOptions | None = None) -> FinalResult:
    """Train the one configuration of a space whose parameters are all fixed (an exported
    study's best, say) on train + validation and test it (`tuner train`)."""
    from tuner.execution import FinalOptions

    options = options or FinalOptions()
    with _writer(options.tracking, options.tracking_uri, options.experiment or space.name,
                 options.log_model, options.threads, final=True):
        return _train(space, options)


@_quietly
def _train(space: Space, options: FinalOptions) -> FinalResult:
    from tuner.execution import train_space

    return train_space(space, options)


@_quietly
def export(study: str, output: str | Path, storage: str | None = None,
           force: bool = False) -> Path:
    """Write the best configuration as a space file (`tuner export`)."""
    from tuner.analysis import export_study

    return export_study(study, storage, Path(output), force=force)
