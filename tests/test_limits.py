"""Bounded work for any input: grids are counted, never built whole; the strict YAML loader limits
the file's size, its nesting and what its aliases expand to. Each refusal is one line, exit code
2, in about a second, and leaves nothing behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import subprocess_env, tuner_command, write_space
from tuner import RunOptions, SpaceError, load_space, parse_space, run_study
from tuner.execution import plan_grid
from tuner.space import GRID_LIMIT

# Six parameters with 32 grid points and an int range of 65,536 values: 2^30 points.
HUGE_GRID = """\
name: huge
data: {source: iris, val_fraction: 0.3, test_fraction: 0.2}
training: {max_epochs: 1, early_stopping: false}
study: {strategy: grid, grid_points: 32, pruner: none, trials: 3}
params:
  lr: {type: float, low: 1e-4, high: 1e-1, log: true}
  dropout: {type: float, low: 0, high: 0.5}
  weight_decay: {type: float, low: 0, high: 0.1}
  momentum: {type: float, low: 0, high: 0.9}
  lr_decay: {type: float, low: 0, high: 0.5}
  batch_size: {type: int, low: 1, high: 65536}
  n_layers: 1
  units: 8
"""


def tuner(args: list[str], cwd: Path, uri: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*tuner_command(), *args], cwd=cwd, env=subprocess_env(uri),
                          capture_output=True, text=True, timeout=timeout)


def one_line_exit_2(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_grid_of_a_billion_points_is_counted_and_refused_in_one_line(
        workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir, HUGE_GRID, "huge.yaml"))
    started = time.perf_counter()
    assert space.params.grid_size() == 32 ** 5 * 32  # counted without building a point
    assert time.perf_counter() - started < 1.0
    for args in (["validate", "huge.yaml"], ["run", "huge.yaml"],
                 ["run", "huge.yaml", "--strategy", "grid", "--trials", str(GRID_LIMIT + 1)]):
        started = time.perf_counter()
        result = tuner(args, workdir, tracking_uri)
        one_line_exit_2(result, "huge.yaml: the grid has 1,073,741,824 points", "--trials N")
        assert time.perf_counter() - started < 60  # the interpreter's start-up, mostly
    assert not (workdir / "tuner.journal").exists() and not (workdir / "mlruns").exists()


def test_a_huge_grid_is_sampled_lazily_with_trials(workdir: Path, one_thread: None) -> None:
    space = load_space(write_space(workdir, HUGE_GRID, "huge.yaml"))
    started = time.perf_counter()
    result = run_study(space, RunOptions(trials=3, storage=str(workdir / "s.journal"),
                                         tracking=False, progress=False, threads=1))
    assert result.n_complete + result.n_failed == 3 and time.perf_counter() - started < 60
    assert any("1,073,741,824 points" in note for note in result.notes)
    # a comparison plans the same grid (its budget samples it) in well under a second
    started = time.perf_counter()
    plan, _ = plan_grid(space, 12)
    assert plan.size == 2 ** 30 and plan.trials == 12 and time.perf_counter() - started < 1.0


def test_counting_refuses_a_grid_whose_conditions_cannot_be_counted() -> None:
    # 17 parents, each named by a condition after all of them: 2^17 combinations to keep apart
    params = "\n".join([f"  p{i}: {{type: categorical, choices: [a, b]}}" for i in range(17)]
                       + [f"  q{i}: {{type: categorical, choices: [x, y], when: {{p{i}: a}}}}"
                          for i in range(17)])
    space = parse_space(f"model: custom\nstudy: {{strategy: grid}}\nparams:\n{params}\n",
                        file="chain.yaml")
    started = time.perf_counter()
    assert space.params.grid_size() is None
    with pytest.raises(SpaceError, match=r"chain\.yaml: the grid has more than 100,000 points"):
        space.params.grid_target(5, space.file)
    assert time.perf_counter() - started < 10.0  # bounded: the counting stops at the limit


# A generated space: categorical and int parents, conditions on them, numeric children.
_VALUES = st.lists(st.sampled_from(["a", "b", "c", 1, 2, True]), min_size=1, max_size=3,
                   unique_by=repr)


@st.composite
def conditional_spaces(draw: st.DrawFn) -> str:
    lines = []
    names: list[tuple[str, list]] = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["categorical", "int", "float"]))
        when = ""
        if names and draw(st.booleans()):
            parent, values = draw(st.sampled_from(names))
            when = f", when: {{{parent}: {draw(st.sampled_from(values))!r}}}"
        name = f"p{i}"
        if kind == "categorical":
            choices = draw(_VALUES)
            lines.append(f"  {name}: {{type: categorical, choices: {choices!r}{when}}}")
            names.append((name, choices))
        elif kind == "int":
            low = draw(st.integers(0, 3))
            high = low + draw(st.integers(0, 3))
            lines.append(f"  {name}: {{type: int, low: {low}, high: {high}, grid_points: "
                         f"{draw(st.integers(1, 4))}{when}}}")
            names.append((name, list(range(low, high + 1))))
        else:
            lines.append(f"  {name}: {{type: float, low: 0.0, high: 1.0, grid_points: "
                         f"{draw(st.integers(1, 3))}{when}}}")
    return "model: custom\nparams:\n" + "\n".join(lines).replace("True", "true") + "\n"


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(conditional_spaces())
def test_the_counted_grid_is_the_built_grid_point_by_point(text: str) -> None:
    space = parse_space(text)
    built = space.params.grid()
    indexed = space.params.indexed_grid()
    assert indexed is not None and indexed.size == len(built) == space.params.grid_size()
    assert [indexed.point(k) for k in range(indexed.size)] == built


@pytest.mark.parametrize(("case", "text", "words"), [
    ("alias bomb", "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)])
     + "\nparams: {lr: 0.1}\n", ["bomb.yaml:", "expands to more than 100,000 values"]),
    ("nested brackets", "params: " + "[" * 50_000 + "]" * 50_000 + "\n",
     ["bomb.yaml:1:", "nested deeper than 32 levels"]),
    ("nested blocks", "params:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60))
     + "  " * 60 + "x: 1\n", ["nested deeper than 32 levels"]),
    ("nested merge keys", "a0: &a0 {x0: 1}\n" + "".join(
        f"a{i}: &a{i} {{<<: [*a{i - 1}], x{i}: 1}}\n" for i in range(1, 30)) + "params: {lr: 1}\n",
     ["nested deeper than 32 levels (with aliases expanded)"]),
    ("an alias inside itself", "params: &a {lr: *a}\n", ["alias refers to the value that "
                                                        "contains it"]),
])
def test_yaml_bombs_are_refused_at_once(workdir: Path, tracking_uri: str, case: str, text: str,
                                        words: list[str]) -> None:
    path = workdir / "bomb.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    assert time.perf_counter() - started < 2.0, case
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    result = tuner(["run", "bomb.yaml", "--storage", "s.journal"], workdir, tracking_uri)
    one_line_exit_2(result, *words)
    assert not (workdir / "s.journal").exists()


def test_a_huge_space_file_is_refused_before_it_is_read_or_copied(
        workdir: Path, tracking_uri: str) -> None:
    path = write_space(workdir, "name: pad\ndata: {source: iris}\nparams:\n  lr: 0.01\n",
                       "pad.yaml")
    with path.open("a") as handle:  # 50 MB of comments: valid YAML, and no place in a journal
        handle.write("# padding padding padding padding padding padding padding\n" * 900_000)
    result = tuner(["run", "pad.yaml", "--experiment", "never-pad"], workdir, tracking_uri)
    one_line_exit_2(result, "pad.yaml: the file is larger than 1,048,576 bytes")
    assert not (workdir / "tuner.journal").exists()
    with pytest.raises(SpaceError, match="at most 1,048,576"):
        parse_space(path.read_text())


@pytest.mark.parametrize(("params", "key", "words"), [
    ("  n_layers: {type: int, low: 1, high: 3}\n  units: {type: int, low: 8, high: 16, "
     "grid_points: 100000}", "params.units.grid_points", ["must be an integer in [1, 1000]"]),
    ("  width: {type: int, low: 1, high: 1000000000, when: {depth: 2}}\n"
     "  depth: {type: int, low: 1, high: 1000000000}", "params.width.when", []),
    ("  n_layers: {type: int, low: 1, high: 100000000}\n"
     "  units: {type: int, low: 8, high: 16, per_layer: n_layers}", "params.units.per_layer",
     ["per_layer allows at most 64"]),
])
def test_huge_ranges_in_conditions_and_layers_cost_nothing(params: str, key: str,
                                                           words: list[str]) -> None:
    started = time.perf_counter()
    try:
        space = parse_space(f"model: custom\nparams:\n{params}\n", file="s.yaml")
    except SpaceError as exc:
        assert exc.key_path == key and all(w in str(exc) for w in words), str(exc)
    else:  # a condition on a value of a billion-value range: checked, not listed
        assert space.params.grid_size() == 3  # depth 2 is not among the grid's 3 depths
    assert time.perf_counter() - started < 1.0
