"""`study.final`: how a study chooses its final model.

A trial's validation score is one draw: one seed, one set of validation rows, the epoch that
scored best on them. The best of many such draws is optimistic. So, before choosing, the `top_k`
best trials are re-evaluated: each is trained again on `folds` cross-validation folds of train +
validation (fresh validation rows, reshuffled `repeats` times), for the epochs its trial kept, and
scored on each fold's held-out rows. The configuration with the best mean is chosen; with
`ensemble: N`, the average of the N best is chosen instead when its own cross-validated score is
better. Only validation rows decide; the test split is not looked at.

Refitting the choice on train + validation is an option of the run (`--no-refit`), not of the
space: it changes which model is reported, not which configuration is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.space._yaml import Document

AUTO = "auto"
SMALL_VALIDATION = 2000  # validation rows below which re-evaluation is on by default
DEFAULT_TOP_K = 3
MAX_FOLDS = 20
_KEYS = {"top_k", "folds", "repeats", "ensemble"}


@dataclass(frozen=True)
class ReevaluationPlan:
    """`FinalSpec` resolved for the rows at hand: how many trials, folds and reshuffles."""

    top_k: int
    folds: int
    repeats: int
    ensemble: int

    @property
    def on(self) -> bool:
        return self.top_k > 0

    @property
    def trainings(self) -> int:
        return self.top_k * self.folds * self.repeats

    def describe(self) -> str:
        if not self.on:
            return "off"
        shuffles = f", {self.repeats} shuffles" if self.repeats > 1 else ""
        ensemble = f"; ensemble of {self.ensemble} considered" if self.ensemble else ""
        return f"top {self.top_k} trials on {self.folds} folds{shuffles}{ensemble}"


@dataclass(frozen=True)
class FinalSpec:
    """The space file's `study.final`; None means `auto`."""

    top_k: int | None = None  # auto: DEFAULT_TOP_K when the validation split is small, else 0
    folds: int | None = None  # auto: folds whose validation part has the validation split's share
    repeats: int = 1
    ensemble: int = 0  # N >= 2: the average of the N best re-evaluated configurations competes

    def plan(self, val_rows: int, val_share: float) -> ReevaluationPlan:
        """Resolve `auto` for a validation split of `val_rows` rows that is `val_share` of
        train + validation."""
        top_k = self.top_k
        if top_k is None:
            top_k = DEFAULT_TOP_K if val_rows < SMALL_VALIDATION else 0
            top_k = max(top_k, self.ensemble)  # an ensemble asked for is chosen on re-evaluation
        folds = self.folds
        if folds is None:
            folds = min(MAX_FOLDS, max(2, round(1.0 / val_share))) if val_share > 0 else 4
        return ReevaluationPlan(top_k, folds, self.repeats, self.ensemble if top_k else 0)


def parse_final(doc: Document, raw: Any, custom: bool, multi: bool) -> FinalSpec:
    path = ("study", "final")
    if raw is None:
        return FinalSpec()
    if not isinstance(raw, Mapping):
        raise doc.error(path, f"must be a mapping ({', '.join(sorted(_KEYS))}), got "
                        f"{type(raw).__name__}")
    for key in raw:
        if key not in _KEYS:
            raise doc.error((*path, key), f"unknown key {key!r}; allowed: {', '.join(sorted(_KEYS))}")
    top_k = _count(doc, raw, "top_k", 0, 1000, auto=True)
    folds = _count(doc, raw, "folds", 2, MAX_FOLDS, auto=True)
    repeats = _count(doc, raw, "repeats", 1, 100, auto=False)
    ensemble = _count(doc, raw, "ensemble", 0, 100, auto=False)
    if ensemble == 1:
        raise doc.error((*path, "ensemble"), "must be 0 (no ensemble) or >= 2 members, got 1")
    ensemble = ensemble or 0
    if top_k is not None and ensemble > top_k:
        raise doc.error((*path, "ensemble"), f"an ensemble of {ensemble} is chosen among the "
                        f"re-evaluated trials: needs top_k >= {ensemble}, got top_k {top_k}")
    asked = (top_k or 0) > 0 or ensemble > 0
    if asked and (custom or multi):
        what = "a `model: custom` space" if custom else "a multi-objective space"
        raise doc.error(path, f"re-evaluation and ensembles retrain the built-in MLP on one "
                        f"objective; {what} takes its final model from its chosen trial "
                        "(remove top_k and ensemble)")
    return FinalSpec(top_k, folds, repeats or 1, ensemble)


def _count(doc: Document, raw: Mapping[str, Any], key: str, low: int, high: int,
           auto: bool) -> int | None:
    if key not in raw:
        return None
    value = raw[key]
    where = ("study", "final", key)
    if auto and value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = f"a whole number or {AUTO!r}" if auto else "a whole number"
        raise doc.error(where, f"must be {kind}, got {value!r}")
    if not low <= value <= high:
        raise doc.error(where, f"must be between {low} and {high}, got {value}")
    return value
