"""Ctrl-C as a run ends: after the last PRP, while xdist ends its workers. It used to print a
traceback through xdist and execnet (2 of 20 tries by hand); the ending now completes.

Deterministic: the project's conftest sends SIGINT to the controller and its workers from
``pytest_sessionfinish``, exactly where a late Ctrl-C lands."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import git, write_prp

CONFTEST = """
import os
import signal
import time

import pytest

from pytest_prp.supervise import leftovers


def children(pid):
    return [proc.pid for proc in leftovers.processes() if proc.ppid == pid]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    # What a terminal's Ctrl-C does: SIGINT to the controller and to its workers.
    for pid in [os.getpid(), *children(os.getpid())]:
        os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_ctrl_c_while_the_run_ends_is_no_traceback(
    pytester: pytest.Pytester, repo: Path, workers: list[str]
) -> None:
    (repo / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    for n in (1, 2, 3):
        write_prp(repo, f"PRP-4.{n}", creates={f"f{n}.txt": f"{n}\n"}, gates=[f"test -f f{n}.txt"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess("--prp-batch", "4", *workers)
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    result.stdout.fnmatch_lines(
        ["*3 passed*", "prp: interrupted while the run was ending; it ended first*"]
    )
    assert result.ret == 0
    for n in (1, 2, 3):
        assert git(repo, "show", f"prp/batch-4:f{n}.txt") == str(n)
    assert git(repo, "worktree", "list").count("\n") == 0  # released as usual
