"""Large data: 1,000,000 rows x 100 features, two trials, peak memory against the data's size.

Runs in a fresh process (so the peak is this benchmark's own). The data are loaded once per
process and every trial trains on the same tensors; the figures show the resident memory after
loading, after the first trial and after the second (no growth = no per-trial copy).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import Results, Row

SPACE = """\
name: large
data:
  source: synthetic
  synthetic: {samples: %(rows)d, features: 100, informative: 20, classes: 10, seed: 0}
  val_fraction: 0.1
  test_fraction: 0.1
objective: {metric: accuracy}
training: {max_epochs: 1, early_stopping: false}
study: {strategy: random, pruner: none}
params:
  n_layers: 1
  units: {type: int, low: 32, high: 64}
  lr: 1e-3
  batch_size: 1024
"""


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _measure(rows: int) -> dict[str, float]:
    import torch

    from tuner import RunOptions, parse_space, run_study
    from tuner.data import load_dataset

    space = parse_space(SPACE % {"rows": rows}, file="large.yaml", default_name="large")
    before = _rss_mb()  # torch, scikit-learn, optuna and mlflow imported
    start = time.perf_counter()
    data = load_dataset(space.data)
    load_s = time.perf_counter() - start
    tensors = sum(t.element_size() * t.numel() for split in (data.train, data.val, data.test)
                  for t in (split.x, split.y)) / 2**20
    after_load = _rss_mb()
    rss: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    torch.set_num_threads(1)
    start = time.perf_counter()
    run_study(space, RunOptions(trials=2, tracking=False, progress=False, threads=1, refit=False,
                                storage=str(tmp / "s.journal"),
                                on_trial=lambda _: rss.append(_rss_mb())))
    train_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"before_mb": before, "data_mb": tensors, "after_load_mb": after_load, "after_trial1_mb": rss[0],
            "after_trial2_mb": rss[1], "peak_mb": peak, "load_s": load_s, "two_trials_s": train_s}


def run(results: Results, quick: bool = False) -> None:
    rows = 200_000 if quick else 1_000_000
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_large", str(rows)],
                         capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    m = json.loads(out.stdout.strip().splitlines()[-1])
    growth = m["after_trial2_mb"] - m["after_trial1_mb"]
    results.add(Row("large", f"{rows:,} x 100: (peak - imports) memory / data tensors",
                    (m["peak_mb"] - m["before_mb"]) / m["data_mb"], "x", "", None,
                    f"data {m['data_mb']:.0f} MB, imports {m['before_mb']:.0f} MB, peak "
                    f"{m['peak_mb']:.0f} MB, load "
                    f"{m['load_s']:.1f} s, 2 trials x 1 epoch {m['two_trials_s']:.1f} s"))
    results.add(Row("large", "resident memory growth from trial 1 to trial 2", growth, "MB",
                    "no per-trial copy", growth < 0.25 * m["data_mb"],
                    f"after load {m['after_load_mb']:.0f} MB, after trial 1 "
                    f"{m['after_trial1_mb']:.0f} MB, after trial 2 {m['after_trial2_mb']:.0f} MB"))


if __name__ == "__main__":
    print(json.dumps(_measure(int(sys.argv[1]))))
