"""2. Study wall time vs the plain Optuna script; 3. tracking overhead (tuner, on vs off).

Equal work: the same space, random sampler and seed, the same number of trials and epochs,
no early stopping (so both sides train the same epochs), with or without the same pruner.
The model upload and the per-study plots are switched off on tuner's side, since the plain
script does neither.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from benchmarks._common import Results, Row, ab_ratio
from benchmarks.plain_optuna import run_plain
from tuner import RunOptions, parse_space, run_study
from tuner.data import load_dataset

SPACE = Path(__file__).resolve().with_name("study_space.yaml")  # trials only: no final model work


def space_text(epochs: int, pruner: str) -> str:
    text = SPACE.read_text()
    text = text.replace("max_epochs: 25", f"max_epochs: {epochs}")
    text = re.sub(r"  early_stopping:\n(    .*\n)+", "  early_stopping: false\n", text)
    return text.replace("pruner: {name: median, startup_trials: 5, warmup_epochs: 3}",
                        f"pruner: {{name: {pruner}, startup_trials: 5, warmup_epochs: 3}}")


def run(results: Results, quick: bool = False) -> None:
    trials, epochs, repeats = (6, 5, 3) if quick else (12, 10, 5)
    tmp = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    counter = iter(range(10_000))
    for pruner in ("none", "median"):
        space = parse_space(space_text(epochs, pruner), file="bench.yaml", default_name="bench")
        assert space.training.early_stopping is None
        data = load_dataset(space.data)

        def ours(track: bool, space=space, trials=trials) -> None:
            i = next(counter)
            run_study(space, RunOptions(strategy="random", trials=trials, seed=i,
                                        storage=str(tmp / f"s{i}.journal"),
                                        tracking=track, tracking_uri=f"sqlite:///{tmp}/ours.db",
                                        log_model=False, views=False, progress=False,
                                        threads=1, refit=False))

        def plain(track: bool, data=data, pruner=pruner) -> None:
            run_plain(data, trials, epochs, next(counter), pruner, track,
                      f"sqlite:///{tmp}/plain.db")

        ours(True)  # create the MLflow stores outside the timings
        plain(True)
        for track in (True, False):
            ratio, t_ours, t_plain = ab_ratio(lambda t=track: ours(t), lambda t=track: plain(t),
                                              repeats)
            label = "with MLflow on both sides" if track else "no tracking"
            target = "<= 0.5x" if track and pruner == "none" else ""
            results.add(Row("study", f"pruner {pruner}, {label}: tuner wall / plain Optuna wall",
                            ratio, "x", target, ratio <= 0.5 if target else None,
                            f"{trials} trials x {epochs} epochs: tuner {t_ours:.1f} s, plain "
                            f"{t_plain:.1f} s"))
        if pruner == "none":
            # Tracking's share is judged on a study of the default's size (30 trials).
            size = 10 if quick else 30
            ratio, t_on, t_off = ab_ratio(lambda n=size: ours(True, trials=n),
                                          lambda n=size: ours(False, trials=n), repeats)
            share = 100 * (t_on - t_off) / t_on
            results.add(Row("tracking", "tracking on / off, same study (wall time)", ratio, "x",
                            "", None, f"{size} trials x {epochs} epochs: on {t_on:.2f} s, "
                            f"off {t_off:.2f} s"))
            results.add(Row("tracking", "share of study wall time spent on tracking", share, "%",
                            "<= 3%", share <= 3.0, "SQLite MLflow store, default settings"))
