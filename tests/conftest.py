"""Shared test helpers: real git repositories and PRP files written the way users write them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

# Imported here, before any in-process pytester run: pytester drops the modules a run imported,
# and PyYAML's C extension cannot be imported twice (a second import breaks its loader).
import pytest_prp.spec.frontmatter  # noqa: F401
import pytest_prp.workspace.worktree_files
from pytest_prp.supervise import leftovers

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FAKE_AGENT = Path(__file__).resolve().parent / "fake_agent.py"
EXAMPLE_PRPS = Path(__file__).resolve().parents[1] / "PRPs"
RESULT = Path(".ce/orchestration/batches")


@pytest.fixture(autouse=True, scope="session")
def _worktrees_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterable[None]:
    """PRP worktrees go to the user's cache directory by default: keep the tests' out of the
    real one (pytest runs started by the tests inherit this environment)."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


# pytest-html (a dev dependency, for its one test) and pytest-metadata load into every pytest
# process, ~0.1-0.3 s each: the pytest runs the tests start go without them, as for users
# who do not have them. ``with_pytest_html`` lets one test have them back.
WITHOUT_PYTEST_HTML = "-p no:html -p no:html_fixtures -p no:metadata"


@pytest.fixture(autouse=True)
def _no_pytest_html_in_nested_runs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
    monkeypatch.setenv("PYTEST_ADDOPTS", WITHOUT_PYTEST_HTML)


@pytest.fixture
def with_pytest_html(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS")


def worktrees_dir(repo: Path) -> Path:
    """Where pytest-prp keeps ``repo``'s PRP worktrees by default."""
    common = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    return pytest_prp.workspace.worktree_files.default_worktrees_dir(common, os.environ)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def init_repo(path: Path) -> Path:
    """A real repository with one commit and a local identity."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "commit.gpgsign", "false")
    (path / "README.md").write_text("project\n")
    (path / ".gitignore").write_text("__pycache__/\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def prp_text(
    prp_id: str,
    *,
    deps: Iterable[str] | str | None = (),
    title: str | None = None,
    steps: Iterable[str] = (),
    gates: Iterable[str] = (),
    checklist: Iterable[str] = (),
    creates: dict[str, str] | None = None,
    extra: str = "",
) -> str:
    """A PRP in the common shape: frontmatter, ### Step N sections, ### Gate N bash blocks."""
    if isinstance(deps, str) or deps is None:
        dep_yaml = repr(deps) if deps is not None else "null"
    else:
        dep_yaml = "[" + ", ".join(deps) + "]"
    lines = [
        "---",
        f"prp_id: {prp_id}",
        f"title: {title or 'Work for ' + prp_id}",
        f"dependencies: {dep_yaml}",
    ]
    if extra:
        lines.append(extra.strip("\n"))
    lines += ["---", "", f"# {prp_id}", "", "## Implementation Steps", ""]
    n = 0
    for path, content in (creates or {}).items():
        n += 1
        lines += [f"### Step {n}: create {path}", "", f"**Create**: `{path}`", "```text"]
        lines += [content.rstrip("\n"), "```", ""]
    for step in steps:
        n += 1
        lines += [f"### Step {n}: shell", "", "```bash", textwrap.dedent(step).strip(), "```", ""]
    lines += ["## Validation Gates", ""]
    for i, gate in enumerate(gates, 1):
        lines += [f"### Gate {i}: check {i}", "", "```bash", textwrap.dedent(gate).strip()]
        lines += ["```", ""]
    for item in checklist:
        lines.append(f"- [ ] {item}")
    return "\n".join(lines) + "\n"


def write_prp(root: Path, prp_id: str, name: str | None = None, **kwargs: object) -> Path:
    prps = root / "PRPs"
    prps.mkdir(exist_ok=True)
    path = prps / (name or f"{prp_id}.md")
    path.write_text(prp_text(prp_id, **kwargs))  # type: ignore[arg-type]
    return path


@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    """pytester's directory as a git repository with one commit (the user's checkout)."""
    return init_repo(pytester.path)


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present")
    return CORPUS


def copy_corpus(corpus: Path, subdir: str, dest: Path) -> Path:
    target = dest / "PRPs"
    shutil.copytree(corpus / subdir, target, dirs_exist_ok=True)
    return target


def python() -> str:
    return sys.executable


def processes_with(token: str) -> list[int]:
    """Live processes whose command line mentions token (zombies do not count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        proc = leftovers.process(int(entry.name))
        if token in cmdline and proc is not None and proc.state != "Z":
            found.append(int(entry.name))
    return found


def wait_gone(token: str, seconds: float = 3.0) -> list[int]:
    """Processes still alive after a short settling time (exit is asynchronous)."""
    deadline = time.monotonic() + seconds
    while (left := processes_with(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def result_json(root: Path, batch: str) -> dict[str, Any]:
    """A batch's result JSON as a run left it."""
    data: dict[str, Any] = json.loads((root / RESULT / f"batch-{batch}.result.json").read_text())
    return data


def entries(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The PRP records of a result JSON, by id (whatever their stage)."""
    return {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}


def copy_example(root: Path) -> None:
    """The project's example batch (batch 7, four PRPs) into root/PRPs."""
    (root / "PRPs").mkdir(exist_ok=True)
    for path in EXAMPLE_PRPS.glob("*.md"):
        (root / "PRPs" / path.name).write_text(path.read_text())
