"""Pieces every benchmark script shares: the setup error, a clean environment, git in a throw-away
repository, and the ``main()`` wrapper that prints the report and the total time.

The scripts run as ``python benchmarks/bench_x.py``, so this directory is ``sys.path[0]`` and
``import _harness`` finds this file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Variables that would change what pytest loads or which repository git works on, and one that
# makes every Python process compile pytest-prp from source again: some sandboxes set
# PYTHONDONTWRITEBYTECODE, where an installed package has its bytecode cached (~70 ms of CPU
# per xdist worker on the 2-core development VM).
DROP_ENV = (
    "PYTHONDONTWRITEBYTECODE",
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
)


class SetupError(Exception):
    """The benchmark cannot run or a run went wrong: a clear message, no traceback."""


def clean_env(*extra_drop: str) -> dict[str, str]:
    """This process's environment without ``DROP_ENV`` and ``extra_drop``."""
    drop = {*DROP_ENV, *extra_drop}
    return {k: v for k, v in os.environ.items() if k not in drop}


_WARM = (
    "import importlib, pkgutil, pytest_prp, xdist\n"
    "for m in pkgutil.walk_packages(pytest_prp.__path__, 'pytest_prp.'):\n"
    "    if not m.name.endswith('__main__'):\n"
    "        importlib.import_module(m.name)\n"
)


def warm_bytecode(python: str) -> None:
    """Import pytest-xdist and every pytest_prp module once in ``python`` with bytecode caching
    on, as after an installation: the first measured run then does not pay for compiling.
    SetupError when ``python`` cannot import them."""
    probe = subprocess.run(
        [python, "-c", _WARM], capture_output=True, text=True, env=clean_env(), check=False
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise SetupError(f"{python} cannot import pytest-xdist and pytest_prp ({last}): --python")


def git(repo: Path, *args: str) -> str:
    """``git ARGS`` in ``repo``; its stripped stdout, or SetupError with git's message."""
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=clean_env(), check=False
    )
    if result.returncode != 0:
        raise SetupError(f"git {' '.join(args)} in {repo} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def commit_fixture(repo: Path) -> None:
    """Make ``repo`` a git repository on ``main`` with everything in it committed once."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.invalid")
    git(repo, "config", "commit.gpgsign", "false")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "benchmark fixture")


class Capture:
    """A text stream for ``pstats`` output."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)


def run_main(
    label: str,
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], list[str]],
    argv: Sequence[str] | None,
) -> int:
    """Parse, run, print the report and the total time; a SetupError is one line on stderr
    (``label: message``) and exit status 1."""
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        lines = run(args)
    except SetupError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    print(f"\ntotal benchmark time {time.perf_counter() - started:.1f} s")
    return 0
