"""Checking the tracking store before a study is created, where the study's MLflow work will run:
in the writer process that `tuner run` started beside its imports (the study's process then
never imports MLflow), else in this process (`_check`, which says what is checked)."""

from __future__ import annotations

from collections.abc import Callable

from tuner._stores import SQL_SCHEMES, scheme_of
from tuner.tracking._errors import StoreError
from tuner.tracking._pool import prestarted_for


def check_store(tracking_uri: str | None, experiment: str | None = None,
                meanwhile: Callable[[], None] | None = None) -> None:
    """Raise `StoreError` (one line, no password) unless the tracking store can be reached and
    written, and the folder the experiment's artifacts go to too. `meanwhile`: work for this
    process while a writer process checks (which takes as long as MLflow's imports there);
    not called where this process checks itself."""
    writer = prestarted_for(tracking_uri, experiment)
    if writer is not None:
        problem = writer.check(experiment, meanwhile)
        if problem is not None:
            raise StoreError(problem)
        return
    from tuner.tracking._check import check_store as check_here

    check_here(tracking_uri, experiment)


def prepare_client(tracking_uri: str | None) -> None:
    """Import what an MLflow client of a SQL store needs (MLflow's SQL store and its schema
    check: about two seconds), without opening the store: work to do while a writer process
    checks it (see `check_store`), or while the study's process makes its imports."""
    if tracking_uri and scheme_of(tracking_uri) not in SQL_SCHEMES:
        return  # a server, a file store: nothing heavy to prepare
    try:
        import alembic.migration  # noqa: F401
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    except Exception:  # not installed as expected: the check will say what is wrong
        pass
