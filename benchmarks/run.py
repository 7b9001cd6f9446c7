"""Run every benchmark and print one table: `python -m benchmarks.run [--quick] [--only a,b]`.

Each figure is a ratio against a baseline measured in the same run (interleaved repeats, median
of per-pair ratios), so it holds on a noisy shared machine. Results also go to
benchmarks/results.md with a description of the machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time
import warnings
from pathlib import Path

import optuna
import torch

from benchmarks._common import Results

BENCHES = {
    "loop": ("benchmarks.bench_loop", "run"),
    "study": ("benchmarks.bench_study", "run"),
    "search": ("benchmarks.bench_search", "sample_efficiency"),
    "pruning": ("benchmarks.bench_search", "pruning"),
    "multi": ("benchmarks.bench_search", "multi_objective"),
    "parallel": ("benchmarks.bench_parallel", "run"),
    "sklearn": ("benchmarks.bench_sklearn", "run"),
    "overhead": ("benchmarks.bench_overhead", "run"),
    "large": ("benchmarks.bench_large", "run"),
    "command": ("benchmarks.bench_speed", "command"),
    "compare": ("benchmarks.bench_compare", "run"),
    "pack": ("benchmarks.bench_speed", "pack"),
    "tracking_cost": ("benchmarks.bench_speed", "tracking_cost"),
    "notebook": ("benchmarks.bench_notebook", "run"),
    "gpu": ("benchmarks.bench_speed", "gpu"),
    "views": ("benchmarks.bench_views", "run"),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, optuna {optuna.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and trials")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen = args.only.split(",") if args.only else list(BENCHES)
    results = Results()
    started = time.perf_counter()
    for name in chosen:
        module, function = BENCHES[name]
        print(f"[{name}]", flush=True)
        getattr(importlib.import_module(module), function)(results, quick=args.quick)
    elapsed = time.perf_counter() - started
    text = (f"# Benchmark results\n\nMachine: {machine()}.\n\n"
            f"Command: `python -m benchmarks.run{' --quick' if args.quick else ''}"
            f"{f' --only {args.only}' if args.only else ''}` ({elapsed / 60:.1f} min).\n\n"
            f"{results.markdown()}\n")
    out = Path(__file__).with_name("results.md")
    out.write_text(text)
    print()
    print(results.markdown())
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
