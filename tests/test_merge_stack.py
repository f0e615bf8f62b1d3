"""Batching the merges that queue up (issue 14, ``--prp-merge-batch``): the integration gate
runs once on the tip of a stack of PRPs ready to merge; a stack that fails it is bisected, the
good PRPs merge and the culprit fails naming the integration gate. Real git, real pytest runs
under -n 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import entries, git, result_json, write_prp

# True on a merged tree (a merge check runs on a detached HEAD), False on the PRP's own.
ON_MERGED = "! git symbolic-ref -q HEAD >/dev/null"


def records(repo: Path, batch: str) -> dict[str, dict[str, Any]]:
    return entries(result_json(repo, batch))


def merged_ids(repo: Path, branch: str) -> list[str]:
    out = git(repo, "log", "--no-merges", "--format=%(trailers:key=PRP-Id,valueonly)", branch)
    return [line for line in out.splitlines() if line.strip()]


def wait_for(path: Path, bound: int = 1200) -> str:
    """Shell: wait until ``path`` exists (at most ``bound`` x 50 ms)."""
    return f"n=0; until [ -e {path} ] || [ $n -gt {bound} ]; do sleep 0.05; n=$((n+1)); done"


def wait_until(condition: str, bound: int = 1200) -> str:
    """Shell: wait until ``condition`` holds (at most ``bound`` x 50 ms)."""
    return f"n=0; until {condition} || [ $n -gt {bound} ]; do sleep 0.05; n=$((n+1)); done"


def ready_in_queue(prp_id: str) -> str:
    """Shell: ``prp_id``'s own gates passed on its merge, as its entry in the merge queue's
    file (in the git dir) says."""
    queue = "$(git rev-parse --git-common-dir)/prp/merge-stack"
    return f'grep -h -A3 \'"prp_id": "{prp_id}"\' {queue}/*.json 2>/dev/null | grep -q ready'


def queued_pair(repo: Path, batch: str, tmp: Path, batched: bool = True) -> None:
    """Two siblings whose merges queue up together. Both start from the same tip; the first
    moves the branch (as another worker's merge would), so neither merge is a fast-forward.
    The second finishes once the first's merge check has started, and the first's check ends
    once the second's has passed (batching on: once the queue says so): the second joins the
    queue on top of the first, and both are ready when a stack is run; without batching, both
    are checked on their own."""
    barrier, moved, first_checks, second_checked = (
        tmp / "barrier", tmp / "moved", tmp / "first-checks", tmp / "second-checked"
    )  # fmt: skip
    barrier.mkdir()
    second = f"PRP-{batch}.1.2"
    # (A file ``go`` ends the wait: a resumed run, where the second may have merged.)
    ready = f"{{ [ -e {tmp / 'go'} ] || {ready_in_queue(second)}; }}"
    second_passed = wait_until(ready) if batched else wait_for(second_checked)
    meet = (
        f"touch {barrier}/$ID; until [ -e {barrier}/1 ] && [ -e {barrier}/2 ]; do sleep 0.05; done"
    )
    write_prp(
        repo,
        f"PRP-{batch}.1.1",
        creates={"x.txt": "x"},
        steps=[
            meet.replace("$ID", "1") + "\n"
            "echo other >> other.txt && git add other.txt && git commit -qm other\n"
            f"git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-{batch} HEAD\n"
            f"git reset -q --hard HEAD~1\ntouch {moved}"
        ],
        gates=[f"if {ON_MERGED}; then touch {first_checks}; {second_passed}; fi"],
    )
    write_prp(
        repo,
        f"PRP-{batch}.1.2",
        creates={"y.txt": "y"},
        steps=[meet.replace("$ID", "2") + f"\n{wait_for(moved)}; {wait_for(first_checks)}"],
        gates=[f"if {ON_MERGED}; then touch {second_checked}; fi"],
    )


def gate_logging(runs: Path, breaks: str = "") -> str:
    """The integration gate: logs the merged commits it runs on (not the PRPs' own trees),
    then fails when ``breaks`` (a shell test) is true."""
    check = f" && ! ( {breaks} )" if breaks else ""
    return f"if {ON_MERGED}; then git rev-parse HEAD >> {runs}; fi{check}"


def merged_runs(runs: Path) -> list[str]:
    return runs.read_text().split() if runs.exists() else []


def test_a_stack_merges_with_one_integration_gate_run(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    queued_pair(repo, "70", tmp_path)
    runs = tmp_path / "runs"
    result = pytester.runpytest_subprocess(
        "--prp-batch", "70", "-n", "2", "--prp-merge-batch",
        "--prp-integration-gate", gate_logging(runs),
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    tip = git(repo, "rev-parse", "prp/batch-70")
    assert merged_runs(runs) == [tip]  # once, on the stack's tip
    assert sorted(merged_ids(repo, "prp/batch-70")) == ["PRP-70.1.1", "PRP-70.1.2"]
    found = records(repo, "70")
    for prp_id in ("PRP-70.1.1", "PRP-70.1.2"):
        assert found[prp_id]["status"] == "success"
        assert found[prp_id]["merge_stack"]["size"] == 2
        assert found[prp_id]["merge_stack"]["gate_commit"] == tip
    # The first joined the queue first: the second's merge is the stack's tip, on the first's.
    assert found["PRP-70.1.2"]["merged_commit"] == tip
    first = found["PRP-70.1.1"]["merged_commit"]
    assert git(repo, "rev-parse", f"{tip}^1") == first
    for name in ("x.txt", "y.txt", "other.txt"):
        git(repo, "cat-file", "-e", f"{tip}:{name}")
    result.stdout.fnmatch_lines(
        [f"*PRP-70.1.*merged in a stack of 2, integration gate run once on {tip[:12]}*"] * 2
    )
    status = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", ".ce/orchestration"],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("merged in a stack of 2") == 2, status.stdout


def test_batching_off_runs_the_integration_gate_per_merge(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """The same pair without ``--prp-merge-batch``: as before, each merge check runs the
    integration gate (one of them twice: the other merged during its check)."""
    queued_pair(repo, "71", tmp_path, batched=False)
    runs = tmp_path / "runs"
    result = pytester.runpytest_subprocess(
        "--prp-batch", "71", "-n", "2", "--prp-integration-gate", gate_logging(runs)
    )
    assert result.ret == 0, result.stdout.str()
    assert len(merged_runs(runs)) == 3
    found = records(repo, "71")
    assert {e["status"] for e in found.values()} == {"success"}
    assert all("merge_stack" not in e for e in found.values())
    assert sum(e["merge_rechecks"] for e in found.values()) == 1
    assert "stack" not in result.stdout.str()


def test_a_failing_stack_merges_the_good_and_fails_the_culprit(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """x.txt and y.txt each pass the integration gate alone, break it together: the stack's
    tip fails, bisection finds the second, the first merges alone."""
    queued_pair(repo, "72", tmp_path)
    runs = tmp_path / "runs"
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--prp-batch", "72", "-n", "2", "--prp-merge-batch", "--prp-merge-attempts", "0",
        "--prp-integration-gate", gate_logging(runs, "[ -e x.txt ] && [ -e y.txt ]"),
        f"--junitxml={junit}",
    )  # fmt: skip
    assert result.ret == 1
    found = records(repo, "72")
    first, second = found["PRP-72.1.1"], found["PRP-72.1.2"]
    tip = git(repo, "rev-parse", "prp/batch-72")
    assert first["status"] == "success"
    assert first["merged_commit"] == tip
    assert first["merge_stack"]["size"] == 1
    assert first["merge_stack"]["gate_commit"] == tip
    assert second["status"] == "failed_integration"
    assert second["merge_failures"][0]["failed_gates"] == ["integration gate"]
    assert second["merge_failures"][0]["tip"] == tip
    assert second["collides_with"] == ["PRP-72.1.1"]
    assert "merge_stack" not in second
    # The stack's tip, then the first's merge (bisection): the branch moved to the one passed.
    runs_seen = merged_runs(runs)
    assert len(runs_seen) == 2 and runs_seen[1] == tip, runs_seen
    assert merged_ids(repo, "prp/batch-72") == ["PRP-72.1.1"]
    git(repo, "cat-file", "-e", f"{tip}:x.txt")
    result.stdout.fnmatch_lines(["*PRP-72.1.2*'integration gate'*collides with PRP-72.1.1*"])
    assert "merged in a stack of 1" in junit.read_text()


def _killed_mid_stack(repo: Path, tmp_path: Path, sig: signal.Signals) -> str:
    """Run batch 73 with batching until the stack's integration gate runs, then ``sig`` the
    worker running it (its parent process: the gate blocks until released). Returns the
    integration gate, for the resume (it blocks only once)."""
    runs, pid, blocked = tmp_path / "runs", tmp_path / "gate-pid", tmp_path / "blocked"
    gate = (
        f"if {ON_MERGED}; then git rev-parse HEAD >> {runs}; "
        f"if [ ! -e {blocked} ]; then touch {blocked}; echo $PPID > {pid}; sleep 60; fi; fi"
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--prp-batch", "73", "-n", "2", "-p",
         "no:cacheprovider", "--prp-merge-batch", "--prp-integration-gate", gate],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not pid.exists() or not pid.read_text().strip():
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if sig == signal.SIGINT:  # Ctrl-C: the terminal signals the whole process group
            os.killpg(run.pid, sig)
        else:
            os.kill(int(pid.read_text()), sig)
        run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    return gate


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_a_worker_killed_holding_a_stack_loses_nothing(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """The worker running the stack's gate is SIGKILLed: the branch has not moved to the
    stack; the other PRP is checked on its own; a resume merges the killed one; each PRP is
    merged exactly once. Ctrl-C during the stack's gate: nothing half-merged, the resume
    merges both."""
    queued_pair(repo, "73", tmp_path)
    before = git(repo, "rev-parse", "HEAD")
    gate = _killed_mid_stack(repo, tmp_path, sig)
    ids = merged_ids(repo, "prp/batch-73")
    (tmp_path / "go").touch()
    if sig == signal.SIGKILL:
        assert len(ids) == 1, ids  # the other PRP, checked on its own
    else:
        assert len(ids) <= 1, ids
    result = pytester.runpytest(
        "--prp-batch", "73", "--prp-merge-batch", "--prp-integration-gate", gate
    )
    assert result.ret == 0, result.stdout.str()
    assert sorted(merged_ids(repo, "prp/batch-73")) == ["PRP-73.1.1", "PRP-73.1.2"]
    tip = git(repo, "rev-parse", "prp/batch-73")
    for name in ("x.txt", "y.txt", "other.txt"):
        git(repo, "cat-file", "-e", f"{tip}:{name}")
    assert git(repo, "rev-parse", "HEAD") == before  # the user's checkout untouched
    git(repo, "fsck", "--no-dangling")


def test_merge_batch_in_the_ini(pytester: pytest.Pytester, repo: Path, tmp_path: Path) -> None:
    """ini ``prp_merge_batch`` turns batching on as the option does."""
    queued_pair(repo, "74", tmp_path)
    runs = tmp_path / "runs"
    pytester.makeini(
        f"[pytest]\nprp_merge_batch = true\nprp_integration_gate = {gate_logging(runs)}\n"
    )
    result = pytester.runpytest_subprocess("--prp-batch", "74", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    assert len(merged_runs(runs)) == 1
    assert {e["merge_stack"]["size"] for e in records(repo, "74").values()} == {2}


def test_a_conflict_with_a_queued_prp_waits_for_it_then_is_redone(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """Both append to log.txt: the second's merge conflicts with the first, still queued (its
    check is running), not with the branch. It waits for the first to merge, then conflicts
    with the branch's tip, and its redo there merges: both lines are on the branch."""
    barrier, moved, first_checks = tmp_path / "barrier", tmp_path / "moved", tmp_path / "checks"
    barrier.mkdir()
    meet = f"until [ -e {barrier}/1 ] && [ -e {barrier}/2 ]; do sleep 0.05; done"
    write_prp(
        repo,
        "PRP-75.1.1",
        steps=[
            f"touch {barrier}/1; {meet}\n"
            "echo other >> other.txt && git add other.txt && git commit -qm other\n"
            "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-75 HEAD\n"
            f"git reset -q --hard HEAD~1\ntouch {moved}\necho one >> log.txt"
        ],
        gates=[f"if {ON_MERGED}; then touch {first_checks}; sleep 1; fi"],
    )
    write_prp(
        repo,
        "PRP-75.1.2",
        steps=[
            f"touch {barrier}/2; {meet}; {wait_for(moved)}; {wait_for(first_checks)}\n"
            "echo two >> log.txt"
        ],
        gates=["true"],
    )
    runs = tmp_path / "runs"
    result = pytester.runpytest_subprocess(
        "--prp-batch", "75", "-n", "2", "--prp-merge-batch",
        "--prp-integration-gate", gate_logging(runs),
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    found = records(repo, "75")
    assert {e["status"] for e in found.values()} == {"success"}
    assert found["PRP-75.1.1"]["redos"] == 0
    assert found["PRP-75.1.2"]["redos"] == 1
    assert found["PRP-75.1.2"]["merge_failures"][0]["kind"] == "textual"
    assert sorted(merged_ids(repo, "prp/batch-75")) == ["PRP-75.1.1", "PRP-75.1.2"]
    log = git(repo, "show", "prp/batch-75:log.txt").splitlines()
    assert sorted(log) == ["one", "two"]


def test_stress_twenty_prps_under_four_workers(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """20 independent PRPs under -n 4, every fifth appending to one shared file (textual
    conflicts, redone on the tip), with an integration gate that takes a while on merged
    trees: stacks form, every PRP merges exactly once, and the branch moved only to commits
    the integration gate passed on."""
    runs = tmp_path / "runs"
    ids = [f"PRP-76.1.{n}" for n in range(1, 21)]
    for n, prp_id in enumerate(ids, 1):
        steps = [f"echo {prp_id} > f{n}.txt; sleep 0.{n % 4}"]
        if n % 5 == 0:
            steps.append(f"echo {prp_id} >> shared.txt")
        write_prp(repo, prp_id, steps=steps, gates=[f"test -f f{n}.txt"])
    gate = f"if {ON_MERGED}; then git rev-parse HEAD >> {runs}; sleep 0.5; fi"
    result = pytester.runpytest_subprocess(
        "--prp-batch", "76", "-n", "4", "--prp-merge-batch", "--prp-merge-attempts", "5",
        "--prp-integration-gate", gate,
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()[-3000:]
    found = records(repo, "76")
    assert {e["status"] for e in found.values()} == {"success"}
    assert sorted(merged_ids(repo, "prp/batch-76")) == sorted(ids)
    lines = git(repo, "show", "prp/batch-76:shared.txt").splitlines()
    assert sorted(lines) == sorted(ids[4::5])
    # Every commit the branch pointed at is a fast-forward to a PRP's own commit (its gates,
    # the integration gate among them, passed on that tree) or a stack's tip the gate passed on.
    history = git(repo, "rev-list", "--first-parent", "prp/batch-76", "^main").split()
    assert sorted(history) == sorted(e["merged_commit"] for e in found.values())
    tips = set(merged_runs(runs))
    stacked = [e for e in found.values() if "merge_stack" in e]
    assert {e["merge_stack"]["gate_commit"] for e in stacked} <= tips
    moved_to = git(repo, "reflog", "--format=%H", "prp/batch-76").split()
    fast_forwards = {e["merged_commit"] for e in found.values() if "merge_stack" not in e}
    assert set(moved_to) - {git(repo, "rev-parse", "main")} <= tips | fast_forwards
    # Stacks formed: fewer gate runs on stack tips than PRPs merged through the queue.
    assert stacked and max(e["merge_stack"]["size"] for e in stacked) > 1


def test_merge_batch_without_an_integration_gate_is_refused(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """--prp-merge-batch with no integration gate would change nothing: one usage error that
    says what to add, and no PRP run."""
    write_prp(repo, "PRP-79.1", creates={"a.txt": "a\n"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess("--prp-batch", "79", "--prp-merge-batch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--prp-merge-batch batches the runs of the integration gate, and none is set: add "
         "--prp-integration-gate CMD (or ini prp_integration_gate)*"]
    )  # fmt: skip
    assert "Traceback" not in result.stderr.str()
    assert git(repo, "branch", "--list", "prp/batch-79") == ""
