"""Warm starts: known configurations queued before the search, trials carried over from an older
study. Both are recorded (trial user attrs, the study's `tuner.warm_start`), so MLflow and
`tuner report` can tell a known point or a copied trial from a sampled one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.errors import OptionError, TunerError, first_line
from tuner.search._study import TRIAL_ENQUEUED
from tuner.space import FixedParam, Param, Space, check_points, load_yaml, parse_space

TRIAL_COPIED_FROM = "copied_from"  # "study#number" of a trial carried over by a warm start
ATTR_WARM_START = "tuner.warm_start"  # {"from": study, "copied": n, "skipped": m}


def points_from(path: str | Path, space: Space) -> list[dict[str, Any]]:
    """Known configurations from a file: a YAML list of {parameter: value}, or an exported
    best configuration (`tuner export`: a space whose parameters are all fixed). Read as strictly
    as a space file (`lr: 1e-3` is a number) and checked against `space`'s parameters."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TunerError(f"cannot read {path}: {first_line(exc)}") from None
    doc = load_yaml(text, str(path))
    raw = doc.data
    if isinstance(raw, Mapping) and "params" in raw:
        exported = parse_space(text, file=str(path))
        raw = [{p.name: p.value for p in exported.params if isinstance(p, FixedParam)}]
    if not isinstance(raw, list):
        raise doc.error((), "expected a YAML list of {parameter: value} or a file written by "
                        "`tuner export`")
    return [dict(p) for p in check_points(doc, raw, space.params, ())]


def enqueue_known(study: optuna.Study, points: Sequence[Mapping[str, Any]]) -> list[str]:
    """Queue each point unless the study already holds it; they run before any sampled trial."""
    if not points:
        return []
    before = len(study.get_trials(deepcopy=False))
    for point in points:
        study.enqueue_trial(dict(point), user_attrs={TRIAL_ENQUEUED: True}, skip_if_exists=True)
    added = len(study.get_trials(deepcopy=False)) - before
    return [f"{added} known configuration(s) queued first"] if added else []


def warm_start(study: optuna.Study, space: Space, source: str,
               storage: optuna.storages.BaseStorage) -> tuple[int, list[str]]:
    """Copy the finished trials of study `source` that fit `space` into a new `study`. Returns
    the number of copied trials (they do not use the new study's budget) and notes."""
    done = study.user_attrs.get(ATTR_WARM_START)
    if done is not None:
        if done.get("from") != source:
            raise TunerError(f"study {study.study_name!r} was warm-started from "
                             f"{done.get('from')!r}, not {source!r}")
        return int(done.get("copied", 0)), []
    if study.get_trials(deepcopy=False):
        raise OptionError("warm_start", f"study {study.study_name!r} already has trials; a "
                          "warm start needs a new study (another {study_name})")
    names = [s.study_name for s in storage.get_all_studies()]
    if source not in names:
        raise TunerError(f"no study {source!r} to warm-start from; studies: "
                         f"{', '.join(names) or 'none'}")
    old = optuna.load_study(study_name=source, storage=storage)
    if len(old.directions) != len(study.directions) or any(
            a != b for a, b in zip(old.directions, study.directions, strict=True)):
        raise TunerError(f"study {source!r} optimises other objectives or directions")
    wanted = space.params.distributions()
    params = {p.name: p for p in space.params}
    copied = skipped = 0
    for trial in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        dists = _fitting(trial, wanted, params)
        if dists is None:
            skipped += 1
            continue
        study.add_trial(optuna.trial.create_trial(
            params={k: trial.params[k] for k in dists}, distributions=dists,
            values=trial.values, intermediate_values=trial.intermediate_values,
            user_attrs={**trial.user_attrs,
                        TRIAL_COPIED_FROM: f"{source}#{trial.number}"}))
        copied += 1
    study.set_user_attr(ATTR_WARM_START, {"from": source, "copied": copied, "skipped": skipped})
    note = f"warm start: {copied} trial(s) copied from study {source!r}"
    return copied, [note + (f", {skipped} outside this space skipped" if skipped else "")]


def _fitting(trial: optuna.trial.FrozenTrial, wanted: Mapping[str, Any],
             params: Mapping[str, Param]) -> dict[str, Any] | None:
    """The new space's distributions of a trial's parameters, if every value lies inside them."""
    out = {}
    for name, value in trial.params.items():
        if name not in wanted or not params[name].contains(value):
            return None
        out[name] = wanted[name]
    return out


def check_warm_start(storage: optuna.storages.BaseStorage, name: str, space: Space,
                     options: Any) -> list[dict[str, Any]]:
    """Refuse a bad --enqueue file or --warm-start study before any study is written; the
    known points to queue (the space's `enqueue:` and the file's)."""
    points = [dict(p) for p in space.enqueue]
    if options.enqueue_file is not None:
        points += points_from(options.enqueue_file, space)
    if options.warm_start is not None:
        names = [s.study_name for s in storage.get_all_studies()]
        if options.warm_start not in names:
            raise TunerError(f"no study {options.warm_start!r} to warm-start from; studies: "
                             f"{', '.join(names) or 'none'}")
        if options.warm_start == name:
            raise OptionError("warm_start", "a study cannot warm-start from itself; to extend "
                              "it, run it again with larger {trials}")
    return points


def apply_warm_start(study: optuna.Study, space: Space, storage: optuna.storages.BaseStorage,
                     options: Any, points: Sequence[Mapping[str, Any]], notes: list[str]) -> int:
    """Copy the source study's trials (once), queue the known points. Returns the number of
    copied trials, which the budget does not count."""
    copied = 0
    if options.warm_start is not None:
        copied, more = warm_start(study, space, options.warm_start, storage)
        notes += more
    notes += enqueue_known(study, points)
    return copied
