"""Every way a space file can be wrong gives one line naming the file, key path and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tuner import SpaceError, load_space, parse_space

GOOD = """\
data: {source: digits}
params:
  optimizer: {type: categorical, choices: [adam, sgd]}
  lr: {type: float, low: 1e-4, high: 1e-1, log: true}
  momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}}
"""

# (case, yaml text, expected key path, expected line, words the message must contain)
CASES = [
    ("low > high", "params:\n  lr: {type: float, low: 0.1, high: 0.01}\n",
     "params.lr.low", 2, ["greater than high"]),
    ("log with low 0", "params:\n  lr: {type: float, low: 0, high: 0.1, log: true}\n",
     "params.lr.low", 2, ["log scale", "low > 0"]),
    ("negative step", "params:\n  dropout: {type: float, low: 0, high: 0.5, step: -0.1}\n",
     "params.dropout.step", 2, ["> 0"]),
    ("zero int step", "params:\n  units: {type: int, low: 8, high: 64, step: 0}\n",
     "params.units.step", 2, ["> 0"]),
    ("empty choices", "params:\n  activation: {type: categorical, choices: []}\n",
     "params.activation.choices", 2, ["at least one"]),
    ("unknown param key", "params:\n  lr:\n    type: float\n    low: 0.1\n    high: 1\n    lg: true\n",
     "params.lr.lg", 6, ["unknown key", "'lg'"]),
    ("unknown top key", "paramz: {}\nparams:\n  lr: 0.1\n", "paramz", 1, ["unknown key"]),
    ("unknown activation", "params:\n  activation: {type: categorical, choices: [relu, swishy]}\n",
     "params.activation.choices", 2, ["swishy"]),
    ("unknown optimizer", "params:\n  optimizer: adamax\n", "params.optimizer.value", 2,
     ["adamax", "sgd"]),
    ("unknown parameter", "params:\n  learning_rate: {type: float, low: 0.1, high: 1}\n",
     "params.learning_rate", 2, ["unknown parameter"]),
    ("condition on missing param",
     "params:\n  momentum: {type: float, low: 0, high: 0.9, when: {optimiser: sgd}}\n",
     "params.momentum.when", 2, ["optimiser", "does not exist"]),
    ("condition value never taken",
     "params:\n  optimizer: {type: categorical, choices: [adam]}\n"
     "  momentum: {type: float, low: 0, high: 0.9, when: {optimizer: sgd}}\n",
     "params.momentum.when", 3, ["never takes", "'sgd'"]),
    ("duplicate key", "params:\n  lr: 0.1\n  lr: 0.2\n", "params.lr", 3, ["duplicate key"]),
    ("grid value outside range",
     "params:\n  lr: {type: float, low: 0.001, high: 0.1, grid: [0.5]}\n",
     "params.lr.grid", 2, ["outside"]),
    ("int bound not an integer", "params:\n  units: {type: int, low: 8.5, high: 64}\n",
     "params.units.low", 2, ["integer"]),
    ("unknown strategy", "study: {strategy: annealing}\nparams:\n  lr: 0.1\n",
     "study.strategy", 1, ["annealing", "tpe"]),
    ("unknown pruner", "study:\n  pruner: sometimes\nparams:\n  lr: 0.1\n",
     "study.pruner.name", 2, ["sometimes"]),
    ("metric of the wrong task", "data: {source: diabetes}\nobjective: {metric: accuracy}\n"
     "params:\n  lr: 0.1\n", "objective.metric", 2, ["accuracy"]),
    ("unknown data set", "data: {source: imagenet}\nparams:\n  lr: 0.1\n",
     "data.source", 1, ["imagenet"]),
    ("negative epochs", "training: {max_epochs: 0}\nparams:\n  lr: 0.1\n",
     "training.max_epochs", 1, [">= 1"]),
    ("circular condition",
     "params:\n  optimizer: {type: categorical, choices: [adam, sgd], when: {nesterov: true}}\n"
     "  nesterov: {type: categorical, choices: [true, false], when: {optimizer: sgd}}\n",
     "params", None, ["circular"]),
    ("per-layer on a float", "params:\n  dropout: {type: float, low: 0, high: 0.5}\n"
     "  units: {type: int, low: 8, high: 16, per_layer: dropout}\n",
     "params.units.per_layer", 3, ["int parameter"]),
    ("unknown final key", "study:\n  final: {top_k: 3, seeds: 2}\nparams:\n  lr: 0.1\n",
     "study.final.seeds", 2, ["unknown key", "repeats"]),
    ("final not a mapping", "study:\n  final: 5\nparams:\n  lr: 0.1\n", "study.final", 2,
     ["must be a mapping"]),
    ("negative top_k", "study:\n  final: {top_k: -1}\nparams:\n  lr: 0.1\n",
     "study.final.top_k", 2, ["between 0 and"]),
    ("top_k a word", "study:\n  final: {top_k: many}\nparams:\n  lr: 0.1\n",
     "study.final.top_k", 2, ["whole number or 'auto'"]),
    ("one fold", "study:\n  final: {folds: 1}\nparams:\n  lr: 0.1\n",
     "study.final.folds", 2, ["between 2 and"]),
    ("zero repeats", "study:\n  final: {repeats: 0}\nparams:\n  lr: 0.1\n",
     "study.final.repeats", 2, ["between 1 and"]),
    ("ensemble of one", "study:\n  final: {ensemble: 1}\nparams:\n  lr: 0.1\n",
     "study.final.ensemble", 2, [">= 2 members"]),
    ("ensemble above top_k", "study:\n  final: {top_k: 2, ensemble: 3}\nparams:\n  lr: 0.1\n",
     "study.final.ensemble", 2, ["top_k >= 3"]),
    ("re-evaluating a custom trainer", "model: custom\nobjective: {metric: score}\n"
     "study:\n  final: {top_k: 3}\nparams:\n  x: {type: float, low: 0, high: 1}\n",
     "study.final", 4, ["model: custom"]),
    ("missing params", "data: {source: digits}\n", "params", None, ["missing"]),
    ("invalid YAML", "params: [unclosed\n", None, None, ["invalid YAML"]),
]


@pytest.mark.parametrize(("case", "text", "key_path", "line", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_space_gives_one_line_naming_file_path_and_line(
        tmp_path: Path, case: str, text: str, key_path: str | None, line: int | None,
        words: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if key_path is not None:
        assert info.value.key_path.startswith(key_path), message
        assert key_path in message
    if line is not None:
        assert info.value.line == line, message
        assert f"{path}:{line}:" in message
    for word in words:
        assert word in message, message


def test_missing_file_is_a_space_error(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="file not found"):
        load_space(tmp_path / "nope.yaml")


def test_scientific_notation_without_dot_is_a_number() -> None:
    space = parse_space(textwrap.dedent(GOOD))
    lr = next(p for p in space.params if p.name == "lr")
    assert lr.low == pytest.approx(1e-4) and isinstance(lr.low, float)


def test_safe_loading_refuses_python_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("params:\n  lr: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpaceError, match="invalid YAML"):
        load_space(path)


def test_study_final_resolves_auto_for_the_rows_at_hand() -> None:
    final = parse_space(GOOD).study.final
    assert (final.top_k, final.folds, final.repeats, final.ensemble) == (None, None, 1, 0)
    small = final.plan(val_rows=360, val_share=0.25)  # digits: 1,437 rows of train + validation
    assert (small.top_k, small.folds, small.repeats, small.ensemble) == (3, 4, 1, 0)
    assert small.trainings == 12 and small.describe() == "top 3 trials on 4 folds"
    assert not final.plan(val_rows=12_000, val_share=0.2).on  # a large validation split
    asked = parse_space(GOOD + "study:\n  final: {ensemble: 5, repeats: 2, folds: auto}\n")
    plan = asked.study.final.plan(val_rows=12_000, val_share=0.2)
    assert (plan.top_k, plan.folds, plan.repeats, plan.ensemble) == (5, 5, 2, 5)
    off = parse_space(GOOD + "study:\n  final: {top_k: 0}\n").study.final.plan(360, 0.25)
    assert not off.on and off.describe() == "off"
    # How the final model is chosen does not change what is searched: a study resumes.
    assert asked.canonical == parse_space(GOOD).canonical


def test_shipped_spaces_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "search_spaces"
    files = sorted(root.glob("*.yaml"))
    assert len(files) >= 2
    tasks = {load_space(f).data.task for f in files}
    assert tasks == {"classification", "regression"}
