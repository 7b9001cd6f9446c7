"""Comparing strategies as a user does: the whole `tuner compare` command.

`python -m benchmarks.run --only compare` (add `--quick` for fewer repeats).

- `tuner compare search_spaces/digits_mlp.yaml --strategies random,tpe --repeats 2` (4 studies
  of the default space's 16 trials, tracking, final models re-evaluated, refit and logged, views)
  against `benchmarks/plain_optuna.py` run once per (strategy, repeat) with the same sampler,
  seed, trials, epochs and pruner (no tracking, no final model): whole processes in an empty
  folder.
- The same `tuner compare` with one writer process shared by the studies (where a core is spare:
  the default since the seventh session) against the way it wrote before: from a thread in
  each study, which handed the trial runs over to a writer process of the study's own once the
  study looked long enough, and logged each study's model itself. Both are the CLI; the second
  starts no writer beside its imports and has the comparison's spare-core test answer no.
- The same `tuner compare` with `--jobs 2` (two studies at a time, each process writing its own
  runs and models) against `--jobs 1`: identical studies, the whole command's time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks._common import Results, Row
from benchmarks.bench_speed import REPO, SPACE, _env

STRATEGIES = ("random", "tpe")
REPEATS = 2
# The CLI as it wrote before: no writer prestarted, and the comparison told that no core is
# spare, so no shared writer process (each study still hands over to one of its own).
_UNSHARED = ("import sys; from tuner.tracking import _pool; "
             "_pool.prestart = lambda *args: None; from tuner.execution import _compare; "
             "_compare.spare_core = lambda threads: False; from tuner.cli import main; "
             "sys.exit(main(sys.argv[1:]))")


def _compare_args() -> list[str]:
    return ["compare", str(SPACE), "--strategies", ",".join(STRATEGIES), "--repeats",
            str(REPEATS), "--quiet", "--json"]


def _plain_studies(folder: str) -> None:
    """The comparison's studies as plain Optuna scripts, one process each."""
    from tuner import load_space
    from tuner.execution import repeat_seed

    space = load_space(SPACE)
    for repeat in range(REPEATS):
        for strategy in STRATEGIES:
            _run([sys.executable, str(REPO / "benchmarks" / "plain_optuna.py"), "--space",
                  "default", "--trials", str(space.study.trials), "--epochs",
                  str(space.training.max_epochs), "--sampler", strategy, "--seed",
                  str(repeat_seed(space.study.seed, repeat))], folder)


def _run(args: list[str], folder: str) -> None:
    done = subprocess.run(args, cwd=folder, env=_env(), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")


def _timed(name: str) -> float:
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as folder:
        start = time.perf_counter()
        if name == "plain":
            _plain_studies(folder)
        elif name == "shared":
            _run([sys.executable, "-m", "tuner", *_compare_args()], folder)
        elif name == "jobs":
            _run([sys.executable, "-m", "tuner", *_compare_args(), "--jobs", "2"], folder)
        else:
            _run([sys.executable, "-c", _UNSHARED, *_compare_args()], folder)
        return time.perf_counter() - start


def run(results: Results, quick: bool = False) -> None:
    repeats = 2 if quick else 3
    walls: dict[str, list[float]] = {"shared": [], "unshared": [], "plain": [], "jobs": []}
    for i in range(repeats):
        order = ["shared", "unshared", "plain", "jobs"]
        for name in order[::-1] if i % 2 else order:
            walls[name].append(_timed(name))
    to_plain = statistics.median(s / p for s, p in zip(walls["shared"], walls["plain"],
                                                       strict=True))
    median = {name: statistics.median(times) for name, times in walls.items()}
    results.add(Row("compare", "tuner compare (random,tpe x 2) / the same plain Optuna scripts",
                    to_plain, "x", "", None,
                    f"tuner {median['shared']:.1f} s, 4 plain scripts {median['plain']:.1f} s; "
                    f"{repeats} interleaved runs"))
    shared = statistics.median(s / u for s, u in zip(walls["shared"], walls["unshared"],
                                                     strict=True))
    results.add(Row("compare", "same: one shared writer process / a writer per study", shared,
                    "x", "", None, f"{median['shared']:.1f} s vs {median['unshared']:.1f} s"))
    jobs = statistics.median(j / s for j, s in zip(walls["jobs"], walls["shared"], strict=True))
    results.add(Row("compare", "same: --jobs 2 (two studies at a time) / --jobs 1", jobs, "x", "",
                    None, f"{median['jobs']:.1f} s vs {median['shared']:.1f} s on "
                    f"{os.cpu_count()} cores"))
