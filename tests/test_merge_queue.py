"""The merge queue (issue 14): the integration branch only moves to a tree that passed the
merging PRP's gates and the integration gate; conflicts are redone on the new tip, then fail
naming the PRPs they collide with. Real git, real pytest runs, serial and under -n 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAKE_AGENT, entries, git, result_json, write_prp

# Every module of the project runs: the integration gate that a renamed function breaks.
ALL_MODULES = 'for f in *.py; do python3 "$f" || exit 1; done'


def records(repo: Path, batch: str) -> dict[str, dict[str, Any]]:
    return entries(result_json(repo, batch))


def merged_ids(repo: Path, branch: str) -> list[str]:
    """The PRP-Id trailers on the branch, one per merged PRP commit."""
    out = git(repo, "log", "--no-merges", "--format=%(trailers:key=PRP-Id,valueonly)", branch)
    return [line for line in out.splitlines() if line.strip()]


def integration_gate_passes(repo: Path, branch: str, tmp: Path) -> bool:
    tree = tmp / "checkout"
    git(repo, "worktree", "add", "-q", "--detach", str(tree), branch)
    done = subprocess.run(["bash", "-c", ALL_MODULES], cwd=tree)
    return done.returncode == 0


def meeting(barrier: Path, n: int, of: int = 2) -> str:
    """A step that waits until all ``of`` siblings have started theirs: each sibling's worktree
    is cut before its steps run, so they all start from the same tip whatever the load."""
    barrier.mkdir(exist_ok=True)
    everyone = " && ".join(f"[ -e {barrier}/{k} ]" for k in range(1, of + 1))
    return f"touch {barrier}/{n}; until {everyone}; do sleep 0.05; done"


def semantic_pair(repo: Path, batch: str, barrier: Path) -> None:
    """Two siblings that pass alone and break together: one renames lib.f to lib.g, the other
    adds a caller of lib.f."""
    (repo / "lib.py").write_text("def f():\n    return 1\n")
    git(repo, "add", "lib.py")
    git(repo, "commit", "-qm", "lib")
    write_prp(
        repo,
        f"PRP-{batch}.1.1",
        creates={"lib.py": "def g():\n    return 1\n"},
        steps=[meeting(barrier, 1)],
        gates=["python3 -c 'import lib; lib.g()'"],
    )
    write_prp(
        repo,
        f"PRP-{batch}.1.2",
        creates={"caller.py": "import lib\nlib.f()\n"},
        steps=[meeting(barrier, 2)],
        gates=["python3 caller.py"],
    )
    write_prp(repo, f"PRP-{batch}.2.1", deps=[f"PRP-{batch}.1.2"], gates=["true"])


def test_semantic_conflict_fails_integration_naming_the_first(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    semantic_pair(repo, "60", tmp_path / "barrier")
    result = pytester.runpytest_subprocess(
        "--prp-batch", "60", "-n", "2", "--prp-integration-gate", ALL_MODULES
    )
    assert result.ret == 1
    found = records(repo, "60")
    first, second = sorted(
        ("PRP-60.1.1", "PRP-60.1.2"), key=lambda p: found[p]["status"] != "success"
    )
    assert found[first]["status"] == "success"
    assert found[second]["status"] == "failed_integration", found[second]
    assert found[second]["collides_with"][0] == first
    assert found[second]["redos"] == 1  # redone once on the new tip, still failing
    result.stdout.fnmatch_lines([f"*{second}*collides with {first}*"])
    if second == "PRP-60.1.2":
        assert found["PRP-60.2.1"]["status"] == "blocked"
    # The integration branch is green: it holds the first alone, which passes every gate.
    assert sorted(merged_ids(repo, "prp/batch-60")) == [first] + (
        ["PRP-60.2.1"] if second == "PRP-60.1.1" else []
    )
    assert integration_gate_passes(repo, "prp/batch-60", tmp_path)
    # Its earlier work is named by the result (its commit), its redo kept in its worktree.
    earlier = found[second]["commits"][-1]
    assert git(repo, "log", "-1", "--format=%s", earlier).startswith(second)
    assert git(repo, "rev-parse", f"prp/60/{second}-before-redo") == earlier
    assert Path(found[second]["worktree"]).is_dir()


def test_semantic_conflict_serial(pytester: pytest.Pytester, repo: Path, tmp_path: Path) -> None:
    """Serial: while the caller's PRP runs, the rename lands on the branch (as another worker's
    merge would). Its gates passed on its own tree, fail on the merged one: not merged."""
    (repo / "lib.py").write_text("def f():\n    return 1\n")
    git(repo, "add", "lib.py")
    git(repo, "commit", "-qm", "lib")
    write_prp(
        repo,
        "PRP-61.1.1",
        steps=[
            "printf 'def g():\\n    return 1\\n' > lib.py && git commit -qam 'PRP-61.0.9 rename'"
            " --trailer PRP-Id=PRP-61.0.9\n"
            "git update-ref refs/heads/prp/batch-61 HEAD\n"
            "git reset -q --hard HEAD~1\n"
            "printf 'import lib\\nlib.f()\\n' > caller.py"
        ],
        gates=["python3 caller.py"],
    )
    result = pytester.runpytest("--prp-batch", "61", "--prp-merge-attempts", "0")
    assert result.ret == 1
    entry = records(repo, "61")["PRP-61.1.1"]
    assert entry["status"] == "failed_integration"
    assert entry["collides_with"] == ["PRP-61.0.9"]
    assert entry["merge_checks"] == 1
    assert entry["merge_failures"][0]["failed_gates"] == ["Gate 1: check 1"]
    result.stdout.fnmatch_lines(["*PRP-61.1.1*fail*collides with PRP-61.0.9*"])
    assert merged_ids(repo, "prp/batch-61") == ["PRP-61.0.9"]
    status = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", ".ce/orchestration"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.startswith("PRP-61.1.1"))
    assert "failed_integration" in line and "collides with PRP-61.0.9" in line, line


def test_tip_moved_merged_after_check(pytester: pytest.Pytester, repo: Path) -> None:
    """Serial: the tip moves with unrelated work while the PRP runs: its gates run again on
    the merged tree, which is what the branch moves to."""
    write_prp(
        repo,
        "PRP-62.1.1",
        steps=[
            "echo other > other.txt && git add other.txt && git commit -qm other\n"
            "git update-ref refs/heads/prp/batch-62 HEAD\n"
            "git reset -q --hard HEAD~1\n"
            "echo mine > mine.txt"
        ],
        gates=[f"test -f mine.txt && echo ran >> {repo.parent / 'gate-runs-62'}"],
    )
    result = pytester.runpytest("--prp-batch", "62")
    assert result.ret == 0, result.stdout.str()
    entry = records(repo, "62")["PRP-62.1.1"]
    assert entry["status"] == "success"
    assert entry["merge_checks"] == 1
    assert entry["redos"] == 0
    merged = entry["merged_commit"]
    assert git(repo, "rev-parse", "prp/batch-62") == merged
    assert git(repo, "show", f"{merged}:other.txt") == "other"
    assert len((repo.parent / "gate-runs-62").read_text().splitlines()) == 2
    assert entry["base_commit"] != git(repo, "rev-parse", f"{merged}^1")  # not ff
    result.stdout.fnmatch_lines(["*PRP-62.1.1*merged after check*"])


def test_fast_forward_runs_no_second_check(pytester: pytest.Pytester, repo: Path) -> None:
    runs = repo.parent / "gate-runs-63"
    write_prp(repo, "PRP-63.1.1", creates={"a.txt": "a"}, gates=[f"echo ran >> {runs}"])
    write_prp(repo, "PRP-63.1.2", creates={"b.txt": "b"}, gates=[f"echo ran >> {runs}"])
    result = pytester.runpytest("--prp-batch", "63")
    assert result.ret == 0, result.stdout.str()
    assert len(runs.read_text().splitlines()) == 2
    assert {e["merge_checks"] for e in records(repo, "63").values()} == {0}


@pytest.mark.parametrize("workers", ["2", "4"])
def test_textual_conflict_resolved_by_redo(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, workers: str
) -> None:
    """Under -n 4 too: two appenders and two bystanders, which merge without a redo."""
    # Both appenders start from the same tip whatever the load: each step waits for the other
    # to have started (its worktree is cut before its steps run), so neither merged yet.
    for n in (1, 2):
        steps = [f"{meeting(tmp_path / 'barrier', n)}; echo line {n} >> log.txt"]
        write_prp(repo, f"PRP-64.1.{n}", steps=steps, gates=["true"])
    if workers == "4":
        for n in (3, 4):
            write_prp(repo, f"PRP-64.1.{n}", creates={f"f{n}.txt": "x"}, gates=["sleep 1.5"])
    result = pytester.runpytest_subprocess("--prp-batch", "64", "-n", workers, "--junitxml=out.xml")
    assert result.ret == 0, result.stdout.str()
    junit = (repo / "out.xml").read_text()
    assert '<property name="redos" value="1"' in junit
    assert '<property name="merged_commit"' in junit
    found = records(repo, "64")
    assert {e["status"] for e in found.values()} == {"success"}
    assert sorted(e["redos"] for e in found.values())[-2:] == [0, 1]
    assert sum(e["redos"] for e in found.values()) == 1
    redone = next(e for e in found.values() if e["redos"])
    assert redone["merge_failures"][0]["kind"] == "textual"
    assert redone["merge_failures"][0]["paths"] == ["log.txt"]
    other = next(p for p in ("PRP-64.1.1", "PRP-64.1.2") if not found[p]["redos"])
    assert redone["collides_with"] == [other]
    assert sorted(git(repo, "show", "prp/batch-64:log.txt").splitlines()) == ["line 1", "line 2"]
    # Each passing PRP merged exactly once.
    assert sorted(merged_ids(repo, "prp/batch-64")) == sorted(found)
    assert "before-redo" not in git(repo, "branch", "--list", "prp/*")  # superseded, dropped
    result.stdout.fnmatch_lines(["*redone on tip*"])


def test_redo_that_still_conflicts_fails_merge(pytester: pytest.Pytester, repo: Path) -> None:
    """Serial: each time the PRP runs, the tip moves with a conflicting change first."""
    write_prp(
        repo,
        "PRP-65.1.1",
        steps=[
            "echo theirs-$RANDOM > shared.txt && git add shared.txt && git commit -qm other\n"
            "git update-ref refs/heads/prp/batch-65 HEAD\n"
            "git reset -q --hard HEAD~1\n"
            "echo mine > shared.txt"
        ],
        gates=["true"],
    )
    before = git(repo, "rev-parse", "HEAD")
    result = pytester.runpytest("--prp-batch", "65")
    assert result.ret == 1
    entry = records(repo, "65")["PRP-65.1.1"]
    assert entry["status"] == "failed_merge"
    assert entry["redos"] == 1
    assert [f["kind"] for f in entry["merge_failures"]] == ["textual", "textual"]
    result.stdout.fnmatch_lines(["*conflicts in: shared.txt*after 1 redo*"])
    assert "mine" not in git(repo, "show", "prp/batch-65:shared.txt")
    assert git(repo, "show", "prp/65/PRP-65.1.1:shared.txt") == "mine"
    assert git(repo, "show", "prp/65/PRP-65.1.1-before-redo:shared.txt") == "mine"
    assert git(repo, "rev-parse", "HEAD") == before  # the user's checkout untouched


def test_merge_attempts_option_is_checked(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-66.1.1", gates=["true"])
    result = pytester.runpytest("--prp-batch", "66", "--prp-merge-attempts", "-1")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--prp-merge-attempts*not a whole number*"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_killed_during_a_merge_check_loses_nothing_and_resumes(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    checking, release, moved = (tmp_path / n for n in ("checking", "release", "moved"))
    write_prp(
        repo,
        "PRP-67.1.1",
        steps=[
            f"if [ ! -e {moved} ]; then touch {moved}\n"
            "  echo other > other.txt && git add other.txt && git commit -qm other\n"
            "  git update-ref refs/heads/prp/batch-67 HEAD\n"
            "  git reset -q --hard HEAD~1\n"
            "fi\n"
            "echo mine > mine.txt"
        ],
        # On the merged tree (other.txt there) the check blocks until released.
        gates=[
            f"if [ -e other.txt ] && [ ! -e {release} ]; then touch {checking}; sleep 60; fi\n"
            "test -f mine.txt"
        ],
    )
    git(repo, "branch", "prp/batch-67")
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--prp-batch", "67", "-p", "no:cacheprovider"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not checking.exists():
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tip = git(repo, "rev-parse", "prp/batch-67")
        os.killpg(run.pid, sig)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    # Nothing moved the branch past the unchecked merge; the other work is still there.
    assert git(repo, "rev-parse", "prp/batch-67") == tip
    assert git(repo, "show", "prp/batch-67:other.txt") == "other"
    release.touch()
    result = pytester.runpytest("--prp-batch", "67")
    assert result.ret == 0, result.stdout.str()
    assert merged_ids(repo, "prp/batch-67") == ["PRP-67.1.1"]  # merged exactly once
    assert git(repo, "show", "prp/batch-67:mine.txt") == "mine"
    assert git(repo, "show", "prp/batch-67:other.txt") == "other"
    git(repo, "fsck", "--no-dangling")


def test_an_agent_redoes_a_conflicting_prp_told_why(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """The first time its gate runs, another PRP's conflicting work lands on the branch: the
    agent is run again on the new tip with the conflicting paths, the commits since its base
    and its earlier diff; its redo merges."""
    moved, record = tmp_path / "moved", tmp_path / "record.json"
    write_prp(
        repo,
        "PRP-68.1.1",
        creates={"shared.txt": "mine"},
        gates=[
            f"if [ ! -e {moved} ]; then touch {moved}\n"
            "  echo theirs > shared.txt && git add shared.txt\n"
            "  git commit -qm 'other work' --trailer PRP-Id=PRP-68.0.1\n"
            "  git update-ref refs/heads/prp/batch-68 HEAD\n"
            "  git reset -q --hard HEAD~1 && echo mine > shared.txt\n"
            "fi\n"
            "test -f shared.txt"
        ],
    )
    agent = f"{sys.executable} {FAKE_AGENT} --record {record}"
    result = pytester.runpytest("--prp-batch", "68", "--prp-agent", agent)
    assert result.ret == 0, result.stdout.str()
    entry = records(repo, "68")["PRP-68.1.1"]
    assert entry["status"] == "success"
    assert entry["redos"] == 1
    assert entry["collides_with"] == ["PRP-68.0.1"]
    history = json.loads(record.read_text())["history"]
    assert len(history) == 2
    redo = history[-1]["prompt"]
    assert "Redo on the current integration tip" in redo
    assert "- shared.txt" in redo  # the conflicting path
    assert "PRP-68.0.1" in redo  # what moved the tip
    assert "+mine" in redo  # its earlier diff
    assert "Redo" not in history[0]["prompt"]
    assert git(repo, "show", "prp/batch-68:shared.txt") == "mine"
    assert merged_ids(repo, "prp/batch-68") == ["PRP-68.1.1", "PRP-68.0.1"]


def test_whom_a_failed_merge_collides_with() -> None:
    from pytest_prp.workspace.merge_check import Merged
    from pytest_prp.workspace.merge_queue import SEMANTIC, TEXTUAL, collisions

    merged = [
        Merged("a" * 40, "PRP-1.1.1", ("a.txt",)),
        Merged("b" * 40, None, ("shared.txt",)),  # by hand: no PRP to name
        Merged("c" * 40, "PRP-1.1.2", ("shared.txt", "c.txt")),
    ]
    assert collisions(merged, TEXTUAL, ["shared.txt"]) == ["PRP-1.1.2"]
    assert collisions(merged, SEMANTIC, []) == ["PRP-1.1.1", "PRP-1.1.2"]
    # Paths no PRP touched (renames, by hand): every PRP merged since the base.
    assert collisions(merged, TEXTUAL, ["z.txt"]) == ["PRP-1.1.1", "PRP-1.1.2"]
