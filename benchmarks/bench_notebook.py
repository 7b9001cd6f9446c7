"""A notebook's studies: several `tuner.run_study` calls in one interpreter.

`python -m benchmarks.run --only notebook`. Three default studies (seeds 0, 1, 2) run one after
another in one process, as cells of a notebook or a script would, each process in an empty
folder with MLflow's default store. Side by side (interleaved):

- kept: as tuner does: the first study's MLflow writer process (started before torch loads) is
  kept and serves the later ones;
- thread: the first study's writer is ended when it ends (`tuner.tracking.close_kept_writer()`)
  and the later studies are told that no core is spare, so they write from a thread and import
  MLflow and model logging's `torch.export` in the notebook's own process: how tuner wrote
  them before writers were kept.

The rows: the later studies' time (the second and third together), and the whole process's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks._common import Results, Row
from benchmarks.bench_speed import SPACE, _env

_SCRIPT = """
import json, sys, time
import tuner
import tuner.tracking
space = tuner.load_space(sys.argv[1])
studies = []
for seed in (0, 1, 2):
    started = time.perf_counter()
    result = tuner.run_study(space, tuner.RunOptions(seed=seed, progress=False))
    assert result.model_uri is not None
    studies.append(time.perf_counter() - started)
    if sys.argv[2] == "thread":  # the later studies write from a thread, as they did before
        tuner.tracking.close_kept_writer()
        import tuner.tracking._writer
        tuner.tracking._writer.spare_core = lambda threads: False
print(json.dumps({"studies": studies, "mlflow_here": "mlflow" in sys.modules}))
"""


def _notebook(variant: str) -> tuple[float, list[float], bool]:
    """(whole process seconds, each study's seconds, whether MLflow loaded in the process)."""
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as folder:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _SCRIPT, str(SPACE), variant], cwd=folder,
                              env=_env(), capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the {variant} notebook failed: {done.stderr[-2000:]}")
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, seen["studies"], seen["mlflow_here"]


def run(results: Results, quick: bool = False) -> None:
    runs: dict[str, list[tuple[float, list[float], bool]]] = {"kept": [], "thread": []}
    for i in range(2 if quick else 3):
        for variant in ("kept", "thread") if i % 2 == 0 else ("thread", "kept"):
            runs[variant].append(_notebook(variant))
    later = {v: [sum(studies[1:]) for _, studies, _ in found] for v, found in runs.items()}
    whole = {v: [wall for wall, _, _ in found] for v, found in runs.items()}
    each = {v: [statistics.median(s[k] for _, s, _ in found) for k in range(3)]
            for v, found in runs.items()}
    loaded = {v: any(m for _, _, m in found) for v, found in runs.items()}
    ratio = statistics.median(k / t for k, t in zip(later["kept"], later["thread"], strict=True))
    results.add(Row("notebook", "a notebook's 2nd and 3rd default studies: kept writer / thread",
                    ratio, "x", "", None,
                    f"studies {', '.join(f'{s:.1f}' for s in each['kept'])} s against "
                    f"{', '.join(f'{s:.1f}' for s in each['thread'])} s; MLflow imported in "
                    f"the notebook's process: {loaded['kept']} against {loaded['thread']}; "
                    f"{len(later['kept'])} interleaved runs"))
    ratio = statistics.median(k / t for k, t in zip(whole["kept"], whole["thread"], strict=True))
    results.add(Row("notebook", "the same three studies' whole process: kept / thread", ratio,
                    "x", "", None, f"{statistics.median(whole['kept']):.1f} s against "
                    f"{statistics.median(whole['thread']):.1f} s"))
