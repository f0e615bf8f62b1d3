"""Nothing lost, ever: merged work survives misbehaving agents, concurrent runs and crashed
workers (issue 10). Real repositories, real pytest processes."""

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

from conftest import EXAMPLE_PRPS, git, init_repo, write_prp


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


def run_lock_text(root: Path) -> str:
    """What the run locks of the repository say (their holders)."""
    locks = root / ".git" / "prp" / "locks"
    return " ".join(p.read_text() for p in locks.glob("run-*.lock")) if locks.is_dir() else ""


def start_pytest(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def two_runs_at_once(root: Path, go: Path, *args: str) -> tuple[str, str, int]:
    """Start two identical runs together; every PRP waits for ``go``. The one refused ends
    first: return its output, the winner's output and the winner's pid."""
    runs = [start_pytest(root, *args), start_pytest(root, *args)]
    try:
        deadline = time.monotonic() + 90
        while all(run.poll() is None for run in runs):
            assert time.monotonic() < deadline, "neither run was refused"
            time.sleep(0.05)
        loser = next(run for run in runs if run.poll() is not None)
        winner = next(run for run in runs if run is not loser)
        lost_out = loser.communicate()[0]
        assert loser.returncode == pytest.ExitCode.USAGE_ERROR, lost_out
        assert winner.poll() is None, "the other run must still be running"
        go.touch()
        won_out = winner.communicate(timeout=120)[0]
        assert winner.returncode == 0, won_out
        return lost_out, won_out, winner.pid
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()


def test_a_second_run_of_a_running_batch_is_refused_and_nothing_is_lost(
    pytester: pytest.Pytester, repo: Path
) -> None:
    go = repo.parent / "go-example"
    wait = (
        f"### Step 0: wait for the test\n\n```bash\nwhile [ ! -e {go} ]; do sleep 0.05; done\n```\n"
    )
    (repo / "PRPs").mkdir()
    for path in EXAMPLE_PRPS.glob("*.md"):
        text = path.read_text().replace(
            "## Implementation Steps\n", f"## Implementation Steps\n\n{wait}"
        )
        (repo / "PRPs" / path.name).write_text(text)
    lost, won, pid = two_runs_at_once(repo, go, "--prp-batch", "7")
    refusal = [line for line in lost.splitlines() if "another run" in line]
    assert len(refusal) == 1, lost
    assert f"another run is using the integration branch prp/batch-7 (pid {pid} on " in refusal[0]
    assert "--prp-batch 7" in refusal[0] and "Traceback" not in lost
    ids = ["PRP-7.1.1", "PRP-7.2.1", "PRP-7.2.2", "PRP-7.3.1"]
    assert sorted(prp_ids_on(repo, "prp/batch-7")) == ids  # each exactly once
    assert run_lock_text(repo) == ""  # the lock names nobody once the run ended
    rerun = pytester.runpytest("--prp-batch", "7")
    assert rerun.ret == 0
    assert set(e["status"] for e in result_entries(repo, "7").values()) == {"completed_earlier"}


def test_two_parallel_runs_of_a_twelve_prp_batch(pytester: pytest.Pytester, repo: Path) -> None:
    go = repo.parent / "go-twelve"
    wait = f"while [ ! -e {go} ]; do sleep 0.05; done"
    ids = ["PRP-8.1.1", *(f"PRP-8.2.{n}" for n in range(1, 12))]
    for n, pid in enumerate(ids):
        deps = [] if n == 0 else ["PRP-8.1.1"]
        write_prp(repo, pid, deps=deps, steps=[f"{wait}\necho {pid} > f{n}.txt"], gates=["true"])
    lost, won, pid = two_runs_at_once(repo, go, "--prp-batch", "8", "-n", "2")
    assert (
        f"ERROR: prp: another run is using the integration branch prp/batch-8 (pid {pid} " in lost
    )
    assert "12 passed" in won
    assert sorted(prp_ids_on(repo, "prp/batch-8")) == sorted(ids)
    assert (
        len(
            [
                p
                for p in git(repo, "ls-tree", "--name-only", "prp/batch-8").split()
                if p.startswith("f")
            ]
        )
        == 12
    )
    rerun = pytester.runpytest("--prp-batch", "8", "-n", "2")
    assert rerun.ret == 0
    assert set(e["status"] for e in result_entries(repo, "8").values()) == {"completed_earlier"}


def test_a_crashed_worker_leaves_no_slot_and_fsck_is_clean(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # The step kills the xdist worker that runs it (its bash's parent) mid-PRP.
    write_prp(repo, "PRP-9.1", steps=["echo half > half.txt\nkill -9 $PPID"], gates=["true"])
    for n in (2, 3, 4):
        write_prp(repo, f"PRP-9.{n}", creates={f"f{n}.txt": str(n)}, gates=["true"])
    write_prp(repo, "PRP-9.5", deps=["PRP-9.2"], creates={"f5.txt": "5"}, gates=["true"])
    result = pytester.runpytest_subprocess("--prp-batch", "9", "-n", "2")
    assert result.ret == 1
    found = {pid: e["status"] for pid, e in result_entries(repo, "9").items()}
    assert found == {"PRP-9.1": "failed", **{f"PRP-9.{n}": "success" for n in (2, 3, 4, 5)}}
    listed = git(repo, "worktree", "list", "--porcelain")
    paths = [line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree ")]
    assert not [path for path in paths if "+slot-" in path], listed
    # What remains is the crashed PRP's work, kept under its name as for any failure.
    assert [Path(path).name for path in paths[1:]] == ["PRP-9.1"]
    assert (Path(paths[1]) / "half.txt").read_text() == "half\n"
    fsck = subprocess.run(["git", "fsck"], cwd=repo, capture_output=True, text=True)
    assert fsck.returncode == 0 and fsck.stdout + fsck.stderr == "", fsck.stdout + fsck.stderr


def test_changes_inside_a_submodule_fail_the_prp_clearly(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    library = init_repo(tmp_path / "library")
    allow = ("-c", "protocol.file.allow=always")
    git(repo, *allow, "submodule", "add", "-q", str(library), "sub")
    git(repo, "commit", "-q", "-m", "the library as a submodule")
    init = f"git {' '.join(allow)} submodule update -q --init sub"
    write_prp(repo, "PRP-9.1", steps=["echo changed > sub/README.md"], gates=["true"])
    write_prp(repo, "PRP-9.2", steps=[f"{init}\necho more >> sub/README.md"], gates=["true"])
    write_prp(
        repo,
        "PRP-9.3",
        steps=[
            "git init -q nested\n"
            "git -C nested -c user.name=a -c user.email=a@b commit -q --allow-empty -m x"
        ],
        gates=["true"],
    )
    write_prp(repo, "PRP-9.4", steps=[f"{init}\necho mine > mine.txt"], gates=["true"])
    result = pytester.runpytest("--prp-batch", "9")
    assert result.ret == 1
    found = result_entries(repo, "9")
    assert {pid: e["status"] for pid, e in found.items()} == {
        "PRP-9.1": "failed",
        "PRP-9.2": "failed",
        "PRP-9.3": "failed",
        "PRP-9.4": "success",  # reading an initialised submodule is fine
    }
    for pid, path in (("PRP-9.1", "sub"), ("PRP-9.2", "sub"), ("PRP-9.3", "nested")):
        assert found[pid]["errors"] == [
            f"{pid}: commit failed: changes inside submodules are not supported: {path} "
            "(commit them in the submodule's own repository)"
        ]
    assert prp_ids_on(repo, "prp/batch-9") == ["PRP-9.4"]
    assert git(repo, "ls-tree", "prp/batch-9", "sub").startswith("160000 commit ")
    assert git(repo, "rev-parse", "prp/batch-9:sub") == git(repo, "rev-parse", "HEAD:sub")


HOLD_RUN_LOCK = r"""
import sys, time
from pathlib import Path
from pytest_prp.workspace import runlock
from pytest_prp.workspace.git_workspace import GitWorkspace

fd = runlock.claim(GitWorkspace.open(Path(sys.argv[1])), "prp/batch-3", "run-a", "pytest -k a")
print("held", flush=True)
time.sleep(60)
"""


def test_the_run_lock_names_its_live_holder_and_frees_itself_when_it_dies(
    repo: Path,
) -> None:
    from pytest_prp.workspace import runlock
    from pytest_prp.workspace.git_command import GitError
    from pytest_prp.workspace.git_workspace import GitWorkspace

    ws = GitWorkspace.open(repo)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_LOCK, str(repo)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(GitError) as refused:
            runlock.claim(ws, "prp/batch-3", "run-b", "pytest -k b")
        assert str(refused.value).startswith(
            f"another run is using the integration branch prp/batch-3 (pid {holder.pid} on "
        )
        assert "pytest -k a); let it finish or stop it, then run this again" in str(refused.value)
        assert runlock.claim(ws, "prp/batch-3", "run-a", "worker") is None  # its own run
        assert runlock.claim(ws, "prp/batch-3", "run-b", "worker", refuse=False) is None
        other = runlock.claim(ws, "prp/batch-4", "run-b", "other batch")  # another branch
        assert other is not None
        runlock.release(other)
    finally:
        holder.kill()
        holder.wait()
    fd = runlock.claim(ws, "prp/batch-3", "run-b", "pytest -k b")  # the dead one's is free
    assert fd is not None
    runlock.release(fd)


@pytest.mark.parametrize(
    "misdeed",
    [
        # checks the integration branch out in its worktree, commits on it, and leaves
        "git checkout -q prp/batch-72 && echo junk > junk.txt && git add junk.txt"
        " && git commit -qm 'agent commits on the integration branch' && git checkout -q -",
        # commits in its own checkout and points the integration branch at it
        "echo junk > junk.txt && git add junk.txt && git commit -qm 'agent junk'"
        " && git branch -f prp/batch-72 HEAD",
    ],
    ids=["checkout-and-commit", "branch-force"],
)
def test_steps_that_move_the_integration_branch_fail_and_it_goes_back(
    pytester: pytest.Pytester, repo: Path, misdeed: str
) -> None:
    write_prp(repo, "PRP-72.1.1", creates={"a.txt": "a"}, gates=["test -f a.txt"])
    write_prp(
        repo,
        "PRP-72.2.1",
        deps=["PRP-72.1.1"],
        steps=[f"{misdeed}\necho ok > b.txt"],
        gates=["test -f b.txt"],
    )
    result = pytester.runpytest("--prp-batch", "72")
    assert result.ret == 1, result.stdout.str()
    found = result_entries(repo, "72")
    assert found["PRP-72.1.1"]["status"] == "success"
    assert found["PRP-72.2.1"]["status"] == "failed"
    error = found["PRP-72.2.1"]["errors"][0]
    assert "moved the integration branch prp/batch-72" in error and "not merged" in error, error
    # The branch holds the checked merge of PRP-72.1.1 and nothing the steps put there.
    assert prp_ids_on(repo, "prp/batch-72") == ["PRP-72.1.1"]
    assert "junk.txt" not in git(repo, "ls-tree", "-r", "--name-only", "prp/batch-72").split()
    kept = "prp/72/PRP-72.2.1-foreign"
    assert "junk.txt" in git(repo, "ls-tree", "-r", "--name-only", kept).split()
    assert f"kept as {kept}" in error
