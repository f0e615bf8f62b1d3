"""The merge queue (issue 14): the integration branch only moves to a tree that passed the
merging PRP's gates and the integration gate; conflicts are redone on the new tip, then fail
naming the PRPs they collide with. Real git, real pytest runs, serial and under -n 2."""

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


@pytest.mark.parametrize("workers", ["2", "4"])
def test_semantic_conflict_fails_integration_naming_the_first(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, workers: str
) -> None:
    """Under -n 4 two bystanders (no Python) run and merge beside the pair."""
    semantic_pair(repo, "60", tmp_path / "barrier")
    bystanders = []
    if workers == "4":
        for n in (3, 4):
            write_prp(repo, f"PRP-60.1.{n}", creates={f"f{n}.txt": "x"}, gates=["sleep 1.5"])
            bystanders.append(f"PRP-60.1.{n}")
    result = pytester.runpytest_subprocess(
        "--prp-batch", "60", "-n", workers, "--prp-integration-gate", ALL_MODULES
    )
    assert result.ret == 1
    found = records(repo, "60")
    first, second = sorted(
        ("PRP-60.1.1", "PRP-60.1.2"), key=lambda p: found[p]["status"] != "success"
    )
    assert found[first]["status"] == "success"
    assert found[second]["status"] == "failed_integration", found[second]
    # A semantic conflict names every PRP merged since its base: the first, and any bystander.
    assert first in found[second]["collides_with"]
    assert set(found[second]["collides_with"]) <= {first, *bystanders}
    assert found[second]["redos"] == 1  # redone once on the new tip, still failing
    result.stdout.fnmatch_lines([f"*{second}*collides with*{first}*"])
    if second == "PRP-60.1.2":
        assert found["PRP-60.2.1"]["status"] == "blocked"
    assert {found[b]["status"] for b in bystanders} <= {"success"}
    # The integration branch is green: it holds the first, and what does not touch Python.
    assert sorted(merged_ids(repo, "prp/batch-60")) == sorted(
        [first, *bystanders] + (["PRP-60.2.1"] if second == "PRP-60.1.1" else [])
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
            "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-61 HEAD\n"
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
            "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-62 HEAD\n"
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
            "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-65 HEAD\n"
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
            "  git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-67 HEAD\n"
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
            "  git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-68 HEAD\n"
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


def _wait_for(what: str, bound: int = 600) -> str:
    """Shell: poll (every 0.1 s, at most ``bound`` times) until ``what`` succeeds; a bound,
    not a timing: a run where it never comes ends, and the test's assertions say so."""
    return f"for i in $(seq {bound}); do {what} && break; sleep 0.1; done"


def _on_branch(batch: str, prp_id: str) -> str:
    """Shell: is ``prp_id`` merged? (grep reads all of git's output: with ``-q`` it would stop
    at the first match, and git's SIGPIPE fail the pipeline under pipefail.)"""
    trailers = f"git log --format='%(trailers:key=PRP-Id,valueonly)' prp/batch-{batch}"
    return f"{trailers} | grep -x {prp_id} >/dev/null"


def test_merges_never_wait_behind_another_prp_s_check(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """-n 2: C merges while A runs, so A's merge is checked on the merged tree; that check
    blocks until B (C's dependent, on the other worker) has merged. Had B's merge waited
    behind A's check, A's gate would have given up waiting (it says so in ``seen``)."""
    started, checking, seen = (tmp_path / n for n in ("a-started", "a-checking", "seen"))
    b_merged = _on_branch("69", "PRP-69.2.1")
    # On its own tree (cut before C merged) c.txt is missing: A's gate passes at once. On the
    # merged tree it waits for B to merge, and says whether B did.
    check = (
        f"if [ -e c.txt ] && [ ! -s {seen} ]; then touch {checking}\n"
        f"{_wait_for(b_merged)}\n"
        f"{b_merged} && echo merged > {seen} || echo gave-up > {seen}\n"
        "fi\ntest -f a.txt"
    )
    a_step = f"touch {started}\n{_wait_for(_on_branch('69', 'PRP-69.1.2'))}\necho a > a.txt"
    write_prp(repo, "PRP-69.1.1", steps=[a_step], gates=[check])  # A
    write_prp(
        repo,
        "PRP-69.1.2",  # C: merges once A has taken its base
        steps=[_wait_for(f"test -e {started}") + "\necho c > c.txt"],
        gates=["true"],
    )
    write_prp(
        repo,
        "PRP-69.2.1",  # B: done once A's check runs, then merges
        deps=["PRP-69.1.2"],
        steps=[_wait_for(f"test -e {checking}") + "\necho b > b.txt"],
        gates=["true"],
    )
    result = pytester.runpytest_subprocess("--prp-batch", "69", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    assert seen.read_text().strip() == "merged"  # B merged while A's check was running
    found = records(repo, "69")
    assert {e["status"] for e in found.values()} == {"success"}
    a = found["PRP-69.1.1"]
    # A checked on C's merge, lost the race to B, checked again on B's: merged after re-check.
    assert a["merge_checks"] == 2 and a["merge_rechecks"] == 1, a
    history = git(repo, "rev-list", "--first-parent", "prp/batch-69", "^main").split()
    assert history == [a["merged_commit"], found["PRP-69.2.1"]["merged_commit"],
                       found["PRP-69.1.2"]["merged_commit"]]  # fmt: skip
    assert git(repo, "rev-parse", f"{a['merged_commit']}^1") == found["PRP-69.2.1"]["merged_commit"]
    result.stdout.fnmatch_lines(["*PRP-69.1.1*merged after re-check*"])


def test_stress_sixty_prps_with_textual_conflicts(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """60 PRPs under -n 4 in random dependency groups (as issue 5's stress run); every fourth
    one appends a line to one of three shared files, so concurrent appenders conflict and are
    redone on the new tip. The first pair is made to conflict for sure: 70.1.1 starts its work
    once 70.1.2 has taken its base, and 70.1.2 finishes only once 70.1.1 (appending to the
    same file) has merged."""
    second_started = tmp_path / "second-started"
    rng = random.Random(14)
    ids = [f"PRP-70.{n // 10 + 1}.{n % 10 + 1}" for n in range(60)]
    appenders: dict[str, str] = {}
    for i, pid in enumerate(ids):
        earlier = ids[: i - i % 10]  # only ids of earlier groups: no cycles
        deps = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 2)))
        name = pid.replace("PRP-", "").replace(".", "_")
        steps = [f"mkdir -p out && echo {pid} > out/{name}.txt"]
        if i % 4 == 0 or i == 1:
            shared = "shared/s0.txt" if i < 2 else f"shared/s{i % 3}.txt"
            appenders[pid] = shared
            steps.append(f"mkdir -p shared && echo {pid} >> {shared}")
        if i == 0:
            steps.insert(0, _wait_for(f"test -e {second_started}"))
        if i == 1:
            steps.insert(0, f"touch {second_started}\n" + _wait_for(_on_branch("70", ids[0])))
        write_prp(repo, pid, deps=deps, steps=steps, gates=[f"test -f out/{name}.txt"])
    result = pytester.runpytest_subprocess(
        "--prp-batch", "70", "-n", "4", "--prp-merge-attempts", "5"
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    found = records(repo, "70")
    assert {e["status"] for e in found.values()} == {"success"}
    # Every passing PRP merged exactly once.
    assert sorted(merged_ids(repo, "prp/batch-70")) == sorted(ids)
    # Conflicts happened, and every one was textual, on a shared file, and redone.
    failures = [f for e in found.values() for f in e["merge_failures"]]
    assert found[ids[1]]["redos"] >= 1
    assert sum(e["redos"] for e in found.values()) == len(failures)
    assert {f["kind"] for f in failures} == {"textual"}
    assert {p for f in failures for p in f["paths"]} <= set(appenders.values())
    # No appended line lost or doubled.
    for shared in set(appenders.values()):
        lines = git(repo, "show", f"prp/batch-70:{shared}").splitlines()
        assert sorted(lines) == sorted(p for p, s in appenders.items() if s == shared)
    # The branch moved only to checked commits: its first-parent history is exactly the PRPs'
    # merged commits.
    history = git(repo, "rev-list", "--first-parent", "prp/batch-70", "^main").split()
    assert sorted(history) == sorted(e["merged_commit"] for e in found.values())
