"""`tuner worker` (join an existing study from any host) and the scale-out flags of `tuner run`.

Heavy libraries load inside the handler only, so `tuner --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tuner import _collector as collector


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """Where and how many trials train at once (`run`, `worker`, `compare`)."""
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads per process "
                        "(default: 1; a small MLP's steps are too short for more: use --workers "
                        "for more cores)")
    parser.add_argument("--pack", type=int, metavar="K", help="train up to K MLP trials at once "
                        "as one stacked model; 1: one trial at a time (default: sized from the "
                        "model and the device)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, "
                        "cuda, cuda:N (default: auto)")


def device_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"threads": args.threads, "pack": args.pack, "device": args.device}


def add_scaling_flags(parser: argparse.ArgumentParser, workers_help: str) -> None:
    """Flags shared by `tuner run` and `tuner worker`."""
    parser.add_argument("--workers", type=int, default=1, metavar="N", help=workers_help)
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="a running trial silent this long (its worker died) is failed and "
                        "retried once with the same parameters (default: 60)")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    add_scaling_flags(parser, "worker processes on this machine; with --dask: the most trials "
                      "at a time (default: 1; with --dask, every Dask thread)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="run the trials as tasks on a Dask cluster, e.g. "
                        "tcp://scheduler:8786 (default: in this machine's processes; needs the "
                        "dask extra)")
    parser.add_argument("--allow-space-change", action="store_true",
                        help="resume a study although its space changed, recording the change "
                        "(default: refuse)")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RunOptions fields that the flags above set (checked by RunOptions itself)."""
    return {"workers": args.workers, "dask": args.dask,
            "allow_space_change": args.allow_space_change,
            "heartbeat_timeout": args.heartbeat_timeout}


def register(sub: Any) -> None:
    worker = sub.add_parser(
        "worker", help="join an existing study (its space is stored with it) and run its trials")
    worker.add_argument("--storage", metavar="URL", required=True,
                        help="the study's storage: postgresql://, redis://, or a shared journal "
                        "file (required)")
    worker.add_argument("--study", metavar="NAME", required=True, help="the study's name (required)")
    worker.add_argument("--trials", type=int, metavar="N", help="the study's trial budget "
                        "(default: the latest `tuner run`'s)")
    add_device_flags(worker)
    worker.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI of the study (default: "
                        "MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    worker.add_argument("--no-tracking", action="store_true", help="do not log to MLflow "
                        "(default: log)")
    worker.add_argument("--json", action="store_true", help="print one JSON object on stdout "
                        "(default: a line of text)")
    worker.add_argument("--quiet", action="store_true", help="no progress bar (default: a "
                        "progress bar on stderr)")
    add_scaling_flags(worker, "worker processes on this machine (default: 1)")
    worker.set_defaults(handler=cmd_worker)


@collector.pausing  # while the study's libraries load (see tuner._collector)
def cmd_worker(args: argparse.Namespace) -> int:
    from tuner.execution import WorkerOptions, join_study

    result = join_study(WorkerOptions(
        storage=args.storage, study=args.study, trials=args.trials, workers=args.workers,
        **device_options(args), tracking_uri=args.tracking_uri, tracking=not args.no_tracking,
        heartbeat_timeout=args.heartbeat_timeout, progress=not (args.quiet or args.json)))
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print(f"study {result.study}: {result.n_complete} complete, {result.n_pruned} pruned, "
              f"{result.n_failed} failed; best {result.best_value} (trial {result.best_trial}); "
              f"{result.wall_s:.1f} s")
        for note in result.notes:
            print(f"note: {note}")
    if result.interrupted:
        print("tuner: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if result.all_failed:
        print(f"tuner: every trial of study {result.study} failed (see the note above)",
              file=sys.stderr)
        return 1
    return 0
