"""Speed a user feels: whole commands, packed trials, tracking's cost, a busy neighbour, devices.

`python -m benchmarks.run --only command,pack,tracking_cost,gpu` (add `--quick` for fewer
repeats). Every figure is a ratio of two things measured side by side (interleaved), except the
per-trial cost of an instant objective, which is a slope (its fixed costs cancel).

- command: `tuner run search_spaces/digits_mlp.yaml` (16 TPE trials, <= 20 epochs, median
  pruner, tracking on, final model re-evaluated, refit and logged, one torch thread: the
  defaults) against `python benchmarks/plain_optuna.py --space default` (the same parameters,
  trials, epochs, sampler and pruner, read from the space file; one thread, no tracking), each a
  whole process in an empty folder; the share of tuner's command spent outside
  training; the same command with another CPU-bound process running against it alone.
- pack: trials per second of the default study with packed trials (`--pack` automatic) against
  one trial at a time (`--pack 1`), one core, 3 study seeds, and the best values they reach; the
  pack machinery alone on a fixed model (16 trials, 64-64-64-10, batch 32), where no padding
  is wasted.
- tracking_cost: tracking's share of a default-study's wall time (on / off, same study), the same
  for an 80-trial study run from Python (its trial runs handed over to a writer process, or a
  writer thread alone), and the per-trial cost of an instant custom objective with tracking on.
- gpu: packed vs one-at-a-time trials per second on CUDA (only where a GPU is present).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Results, Row

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "digits_mlp.yaml"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: ./mlflow.db in the folder
    return env


def _timed_process(args: list[str]) -> tuple[float, str]:
    """Run a whole command in a new empty folder; (wall seconds, stdout)."""
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as folder:
        start = time.perf_counter()
        done = subprocess.run(args, cwd=folder, env=_env(), capture_output=True, text=True,
                              check=False)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return wall, done.stdout


def _tuner(*extra: str) -> list[str]:
    return [sys.executable, "-m", "tuner", "run", str(SPACE), "--quiet", "--json", *extra]


def _plain() -> list[str]:
    """The plain script on the default space's parameters, trials and epochs."""
    from tuner import load_space

    space = load_space(SPACE)
    return [sys.executable, str(REPO / "benchmarks" / "plain_optuna.py"), "--space", "default",
            "--trials", str(space.study.trials), "--epochs", str(space.training.max_epochs)]


def command(results: Results, quick: bool = False) -> None:
    repeats = 2 if quick else 3
    ratios, packed_off, outside, outside_all, walls, plain_walls = [], [], [], [], [], []
    for i in range(repeats):
        order = [("tuner", _tuner()), ("plain", _plain()), ("pack1", _tuner("--pack", "1"))]
        if i % 2:
            order.reverse()
        times: dict[str, float] = {}
        for name, args in order:
            wall, out = _timed_process(args)
            times[name] = wall
            if name == "tuner":
                result = json.loads(out)
                outside.append(100 * (wall - result["training_s"]) / wall)
                # The final model's training: re-evaluation on folds, refit on train + val.
                final = result.get("final", {})
                final_s = final.get("reevaluate_s", 0.0) + final.get("final_model_s", 0.0)
                outside_all.append(100 * (wall - result["training_s"] - final_s) / wall)
        ratios.append(times["tuner"] / times["plain"])
        packed_off.append(times["pack1"] / times["plain"])
        walls.append(times["tuner"])
        plain_walls.append(times["plain"])
    ratio = statistics.median(ratios)
    results.add(Row("command", "default study, whole command: tuner / plain Optuna script",
                    ratio, "x", "<= 0.4x", ratio <= 0.4,
                    f"tuner {statistics.median(walls):.1f} s (tracking, model, views), plain "
                    f"{statistics.median(plain_walls):.1f} s; {repeats} interleaved runs"))
    results.add(Row("command", "same, tuner --pack 1 (one trial at a time) / plain",
                    statistics.median(packed_off), "x", "", None, ""))
    share = statistics.median(outside)
    results.add(Row("command", "time outside training / tuner's whole command", share, "%",
                    "<= 15%", share <= 15.0, "imports, sampling, storage, MLflow, test "
                    "evaluation, views, model logging, the final model's re-evaluation and "
                    "refit"))
    share = statistics.median(outside_all)
    results.add(Row("command", "same, the final model's re-evaluation and refit counted as "
                    "training", share, "%", "", None, "imports, sampling, storage, MLflow, test "
                    "evaluation, views, model logging"))
    busy, quiet = [], []
    for i in range(repeats):
        for loaded in ((False, True) if i % 2 == 0 else (True, False)):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
            try:
                wall, _ = _timed_process(_tuner())
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            (busy if loaded else quiet).append(wall)
    ratio = statistics.median(b / q for b, q in zip(busy, quiet, strict=True))
    results.add(Row("command", "default study with one CPU-bound process beside / alone", ratio,
                    "x", "<= 1.3x", ratio <= 1.3, f"{statistics.median(busy):.1f} s vs "
                    f"{statistics.median(quiet):.1f} s"))


def _study(pack: int | None, seed: int, folder: Path, trials: int | None = None,
           tracking: bool = False, space: Any = None) -> Any:
    from tuner import RunOptions, load_space, run_study

    return run_study(space or load_space(SPACE), RunOptions(
        seed=seed, trials=trials, storage=str(folder / f"s{seed}-{pack}.journal"),
        tracking=tracking, tracking_uri=f"sqlite:///{folder}/mlflow.db", log_model=False,
        views=False, progress=False, threads=1, pack=pack, study_name=f"s{seed}-{pack}-"
        f"{time.monotonic_ns()}"))


def pack(results: Results, quick: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    seeds = (0, 1) if quick else (0, 1, 2)
    folder = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    _study(1, 99, folder, trials=2)  # torch's one-time costs, outside the timings
    ratios, training, best = [], [], {1: [], None: []}
    for seed in seeds:
        runs = {}
        for p in ((None, 1) if seed % 2 == 0 else (1, None)):
            runs[p] = _study(p, seed, folder)
            best[p].append(runs[p].best_value)
        n = {p: r.n_complete + r.n_pruned + r.n_failed for p, r in runs.items()}
        ratios.append((n[None] / runs[None].wall_s) / (n[1] / runs[1].wall_s))
        training.append(runs[1].training_s / runs[None].training_s)
    ratio = statistics.median(ratios)
    images = 360  # validation rows of the default split: one image is 1/360
    results.add(Row("pack", "default study, trials/s: packed / one at a time (one core)", ratio,
                    "x", ">= 4x", ratio >= 4.0,
                    f"{len(seeds)} seeds; training time alone: "
                    f"{statistics.median(training):.2f}x"))
    gap = (statistics.mean(best[None]) - statistics.mean(best[1])) * images
    results.add(Row("pack", "best value at equal trials: packed - one at a time", gap,
                    "images", "within noise", abs(gap) <= 2.0,
                    f"packed {[round(v, 4) for v in best[None]]}, one at a time "
                    f"{[round(v, 4) for v in best[1]]} (seeds {list(seeds)})"))
    results.add(Row("pack", "16 trials 64-64-64-10, batch 32: packed / one at a time",
                    _fixed_model(quick), "x", "", None, "the machinery without padding: one "
                    "stacked step per batch against 16"))


def _fixed_model(quick: bool) -> float:
    from tuner import load_space
    from tuner.data import load_dataset
    from tuner.space import TrialConfig
    from tuner.training import PackedTrial, fit, fit_packed

    data = load_dataset(load_space(SPACE).data)
    configs = [TrialConfig(units=(64, 64), batch_size=32, lr=1e-3 * (1 + i % 4),
                           dropout=0.1 * (i % 3)) for i in range(16)]
    options: dict[str, Any] = {"max_epochs": 2 if quick else 4, "early_stopping": None}
    ratios = []
    for _ in range(2 if quick else 3):
        alone = _seconds(lambda: [fit(c, data, seed=i, **options)
                                  for i, c in enumerate(configs)])
        packed = _seconds(lambda: fit_packed([PackedTrial(i, c, i)
                                              for i, c in enumerate(configs)], data,
                                             micro=32, **options))
        ratios.append(alone / packed)
    return statistics.median(ratios)


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


INSTANT = """\
name: instant
model: custom
objective: {metric: score, direction: maximize}
training: {max_epochs: 1, early_stopping: false}
study: {strategy: random, trials: 10, seed: 0, pruner: none}
params:
  x: {type: float, low: 0, high: 1}
  y: {type: int, low: 1, high: 9}
"""


def tracking_cost(results: Results, quick: bool = False) -> None:
    # MLflow loaded here, as in a notebook that used it: a study from Python then starts no
    # writer process of its own (the thread rows); the process rows are given one.
    import mlflow  # noqa: F401
    import torch

    from tuner import RunOptions, load_space, parse_space
    from tuner import run_study as api_run
    from tuner.tracking import _pool, close_kept_writer, prestart_writer

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    uri = f"sqlite:///{folder}/mlflow.db"
    _study(1, 99, folder, trials=2, tracking=True)  # the store exists: not part of a study
    close_kept_writer()

    def as_tuner_run(seed: int) -> float:
        """The study with the writer process that `tuner run` starts beside its imports (which
        take about as long as the writer's: here, waited for before the study starts)."""
        name = load_space(SPACE).name
        prestart_writer(uri, name, False)
        _pool._prestarted[(uri, name, False)].drain()  # its imports are made
        try:
            return float(_study(None, seed, folder, tracking=True).wall_s)
        finally:
            close_kept_writer()  # else the next study, from Python, would reuse it

    variants: dict[str, list[float]] = {"thread": [], "process": [], "off": []}
    # What tracking adds is ~0.1 s a study, and single studies of one seed vary by as much:
    # six interleaved triples (not three) steady the median.
    for i in range(3 if quick else 6):
        order = ["thread", "process", "off"]
        for variant in order if i % 2 == 0 else order[::-1]:
            variants[variant].append(
                as_tuner_run(10 + i) if variant == "process" else
                _study(None, 10 + i, folder, tracking=variant == "thread").wall_s)
    off = variants["off"]
    for variant, how in (("process", "the writer process of `tuner run`, or a notebook's kept"),
                         ("thread", "a writer thread (from Python, MLflow loaded, no writer)")):
        on = variants[variant]
        shares = [100 * (a - b) / a for a, b in zip(on, off, strict=True)]
        share = statistics.median(shares)
        results.add(Row("tracking", f"tracking's share of the default study's wall time, {how}",
                        share, "%", "<= 3%", share <= 3.0, f"on {statistics.median(on):.2f} s, "
                        f"off {statistics.median(off):.2f} s; {len(on)} pairs, each "
                        f"{min(shares):.1f} to {max(shares):.1f}%"))

    # A longer study from Python (80 trials, ~7 s): its trial runs handed over to a writer
    # process once enough of it is left, against the thread alone, against no tracking.
    from tuner.tracking import _handover

    rule = _handover.MIN_REMAINING_S
    longer: dict[str, list[float]] = {"hand-over": [], "thread": [], "off": []}
    for i in range(1 if quick else 3):
        for variant in longer if i % 2 == 0 else list(longer)[::-1]:
            _handover.MIN_REMAINING_S = float("inf") if variant == "thread" else rule
            longer[variant].append(_study(None, 20 + i, folder, trials=80,
                                          tracking=variant != "off").wall_s)
    _handover.MIN_REMAINING_S = rule
    off_long = statistics.median(longer["off"])
    for variant, how in (("hand-over", "handed over to a writer process"),
                         ("thread", "a writer thread alone")):
        on_long = statistics.median(longer[variant])
        share = 100 * (on_long - off_long) / on_long
        results.add(Row("tracking", f"tracking's share, 80-trial study from Python, {how}",
                        share, "%", "", None, f"on {on_long:.2f} s, off {off_long:.2f} s; "
                        f"{len(longer[variant])} runs each"))

    space = parse_space(INSTANT, file=str(folder / "instant.yaml"))

    def objective(params: dict[str, Any], reporter: Any) -> float:
        return float(params["x"]) * int(params["y"])

    def instant(trials: int, track: bool, process: bool = False) -> float:
        name = f"instant-{trials}-{track}-{time.monotonic_ns()}"
        if process:  # as `tuner run` on a space with a trainer file
            prestart_writer(uri, space.name, False)
            _pool._prestarted[(uri, space.name, False)].drain()
        try:
            return api_run(space, RunOptions(
                trials=trials, storage=str(folder / f"{name}.journal"), study_name=name,
                tracking=track, tracking_uri=f"sqlite:///{folder}/mlflow.db", progress=False,
                threads=1, views=False, log_model=False), objective=objective).wall_s
        finally:
            close_kept_writer()  # the thread's rows measure a thread

    small, large = (10, 60) if quick else (20, 120)
    slopes: dict[str, list[float]] = {"process": [], "thread": [], "off": []}
    for _ in range(2):
        for variant in slopes:
            track, process = variant != "off", variant == "process"
            slopes[variant].append(1000 * (instant(large, track, process) -
                                           instant(small, track, process)) / (large - small))
    off = statistics.median(slopes["off"])
    for variant, how in (("process", "the writer process of `tuner run`"),
                         ("thread", "a writer thread (from Python)")):
        per_trial = statistics.median(slopes[variant])
        results.add(Row("tracking", f"instant custom objective, ms per trial with tracking, {how}",
                        per_trial, "ms", "<= 20 ms", per_trial <= 20.0,
                        f"without tracking {off:.1f} ms; slope between {small} and {large} "
                        "trials (random sampler, journal file)"))


def gpu(results: Results, quick: bool = False) -> None:
    import torch

    if not torch.cuda.is_available():
        results.add(Row("gpu", "packed / one at a time trials/s on CUDA", float("nan"), "x",
                        ">= 20x", None, "not measured: no GPU on this machine"))
        return
    from tuner import RunOptions, load_space, run_study

    folder = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    space = load_space(SPACE)
    rates = {}
    for p in (1, None):
        result = run_study(space, RunOptions(
            trials=24 if quick else 60, seed=0, storage=str(folder / f"g{p}.journal"),
            tracking=False, progress=False, views=False, pack=p, device="cuda",
            strategy="random"))
        rates[p] = (result.n_complete + result.n_pruned) / result.training_s
    ratio = rates[None] / rates[1]
    results.add(Row("gpu", "packed / one at a time trials/s on CUDA (training time)", ratio, "x",
                    ">= 20x", ratio >= 20.0, torch.cuda.get_device_name()))
