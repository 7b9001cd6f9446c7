"""Which writer process a study uses, where it need not start one: the one started beside the
command's imports (`prestart`), the one a comparison shares among its studies, and the one kept
from the interpreter's last study (a notebook's, a script's).

A writer process costs its imports (MLflow's, model logging's: seconds) once. Kept between the
studies of one interpreter, it makes them once for all of them; a notebook's later study would
otherwise wait for a new writer's imports, or, where MLflow is loaded, write from a thread. It is kept
only for the same store: the same `tracking_uri`, working folder (MLflow's default store is
`mlflow.db` there) and MLFLOW_* settings, and the URI MLflow resolves in this process where
MLflow is loaded (`mlflow.set_tracking_uri`). It ends when the interpreter does, or by itself
after `KEPT_IDLE_S` without a study.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import Any

from tuner.tracking._writer import ProcessWriter, WriterLost

KEPT_IDLE_S = 600.0  # a notebook's next study usually comes within minutes; then it is memory
_OWN_SETTINGS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"}  # set by tuner's clients, not the user

_prestarted: dict[tuple[str | None, str, bool], ProcessWriter] = {}
_shared: dict[str | None, ProcessWriter] = {}  # by store: a writer serves any experiment
_kept: tuple[tuple[Any, ...], ProcessWriter] | None = None
_closes_at_exit = False


def prestart(tracking_uri: str | None, experiment: str, warm_up: bool) -> None:
    """Start the writer process of a study that is about to run, before the heavy imports; the
    study checks its store there (`prestarted_for`), and its tracker takes it over (`take`).
    `tracking_uri` None: MLFLOW_TRACKING_URI or MLflow's default, resolved by the process."""
    key = (tracking_uri, experiment, warm_up)
    if key not in _prestarted:
        _prestarted[key] = ProcessWriter(tracking_uri, experiment, warm_up)


def discard_prestarted() -> None:
    """End the writers prestarted for a command refused before its study took them over."""
    for writer in _prestarted.values():
        writer.abandon()
    _prestarted.clear()


class SharedWriter:
    """One writer process for the studies run one after another on one store (a comparison's;
    a study's from `tuner.run_study`): it checks the store, each study's tracker borrows it
    (`take`) and waits at its end for what it sent; its imports (MLflow's, model logging's) are
    made once. It is the one `prestart` started for the same key, else the one kept from the
    interpreter's last study on this store, else a new one (`start`; False where a new one
    would not pay, such as no core to spare: none). Leaving the block keeps it for the next
    study if a study borrowed it (it is closed instead if that study failed), and ends it
    without waiting if none ever did."""

    def __init__(self, tracking_uri: str | None, experiment: str | None, warm_up: bool,
                 start: bool, warm_up_now: bool = False):
        """`experiment`: the one its studies log to, if known (its store is checked for it
        meanwhile); a writer serves any experiment of its store. `warm_up_now`: prepare model
        logging at once (a final model's writer: its run is written at the end)."""
        self._key = tracking_uri
        self._writer = _prestarted.pop((tracking_uri, experiment or "", warm_up), None) or \
            _reuse_kept(tracking_uri, experiment or "")
        if self._writer is None and start:
            self._writer = ProcessWriter(tracking_uri, experiment or "", warm_up)
        self._loans = self._writer.loans if self._writer is not None else 0
        if self._writer is not None:
            _shared[self._key] = self._writer
            if warm_up and warm_up_now:
                self._writer.warm_up_now()

    def __enter__(self) -> SharedWriter:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        _shared.pop(self._key, None)
        borrowed = writer.loans > self._loans
        if not writer.alive() or not writer.loans:
            writer.abandon()
        elif kind is None or not borrowed:  # a refused study leaves a kept writer as it was
            _keep(writer, self._key)
        else:
            with contextlib.suppress(Exception):  # the error on its way out is the one to see
                writer.close()


def prestarted_for(tracking_uri: str | None, experiment: str | None) -> ProcessWriter | None:
    """The writer prestarted (or shared) for a study on this store and experiment (None: any
    experiment of the store)."""
    found = _shared.get(tracking_uri)
    if found is not None and found.alive():
        return found
    return next((writer for (uri, name, _), writer in _prestarted.items()
                 if uri == tracking_uri and experiment in (None, name)), None)


def prestarted() -> bool:
    """Whether a writer was started for the study about to run (by `tuner run` beside its
    imports; a comparison's, shared). One started by a study itself would make its imports
    while the study waits (a long study hands over to one instead: `_handover`)."""
    return bool(_prestarted) or any(writer.alive() for writer in _shared.values())


def take(tracking_uri: str | None, experiment: str, warm_up: bool
         ) -> tuple[ProcessWriter, bool]:
    """The writer for this study, and whether the study owns it (closes it at its end): the
    shared one, borrowed; else the prestarted one; else a new one (others are closed)."""
    lent = _shared.get(tracking_uri)
    if lent is not None and lent.alive():
        lent.loans += 1
        return lent, False
    found = _prestarted.pop((tracking_uri, experiment, warm_up), None)
    for other in list(_prestarted.values()):
        other.close()
    _prestarted.clear()
    return found or ProcessWriter(tracking_uri, experiment, warm_up), True


def close_kept() -> None:
    """End the writer kept from the last study (the interpreter ends: `tuner`'s commands end
    with `os._exit`, where exit handlers do not run)."""
    global _kept
    found, _kept = _kept, None
    if found is not None:
        with contextlib.suppress(Exception):  # it may have ended by itself
            found[1].close()


def _keep(writer: ProcessWriter, tracking_uri: str | None) -> None:
    """Keep `writer` for the interpreter's next study on this store; its runs are settled in
    the store's file now, as at a study's end."""
    global _kept, _closes_at_exit
    try:
        writer.rest(KEPT_IDLE_S)
    except (WriterLost, RuntimeError):
        writer.abandon()
        return
    close_kept()
    _kept = (_identity(tracking_uri), writer)
    if not _closes_at_exit:
        atexit.register(close_kept)
        _closes_at_exit = True


def _reuse_kept(tracking_uri: str | None, experiment: str) -> ProcessWriter | None:
    """The kept writer if it writes to the store `tracking_uri` names here and now, and still
    answers (it ends by itself when kept too long); else None, and it is ended."""
    global _kept
    if _kept is None:
        return None
    (identity, writer), _kept = _kept, None
    if identity == _identity(tracking_uri) and _resolves_here_as(writer, tracking_uri):
        try:
            writer.drain()
        except (WriterLost, RuntimeError):
            pass
        else:
            writer.precheck(experiment)
            return writer
    with contextlib.suppress(Exception):
        writer.close()
    return None


def _identity(tracking_uri: str | None) -> tuple[Any, ...]:
    """What decides the store a writer process resolves `tracking_uri` to: the URI, the folder
    (a relative SQLite path, MLflow's default) and the MLflow settings of the environment."""
    settings = sorted((name, value) for name, value in os.environ.items()
                      if name.startswith("MLFLOW_") and name not in _OWN_SETTINGS)
    return tracking_uri, os.getcwd(), tuple(settings)


def _resolves_here_as(writer: ProcessWriter, tracking_uri: str | None) -> bool:
    """Whether this process would resolve `tracking_uri` to the writer's store: where MLflow is
    loaded here, `mlflow.set_tracking_uri` may have named another one."""
    if tracking_uri or "mlflow" not in sys.modules:
        return True
    from tuner.tracking._client import store_uri

    return writer.resolved_uri is not None and store_uri(None) == writer.resolved_uri
