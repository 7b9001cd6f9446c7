"""7. The whole `tuner run` against `HalvingRandomSearchCV(MLPClassifier)`, like for like.

For each data set (digits, wine, breast_cancer) and data seed (a different train / validation /
test split each), both sides get the same rows: scikit-learn's search fits on train + validation
(3-fold CV, refit of its pick), tuner runs its default space (`search_spaces/digits_mlp.yaml`,
the source and seeds swapped) through `run_study`, the code path of `tuner run`: trials,
re-evaluation, refit on train + validation, one test evaluation. Both run in this process (imports
paid before timing) on one thread each (torch threads, BLAS threads), without MLflow.

Measured per data set (medians over seeds): test accuracy of each side; tuner's wall time over
scikit-learn's; tuner's final model with each step on or off (the trial's own model, refit,
re-evaluation, an ensemble), from the same study finished again, with the extra time of each
step; test accuracy at equal wall time (a study given scikit-learn's time, `--timeout`); the time
to reach scikit-learn's median test accuracy; and optimism: how far the validation score a study
reports for its choice lies above that configuration's test accuracy (train-split models, so
both figures come from models trained on as many rows), without re-evaluation (the raw best)
and with it (the re-evaluated score of the chosen trial). Test scores are computed here only to
measure; the studies never see them.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import loguniform
from threadpoolctl import threadpool_limits

from benchmarks._common import Results, Row
from tuner import RunOptions, parse_space, run_study
from tuner.data import load_dataset
from tuner.search import TRIAL_PARAMS, TRIAL_SEED, find_study
from tuner.space import FinalSpec, Space
from tuner.training import Ensemble, evaluate, train

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "digits_mlp.yaml"
DATASETS = ("digits", "wine", "breast_cancer")
# (label, refit, study.final): the final model with each step on or off, same study.
VARIANTS = (
    ("trial model (no refit, no re-evaluation)", False, FinalSpec(top_k=0)),
    ("refit, no re-evaluation", True, FinalSpec(top_k=0)),
    ("re-evaluation, no refit", False, FinalSpec()),
    ("re-evaluation + refit", True, FinalSpec()),
    ("re-evaluation + refit + ensemble of 3", True, FinalSpec(ensemble=3)),
)


def bench_space(source: str, seed: int) -> Space:
    """The default space on another bundled set and split."""
    raw = yaml.safe_load(SPACE.read_text())
    raw["data"].update(source=source, seed=seed)
    raw["name"] = f"bench_{source}"
    # The file's key order: parameters are suggested in it, so the trials are `tuner run`'s.
    return parse_space(yaml.safe_dump(raw, sort_keys=False), file=str(SPACE),
                       default_name=raw["name"])


def sklearn_search(source: str, seed: int) -> tuple[float, float]:
    """(wall time, test accuracy) of HalvingRandomSearchCV(MLPClassifier) on tuner's split."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV
    from sklearn.neural_network import MLPClassifier

    data = load_dataset(bench_space(source, seed).data)
    x = np.concatenate([data.train.x.numpy(), data.val.x.numpy()])
    y = np.concatenate([data.train.y.numpy(), data.val.y.numpy()])
    space = {
        "hidden_layer_sizes": [(32,), (64,), (128,), (256,), (64, 64), (128, 128), (256, 128)],
        "activation": ["relu", "tanh"],
        "alpha": loguniform(1e-6, 1e-3),
        "learning_rate_init": loguniform(1e-4, 3e-2),
        "batch_size": [32, 64, 128],
    }
    start = time.perf_counter()
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        search = HalvingRandomSearchCV(MLPClassifier(max_iter=200, early_stopping=False,
                                                     random_state=seed),
                                       space, n_candidates=27, factor=3, cv=3,
                                       random_state=seed, n_jobs=1).fit(x, y)
    elapsed = time.perf_counter() - start
    accuracy = float(np.mean(search.predict(data.test.x.numpy()) == data.test.y.numpy()))
    return elapsed, accuracy


def tuner_run(space: Space, storage: Path, seed: int, refit: bool = True, **kw: Any) -> tuple[
        float, Any]:
    """(wall time, StudyResult) of `tuner run` (no MLflow, one thread)."""
    start = time.perf_counter()
    result = run_study(space, RunOptions(seed=seed, storage=str(storage), tracking=False,
                                         progress=False, threads=1, refit=refit, **kw))
    return time.perf_counter() - start, result


def finish_s(result: Any) -> float:
    return float(result.final.get("reevaluate_s") or 0.0) + float(
        result.final.get("final_model_s") or 0.0)


def trial_test_accuracy(space: Space, storage: Path, study: str, numbers: list[int]) -> float:
    """Test accuracy of trials' own models (train split, their seeds; several: their average),
    the models their validation scores describe: measuring only."""
    trials = {t.number: t for t in find_study(str(storage), study).trials}
    data = load_dataset(space.data)
    models = [train(space, trials[n].user_attrs[TRIAL_PARAMS], data,
                    int(trials[n].user_attrs[TRIAL_SEED])).model for n in numbers]
    model = models[0] if len(models) == 1 else Ensemble(models, data.task)
    return evaluate(model, data, data.test)["accuracy"]


def one_seed(source: str, seed: int, tmp: Path, equal_time: bool) -> dict[str, Any]:
    space = bench_space(source, seed)
    storage = tmp / f"{source}-{seed}.journal"
    if seed % 2:  # alternate which side goes first: the machine's slow moments hit both
        t_tu, result = tuner_run(space, storage, seed)
        t_sk, acc_sk = sklearn_search(source, seed)
    else:
        t_sk, acc_sk = sklearn_search(source, seed)
        t_tu, result = tuner_run(space, storage, seed)
    out: dict[str, Any] = {"sk_s": t_sk, "sk_acc": acc_sk, "tu_s": t_tu,
                           "tu_acc": result.test_metrics["accuracy"], "final": result.final,
                           "runs": [(t_tu, result.test_metrics["accuracy"])], "variants": {}}
    trials_part = t_tu - finish_s(result)
    for label, refit, final in VARIANTS:
        variant = dataclasses.replace(space, study=dataclasses.replace(space.study, final=final))
        again = result if refit and final == space.study.final else tuner_run(
            variant, storage, seed, refit=refit)[1]
        out["variants"][label] = (again.test_metrics["accuracy"], finish_s(again),
                                  again.final.get("kind"))
    chosen = result.final["trials"]
    raw = [result.final["raw_best_trial"]]
    raw_test = trial_test_accuracy(space, storage, result.study, raw)
    chosen_test = raw_test if chosen == raw else trial_test_accuracy(space, storage,
                                                                     result.study, chosen)
    out["optimism_raw"] = result.final["raw_best_value"] - raw_test
    out["optimism_reevaluated"] = result.final["value"] - chosen_test
    out["optimism_study"] = result.final.get("optimism")
    out["trials_part_s"] = trials_part
    if equal_time:  # as much search as scikit-learn's time allows, finish included
        budget = max(1.0, t_sk - (t_tu - trials_part) - 0.5)  # the last trial ends after it
        t_eq, equal = tuner_run(space, tmp / f"{source}-{seed}-eq.journal", seed, trials=10_000,
                                timeout=budget)
        out["eq_acc"], out["eq_s"] = equal.test_metrics["accuracy"], t_eq
        out["runs"].append((t_eq, out["eq_acc"]))
    return out


def warm_up(tmp: Path) -> None:
    """Pay both sides' one-time costs (torch loads parts of itself on the first optimizer step)
    before anything is timed."""
    from sklearn.neural_network import MLPClassifier

    tuner_run(bench_space("iris", 0), tmp / "warm-up.journal", 0, trials=2)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        MLPClassifier(max_iter=5).fit(np.eye(4), [0, 1, 0, 1])


def run(results: Results, quick: bool = False) -> None:
    seeds = range(2 if quick else 5)
    tmp = Path(tempfile.mkdtemp(prefix="tuner-bench-"))
    warm_up(tmp)
    for source in DATASETS:
        rows = []
        for seed in seeds if source == "digits" or not quick else range(1):
            rows.append(one_seed(source, seed, tmp, equal_time=not quick or seed == 0))
            r = rows[-1]
            print(f"    {source} seed {seed}: sklearn {r['sk_acc']:.4f} in {r['sk_s']:.1f} s; "
                  f"tuner {r['tu_acc']:.4f} in {r['tu_s']:.1f} s ({r['final']['reason']})",
                  flush=True)
        report(results, source, rows)


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def report(results: Results, source: str, rows: list[dict[str, Any]]) -> None:
    digits = source == "digits"
    n = len(rows)
    sk_acc = _median([r["sk_acc"] for r in rows])
    sk_s = _median([r["sk_s"] for r in rows])
    tu_acc = _median([r["tu_acc"] for r in rows])
    ratio = _median([r["tu_s"] / r["sk_s"] for r in rows])
    seeds = f"{n} data seed{'s' if n > 1 else ''}"
    results.add(Row("sklearn", f"{source}: HalvingRandomSearchCV(MLPClassifier) test accuracy",
                    sk_acc, "acc", "", None, f"median over {seeds}; {sk_s:.1f} s median; "
                    + ", ".join(f"{r['sk_acc']:.4f}" for r in rows)))
    results.add(Row("sklearn", f"{source}: tuner run (default final model) test accuracy", tu_acc,
                    "acc", ">= sklearn" if digits else "", tu_acc >= sk_acc if digits else None,
                    ", ".join(f"{r['tu_acc']:.4f}" for r in rows)))
    results.add(Row("sklearn", f"{source}: tuner run wall time / HalvingRandomSearchCV", ratio, "x",
                    "<= 0.5x" if digits else "", ratio <= 0.5 if digits else None,
                    ", ".join(f"{r['tu_s']:.1f} s vs {r['sk_s']:.1f} s" for r in rows)))
    for label, _, _ in VARIANTS:
        accs = [r["variants"][label][0] for r in rows]
        extra = _median([r["variants"][label][1] for r in rows])
        kinds = sorted({str(r["variants"][label][2]) for r in rows})
        results.add(Row("sklearn", f"{source}: final model = {label}", _median(accs), "acc", "",
                        None, f"finish {extra:.1f} s (median); chosen: {', '.join(kinds)}; "
                        + ", ".join(f"{a:.4f}" for a in accs)))
    equal = [r for r in rows if "eq_acc" in r]
    if equal:
        results.add(Row("sklearn", f"{source}: tuner test accuracy at sklearn's wall time",
                        _median([r["eq_acc"] for r in equal]), "acc", "", None,
                        ", ".join(f"{r['eq_acc']:.4f} in {r['eq_s']:.1f} s" for r in equal)))
    reach = [min((t for t, acc in r["runs"] if acc >= sk_acc), default=math.inf) / r["sk_s"]
             for r in rows]
    results.add(Row("sklearn", f"{source}: time to sklearn's median test accuracy / its time",
                    statistics.median(reach), "x", "", None,
                    "smallest tuner run reaching it (default budget"
                    f"{', sklearn-time budget' if equal else ''}); inf: not reached"))
    raw = _median([r["optimism_raw"] for r in rows])
    reev = _median([r["optimism_reevaluated"] for r in rows])
    study = _median([r["optimism_study"] for r in rows])
    results.add(Row("sklearn", f"{source}: optimism, raw best (val - its test accuracy)", raw,
                    "pt", "", None, ", ".join(f"{100 * r['optimism_raw']:+.2f}" for r in rows)))
    results.add(Row("sklearn", f"{source}: optimism, re-evaluated choice (same measure)", reev,
                    "pt", "<= half of raw" if digits else "",
                    reev <= raw / 2 if digits else None,
                    ", ".join(f"{100 * r['optimism_reevaluated']:+.2f}" for r in rows)))
    results.add(Row("sklearn", f"{source}: optimism the study reports (raw best - re-evaluated)",
                    study, "pt", "", None,
                    ", ".join("-" if r["optimism_study"] is None else
                              f"{100 * r['optimism_study']:+.2f}" for r in rows)))
