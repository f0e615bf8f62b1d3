"""Parallel batches under pytest-xdist: real workers, real worktrees, one integration branch."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import git, processes_with, wait_gone, worktrees_dir, write_prp


def statuses(root: Path, batch: str) -> dict[str, str]:
    doc = json.loads(
        (root / ".ce/orchestration/batches" / f"batch-{batch}.result.json").read_text()
    )
    return {pid: e["status"] for stage in doc["stages"].values() for pid, e in stage.items()}


def tree(root: Path, branch: str) -> dict[str, str]:
    """Path -> blob of every file on a branch: the batch's final result."""
    out = git(root, "ls-tree", "-r", branch)
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def prp_commits(root: Path, branch: str) -> list[str]:
    return git(root, "log", "--format=%(trailers:key=PRP-Id,valueonly)", branch).split()


def make_batch(
    root: Path, batch: str, deps: dict[str, list[str]], fail: frozenset[str] = frozenset()
) -> None:
    for pid, needs in deps.items():
        name = pid.replace("PRP-", "").replace(".", "_")
        gate = "false" if pid in fail else f"test -f out/{name}.txt"
        write_prp(root, pid, deps=needs, creates={f"out/{name}.txt": pid}, gates=[gate])


CHAIN = {"PRP-30.1.1": [], "PRP-30.2.1": ["PRP-30.1.1"], "PRP-30.3.1": ["PRP-30.2.1"]}
DIAMOND = {
    "PRP-30.1.1": [],
    "PRP-30.2.1": ["PRP-30.1.1"],
    "PRP-30.2.2": ["PRP-30.1.1"],
    "PRP-30.3.1": ["PRP-30.2.1", "PRP-30.2.2"],
}
FAN_OUT = {"PRP-30.1.1": [], **{f"PRP-30.2.{n}": ["PRP-30.1.1"] for n in range(1, 9)}}


@pytest.mark.parametrize("shape", [CHAIN, DIAMOND, FAN_OUT], ids=["chain", "diamond", "fan-out"])
def test_parallel_equals_serial(pytester: pytest.Pytester, repo: Path, shape: Any) -> None:
    make_batch(repo, "30", shape, fail=frozenset({"PRP-30.2.1"} if len(shape) > 3 else ()))
    serial = pytester.runpytest_subprocess("--prp-batch", "30", "--prp-branch", "serial")
    serial_status = statuses(repo, "30")
    parallel = pytester.runpytest_subprocess(
        "--prp-batch", "30", "--prp-branch", "parallel", "-n", "4", "--prp-rerun"
    )
    assert serial.ret == parallel.ret
    assert statuses(repo, "30") == serial_status
    assert tree(repo, "parallel") == tree(repo, "serial")
    assert sorted(prp_commits(repo, "parallel")) == sorted(prp_commits(repo, "serial"))


def test_failure_blocks_its_subtree_only(pytester: pytest.Pytester, repo: Path) -> None:
    make_batch(
        repo,
        "31",
        {
            "PRP-31.1.1": [],
            "PRP-31.1.2": [],
            "PRP-31.2.1": ["PRP-31.1.1"],
            "PRP-31.2.2": ["PRP-31.1.2"],
            "PRP-31.3.1": ["PRP-31.2.1"],
        },
        fail=frozenset({"PRP-31.1.1"}),
    )
    result = pytester.runpytest_subprocess("--prp-batch", "31", "-n", "2", "-v")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*BLOCKED*PRP-31.2.1*"])
    assert statuses(repo, "31") == {
        "PRP-31.1.1": "failed_gates",
        "PRP-31.1.2": "success",
        "PRP-31.2.1": "blocked",
        "PRP-31.2.2": "success",
        "PRP-31.3.1": "blocked",
    }
    # --lf after a parallel run: the failure and what it blocked, nothing else.
    (repo / "PRPs" / "PRP-31.1.1.md").write_text(
        (repo / "PRPs" / "PRP-31.1.1.md").read_text().replace("false", "true")
    )
    again = pytester.runpytest_subprocess("--prp-batch", "31", "-n", "2", "--lf", "-v")
    assert again.ret == 0, again.stdout.str()
    assert statuses(repo, "31") == dict.fromkeys(
        ("PRP-31.1.1", "PRP-31.1.2", "PRP-31.2.1", "PRP-31.2.2", "PRP-31.3.1"), "success"
    )
    # The PRPs not rerun keep their records, marked as from the earlier run.
    doc = json.loads((repo / ".ce/orchestration/batches/batch-31.result.json").read_text())
    earlier = {pid for st in doc["stages"].values() for pid, e in st.items() if "earlier_run" in e}
    assert earlier == {"PRP-31.1.2", "PRP-31.2.2"}


def test_parallel_conflict_fails_only_the_loser(pytester: pytest.Pytester, repo: Path) -> None:
    for n in (1, 2):
        write_prp(repo, f"PRP-32.1.{n}", creates={"same.txt": f"from {n}"}, gates=["sleep 1.5"])
    write_prp(repo, "PRP-32.1.3", creates={"other.txt": "x"}, gates=["true"])
    # No redo (a redo on the new tip would resolve it: test_merge_queue.py).
    result = pytester.runpytest_subprocess(
        "--prp-batch", "32", "-n", "3", "--prp-merge-attempts", "0"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*conflicts in: same.txt*"])
    found = statuses(repo, "32")
    assert sorted(found.values()) == ["failed_merge", "success", "success"]
    assert found["PRP-32.1.3"] == "success"
    winner = next(p for p in ("PRP-32.1.1", "PRP-32.1.2") if found[p] == "success")
    assert sorted(prp_commits(repo, "prp/batch-32")) == sorted([winner, "PRP-32.1.3"])


def test_serialized_conflicts_both_merge(pytester: pytest.Pytester, repo: Path) -> None:
    for n in (1, 2):
        write_prp(
            repo,
            f"PRP-33.1.{n}",
            steps=[f"echo {n} >> log.txt"],
            gates=["true"],
            extra="files_modified: [log.txt]",
        )
    result = pytester.runpytest_subprocess(
        "--prp-batch", "33", "-n", "2", "--prp-serialize-conflicts"
    )
    assert result.ret == 0, result.stdout.str()
    assert set(statuses(repo, "33").values()) == {"success"}


def test_mixed_session_with_ordinary_tests(pytester: pytest.Pytester, repo: Path) -> None:
    make_batch(
        repo,
        "34",
        {k.replace("30.", "34."): [d.replace("30.", "34.") for d in v] for k, v in DIAMOND.items()},
    )
    pytester.makepyfile(test_plain="\n".join(f"def test_{n}():\n    pass\n" for n in range(10)))
    result = pytester.runpytest_subprocess("--prp-batch", "34", "-n", "2", ".")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=14)
    assert "pytest-prp::next" not in result.stdout.str()


def test_maxfail_stops_dispatching(pytester: pytest.Pytester, repo: Path) -> None:
    make_batch(
        repo, "35", {f"PRP-35.1.{n}": [] for n in range(1, 7)}, fail=frozenset({"PRP-35.1.1"})
    )
    result = pytester.runpytest_subprocess("--prp-batch", "35", "-n", "2", "-x")
    assert result.ret in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    found = statuses(repo, "35")
    assert found["PRP-35.1.1"] == "failed_gates"
    assert len(found) == 6 and "not_started" in found.values()
    result.stdout.fnmatch_lines(["*not started*"])


def test_crashed_worker_fails_its_prp_and_the_run_goes_on(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # The step kills the xdist worker that runs it: the parent of its bash.
    write_prp(repo, "PRP-37.1.1", steps=["kill -9 $PPID"], gates=["true"])
    write_prp(repo, "PRP-37.2.1", deps=["PRP-37.1.1"], gates=["true"])
    make_batch(repo, "37", {"PRP-37.1.2": [], "PRP-37.1.3": []})
    result = pytester.runpytest_subprocess("--prp-batch", "37", "-n", "2", "-v")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*crashed*"])
    found = statuses(repo, "37")
    assert found["PRP-37.1.2"] == found["PRP-37.1.3"] == "success"
    assert found["PRP-37.2.1"] == "blocked"
    assert found["PRP-37.1.1"] == "failed"


def test_stress_sixty_prps_eight_workers(pytester: pytest.Pytester, repo: Path) -> None:
    rng = random.Random(47)
    deps: dict[str, list[str]] = {}
    ids = [f"PRP-36.{n // 10 + 1}.{n % 10 + 1}" for n in range(60)]
    for i, pid in enumerate(ids):
        earlier = ids[: i - i % 10]  # only ids of earlier groups: no cycles
        deps[pid] = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 2)))
    make_batch(repo, "36", deps)
    result = pytester.runpytest_subprocess("--prp-batch", "36", "-n", "8")
    assert result.ret == 0, result.stdout.str()[-3000:]
    commits = prp_commits(repo, "prp/batch-36")
    assert sorted(commits) == sorted(ids)
    assert len([path for path in tree(repo, "prp/batch-36") if path.startswith("out/")]) == 60
    # The branch moved only to checked commits: its first-parent history is exactly the
    # PRPs' merged commits (merge_queue), each one a tree its PRP's gates passed on.
    found = json.loads((repo / ".ce/orchestration/batches/batch-36.result.json").read_text())
    merged = {e["merged_commit"] for stage in found["stages"].values() for e in stage.values()}
    history = git(repo, "rev-list", "--first-parent", "prp/batch-36", "^main").split()
    assert set(history) == merged


def test_bad_repository_is_one_line_under_xdist(pytester: pytest.Pytester) -> None:
    write_prp(pytester.path, "PRP-38.1.1", gates=["true"])
    result = pytester.runpytest_subprocess("--prp-batch", "38", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: prp: not inside a git repository*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_to_the_controller_ends_every_worker_s_prp(
    pytester: pytest.Pytester, repo: Path, signum: int
) -> None:
    # `kill <pid>` (or a CI runner) signals the controller only, not its workers: the steps
    # the workers run must end all the same, and the result say what was cut short.
    token = f"parallel-signal-{int(signum)}"
    hang = f"sleep 120; echo {token}"  # two commands: bash stays, its command line shows token
    write_prp(repo, "PRP-39.1.1", steps=[hang], gates=["true"])
    write_prp(repo, "PRP-39.1.2", steps=[hang], gates=["true"])
    write_prp(repo, "PRP-39.2.1", deps=["PRP-39.1.1", "PRP-39.1.2"], gates=["true"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--prp-batch", "39", "-n", "2", "-p", "no:cacheprovider"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while len(processes_with(token)) < 2:  # the bash of each step
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signum)
        out, _ = proc.communicate(timeout=60)
        left = wait_gone(token, 1.0)  # the controller ends what its workers left before it exits
    finally:  # whatever failed, leave no process behind
        proc.kill()
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert left == []
    found = statuses(repo, "39")
    assert found == {
        "PRP-39.1.1": "interrupted",
        "PRP-39.1.2": "interrupted",
        "PRP-39.2.1": "not_started",
    }
    doc = json.loads((repo / ".ce/orchestration/batches/batch-39.result.json").read_text())
    assert doc["interrupted"] is True and sorted(doc["stages"]) == ["1", "2"]
    assert doc["stages"]["1"]["PRP-39.1.1"]["integration_branch"] == "prp/batch-39"
    assert "Integration branch: prp/batch-39" in out
    # Each cut-short PRP's worktree is kept under its name.
    kept = sorted(p.name for p in worktrees_dir(repo).iterdir())
    assert kept == ["PRP-39.1.1", "PRP-39.1.2"]


def test_workers_end_their_prps_when_the_controller_is_killed(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # SIGKILL gives the controller no chance to end its workers: each worker sees its
    # controller gone (execnet interrupts its main thread) and must end its own PRP rather
    # than leave the step running with nobody to report to.
    token = "parallel-controller-killed"
    hang = f"sleep 120; echo {token}"
    write_prp(repo, "PRP-40.1.1", steps=[hang], gates=["true"])
    write_prp(repo, "PRP-40.1.2", steps=[hang], gates=["true"])
    left = _kill_the_controller_once_running(repo, ["--prp-batch", "40"], token, running=2)
    assert left == []
    worktrees = worktrees_dir(repo)
    deadline = time.monotonic() + 15  # the workers finish their session after the step ends
    while sorted(p.name for p in worktrees.iterdir()) != ["PRP-40.1.1", "PRP-40.1.2"]:
        assert time.monotonic() < deadline, sorted(p.name for p in worktrees.iterdir())
        time.sleep(0.1)


def test_workers_end_their_agents_when_the_controller_is_killed(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # As above, with an agent that detaches a daemon into its own session first: the worker
    # must end both at once, not wait for the agent to end by itself.
    token = "parallel-agent-controller-killed"
    agent = repo / "agent.sh"
    agent.write_text(
        "#!/bin/bash\n"
        f"setsid nohup bash -c 'while true; do sleep 1; echo {token}-daemon; done' "
        ">/dev/null 2>&1 &\n"
        f"bash -c 'sleep 120; echo {token}'\n"
    )
    agent.chmod(0o755)
    write_prp(repo, "PRP-41.1.1", steps=["x"], gates=["true"])
    write_prp(repo, "PRP-41.1.2", steps=["x"], gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    args = ["--prp-batch", "41", f"--prp-agent={agent}"]
    left = _kill_the_controller_once_running(repo, args, token, running=4)
    assert left == []


def _kill_the_controller_once_running(
    repo: Path, args: list[str], token: str, running: int
) -> list[int]:
    """SIGKILL a ``-n 2`` run's controller once ``running`` processes carry ``token``; the
    processes with it still there 15 s later (all of them are killed before returning)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", *args],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while len(processes_with(token)) < running:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=30)
        left: list[int] = wait_gone(token, seconds=15)
    finally:
        proc.kill()
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)
    return left


def test_what_a_crashed_worker_left_running_ends_with_the_run(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # The step starts a process, then kills its xdist worker (the parent of its bash): nobody
    # on the worker's side is left to end that process; the run must, before it exits.
    token = "crashed-worker-leftover"
    step = f"bash -c 'sleep 120; echo {token}' & sleep 0.5; kill -9 $PPID"
    write_prp(repo, "PRP-41.1.1", steps=[step], gates=["true"])
    write_prp(repo, "PRP-41.1.2", gates=["true"])
    try:
        result = pytester.runpytest_subprocess("--prp-batch", "41", "-n", "2")
        left = wait_gone(token, 1.0)
    finally:
        for pid in processes_with(token):
            os.kill(pid, signal.SIGKILL)
    assert result.ret == 1
    assert statuses(repo, "41") == {"PRP-41.1.1": "failed", "PRP-41.1.2": "success"}
    assert left == []
