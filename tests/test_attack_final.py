"""Hostile gates in the final check and the sibling merge check (attack session)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import entries, git, processes_with, result_json, wait_gone, write_prp


@pytest.mark.parametrize("n", ["1", "2"])
def test_a_final_check_gate_that_detaches_a_daemon_leaves_nothing_running(
    pytester: pytest.Pytester, repo: Path, n: str
) -> None:
    daemon = "if [ -e final.flag ]; then setsid nohup sleep 1000.71 >/dev/null 2>&1 & fi\ntrue"
    write_prp(repo, "PRP-71.1.1", creates={"a.txt": "a\n"}, gates=[daemon])
    write_prp(repo, "PRP-71.1.2", creates={"b.txt": "b\n"}, gates=["true"])
    write_prp(repo, "PRP-71.2.1", deps=["PRP-71.1.1", "PRP-71.1.2"], creates={"final.flag": "x\n"})
    try:
        result = pytester.runpytest_subprocess(
            "--prp-batch", "71", "--prp-final-check", "-n", n, timeout=120
        )
        assert result.ret == 0, result.stdout.str()
        assert wait_gone("sleep 1000.71") == []
    finally:
        for pid in processes_with("sleep 1000.71"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("what", ["reset", "delete"])
def test_a_final_check_gate_that_moves_the_integration_branch_loses_no_merge(
    pytester: pytest.Pytester, repo: Path, what: str
) -> None:
    hostile = {
        "reset": "git update-ref refs/heads/prp/batch-72 HEAD~2",
        "delete": "git branch -D prp/batch-72",
    }[what]
    gate = f"if [ -e final.flag ]; then {hostile}; fi\ntrue"
    write_prp(repo, "PRP-72.1.1", creates={"a.txt": "a\n"}, gates=[gate])
    write_prp(repo, "PRP-72.1.2", creates={"b.txt": "b\n"}, gates=["true"])
    write_prp(repo, "PRP-72.2.1", deps=["PRP-72.1.1", "PRP-72.1.2"], creates={"final.flag": "x\n"})
    result = pytester.runpytest_subprocess(
        "--prp-batch", "72", "--prp-final-check", "-n", "2", timeout=120
    )
    doc = result_json(repo, "72")
    tip = entries(doc)["PRP-72.2.1"]["merged_commit"]
    # Nothing merged is lost: the branch is back where the last merge left it, and the check
    # does not say it passed.
    assert git(repo, "rev-parse", "prp/batch-72").strip() == tip
    assert doc["final_check"]["passed"] is False, doc["final_check"]
    done = "moved to *" if what == "reset" else "deleted"
    result.stdout.fnmatch_lines(
        [f"*a gate of the final check {done} the integration branch prp/batch-72; put back at*"]
    )
    assert result.ret == 1, result.stdout.str()


@pytest.mark.parametrize("check", ["own", "siblings"])
def test_a_merge_check_gate_that_detaches_a_daemon_leaves_nothing_running(
    pytester: pytest.Pytester, repo: Path, check: str
) -> None:
    # Only on the merged tree (b.txt from PRP-73.2) does PRP-73.1's gate leave a daemon; with
    # siblings, PRP-73.2's gate does it on 73.1's merge.
    daemon = "if [ -e b.txt ] && [ -e a.txt ]; then setsid nohup sleep 1000.73 >/dev/null 2>&1 & fi"
    write_prp(repo, "PRP-73.1", steps=["sleep 3"], creates={"a.txt": "a"}, gates=[daemon])
    write_prp(repo, "PRP-73.2", creates={"b.txt": "b"}, gates=[daemon])
    try:
        result = pytester.runpytest_subprocess(
            "--prp-batch", "73", "-n", "2", "--prp-merge-check", check, timeout=120
        )
        assert result.ret == 0, result.stdout.str()
        assert wait_gone("sleep 1000.73") == []
    finally:
        for pid in processes_with("sleep 1000.73"):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_a_final_check_gate_cut_by_its_limit_names_the_option(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # PRP-74.1.2 (no gates: unverified) brings final.flag, on which 74.1.1's gate hangs.
    slow = "if [ -e final.flag ]; then sleep 30.74; fi"
    write_prp(repo, "PRP-74.1.1", creates={"a.txt": "a\n"}, gates=[slow])
    write_prp(repo, "PRP-74.1.2", creates={"final.flag": "x\n"})
    result = pytester.runpytest_subprocess(
        "--prp-batch", "74", "--prp-final-check", "--prp-gate-timeout", "1", "-p", "no:randomly",
        timeout=120,
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    check = result_json(repo, "74")["final_check"]
    assert check["passed"] is False, check
    failure = check["failures"][0]
    # The unverified PRP's merge is named as what broke it, not "a commit of no PRP".
    assert failure["broken_by"] == "PRP-74.1.2", check
    assert "--prp-gate-timeout" in "\n".join(failure["tail"]), check
    result.stdout.fnmatch_lines(['  PRP-74.1.1 gate 1 "Gate 1: check 1" broken by PRP-74.1.2 (*'])
    assert wait_gone("sleep 30.74") == []


def test_a_dependent_without_gates_that_changes_the_work_supersedes_it(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-75.1.1", creates={"a.txt": "a\n"}, gates=["test ! -e final.flag"])
    write_prp(repo, "PRP-75.2.1", deps=["PRP-75.1.1"], creates={"final.flag": "x\n"})
    result = pytester.runpytest_subprocess("--prp-batch", "75", "--prp-final-check")
    check = result_json(repo, "75")["final_check"]
    assert [(f["broken_by"], f["superseded"]) for f in check["failures"]] == [
        ("PRP-75.2.1", True)
    ], check
    assert result.ret == 0, result.stdout.str()
