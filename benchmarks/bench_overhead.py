"""Per-trial cost of each storage and strategy, outside training (ask, suggest, tell).

The objective is a cheap synthetic function of the parameters, so what is timed is what tuner
pays around every trial: the sampler's suggestion and the storage's round trips. Baseline: the
random sampler on Optuna's in-memory storage, measured in the same run.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna

from benchmarks._common import Results, Row
from tuner import load_space
from tuner.search import make_sampler, open_storage

SPACE = Path(__file__).resolve().with_name("study_space.yaml")  # trials only: no final model work


@contextlib.contextmanager
def storages(tmp: Path) -> Iterator[dict[str, optuna.storages.BaseStorage]]:
    out: dict[str, optuna.storages.BaseStorage] = {
        "memory": optuna.storages.InMemoryStorage(),
        "journal file": open_storage(str(tmp / "bench.journal")),
        "sqlite": open_storage(f"sqlite:///{tmp}/bench.db"),
    }
    database = f"tuner_bench_{uuid.uuid4().hex[:8]}"
    admin = None
    try:
        import psycopg2

        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {database}")
        out["postgresql"] = open_storage(f"postgresql://postgres@127.0.0.1/{database}")
    except Exception as exc:  # a benchmark runs where it can; it says what it skipped
        print(f"  (postgresql skipped: {exc})")
    try:
        import redis

        redis.Redis(host="127.0.0.1").ping()
        out["redis"] = open_storage("redis://127.0.0.1:6379/15")
    except Exception as exc:
        print(f"  (redis skipped: {exc})")
    try:
        yield out
    finally:
        if "redis" in out:
            import redis

            redis.Redis(host="127.0.0.1", db=15).flushdb()
        if admin is not None:
            out.pop("postgresql", None)
            with contextlib.suppress(Exception):
                admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.close()


def per_trial(storage: optuna.storages.BaseStorage, strategy: str, trials: int) -> float:
    """Median seconds per trial over the last third of `trials` (samplers slow down with history)."""
    space = load_space(SPACE)
    study = optuna.create_study(storage=storage, sampler=make_sampler(strategy, 0),
                                study_name=f"{strategy}-{uuid.uuid4().hex[:6]}",
                                direction="maximize")
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        params = space.params.suggest(trial)
        value = -abs(math.log10(float(params["lr"])) + 2.5) - float(params.get("dropout", 0))
        study.tell(trial, value)
        times.append(time.perf_counter() - start)
    return statistics.median(times[-max(1, trials // 3):])


def run(results: Results, quick: bool = False) -> None:
    trials = 30 if quick else 90
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storages(Path(tempfile.mkdtemp(prefix="tuner-bench-"))) as found:
        baseline = per_trial(optuna.storages.InMemoryStorage(), "random", trials)
        for storage_name, storage in found.items():
            for strategy in ("random", "tpe", "gp", "cmaes", "qmc"):
                if strategy == "gp" and storage_name != "memory":
                    continue  # GP's cost is the sampler's, the same on every storage
                cost = per_trial(storage, strategy, trials)
                results.add(Row("overhead", f"{strategy} on {storage_name}: per-trial cost / "
                                f"random in memory", cost / baseline, "x", "", None,
                                f"{cost * 1000:.1f} ms per trial near trial {trials}"))
