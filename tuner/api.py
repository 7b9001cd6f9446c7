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

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tuner._spec import Space

if TYPE_CHECKING:
    import pandas as pd

    from tuner._compare import CompareOptions, Comparison
    from tuner._custom import Trainer
    from tuner._final import FinalOptions, FinalResult
    from tuner._multi import FrontMember
    from tuner._runner import RunOptions, StudyResult


def run_study(space: Space, options: RunOptions | None = None, *,
              objective: Trainer | None = None) -> StudyResult:
    """Create or resume the study of `space` and run it to its budget (`tuner run`).

    `objective`: a custom trainer `fn(params, reporter) -> value | metrics | None` for a
    `model: custom` space (else the space's `trainer:` is imported)."""
    from tuner._custom import load_trainer, using
    from tuner._runner import run_study as _run

    if objective is None:
        if space.model == "custom":  # a missing trainer fails before any study is written
            if space.trainer is None:
                _no_trainer()
            load_trainer(space.trainer, Path(space.file).parent)
        return _run(space, options)
    from tuner._errors import SpaceError

    if space.model != "custom":
        raise SpaceError("objective=... needs a space with `model: custom`", file=space.file)
    with using(space.hash, objective):
        return _run(space, options)


def compare(space: Space, options: CompareOptions | None = None, *,
            objective: Trainer | None = None) -> Comparison:
    """One study per (strategy, repeat) with the same budget, then the report (`tuner compare`).
    `objective` as in `run_study`."""
    from tuner._compare import CompareOptions, run_comparison
    from tuner._custom import using

    options = options or CompareOptions()
    if objective is None:
        return run_comparison(space, options)
    with using(space.hash, objective):
        return run_comparison(space, options)


def open_study(study: str, storage: str | None = None) -> Any:
    """A stored study as an `optuna.Study` (storage as in `tuner run --storage`)."""
    import optuna

    from tuner._errors import TunerError
    from tuner._storage import describe, open_storage

    opened = open_storage(storage)
    names = [s.study_name for s in opened.get_all_studies()]
    if study not in names:
        raise TunerError(f"no study {study!r} in {describe(storage)}; studies: "
                         f"{', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study, storage=opened)


def trials(study: str, storage: str | None = None) -> pd.DataFrame:
    """One row per trial of a stored study (Optuna's `trials_dataframe`)."""
    frame: pd.DataFrame = open_study(study, storage).trials_dataframe()
    return frame


def runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The MLflow runs of an experiment (parent and trial runs), one row each."""
    from tuner._tracking import runs_frame

    return runs_frame(tracking_uri, experiment)


def pareto_front(study: str, storage: str | None = None) -> list[FrontMember]:
    """A multi-objective study's Pareto front, best first on the first objective."""
    from tuner._multi import pareto_front as front

    return front(open_study(study, storage))


def pick(study: str, storage: str | None = None, *, index: int | None = None,
         where: str | None = None) -> FrontMember:
    """A front member by index, or the best on the first objective meeting `where`
    (e.g. ``"params<50000"``)."""
    from tuner._multi import pick as choose

    return choose(open_study(study, storage), index, where)


def evaluate(study: str, storage: str | None = None,
             options: FinalOptions | None = None) -> FinalResult:
    """Retrain the best trial (or the picked front member) on train + validation and test it
    (`tuner evaluate`)."""
    from tuner._final import FinalOptions, evaluate_study

    return evaluate_study(study, storage, options or FinalOptions())


def export(study: str, output: str | Path, storage: str | None = None,
           force: bool = False) -> Path:
    """Write the best configuration as a space file (`tuner export`)."""
    from tuner._export import export_study

    return export_study(study, storage, Path(output), force=force)


def _no_trainer() -> NoReturn:
    from tuner._errors import TunerError

    raise TunerError("a `model: custom` space needs a trainer: pass objective=... to "
                     "tuner.run_study, or set `trainer: module:function` in the space")
