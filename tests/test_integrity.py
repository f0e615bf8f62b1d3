"""Nothing lost, ever: merged work survives misbehaving agents, concurrent runs and crashed
workers (issue 10). Real repositories, real pytest processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import git, write_prp


def result_entries(root: Path, batch: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(
        (root / ".ce/orchestration/batches" / f"batch-{batch}.result.json").read_text()
    )
    return {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}


def prp_ids_on(root: Path, branch: str) -> list[str]:
    """Every ``PRP-Id:`` trailer reachable from ``branch``, one per commit."""
    return git(root, "log", "--format=%(trailers:key=PRP-Id,valueonly)", branch).split()


def file_on(root: Path, branch: str, path: str) -> str:
    return git(root, "show", f"{branch}:{path}")


# What misbehaving agents do to git in their worktree, after writing their file. Each PRP of the
# chain checks every earlier PRP's file, so a PRP merged without them would fail the next one.
MISDEEDS = {
    "PRP-9.2": "git reset -q --soft HEAD~1",
    "PRP-9.3": "git add -A && git commit -q -m mine && git reset -q --soft HEAD~2",
    "PRP-9.4": "git add -A && git commit -q -m mine",
    "PRP-9.5": "git checkout -q -b elsewhere && git branch side-9.5",
    "PRP-9.6": "git checkout -q --detach && git reset -q HEAD~1",
    "PRP-9.7": "git rm -q --cached f1.txt && git add f7.txt && "
    "git update-index --assume-unchanged f7.txt && echo changed > f7.txt",
}


def test_whatever_an_agent_does_to_refs_merged_work_stays(
    pytester: pytest.Pytester, repo: Path
) -> None:
    ids = ["PRP-9.1", *MISDEEDS]
    for n, pid in enumerate(ids, 1):
        earlier = " && ".join(f"test -f f{k}.txt" for k in range(1, n + 1))
        step = f"echo {pid} > f{n}.txt" + (f"\n{MISDEEDS[pid]}" if pid in MISDEEDS else "")
        write_prp(repo, pid, deps=ids[n - 2 : n - 1], steps=[step], gates=[earlier])
    result = pytester.runpytest("--prp-batch", "9")
    assert result.ret == 0, result.stdout.str()
    branch = "prp/batch-9"
    assert sorted(prp_ids_on(repo, branch)) == sorted(ids)  # each exactly once
    for n, pid in enumerate(ids, 1):
        expected = "changed" if pid == "PRP-9.7" else pid
        assert file_on(repo, branch, f"f{n}.txt") == expected
    found = result_entries(repo, "9")
    assert {pid: e["status"] for pid, e in found.items()} == dict.fromkeys(ids, "success")
    assert found["PRP-9.1"]["ref_changes"] == []
    assert found["PRP-9.7"]["ref_changes"] == []  # the index is not a ref
    assert any("HEAD~1" in line for line in found["PRP-9.2"]["ref_changes"])
    assert any("commit" in line for line in found["PRP-9.4"]["ref_changes"])
    changes = " ".join(found["PRP-9.5"]["ref_changes"])
    assert "elsewhere" in changes and "refs/heads/side-9.5" in changes
    assert any("detached" in line for line in found["PRP-9.6"]["ref_changes"])
    result.stdout.fnmatch_lines(["*PRP-9.2*not merged*"])  # the warning
    # Nothing an agent did to refs is merged: its own commits are not on the branch.
    assert "mine" not in git(repo, "log", "--format=%s", branch).split()
    rerun = pytester.runpytest("--prp-batch", "9")
    assert rerun.ret == 0
    assert set(e["status"] for e in result_entries(repo, "9").values()) == {"completed_earlier"}


def test_an_agent_that_rewinds_its_checkout_cannot_erase_merged_work(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-9.1", creates={"a.txt": "a"}, gates=["test -f a.txt"])
    # The hard reset takes a.txt out of the worktree: the gate that needs it fails the PRP.
    write_prp(
        repo,
        "PRP-9.2",
        deps=["PRP-9.1"],
        steps=["echo b > b.txt\ngit reset -q --hard HEAD~1"],
        gates=["test -f a.txt && test -f b.txt"],
    )
    result = pytester.runpytest("--prp-batch", "9")
    assert result.ret == 1
    found = result_entries(repo, "9")
    assert found["PRP-9.1"]["status"] == "success"
    assert found["PRP-9.2"]["status"] == "failed_gates"
    assert prp_ids_on(repo, "prp/batch-9") == ["PRP-9.1"]
    assert file_on(repo, "prp/batch-9", "a.txt") == "a"
    rerun = pytester.runpytest("--prp-batch", "9", "-v")
    rerun.stdout.fnmatch_lines(["*PRP-9.1 COMPLETED EARLIER*"])
