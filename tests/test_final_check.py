"""The final check of a batch (issue 14, ``--prp-final-check``): every merged PRP's gates on the
final integration tip; a broken gate names its PRP and, by bisecting the run's merges, the PRP
whose merge broke it; a dependent that changed the work on purpose is ``superseded``. Real git,
real pytest runs, serial and under -n 2."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_prp.base.bisection import first_failing
from pytest_prp.base.bisection_rounds import RoundBisection
from pytest_prp.spec.model import GATE_SHELL, Gate
from pytest_prp.workspace.final_check import MergedPrp, run_final_check
from pytest_prp.workspace.repository import Repository
from tests.conftest import (
    entries,
    git,
    init_repo,
    processes_with,
    result_json,
    wait_gone,
    worktrees_dir,
    write_prp,
)

SAFE = "grep -qx mode=safe settings.txt"
FAST = "grep -qx mode=fast settings.txt"
MAKE_FAST = "echo mode=fast > settings.txt"


def settings_file(repo: Path) -> None:
    """What the PRPs argue about: a setting that PRP A's gate relies on."""
    (repo / "settings.txt").write_text("mode=safe\n")
    git(repo, "add", "settings.txt")
    git(repo, "commit", "-qm", "settings")


def test_first_failing_bisects_in_log_steps() -> None:
    items = list(range(10))
    for bad in range(10):
        tried: list[int] = []

        def passes(item: int, bad: int = bad, tried: list[int] = tried) -> bool:
            tried.append(item)
            return item < bad

        assert first_failing(items, passes) == bad
        assert len(tried) <= 4 and 9 not in tried  # the last is known to fail
    assert first_failing([], lambda item: True) is None


def test_round_bisection_of_width_1_tries_what_first_failing_tries() -> None:
    for size in range(1, 12):
        for bad in range(size):
            tried: list[int] = []

            def passes(item: int, bad: int = bad, tried: list[int] = tried) -> bool:
                tried.append(item)
                return item < bad

            expected = first_failing(list(range(size)), passes)
            search = RoundBisection(size, 1)
            rounds: list[int] = []
            while not search.done:
                [item] = search.round()
                rounds.append(item)
                search.learn({item: item < bad})
            assert (search.found, rounds) == (expected, tried)


@pytest.mark.parametrize("width", [2, 3, 4])
def test_round_bisection_finds_the_same_item_in_fewer_rounds(width: int) -> None:
    """``width`` probes a round: the same answer as one at a time, in at most
    ceil(log_{width+1}(size)) rounds, never probing the last item (known to fail)."""
    for size in range(1, 40):
        for bad in range(size):
            search = RoundBisection(size, width)
            rounds = 0
            while not search.done:
                probes = search.round()
                assert 0 < len(probes) <= width and size - 1 not in probes
                assert probes == sorted(set(probes))
                # Verdicts handed back in any order: the same answer.
                search.learn({i: i < bad for i in reversed(probes)})
                rounds += 1
            assert search.found == bad
            bound, span = 0, 1
            while span < size:
                span *= width + 1
                bound += 1
            assert rounds <= bound, (size, bad, rounds)
    assert RoundBisection(0, 2).found is None


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_a_sibling_that_breaks_a_gate_is_named(
    pytester: pytest.Pytester, repo: Path, workers: list[str]
) -> None:
    """B, a sibling of A, changes what A's gate checks and passes its own gates: every PRP
    succeeds and merges; the final check names A's gate, broken by B, and the run fails."""
    settings_file(repo)
    write_prp(repo, "PRP-90.1.1", creates={"a.txt": "alpha\n"}, gates=[f"test -f a.txt && {SAFE}"])
    # B sleeps first: under -n 2 A merges before B's merge check, which runs B's gates only.
    write_prp(repo, "PRP-90.1.2", steps=[f"sleep 2 && {MAKE_FAST}"], gates=[FAST])
    result = pytester.runpytest_subprocess(
        "--prp-batch", "90", "--prp-final-check", "--junitxml=out.xml", "--prp-report", *workers
    )
    assert result.ret == 1, result.stdout.str()
    doc = result_json(repo, "90")
    found = entries(doc)
    assert {found[p]["status"] for p in found} == {"success"}  # PRPs keep their statuses
    check = doc["final_check"]
    assert check["tip"] == git(repo, "rev-parse", "prp/batch-90")
    assert sorted(check["prps"]) == ["PRP-90.1.1", "PRP-90.1.2"]
    assert check["gates_run"] == 2
    assert check["passed"] is False
    assert check["slots"] == (2 if workers else 1)  # as many as the run had workers
    [failure] = check["failures"]
    assert failure["prp_id"] == "PRP-90.1.1"
    assert failure["gate"] == "Gate 1: check 1"
    assert failure["broken_by"] == "PRP-90.1.2"
    assert failure["broken_at"] == found["PRP-90.1.2"]["merged_commit"]
    assert failure["superseded"] is False
    result.stdout.fnmatch_lines(
        [
            "Final check: 2 gates of 2 PRPs on *: 1 broken",
            '*PRP-90.1.1 gate 1 "Gate 1: check 1" broken by PRP-90.1.2 (*)',
        ]
    )
    cases = {c.get("name"): c for c in ET.parse(repo / "out.xml").getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["PRP-90.1.1"].iter("property")}
    assert "broken by PRP-90.1.2" in (props.get("final_check") or ""), props
    props = {p.get("name"): p.get("value") for p in cases["PRP-90.1.2"].iter("property")}
    assert "PRP-90.1.1 gate 1" in (props.get("final_check_broke") or ""), props
    status = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--batch", "90"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    assert "Final check: 2 gates of 2 PRPs" in status.stdout and "1 broken" in status.stdout
    assert "broken by PRP-90.1.2" in status.stdout
    # The HTML report says it too, as the terminal does.
    page = (repo / ".ce/orchestration/batches/batch-90.html").read_text(encoding="utf-8")
    assert '<section id="final-check" data-verdict="failed">' in page
    assert "Final check: 2 gates of 2 PRPs on " in page
    assert "PRP-90.1.1 gate 1 &quot;Gate 1: check 1&quot; broken by PRP-90.1.2 (" in page
    # Nothing of the check is left behind: its worktree is gone, the user's checkout as it was.
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert git(repo, "status", "--porcelain", "--", "settings.txt") == ""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_a_dependent_that_changes_the_work_supersedes_it(
    pytester: pytest.Pytester, repo: Path, workers: list[str]
) -> None:
    """C depends on A and changes on purpose what A's gate checks: superseded, exit 0."""
    settings_file(repo)
    write_prp(repo, "PRP-91.1.1", creates={"a.txt": "alpha\n"}, gates=[f"test -f a.txt && {SAFE}"])
    write_prp(repo, "PRP-91.2.1", deps=["PRP-91.1.1"], steps=[MAKE_FAST], gates=[FAST])
    result = pytester.runpytest_subprocess("--prp-batch", "91", "--prp-final-check", *workers)
    assert result.ret == 0, result.stdout.str()
    check = result_json(repo, "91")["final_check"]
    assert check["passed"] is True
    [failure] = check["failures"]
    assert (failure["prp_id"], failure["broken_by"], failure["superseded"]) == (
        "PRP-91.1.1",
        "PRP-91.2.1",
        True,
    )
    result.stdout.fnmatch_lines(
        [
            "Final check: 2 gates of 2 PRPs on *: passed, 1 superseded",
            "*broken by PRP-91.2.1 (*): superseded (PRP-91.2.1 depends on PRP-91.1.1)",
        ]
    )


@pytest.mark.parametrize(
    ("args", "slots"),
    [
        ([], 1),
        (["-n", "0"], 1),
        (["--tx=3*popen", "--dist=load"], 3),
        (["--tx=2*popen", "--tx=popen", "--dist=load"], 3),
        # Remote workers run elsewhere: the check runs on this machine's share only.
        (["--tx=2*popen", "--tx=ssh=somehost//python=python3", "--dist=load"], 2),
        (["--tx=socket=192.168.1.2:8888", "--dist=load"], 1),
    ],
)
def test_the_slots_are_the_runs_local_workers(
    pytester: pytest.Pytester, args: list[str], slots: int
) -> None:
    from pytest_prp.final_check_run import local_workers

    assert local_workers(pytester.parseconfig(*args, "-p", "no:prp")) == slots


def test_no_final_check_without_the_option(pytester: pytest.Pytester, repo: Path) -> None:
    settings_file(repo)
    write_prp(repo, "PRP-92.1.1", gates=[SAFE])
    write_prp(repo, "PRP-92.1.2", steps=[MAKE_FAST], gates=[FAST])
    result = pytester.runpytest_subprocess("--prp-batch", "92")
    assert result.ret == 0
    assert "final_check" not in result_json(repo, "92")
    assert "Final check" not in result.stdout.str()


def test_bisect_finds_the_culprit_among_many_merges(pytester: pytest.Pytester, repo: Path) -> None:
    """Six siblings merged one after the other (serial, plan order); the fifth breaks the
    first's gate: the bisection over the five later merges names it, in at most 3 runs of the
    gate (after one on the first's own merge). ini ``prp_final_check`` turns the check on as
    the option does."""
    settings_file(repo)
    pytester.makeini("[pytest]\nprp_final_check = true\n")
    write_prp(repo, "PRP-93.1.1", creates={"a.txt": "a\n"}, gates=[SAFE])
    for n in (2, 3, 4, 6):
        write_prp(repo, f"PRP-93.1.{n}", creates={f"f{n}.txt": f"{n}\n"}, gates=["true"])
    write_prp(repo, "PRP-93.1.5", steps=[MAKE_FAST], gates=[FAST])
    result = pytester.runpytest_subprocess("--prp-batch", "93")
    assert result.ret == 1, result.stdout.str()
    doc = result_json(repo, "93")
    check = doc["final_check"]
    assert check["prps"] == [f"PRP-93.1.{n}" for n in range(1, 7)]  # in merge order
    merges = git(repo, "rev-list", "--first-parent", "prp/batch-93", f"^{check['start']}")
    assert len(merges.splitlines()) == 6
    [failure] = check["failures"]
    assert failure["prp_id"] == "PRP-93.1.1" and failure["broken_by"] == "PRP-93.1.5"
    assert failure["broken_at"] == entries(doc)["PRP-93.1.5"]["merged_commit"]
    # One run on its own merge (it passes there), then at most ceil(log2(5)) = 3 to bisect.
    assert 2 <= check["bisect_runs"] <= 4


def five_merges(tmp_path: Path) -> tuple[Path, list[MergedPrp], MergedPrp]:
    """Five PRPs merged into ``integration`` with merge commits (as under -n), the fourth
    setting mode=fast (its own gate checks that, the others' mode=safe); and a PRP whose
    commit is not on the first-parent history."""
    repo = init_repo(tmp_path / "repo")
    settings_file(repo)
    git(repo, "branch", "integration")
    merged: list[MergedPrp] = []
    safe = Gate(index=1, name="safe", kind=GATE_SHELL, command=SAFE, line=1)
    fast = Gate(index=1, name="fast", kind=GATE_SHELL, command=FAST, line=1)
    for n in range(1, 6):
        git(repo, "checkout", "-q", "-b", f"prp{n}", "main")
        (repo / "settings.txt").write_text("mode=fast\n" if n == 4 else "mode=safe\n")
        (repo / f"f{n}.txt").write_text(f"{n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"PRP-{n}")
        git(repo, "checkout", "-q", "integration")
        git(repo, "merge", "-q", "--no-ff", "-m", f"Merge PRP-{n}", f"prp{n}")
        gates = (fast,) if n == 4 else (safe,)
        merged.append(MergedPrp(f"PRP-{n}", git(repo, "rev-parse", "HEAD"), gates))
    git(repo, "checkout", "-q", "main")
    off_history = MergedPrp("PRP-9", git(repo, "rev-parse", "prp2"), (safe,))
    return repo, merged, off_history


# PRP-4 builds on 3, 3 on 2.
GRAPH = {"PRP-4": ["PRP-3"], "PRP-3": ["PRP-2"]}


def shell_gate(
    prp_id: str, gate: Gate, workdir: Path, commit: str, stop: threading.Event
) -> tuple[bool, list[str]]:
    assert git(workdir, "rev-parse", "HEAD") == commit
    done = subprocess.run(["bash", "-c", gate.command or ""], cwd=workdir)
    return done.returncode == 0, []


@pytest.mark.parametrize("slots", [1, 3])
def test_bisect_over_merge_commits_and_a_commit_off_the_history(tmp_path: Path, slots: int) -> None:
    """The git side alone, on 1 slot and on 3: the fourth merge breaks the first's gate; a
    commit of the run that is not on the first-parent history is left out, and the chain
    starts at the run's first merge."""
    repo, merged, off_history = five_merges(tmp_path)
    start = git(repo, "rev-parse", f"{merged[0].merged_commit}^1")
    tip = git(repo, "rev-parse", "integration")
    git_repo = Repository.open(repo, tmp_path / "worktrees")
    outcome = run_final_check(
        git_repo, "integration", [*merged, off_history], GRAPH, shell_gate, slots
    )
    assert outcome.error is None
    assert outcome.start == start
    assert outcome.prps == ["PRP-1", "PRP-2", "PRP-3", "PRP-4", "PRP-5"]
    assert outcome.gates_run == 5
    # PRP-4 set mode=fast: the gates of 1, 2 and 3 fail on the tip, each traced to PRP-4's
    # merge (2 and 3 superseded: PRP-4 depends on them); PRP-5's fails on its own merge too,
    # so no later merge is blamed.
    culprits = {f.prp_id: (f.broken_by, f.superseded) for f in outcome.failures}
    assert culprits == {
        "PRP-1": ("PRP-4", False),
        "PRP-2": ("PRP-4", True),
        "PRP-3": ("PRP-4", True),
        "PRP-5": (None, False),
    }
    assert [f.prp_id for f in outcome.failures] == ["PRP-1", "PRP-2", "PRP-3", "PRP-5"]
    assert outcome.failures[0].broken_at == merged[3].merged_commit
    assert [f.prp_id for f in outcome.broken] == ["PRP-1", "PRP-5"]
    assert outcome.slots == slots
    assert git(repo, "rev-parse", "integration") == tip  # the branch untouched
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # its worktrees are gone
    assert list((tmp_path / "worktrees").iterdir()) == []


def check_with_random_delays(
    git_repo: Repository, merged: list[MergedPrp], seed: int
) -> tuple[dict[str, object], list[Path]]:
    """The check on 3 slots, each gate run taking a random time (the first three waiting for
    each other: BrokenBarrierError unless three run at once): its JSON, the worktrees used."""
    rng = random.Random(seed)
    delays = [rng.uniform(0, 0.3) for _ in range(200)]
    meet = threading.Barrier(3, timeout=20)
    runs: list[Path] = []
    lock = threading.Lock()

    def slow_gate(
        prp_id: str, gate: Gate, workdir: Path, commit: str, stop: threading.Event
    ) -> tuple[bool, list[str]]:
        with lock:
            runs.append(workdir)
            n = len(runs)
        if n <= 3:
            meet.wait()
        time.sleep(delays[n])
        return shell_gate(prp_id, gate, workdir, commit, stop)

    outcome = run_final_check(git_repo, "integration", merged, GRAPH, slow_gate, 3)
    assert outcome.error is None
    return {k: v for k, v in outcome.as_json().items() if k != "seconds"}, runs


def test_the_outcome_does_not_depend_on_which_slot_ends_first(tmp_path: Path) -> None:
    """3 slots, gates taking random times: twice the same outcome (failures, culprits, gate
    and bisection counts); three worktrees in use at once."""
    repo, merged, _ = five_merges(tmp_path)
    git_repo = Repository.open(repo, tmp_path / "worktrees")
    first, runs = check_with_random_delays(git_repo, merged, 1)
    assert len(set(runs[:3])) == 3
    second, _ = check_with_random_delays(git_repo, merged, 2)
    assert first == second
    assert first["gates_run"] == 5 and first["bisect_runs"] != 0


def test_sigterm_during_the_final_check_keeps_the_results(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """A SIGTERM while the final check runs a gate: the gate ends, the check's worktree goes,
    the batch's results are written with the PRPs' statuses and the check marked interrupted."""
    write_prp(
        repo,
        "PRP-94.1.1",
        creates={"a.txt": "a\n"},
        # Once PRP-94.1.2 has merged (only in the final check), the gate stops pytest.
        gates=["if [ -e stop.flag ]; then kill -TERM $PPID; sleep 30; fi"],
    )
    write_prp(repo, "PRP-94.1.2", creates={"stop.flag": "x\n"}, gates=["true"])
    result = pytester.runpytest_subprocess("--prp-batch", "94", "--prp-final-check", timeout=60)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    doc = result_json(repo, "94")
    assert {e["status"] for e in entries(doc).values()} == {"success"}
    assert doc["final_check"]["error"] == "interrupted (Ctrl-C or SIGTERM)"
    assert doc["final_check"]["seconds"] < 20  # the gate's sleep was cut short
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def together_gate(stamps: Path) -> str:
    """A gate that, in the final check only (once PRP C's final.flag is on the tip), notes the
    worktree it runs in and waits (10 s at most) for the other sibling's gate to start: it
    writes ``together`` when both ran at the same time, ``alone`` when not."""
    return f"""
        if [ -e final.flag ]; then
          mkdir -p {stamps}
          echo "$PRP_ID $PWD" >> {stamps}/where
          touch {stamps}/started-$PRP_ID
          n=0
          for i in $(seq 200); do
            n=$(ls {stamps} | grep -c '^started-' || true)
            if [ "$n" -ge 2 ]; then break; fi
            sleep 0.05
          done
          met=alone
          if [ "$n" -ge 2 ]; then met=together; fi
          echo "$PRP_ID $met" >> {stamps}/met
        fi
        """


def test_under_n2_the_gates_run_on_two_slots_at_once(pytester: pytest.Pytester, repo: Path) -> None:
    """-n 2: the final check runs on 2 slots, each a worktree of its own: the two siblings'
    gates run at the same time (each sees the other start) in two different worktrees; the
    check passes, the integration branch stays where the last merge left it, and no worktree
    of the check is left."""
    stamps = pytester.path.parent / f"{pytester.path.name}-stamps"
    write_prp(repo, "PRP-95.1.1", creates={"a.txt": "a\n"}, gates=[together_gate(stamps)])
    write_prp(repo, "PRP-95.1.2", creates={"b.txt": "b\n"}, gates=[together_gate(stamps)])
    write_prp(
        repo,
        "PRP-95.2.1",
        deps=["PRP-95.1.1", "PRP-95.1.2"],
        creates={"final.flag": "x\n"},
        gates=["true"],
    )
    result = pytester.runpytest_subprocess("--prp-batch", "95", "--prp-final-check", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    doc = result_json(repo, "95")
    check = doc["final_check"]
    assert (check["slots"], check["gates_run"], check["passed"]) == (2, 3, True)
    assert sorted((stamps / "met").read_text().splitlines()) == [
        "PRP-95.1.1 together",
        "PRP-95.1.2 together",
    ]
    where = dict(line.split(" ", 1) for line in (stamps / "where").read_text().splitlines())
    assert len(set(where.values())) == 2, where  # a worktree each
    assert all(Path(w).parent == worktrees_dir(repo) for w in where.values()), where
    result.stdout.fnmatch_lines(["Final check: 3 gates of 3 PRPs on * in 2 slots: passed"])
    # The branch is where C's merge left it; the check's worktrees are gone.
    assert git(repo, "rev-parse", "prp/batch-95") == entries(doc)["PRP-95.2.1"]["merged_commit"]
    assert check["tip"] == entries(doc)["PRP-95.2.1"]["merged_commit"]
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert not [p for p in worktrees_dir(repo).iterdir() if p.name.startswith("+final-check")]
    # The log holds each gate's output in one piece, under the worktree it ran in.
    log = (repo / ".ce/orchestration/logs/95/final-check.log").read_text()
    for prp_id, path in where.items():
        assert f"=== {prp_id} on {check['tip'][:12]} (in {Path(path).name}) ===" in log


def test_ctrl_c_during_a_spread_check_ends_every_gate(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """-n 2, both siblings' gates running in the final check: Ctrl-C ends them both (and what
    they started), removes both worktrees, and the results are written, the check marked
    interrupted."""
    stamps = pytester.path.parent / f"{pytester.path.name}-stamps"
    gate = f"""
        if [ -e final.flag ]; then
          mkdir -p {stamps}
          echo $$ > {stamps}/pid-$PRP_ID
          for i in $(seq 200); do
            if [ "$(ls {stamps} | grep -c '^pid-' || true)" -ge 2 ]; then break; fi
            sleep 0.05
          done
          if [ "$PRP_ID" = PRP-96.1.1 ]; then kill -INT $PPID; fi
          sleep 97.31
        fi
        """
    write_prp(repo, "PRP-96.1.1", creates={"a.txt": "a\n"}, gates=[gate])
    write_prp(repo, "PRP-96.1.2", creates={"b.txt": "b\n"}, gates=[gate])
    write_prp(
        repo,
        "PRP-96.2.1",
        deps=["PRP-96.1.1", "PRP-96.1.2"],
        creates={"final.flag": "x\n"},
        gates=["true"],
    )
    result = pytester.runpytest_subprocess(
        "--prp-batch", "96", "--prp-final-check", "-n", "2", timeout=90
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    assert sorted(p.name for p in stamps.iterdir()) == ["pid-PRP-96.1.1", "pid-PRP-96.1.2"]
    assert wait_gone("sleep 97.31") == []
    for pid_file in stamps.iterdir():
        assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()
    doc = result_json(repo, "96")
    assert {e["status"] for e in entries(doc).values()} == {"success"}
    assert doc["final_check"]["error"] == "interrupted (Ctrl-C or SIGTERM)"
    assert doc["final_check"]["seconds"] < 30  # the gates' sleeps were cut short
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert not [p for p in worktrees_dir(repo).iterdir() if p.name.startswith("+final-check")]


def test_sigkill_during_a_spread_check_the_next_run_ends_its_gates(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """-n 2, both gates running in the final check, the controller SIGKILLed: its gates
    outlive it (nothing can end them then), but the next run in the repository ends them
    (their cookie names the dead run, whose lock the check held) and removes the check's
    worktrees."""
    stamps = pytester.path.parent / f"{pytester.path.name}-stamps"
    gate = f"""
        if [ -e final.flag ]; then
          mkdir -p {stamps}
          echo $$ > {stamps}/pid-$PRP_ID
          for i in $(seq 200); do
            if [ "$(ls {stamps} | grep -c '^pid-' || true)" -ge 2 ]; then break; fi
            sleep 0.05
          done
          if [ "$PRP_ID" = PRP-97.1.1 ]; then kill -KILL $PPID; fi
          sleep 97.41
        fi
        """
    write_prp(repo, "PRP-97.1.1", creates={"a.txt": "a\n"}, gates=[gate])
    write_prp(repo, "PRP-97.1.2", creates={"b.txt": "b\n"}, gates=[gate])
    write_prp(
        repo,
        "PRP-97.2.1",
        deps=["PRP-97.1.1", "PRP-97.1.2"],
        creates={"final.flag": "x\n"},
        gates=["true"],
    )
    killed = pytester.runpytest_subprocess(
        "--prp-batch", "97", "--prp-final-check", "-n", "2", timeout=90
    )
    orphans = processes_with("sleep 97.41")  # each gate's bash and its sleep
    try:
        assert killed.ret == -9, killed.stdout.str()
        assert len(orphans) >= 2, orphans
        assert [p for p in worktrees_dir(repo).iterdir() if p.name.startswith("+final-check")]
        again = pytester.runpytest_subprocess("--prp-batch", "97", "-n", "2", timeout=90)
        assert again.ret == 0, again.stdout.str()
        assert wait_gone("sleep 97.41") == []
    finally:
        for pid in orphans:  # when the test fails: not left for 97 s
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert not [p for p in worktrees_dir(repo).iterdir() if p.name.startswith("+final-check")]
    assert len(git(repo, "worktree", "list").splitlines()) == 1
