"""4. Sample efficiency per strategy; 5. pruning: epochs trained and best value per pruner;
6. multi-objective: the Pareto front's hypervolume per strategy.

Both run real tuner studies on digits (no tracking, journal storage in a temporary folder), so
they measure the whole toolkit, samplers and pruners included.
"""

from __future__ import annotations

import re
import statistics
import tempfile
from pathlib import Path

from benchmarks._common import Results, Row
from tuner import RunOptions, load_space, parse_space, run_study
from tuner.search import open_storage

SPACE = Path(__file__).resolve().with_name("study_space.yaml")  # trials only: no final model work


def _space(epochs: int, pruner: str = "none", early_stopping: bool = True):
    text = SPACE.read_text().replace("max_epochs: 25", f"max_epochs: {epochs}")
    if not early_stopping:
        text = re.sub(r"  early_stopping:\n(    .*\n)+", "  early_stopping: false\n", text)
    text = text.replace("pruner: {name: median, startup_trials: 5, warmup_epochs: 3}",
                        f"pruner: {{name: {pruner}, startup_trials: 5, warmup_epochs: 3}}")
    return parse_space(text, file=str(SPACE), default_name="digits_mlp")


def _study(space, tmp: Path, strategy: str, seed: int, trials: int, on_trial=None):
    tmp.mkdir(parents=True, exist_ok=True)
    return run_study(space, RunOptions(
        strategy=strategy, trials=trials, seed=seed, storage=str(tmp / f"{strategy}-{seed}.journal"),
        tracking=False, progress=False, threads=1, on_trial=on_trial, refit=False))


def sample_efficiency(results: Results, quick: bool = False) -> None:
    seeds = range(3 if quick else 5)
    budget, target = (20, 0.97) if quick else (40, 0.975)
    space = _space(epochs=15)
    tmp = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    medians: dict[str, float] = {}
    for strategy in ("random", "tpe", "gp", "cmaes", "qmc", "grid"):
        needed = []
        for seed in seeds:
            reached: list[int] = []

            def note(outcome, reached=reached) -> None:
                if not reached and outcome.value is not None and outcome.value >= target:
                    reached.append(outcome.number + 1)

            _study(space, tmp, strategy, seed, budget, note)
            needed.append(reached[0] if reached else budget + 1)
        medians[strategy] = statistics.median(needed)
        misses = sum(n > budget for n in needed)
        ratio = medians[strategy] / medians["random"]
        results.add(Row("search", f"{strategy}: trials to val accuracy {target} / random's", ratio,
                        "x", "", None, f"median {medians[strategy]:g} trials over {len(needed)} "
                        f"seeds{f', not reached in {misses}' if misses else ''} (budget {budget})"))


def pruning(results: Results, quick: bool = False) -> None:
    trials, epochs = (12, 10) if quick else (30, 20)
    seeds = range(2 if quick else 3)
    space_none = _space(epochs, "none", early_stopping=False)
    tmp = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    baseline_epochs, baseline_best = [], []
    per_pruner: dict[str, tuple[list[int], list[float]]] = {}
    for pruner in ("none", "median", "asha", "hyperband"):
        space = space_none if pruner == "none" else _space(epochs, pruner, early_stopping=False)
        epochs_list, best_list = [], []
        for seed in seeds:
            counted: list[int] = []
            result = _study(space, tmp / pruner, "tpe", seed, trials,
                            lambda o, c=counted: c.append(o.epochs))
            epochs_list.append(sum(counted))
            best_list.append(result.best_value or 0.0)
        per_pruner[pruner] = (epochs_list, best_list)
        if pruner == "none":
            baseline_epochs, baseline_best = epochs_list, best_list
    for pruner, (epochs_list, best_list) in per_pruner.items():
        if pruner == "none":
            continue
        ratio = statistics.median(e / b for e, b in zip(epochs_list, baseline_epochs, strict=True))
        gap = 100 * statistics.median(b - v for v, b in zip(best_list, baseline_best, strict=True))
        results.add(Row("pruning", f"{pruner}: epochs trained / no pruning", ratio, "x", "<= 0.5x",
                        ratio <= 0.5, f"{trials} trials x {epochs} epochs, TPE, {len(best_list)} "
                        f"seeds"))
        results.add(Row("pruning", f"{pruner}: best val accuracy below no pruning (points)", gap,
                        "pt", "<= 0.5", gap <= 0.5,
                        f"best {statistics.median(best_list):.4f} vs "
                        f"{statistics.median(baseline_best):.4f}"))




MULTI = Path(__file__).resolve().parents[1] / "search_spaces" / "digits_multi.yaml"


def multi_objective(results: Results, quick: bool = False) -> None:
    """6. Multi-objective: the hypervolume of the Pareto front (validation error up to 0.1,
    parameters up to the space's 50,000) that NSGA-II and multi-objective TPE reach in the
    bundled space's 24 trials; NSGA-II at Optuna's generation of 50 (its first is random) and at
    generations of 6 and 12."""
    import optuna

    from tuner.search import _samplers

    space = load_space(MULTI)
    seeds = range(2 if quick else 4)
    tmp = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    default = _samplers.NSGA2_POPULATION
    volumes: dict[str, list[float]] = {}
    try:
        for label, strategy, population in (("nsga2", "nsga2", default),
                                            ("nsga2, generations of 6", "nsga2", 6),
                                            ("nsga2, generations of 12", "nsga2", 12),
                                            ("tpe", "tpe", default)):
            _samplers.NSGA2_POPULATION = population
            for seed in seeds:
                journal = tmp / f"{strategy}-{population}-{seed}.journal"
                result = run_study(space, RunOptions(
                    strategy=strategy, seed=seed, storage=str(journal), tracking=False,
                    progress=False, threads=1, refit=False))
                study = optuna.load_study(study_name=result.study, storage=open_storage(
                    str(journal)))
                volumes.setdefault(label, []).append(_hypervolume(study))
    finally:
        _samplers.NSGA2_POPULATION = default
    for label, values in volumes.items():
        results.add(Row("multi", f"digits_multi, 24 trials: hypervolume, {label}",
                        statistics.median(values), "", "", None,
                        f"median of {len(values)} seeds: {[round(v, 3) for v in values]}"))


def _hypervolume(study) -> float:
    """The share of the box (error 0-0.1) x (0-50,000 parameters) that the front dominates."""
    reference = (0.1, 50_000.0)
    points = sorted((1.0 - t.values[0], float(t.values[1])) for t in study.best_trials)
    area, ceiling = 0.0, reference[1]
    for error, params in points:  # error rising: each point adds a strip below the last
        if error < reference[0] and params < ceiling:
            area += (reference[0] - error) * (ceiling - params)
            ceiling = params
    return area / (reference[0] * reference[1])
