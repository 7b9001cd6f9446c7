"""The README as a newcomer uses it: every code block runs, in order, in a fresh copy of the
repository; its CLI reference is the parser's; what its commands write is ignored by git.

Rules for the blocks (said in the README's Development section too):
- `bash` blocks run through bash (`-e`), `python` blocks through Python, in the same folder, one
  after the other, with no MLflow or storage settings from the environment (the defaults apply).
- A `pip install ...` before `&&` is not run (the packages are installed); the test checks that
  it names extras that exist. A bare `pytest` is not run: it is this suite.
- A `yaml` block that is a whole space file (it has `params:`) is checked with `tuner validate`.
- A block preceded by `<!-- readme-test: illustrative (why) -->` is not run; there are few.
- The budget is smaller: the copied space files train at most 3 epochs and run 4 trials, and
  `--trials` / `trials=` become 2, `--repeats` / `repeats=` 1. The commands, their order and
  their outputs are what is tested, not the figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuner.cli._reference import BEGIN, END, reference

README = REPO / "README.md"
MARKER = re.compile(r"<!-- readme-test: illustrative \((?P<why>[^)]+)\) -->")
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.S | re.M)
MOST_ILLUSTRATIVE = 6
SMALLER = ((re.compile(r"--trials \d+"), "--trials 2"), (re.compile(r"--repeats \d+"), "--repeats 1"),
           (re.compile(r"\btrials=\d+"), "trials=2"), (re.compile(r"\brepeats=\d+"), "repeats=1"))


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    body: str
    illustrative: str | None


def blocks(text: str) -> list[Block]:
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(before.strip())
        found.append(Block(text.count("\n", 0, match.start()) + 1, match["lang"], match["body"],
                           marker["why"] if marker else None))
    return found


def extras() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return set(project["optional-dependencies"])


def commands(body: str) -> list[str]:
    """The block's command lines (continuations joined), each without a `pip install` or a bare
    `pytest`, which are checked instead of run."""
    lines = body.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        kept = []
        for part in line.split(" && "):
            command = part.strip().split("#", 1)[0].strip() if part.strip().startswith(
                ("pip ", "pytest")) else part
            if command.startswith("pip install"):
                named = re.findall(r"\.\[([a-z,]+)\]", command)
                for extra in ",".join(named).split(","):
                    assert not extra or extra in extras(), f"`{command}`: no extra {extra!r}"
                continue
            if command == "pytest":
                continue
            kept.append(part)
        if kept:
            out.append(" && ".join(kept))
    return out


def fresh_copy(folder: Path) -> Path:
    """The repository's tracked files (a fresh clone), its spaces on a smaller budget, committed
    to a git repository of its own."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
    for space in [*folder.glob("search_spaces/*.yaml"), *folder.glob("examples/*.yaml")]:
        text = re.sub(r"max_epochs: \d+", "max_epochs: 3", space.read_text())
        space.write_text(re.sub(r"\btrials: \d+", "trials: 4", text))
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@test", "-c",
           "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(["git", "add", "-A"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fresh clone"], cwd=folder, check=True)
    return folder


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "TUNER_")) and k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_block(block: Block, folder: Path, env: dict[str, str]) -> None:
    body = block.body
    for pattern, smaller in SMALLER:
        body = pattern.sub(smaller, body)
    where = f"README.md:{block.line} ({block.lang} block)"
    if block.lang in ("bash", "sh", "shell"):
        script = "\n".join(commands(body))
        if not script.strip():
            return
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder,
                              env=env, capture_output=True, text=True, timeout=900)
    elif block.lang == "python":
        done = subprocess.run([sys.executable, "-c", body], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=900)
    elif block.lang == "yaml" and re.search(r"^params:", body, re.M):
        (folder / "readme_space.yaml").write_text(body)
        done = subprocess.run([sys.executable, "-m", "tuner", "validate", "readme_space.yaml"],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=120)
        (folder / "readme_space.yaml").unlink()
    else:
        return  # output, a fragment, a diagram: nothing to run
    assert done.returncode == 0, (f"{where} failed with exit code {done.returncode}:\n{body}\n"
                                  f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n"
                                  f"{done.stderr[-3000:]}")


def test_every_readme_code_block_runs_in_order_in_a_fresh_folder(tmp_path: Path) -> None:
    found = blocks(README.read_text(encoding="utf-8"))
    illustrative = [b for b in found if b.illustrative]
    assert len(illustrative) <= MOST_ILLUSTRATIVE, [(b.line, b.illustrative) for b in illustrative]
    assert {b.lang for b in found if not b.illustrative} >= {"bash", "python"}
    folder = fresh_copy(tmp_path / "clone")
    env = environment()
    for block in found:
        if block.illustrative is None:
            run_block(block, folder, env)
    # What the commands wrote (stores, reports, exported files) is ignored by git.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", f"outputs that .gitignore does not cover:\n{status}"
    assert (folder / "best.yaml").exists() and (folder / "reports").is_dir()


def test_the_commands_split_pip_installs_off_and_keep_the_rest() -> None:
    assert commands('pip install torch==2.13.0 -e ".[test]" && pytest\n') == []
    assert commands("pip install torch==2.13.0 -e . && tuner run a.yaml\n") == ["tuner run a.yaml"]
    with pytest.raises(AssertionError, match="no extra 'nope'"):
        commands('pip install -e ".[nope]" && tuner ui\n')
    text = "x\n<!-- readme-test: illustrative (a server) -->\n```bash\ntuner ui\n```\n"
    (block,) = blocks(text)
    assert (block.line, block.lang, block.illustrative) == (3, "bash", "a server")


def test_ci_installs_and_tests_as_the_readme_says() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    development = README.read_text().split("## Development", 1)[1]
    for command in ('pip install torch==2.13.0 -e ".[test]"', "lint-imports", "pytest"):
        assert command in development and command in ci, command
    assert re.search(r"apt-get install -y\b.*\bchromium", ci) and "TUNER_REQUIRE_BROWSER=1" in ci


def test_the_readme_cli_reference_is_the_parsers() -> None:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    written = text[text.index(BEGIN):text.index(END) + len(END)]
    assert written == reference(), ("the README's CLI reference is out of date: run "
                                    "`python -m tuner.cli._reference --write README.md`")
