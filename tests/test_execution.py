"""Running batches end to end: real git repositories, real subprocesses, real pytest runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    FAKE_AGENT,
    RESULT,
    copy_example,
    entries,
    git,
    init_repo,
    processes_with,
    result_json,
    worktrees_dir,
    write_prp,
)
from pytest_prp.supervise.leftovers import pid_alive


def snapshot(root: Path) -> dict[str, Any]:
    """Everything of the user's checkout a run must leave alone."""
    index = (root / ".git" / "index").read_bytes()
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".git", ".ce", ".pytest_cache") or "__pycache__" in rel.parts:
            continue
        if path.is_file():
            files[str(rel)] = path.read_bytes()
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # status must not rewrite the index
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "-uall"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = "\n".join(
        line
        for line in status.splitlines()
        # The results directory is the run's own output (and ignores itself).
        if not any(part in line for part in (".pytest_cache", "__pycache__", ".ce/"))
    )
    return {
        "index": index,
        "files": files,
        "status": status,
        "head": git(root, "rev-parse", "HEAD"),
        "branch": git(root, "symbolic-ref", "HEAD"),
    }


def subjects(root: Path, branch: str) -> list[str]:
    return git(root, "log", "--format=%s", branch).splitlines()


def test_example_batch_runs_and_resumes(pytester: pytest.Pytester, repo: Path) -> None:
    copy_example(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "add PRPs")
    before = snapshot(repo)
    result = pytester.runpytest("PRPs", "--prp-batch", "7", "-v")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*PRP batch summary*",
            "*Integration branch: prp/batch-7 (merge it with: git merge prp/batch-7)*",
        ]
    )
    assert snapshot(repo) == before
    log = subjects(repo, "prp/batch-7")
    for pid in ("PRP-7.1.1", "PRP-7.2.1", "PRP-7.2.2", "PRP-7.3.1"):
        assert sum(s.startswith(f"{pid}: Complete - ") for s in log) == 1
    assert git(repo, "show", "prp/batch-7:example/REPORT.md").splitlines()[2] == "words: 8"
    doc = result_json(repo, "7")
    assert doc["summary"]["success"] == 4 and doc["integration_branch"] == "prp/batch-7"
    # One line while the batch runs (rewritten after every PRP), indented when it is over.
    assert (repo / RESULT / "batch-7.result.json").read_text().startswith('{\n  "batch_id": "7"')
    core = entries(doc)["PRP-7.1.1"]
    assert core["files_created"] == ["example/wordcount/__init__.py", "example/wordcount/core.py"]
    assert core["gates_passed"] == 2 and core["gates_unverified"] == 1
    # No worktree left behind, nothing new in the user's checkout.
    assert git(repo, "worktree", "list").count("\n") == 0

    again = pytester.runpytest("PRPs", "--prp-batch", "7", "-v")
    assert again.ret == 0
    again.stdout.fnmatch_lines(["*PRP-7.1.1 COMPLETED EARLIER*", "*4 completed earlier*"])
    assert subjects(repo, "prp/batch-7") == log
    assert result_json(repo, "7")["summary"]["completed_earlier"] == 4


def test_every_status(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-3.1.1", creates={"ok.txt": "fine"}, gates=["test -f ok.txt"])
    write_prp(
        repo,
        "PRP-3.1.2",
        creates={"bad.txt": "x"},
        gates=["echo checking; exit 3\n# Expected: exit 0", "true", "false"],
    )
    write_prp(repo, "PRP-3.1.3", steps=["echo boom-output; exit 7"], gates=["true"])
    write_prp(repo, "PRP-3.1.4", creates={"u.txt": "u"}, checklist=["looks good"])
    write_prp(repo, "PRP-3.2.1", deps=["PRP-3.1.2"], gates=["true"])
    write_prp(repo, "PRP-3.1.5", extra="status: completed", gates=["false"])
    result = pytester.runpytest("--prp-batch", "3", "-v", "-rA")
    out = result.stdout.str()
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*::PRP-3.1.1 PASSED*",
            "*::PRP-3.1.2 FAILED*",
            "*::PRP-3.1.3 ERROR*",
            "*::PRP-3.1.4 UNVERIFIED*",
            "*::PRP-3.1.5 COMPLETED EARLIER*",
            "*::PRP-3.2.1 BLOCKED*",
        ]
    )
    assert "Traceback" not in out and "pytest_prp/" not in out  # no Python traceback at all
    # The gate failure report: all failed gates, command, exit code, expected, output tail.
    assert "2 of 3 gates failed" in out and "echo checking; exit 3" in out
    assert "Expected: exit 0" in out and "checking" in out
    assert "boom-output" in out and "step 1/1" in out
    assert "blocked: PRP-3.1.2 not completed" in out
    assert "declared completed" in out
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "3")).items()}
    assert statuses == {
        "PRP-3.1.1": "success",
        "PRP-3.1.2": "failed_gates",
        "PRP-3.1.3": "failed",
        "PRP-3.1.4": "unverified",
        "PRP-3.1.5": "completed_earlier",
        "PRP-3.2.1": "blocked",
    }
    summary = result_json(repo, "3")["summary"]
    assert summary["failed"] == 2 and summary["blocked"] == 1 and summary["unverified"] == 1
    # A failed PRP's worktree is kept, and its path is in the report.
    kept = entries(result_json(repo, "3"))["PRP-3.1.2"]["worktree"]
    assert kept and Path(kept, "bad.txt").read_text().strip() == "x"
    assert f"worktree kept: {kept}" in out
    log = subjects(repo, "prp/batch-3")
    assert any(s.startswith("PRP-3.1.4: Complete") for s in log)
    assert not any(s.startswith("PRP-3.1.2") for s in log)


def test_each_prp_starts_from_a_clean_tree_in_the_reused_worktree(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # One process runs all four in one reused worktree: whatever a PRP leaves behind (ignored
    # build output, or the work of a failed PRP) must not reach the next one.
    (repo / ".gitignore").write_text("__pycache__/\n*.log\n")
    git(repo, "commit", "-qam", "ignore logs")
    clean = ["test ! -e build.log", "test ! -e wip.txt", 'test -z "$(git status --porcelain)"']
    write_prp(repo, "PRP-5.1.1", steps=["echo built > build.log"], gates=["test -f build.log"])
    write_prp(repo, "PRP-5.1.2", gates=clean)
    write_prp(repo, "PRP-5.1.3", steps=["echo half > wip.txt"], gates=["false"])
    write_prp(repo, "PRP-5.1.4", gates=clean)
    result = pytester.runpytest("--prp-batch", "5")
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(passed=3, failed=1)
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "5")).items()}
    assert list(statuses.values()) == ["success", "success", "failed_gates", "success"]
    # The failed PRP's work is kept under its own name, and only there.
    kept = worktrees_dir(repo) / "PRP-5.1.3"
    assert entries(result_json(repo, "5"))["PRP-5.1.3"]["worktree"] == str(kept)
    assert (kept / "wip.txt").read_text() == "half\n"
    assert f"worktree kept: {kept}" in result.stdout.str()
    assert sorted(p.name for p in kept.parent.iterdir()) == ["PRP-5.1.3"]
    assert git(repo, "worktree", "list").count("\n") == 1  # the user's and the kept one


def test_an_unusable_lock_directory_is_one_clear_error(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-6.1.1", creates={"a.txt": "a"}, gates=["true"])
    (repo / ".git" / "prp").mkdir()
    (repo / ".git" / "prp" / "locks").write_text("not a directory")
    before = snapshot(repo)
    result = pytester.runpytest("--prp-batch", "6")
    # The run lock is the first lock taken: the run stops before anything started.
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: prp: cannot open the lock file *locks/run-*.lock: Not a directory"]
    )
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "repository.py" not in out
    assert snapshot(repo) == before
    assert "PRP-6.1.1" not in "\n".join(subjects(repo, "prp/batch-6"))


def test_strict_fails_unverified(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-4.1.1", creates={"u.txt": "u"}, checklist=["looks good"])
    result = pytester.runpytest("--prp-batch", "4", "--prp-strict")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*no executable gate (--prp-strict)*"])
    assert "PRP-4.1.1" not in "\n".join(subjects(repo, "prp/batch-4"))


def test_dirty_checkout_stays_byte_for_byte(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "README.md").write_text("edited but not committed\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "untracked.txt").write_text("untracked\n")
    (repo / ".gitignore").write_text("__pycache__/\nsecret.env\n")
    (repo / "secret.env").write_text("KEY=1\n")
    write_prp(repo, "PRP-5.1.1", creates={"README.md": "replaced by the PRP"}, gates=["true"])
    git(repo, "add", "PRPs")
    before = snapshot(repo)
    result = pytester.runpytest("--prp-batch", "5")
    assert result.ret == 0, result.stdout.str()
    assert snapshot(repo) == before
    assert git(repo, "show", "prp/batch-5:README.md") == "replaced by the PRP"


def test_gate_background_process_is_killed(pytester: pytest.Pytester, repo: Path) -> None:
    pidfile = repo.parent / "server.pid"
    write_prp(
        repo,
        "PRP-6.1.1",
        gates=[f"sleep 300 &\necho $! > {pidfile}\ntrue"],
    )
    result = pytester.runpytest("--prp-batch", "6")
    assert result.ret == 0
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert not pid_alive(pid)


def test_refused_create_paths(pytester: pytest.Pytester, repo: Path) -> None:
    outside = repo.parent / "escaped.txt"
    write_prp(repo, "PRP-8.1.1", creates={"../escaped.txt": "no"}, gates=["true"])
    write_prp(repo, "PRP-8.1.2", creates={str(outside): "no"}, gates=["true"])
    result = pytester.runpytest("--prp-batch", "8")
    assert result.ret == 1
    out = result.stdout.str()
    assert "Traceback" not in out
    assert out.count("ERROR") >= 2 and not outside.exists()
    assert "../escaped.txt" in out


def test_conflicting_prps_fail_merge(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-9.1.1", creates={"shared.txt": "from one"}, gates=["true"])
    # While PRP-9.1.2 works, someone else moves the integration branch with a change to the
    # same file (in a parallel run: another PRP merged first).
    write_prp(
        repo,
        "PRP-9.1.2",
        steps=[
            "echo theirs > shared.txt && git add shared.txt && git commit -qm other\n"
            "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-9 HEAD\n"
            "git reset -q --hard HEAD~1\n"
            "echo mine > shared.txt"
        ],
        gates=["true"],
    )
    # No redo: its steps (which move the branch themselves) are not meant to run twice.
    result = pytester.runpytest("--prp-batch", "9", "--prp-merge-attempts", "0")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*merge into prp/batch-9 conflicts in: shared.txt*"])
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "9")).items()}
    assert statuses == {"PRP-9.1.1": "success", "PRP-9.1.2": "failed_merge"}
    assert git(repo, "show", "prp/batch-9:shared.txt") == "theirs"
    assert not any(s.startswith("PRP-9.1.2") for s in subjects(repo, "prp/batch-9"))
    # The work that could not merge is committed on the PRP's branch, in its kept worktree.
    assert git(repo, "show", "prp/9/PRP-9.1.2:shared.txt") == "mine"
    assert subjects(repo, "prp/9/PRP-9.1.2")[0].startswith("PRP-9.1.2: Complete")
    kept = worktrees_dir(repo) / "PRP-9.1.2"
    assert git(kept, "status", "--porcelain") == "", git(kept, "status")
    # The merged PRP's branch is gone with its worktree.
    prp_branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/prp/9/")
    assert prp_branches.split() == ["prp/9/PRP-9.1.2"]


def test_dependency_satisfied_through_ledger(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "commit", "--allow-empty", "-qm", "Earlier work\n\nPRP-Id: PRP-10.1.1")
    git(repo, "commit", "--allow-empty", "-qm", "PRP-10.1.2: Complete - old style")
    write_prp(repo, "PRP-10.2.1", deps=["PRP-10.1.1", "PRP-10.1.2"], gates=["true"])
    result = pytester.runpytest("--prp-batch", "10")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)


def test_lf_reruns_failed_and_blocked(pytester: pytest.Pytester, repo: Path) -> None:
    flag = repo.parent / "fixed"
    write_prp(repo, "PRP-11.1.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-11.1.2", deps=["PRP-11.1.1"], gates=[f"test -f {flag}"])
    write_prp(repo, "PRP-11.2.1", deps=["PRP-11.1.2"], gates=["true"])
    first = pytester.runpytest("--prp-batch", "11", "-v")
    first.stdout.fnmatch_lines(["*PRP-11.1.2 FAILED*", "*PRP-11.2.1 BLOCKED*"])
    flag.write_text("")
    second = pytester.runpytest("--prp-batch", "11", "--lf", "-v")
    assert second.ret == 0, second.stdout.str()
    second.stdout.fnmatch_lines(["*PRP-11.1.2 PASSED*", "*PRP-11.2.1 PASSED*"])
    assert "::PRP-11.1.1 " not in second.stdout.str()  # not rerun (its record is kept)


def test_junit_properties(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-12.1.1", creates={"a.txt": "a"}, gates=["true", "test -f a.txt"])
    result = pytester.runpytest("--prp-batch", "12", "--junitxml=out.xml")
    assert result.ret == 0
    case = ET.parse(repo / "out.xml").getroot().find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["prp_id"] == "PRP-12.1.1" and props["status"] == "success"
    assert props["gates"] == "2/2" and props["batch"] == "12" and props["stage"] == "1"
    assert props["commit"] == git(
        repo, "log", "-1", "--format=%H", "--grep=PRP-Id: PRP-12.1.1", "prp/batch-12"
    )


def test_bad_situations_are_one_line(pytester: pytest.Pytester, tmp_path: Path) -> None:
    write_prp(pytester.path, "PRP-13.1.1", gates=["true"])
    not_repo = pytester.runpytest("--prp-batch", "13")
    assert not_repo.ret == pytest.ExitCode.USAGE_ERROR
    not_repo.stderr.fnmatch_lines(["ERROR: prp: not inside a git repository*"])
    subprocess.run(["git", "init", "-q"], cwd=pytester.path, check=True)
    empty = pytester.runpytest("--prp-batch", "13")
    empty.stderr.fnmatch_lines(["ERROR: prp: *has no commits*"])
    init_repo(pytester.path)
    base = pytester.runpytest("--prp-batch", "13", "--prp-base", "nope")
    base.stderr.fnmatch_lines(["ERROR: prp: --prp-base nope does not exist*"])
    git(pytester.path, "branch", "prp/batch-13")
    git(pytester.path, "checkout", "-q", "prp/batch-13")
    checked = pytester.runpytest("--prp-batch", "13")
    checked.stderr.fnmatch_lines(["ERROR: prp: integration branch prp/batch-13 is checked out*"])
    for run in (not_repo, empty, base, checked):
        assert "Traceback" not in run.stdout.str() + run.stderr.str()


def test_verify_mode_runs_only_gates(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "done.txt").write_text("done\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "work")
    write_prp(
        repo,
        "PRP-14.1.1",
        steps=["echo must-not-run > step.txt"],
        gates=["test -f done.txt", "test ! -f step.txt"],
    )
    write_prp(repo, "PRP-14.1.2", gates=["test -f missing.txt"])
    result = pytester.runpytest("--prp-batch", "14", "--prp-verify", "-v")
    result.stdout.fnmatch_lines(["*PRP-14.1.1 PASSED*", "*PRP-14.1.2 FAILED*"])
    assert "worktree kept" not in result.stdout.str()
    assert git(repo, "branch", "--list", "prp/*") == ""
    assert git(repo, "worktree", "list").count("\n") == 0  # nothing left behind
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "14")).items()}
    assert statuses == {"PRP-14.1.1": "success", "PRP-14.1.2": "failed_gates"}


def test_agent_executor_with_fake_agent(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-15.1.1", creates={"hello.py": "print('hi')"}, gates=["python3 hello.py"])
    agent = f"{sys.executable} {FAKE_AGENT} --cost 0.25 --prompt-file {{prompt_file}}"
    result = pytester.runpytest("--prp-batch", "15", "--prp-agent", agent)
    assert result.ret == 0, result.stdout.str()
    entry = entries(result_json(repo, "15"))["PRP-15.1.1"]
    assert entry["cost_usd"] == 0.25 and entry["tokens"]["output"] > 0
    assert git(repo, "show", "prp/batch-15:hello.py") == "print('hi')"
    failing = pytester.runpytest(
        "--prp-batch", "15", "--prp-rerun", "--prp-agent", agent + " --mode is_error"
    )
    assert failing.ret == 1
    failing.stdout.fnmatch_lines(["*ERROR*PRP-15.1.1*"])


def test_a_killed_runs_step_does_not_write_into_the_next_prp(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # PRP-19.1's step keeps writing $PWD/orphan_N.txt (itself, and a writer it detached with
    # setsid) when pytest is SIGKILLed. The rerun must not reuse that worktree for PRP-19.2
    # while they write, and ends them: they carry the dead run's cookie.
    marker = repo.parent / "writer-started"
    writer = 'i=0; while true; do i=$((i+1)); echo $i > "$PWD/orphan_$i.txt"; sleep 0.05; done'
    step = (
        f"if [ ! -f {marker} ]; then\n"
        f"  setsid bash -c '{writer}' > /dev/null 2>&1 &\n"
        f"  touch {marker}\n"
        f"  {writer}\n"
        "fi\n"
        "echo a > a.txt"
    )
    write_prp(repo, "PRP-19.1", steps=[step], gates=["test -f a.txt"])
    write_prp(repo, "PRP-19.2", deps=["PRP-19.1"], creates={"b.txt": "b"}, gates=["true"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--prp-batch", "19", "-p", "no:cacheprovider"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)  # pytest only: its step lives on in its own session
        proc.wait()
        assert len(processes_with(str(marker))) >= 1  # the writers run on
        result = pytester.runpytest("--prp-batch", "19", "-v")
        assert result.ret == 0, result.stdout.str()
        result.stdout.fnmatch_lines(["*PRP-19.1 PASSED*", "*PRP-19.2 PASSED*"])
        assert processes_with("orphan_") == []
        files = git(repo, "ls-tree", "-r", "--name-only", "prp/batch-19").splitlines()
        assert "b.txt" in files and "a.txt" in files
        assert not [f for f in files if f.startswith("orphan_")]
    finally:
        for pid in processes_with(str(marker)) + processes_with("orphan_"):
            os.kill(pid, signal.SIGKILL)


def test_sigkill_then_rerun_commits_once(pytester: pytest.Pytester, repo: Path) -> None:
    marker = repo.parent / "slow-started"
    write_prp(repo, "PRP-16.1.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(
        repo,
        "PRP-16.2.1",
        deps=["PRP-16.1.1"],
        steps=[f"if [ ! -f {marker} ]; then touch {marker}; sleep 120; fi\necho b > b.txt"],
        gates=["test -f b.txt"],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--prp-batch", "16", "-p", "no:cacheprovider"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Nothing survives SIGKILL to clean up: the step, in a process group of its own, is still
    # sleeping in its worktree. (Ours to stop here, so that it does not outlive the test.)
    for pid in processes_with(str(marker)):
        os.killpg(pid, signal.SIGKILL)
    result = pytester.runpytest("--prp-batch", "16", "-v")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*PRP-16.1.1 COMPLETED EARLIER*", "*PRP-16.2.1 PASSED*"])
    log = subjects(repo, "prp/batch-16")
    assert sum(s.startswith("PRP-16.1.1:") for s in log) == 1
    assert sum(s.startswith("PRP-16.2.1:") for s in log) == 1
    # The killed run's worktree went when its PRP ran again: nothing is left behind.
    assert git(repo, "worktree", "list").count("\n") == 0


def test_clean_removes_kept_worktrees(pytester: pytest.Pytester, repo: Path) -> None:
    flag = repo.parent / "broken"
    flag.write_text("")
    write_prp(repo, "PRP-17.1.1", creates={"a.txt": "a"}, gates=[f"test ! -f {flag}"])
    pytester.runpytest("--prp-batch", "17")
    kept = entries(result_json(repo, "17"))["PRP-17.1.1"]["worktree"]
    assert kept and Path(kept).is_dir()
    assert "prp/17/PRP-17.1.1" in git(repo, "branch", "--list", "prp/17/*")
    result_before = (repo / RESULT / "batch-17.result.json").read_bytes()
    # --collect-only: what would go, nothing removed.
    dry = pytester.runpytest("--prp-clean", "--collect-only")
    assert dry.ret == 0
    dry.stdout.fnmatch_lines(
        ["prp: would remove (--collect-only) 1 kept worktree(s):", f"  {kept}"]
    )
    assert Path(kept).is_dir()
    # Alone: cleans, says what went, runs nothing.
    alone = pytester.runpytest("--prp-clean")
    assert alone.ret == 0, alone.stdout.str()
    alone.stdout.fnmatch_lines(["prp: removed 1 kept worktree(s):", f"  {kept}"])
    assert "PRP batch summary" not in alone.stdout.str()
    assert (repo / RESULT / "batch-17.result.json").read_bytes() == result_before
    assert not Path(kept).exists()
    assert git(repo, "branch", "--list", "prp/17/*") == ""
    assert "PRP-17.1.1" not in git(repo, "worktree", "list")
    again = pytester.runpytest("--prp-clean")
    again.stdout.fnmatch_lines(["prp: no kept worktree to remove"])
    # With a selection: cleans, then runs it.
    pytester.runpytest("--prp-batch", "17")
    assert Path(kept).is_dir()
    flag.unlink()
    both = pytester.runpytest("--prp-batch", "17", "--prp-clean")
    assert both.ret == 0, both.stdout.str()
    both.stdout.fnmatch_lines(["prp: removed 1 kept worktree(s):", "*PRP batch summary*"])
    assert not Path(kept).exists()
    assert entries(result_json(repo, "17"))["PRP-17.1.1"]["status"] == "success"


@pytest.mark.parametrize("how", ["default", "option", "ini"])
def test_worktrees_live_outside_the_checkout_and_its_git_dir(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, how: str
) -> None:
    # Claude Code refuses to edit anything under a .git directory, and a worktree inside the
    # checkout would show in `git status` and in the user's own tools.
    write_prp(repo, "PRP-18.1.1", steps=["pwd > where.txt"], gates=["false"])
    before = snapshot(repo)
    args = ["--prp-batch", "18"]
    expected = worktrees_dir(repo)
    if how == "option":
        expected = tmp_path / "wt"
        args += [f"--prp-worktree-dir={expected}"]
    elif how == "ini":
        expected = repo.parent / "elsewhere"
        args += ["-o", "prp_worktree_dir=../elsewhere"]
    result = pytester.runpytest(*args)
    assert result.ret == 1, result.stdout.str()
    kept = expected / "PRP-18.1.1"
    assert entries(result_json(repo, "18"))["PRP-18.1.1"]["worktree"] == str(kept)
    ran_in = Path((kept / "where.txt").read_text().strip())  # the reused slot, moved on failure
    assert ran_in.parent == expected and ran_in.name.startswith("+slot-")
    assert ".git" not in kept.parts and not kept.is_relative_to(repo)
    assert snapshot(repo) == before
    # --prp-clean (with the same setting) finds it again.
    pytester.runpytest(*args, "--prp-clean", "-k", "nothing")
    assert not kept.exists()
    assert "PRP-18.1.1" not in git(repo, "worktree", "list")


def test_conftest_hooks_replace_executor_and_gates(pytester: pytest.Pytester, repo: Path) -> None:
    pytester.makeconftest(
        """
        # A hook author's one import: the types live wherever the package keeps them.
        from pytest_prp.hooks import GateResult, ProcessResult, StepsOutcome

        def pytest_prp_run_steps(context):
            (context.workdir / "by-hook.txt").write_text(context.prp.id)
            return StepsOutcome(ok=True, error=None, failed_step=None, tail=[], cost_usd=0.5)

        def pytest_prp_run_gate(gate, context):
            if "custom" not in (gate.command or ""):
                return None  # the default shell gate takes it
            passed = (context.workdir / "by-hook.txt").exists()
            checked = ProcessResult(returncode=0, timed_out=False, duration=0.0,
                                    tail=["checked by hook"], stdout=None)
            return GateResult(gate=gate, passed=passed, process=checked)
        """
    )
    write_prp(repo, "PRP-18.1.1", steps=["exit 1"], gates=["custom check", "test -f by-hook.txt"])
    result = pytester.runpytest("--prp-batch", "18")
    assert result.ret == 0, result.stdout.str()
    entry = entries(result_json(repo, "18"))["PRP-18.1.1"]
    assert entry["gates_passed"] == 2 and entry["cost_usd"] == 0.5
    assert git(repo, "show", "prp/batch-18:by-hook.txt") == "PRP-18.1.1"


def test_live_progress_lines(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(
        repo,
        "PRP-19.1.1",
        steps=["for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.2; done"],
        gates=["true"],
    )
    result = pytester.runpytest_subprocess("--prp-batch", "19", "--prp-heartbeat", "0.3")
    assert result.ret == 0
    lines = [line for line in result.stdout.lines if line.startswith("[prp] PRP-19.1.1 ")]
    assert lines and any("last output" in line for line in lines)
    # At most one line per interval of the PRP's own time (a loaded machine stretches it).
    elapsed = entries(result_json(repo, "19"))["PRP-19.1.1"]["elapsed_seconds"]
    assert len(lines) <= elapsed / 0.3 + 1, (len(lines), elapsed)


def test_an_unverified_prp_says_which_blocks_were_not_gates(
    pytester: pytest.Pytester, repo: Path
) -> None:
    extra_section = "## Validation Results\n\n```bash\npytest -q\n```\n"
    path = write_prp(repo, "PRP-4.2.1", creates={"u.txt": "u"})
    path.write_text(path.read_text() + "\n" + extra_section)
    result = pytester.runpytest("--prp-batch", "4")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*warnings summary*",
            "*prp: PRPs/PRP-4.2.1.md:*: no executable gate: not read as gates: "
            "shell block under 'Validation Results'*",
        ]
    )


def test_body_warnings_made_errors_by_w_error_fail_the_prp_before_any_work(
    pytester: pytest.Pytester, repo: Path
) -> None:
    path = write_prp(repo, "PRP-4.3.1", creates={"u.txt": "u"})
    path.write_text(path.read_text() + "\n## Validation Results\n\n```bash\npytest -q\n```\n")
    result = pytester.runpytest_subprocess("--prp-batch", "4", "-W", "error::pytest.PytestWarning")
    assert result.ret == 1
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(["*PRP-4.3.1: prp: *no executable gate*made an error by -W*"])
    assert "PRP-4.3.1" not in "\n".join(subjects(repo, "prp/batch-4"))


def test_a_literal_step_that_ran_nothing_is_warned_of(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # Unlabelled, and not starting like shell: documentation to the literal executor. The
    # step then does nothing, which must not go unsaid (the PRP may pass on checklist gates).
    path = write_prp(repo, "PRP-73.1.1", gates=["true"])
    text = path.read_text().replace(
        "## Validation Gates",
        "### Step 1: stamp\n\n```\ndate > stamp.txt\n```\n\n## Validation Gates",
    )
    path.write_text(text)
    write_prp(repo, "PRP-73.1.2", steps=["date > stamp.txt"], gates=["test -f stamp.txt"])
    result = pytester.runpytest("--prp-batch", "73")
    assert result.ret == 0, result.stdout.str()
    line = next(n for n, x in enumerate(text.splitlines(), 1) if x == "```")
    result.stdout.fnmatch_lines(
        [f"*PRP-73.1.1: PRPs/PRP-73.1.1.md:{line}: step 1/1 * ran nothing: its unlabelled block*"]
    )
    assert "PRP-73.1.2: PRPs" not in result.stdout.str()  # a bash block ran: nothing to say


def test_a_prp_whose_steps_changed_nothing_claims_no_work(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # Unverified: its steps ran, changed nothing, and no gate checks anything.
    write_prp(repo, "PRP-4.1.1", steps=["echo nothing to do"], checklist=["looks good"])
    # Verified: nothing changed, and its gates pass on the tree as it was.
    write_prp(repo, "PRP-4.1.2", steps=["true"], gates=["test -f README.md"])
    write_prp(repo, "PRP-4.2.1", deps=["PRP-4.1.1"], creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-4.2.2", deps=["PRP-4.1.2"], creates={"b.txt": "b"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest("--prp-batch", "4", "-v", "-p", "no:randomly")
    out = result.stdout.str()
    assert result.ret == 1, out
    result.stdout.fnmatch_lines(["*::PRP-4.1.1 FAILED*", "*::PRP-4.1.2 PASSED*"])
    assert "PRP-4.1.1: its steps changed nothing and no executable gate checks it" in out
    doc = result_json(repo, "4")
    prps = entries(doc)
    assert {pid: e["status"] for pid, e in prps.items()} == {
        "PRP-4.1.1": "no_changes",
        "PRP-4.1.2": "success",
        "PRP-4.2.1": "blocked",
        "PRP-4.2.2": "success",
    }
    assert prps["PRP-4.1.1"]["commits"] == [] and prps["PRP-4.1.2"]["no_changes"] is True
    assert doc["summary"]["failed"] == 1
    log = subjects(repo, "prp/batch-4")
    # No commit claims the unverified PRP's work; the verified one's says it changed nothing
    # (its trailers are the ledger's proof that its gates passed: PRP-4.2.2 could follow it).
    assert not any(s.startswith("PRP-4.1.1") for s in log), log
    assert "PRP-4.1.2: Complete (no changes) - Work for PRP-4.1.2" in log, log


def test_an_integration_branch_gone_mid_batch_fails_the_next_prp_clearly(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # A failing gate (run in the PRP's worktree, which shares the repository's refs) deletes
    # the integration branch and every trace pytest-prp keeps of its reflog (so it cannot be
    # restored); under -n each PRP reads the branch's tip when it starts, and PRP-6.2, next on
    # the one worker, finds none.
    gone = (
        'rm -rf "$(git rev-parse --git-common-dir)/prp/reflogs"\n'
        "git update-ref -d refs/heads/prp/batch-6\nfalse"
    )
    write_prp(repo, "PRP-6.1", creates={"a.txt": "a"}, gates=[gone])
    write_prp(repo, "PRP-6.2", creates={"b.txt": "b"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess("--prp-batch", "6", "-n", "1", "-p", "no:randomly")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    assert "Traceback" not in out and "AssertionError" not in out, out
    assert "INTERNALERROR" not in out, out
    result.stdout.fnmatch_lines(
        ["*PRP-6.2: the integration branch prp/batch-6 is gone (deleted while the batch ran)*"]
    )
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "6")).items()}
    assert statuses == {"PRP-6.1": "failed_gates", "PRP-6.2": "failed"}, statuses
