"""Scale-out figures: trials per second with 1 and 2 workers on the journal file and on
PostgreSQL, storage time per trial, and the recovery time after a worker is SIGKILLed.

    python benchmarks/bench_parallel.py [--trials 16] [--pg-admin postgresql://postgres@127.0.0.1/postgres]

The objective is fixed and short (iris, one small hidden layer, 5 epochs, no early stopping, no
pruning, no MLflow), so that the figures show the workers and the storage, not the model.
Throughput is taken from the study's own timestamps (first trial start to last trial end), so
process start-up (imports: seconds) is reported separately as wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._common import Results, Row  # noqa: E402
from tuner import RunOptions, parse_space, run_study  # noqa: E402
from tuner.search import open_storage  # noqa: E402

SHORT = """\
name: bench
data: {source: iris}
training: {max_epochs: 5, early_stopping: false}
study: {strategy: random, pruner: none}
params:
  units: {type: int, low: 8, high: 32}
  n_layers: 1
  lr: {type: float, low: 1e-3, high: 1e-1, log: true}
  batch_size: 16
"""

SLOW = """\
name: benchslow
data: {source: digits}
training: {max_epochs: 30, early_stopping: false}
study: {strategy: random, pruner: none}
params:
  n_layers: 3
  units: 256
  lr: {type: float, low: 1e-4, high: 1e-3, log: true}
  batch_size: 8
"""


def throughput(storage_url: str, study: str) -> tuple[int, float]:
    trials = optuna.load_study(study_name=study, storage=open_storage(storage_url)).trials
    done = [t for t in trials if t.datetime_complete is not None]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done))
    return len(done), span.total_seconds()


def measure(storage_url: str, workers: int, trials: int) -> dict[str, float]:
    name = f"bench-{workers}w-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    result = run_study(parse_space(SHORT), RunOptions(
        storage=storage_url, study_name=name, trials=trials, workers=workers, tracking=False,
        log_model=False, progress=False, views=False))
    wall = time.perf_counter() - started
    n, span = throughput(storage_url, name)
    return {"workers": workers, "trials": n, "trials_per_s": round(n / span, 2),
            "wall_s": round(wall, 1), "storage_ms_per_trial": round(1000 * result.storage_s / n, 1)}


def recovery(storage_url: str, timeout: float, workdir: Path) -> dict[str, float]:
    """SIGKILL a worker mid-trial; time until its trial is retried by the other worker."""
    space = workdir / "slow.yaml"
    space.write_text(SLOW)
    study = f"recover-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "run", str(space), "--storage", storage_url, "--study",
         study, "--workers", "2", "--trials", "2", "--heartbeat-timeout", str(timeout),
         "--no-tracking", "--json", "--quiet"], cwd=workdir, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    storage = open_storage(storage_url)
    victim = None
    while victim is None:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name=study, storage=storage).trials
        except KeyError:
            continue
        victim = next((t for t in trials if t.state.name == "RUNNING"
                       and "tuner:heartbeat" in t.system_attrs
                       and time.time() - t.datetime_start.timestamp() > 2), None)
    os.kill(victim.system_attrs["tuner:heartbeat"]["pid"], signal.SIGKILL)
    killed = time.time()
    proc.communicate(timeout=900)
    trials = optuna.load_study(study_name=study, storage=open_storage(storage_url)).trials
    lost = trials[victim.number]
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == victim.number)
    return {"heartbeat_timeout_s": timeout,
            "kill_to_failed_s": round(lost.datetime_complete.timestamp() - killed, 1),
            "kill_to_retry_start_s": round(retry.datetime_start.timestamp() - killed, 1),
            "exit_code": proc.returncode}


def fresh_pg(admin: str) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name, admin.rsplit("/", 1)[0] + f"/{name}"


def drop_pg(admin: str, name: str) -> None:
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,))
        cur.execute(f'DROP DATABASE "{name}"')
    conn.close()


def run(results: Results, quick: bool = False) -> None:
    """6. Trials per second with 2 workers / 1 worker on the journal file (one table row)."""
    trials = 8 if quick else 16
    with tempfile.TemporaryDirectory() as tmp:
        one = measure(str(Path(tmp) / "one.journal"), 1, trials)
        two = measure(str(Path(tmp) / "two.journal"), 2, trials)
    ratio = two["trials_per_s"] / one["trials_per_s"]
    results.add(Row("parallel", "journal file: trials/s with 2 workers / 1 worker", ratio, "x",
                    ">= 1.8x", ratio >= 1.8,
                    f"{one['trials_per_s']} vs {two['trials_per_s']} trials/s, {trials} trials, "
                    f"storage {two['storage_ms_per_trial']} ms/trial"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--heartbeat-timeout", type=float, default=10.0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    figures: dict[str, object] = {"cores": os.cpu_count(), "load_avg": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        journal = str(workdir / "bench.journal")
        figures["journal"] = [measure(journal, w, args.trials) for w in (1, 2)]
        db, url = fresh_pg(args.pg_admin)
        try:
            figures["postgresql"] = [measure(url, w, args.trials) for w in (1, 2)]
        finally:
            drop_pg(args.pg_admin, db)
        figures["recovery_journal"] = recovery(str(workdir / "recover.journal"),
                                               args.heartbeat_timeout, workdir)
    figures["load_avg_end"] = os.getloadavg()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
