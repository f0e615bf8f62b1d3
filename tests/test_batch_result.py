"""A batch's result is true: what the summary, the result JSON and JUnit say of every PRP is
what happened to it, whatever else took part in the run (other plugins, -k, -x, --lf)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import (
    RESULT,
    copy_example,
    entries,
    git,
    result_json,
    wait_gone,
    worktrees_dir,
    write_prp,
)

UNFINISHED = ("running", "pending")


def commit_all(root: Path, message: str = "work") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def statuses(root: Path, batch: str) -> dict[str, str]:
    return {pid: e["status"] for pid, e in entries(result_json(root, batch)).items()}


def assert_nothing_unfinished(root: Path, batch: str, out: str) -> None:
    """No PRP of a finished run is left as running, pending or stage 0 anywhere."""
    doc = result_json(root, batch)
    assert "0" not in doc["stages"], doc["stages"]
    for pid, entry in entries(doc).items():
        assert entry["status"] not in UNFINISHED, (pid, entry)
        assert entry["stage"] != 0, (pid, entry)
        assert f"{pid} " not in out or not any(
            f"{pid}  " in line and f" {word} " in line
            for line in out.splitlines()
            for word in UNFINISHED
        ), out
    assert "Stage 0" not in out


# --- verify mode -------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_verify_runs_every_gate_whatever_the_dependencies(
    pytester: pytest.Pytester, repo: Path, workers: list[str]
) -> None:
    copy_example(repo)
    commit_all(repo)
    # A HEAD without the code: every PRP's gates run, and fail, and the run says so.
    bare = pytester.runpytest_subprocess(
        "PRPs", "--prp-verify", "--prp-batch", "7", "--junitxml=prp.xml", *workers
    )
    assert bare.ret == 1, bare.stdout.str()
    bare.assert_outcomes(failed=4)
    assert set(statuses(repo, "7").values()) == {"failed_gates"}
    assert_nothing_unfinished(repo, "7", bare.stdout.str())
    # A HEAD with the code: every PRP passes on its own gates, dependents included.
    pytester.runpytest_subprocess("PRPs", "--prp-batch", "7").assert_outcomes(passed=4)
    git(repo, "merge", "-q", "prp/batch-7")
    good = pytester.runpytest_subprocess(
        "PRPs", "--prp-verify", "--prp-batch", "7", "--junitxml=prp.xml", *workers
    )
    assert good.ret == 0, good.stdout.str()
    good.assert_outcomes(passed=4)
    assert set(statuses(repo, "7").values()) == {"success"}
    assert result_json(repo, "7")["summary"]["success_rate"] == 1.0
    cases = ET.parse(repo / "prp.xml").getroot().iter("testcase")
    assert {
        p.get("value") for c in cases for p in c.iter("property") if p.get("name") == "status"
    } == {"success"}


def test_verify_names_no_integration_branch(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-40.1.1", gates=["true"])
    result = pytester.runpytest("--prp-batch", "40", "--prp-verify")
    assert result.ret == 0, result.stdout.str()
    assert "Integration branch" not in result.stdout.str()
    assert result_json(repo, "40")["integration_branch"] == ""
    assert git(repo, "branch", "--list", "prp/*") == ""


# --- blocked by what the run left out ---------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_blocked_by_a_dependency_outside_the_selection_fails_the_run(
    pytester: pytest.Pytester, repo: Path, workers: list[str]
) -> None:
    copy_example(repo)
    commit_all(repo)
    result = pytester.runpytest_subprocess("PRPs", "--prp-batch", "7", "-k", "PRP-7.2", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "prp: PRP-7.2.1 is blocked by PRP-7.1.1, not complete and not in this run: "
            "include it*--prp-id PRP-7.1.1*",
            "prp: PRP-7.2.2 is blocked by PRP-7.1.1*",
        ]
    )
    record = entries(result_json(repo, "7"))["PRP-7.2.1"]
    assert record["status"] == "blocked" and record["blocked_by"] == ["PRP-7.1.1"]
    # Blocked by a PRP of the run that failed: the run failed already, no extra line.
    write_prp(repo, "PRP-41.1.1", gates=["false"])
    write_prp(repo, "PRP-41.2.1", deps=["PRP-41.1.1"], gates=["true"])
    inside = pytester.runpytest("--prp-batch", "41")
    assert inside.ret == pytest.ExitCode.TESTS_FAILED
    assert "not in this run" not in inside.stdout.str()


# --- nothing left unfinished -------------------------------------------------------------

SKIP_ONE = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.name == "PRP-42.2.2":
        pytest.skip("skipped by the team's conftest")
"""


@pytest.mark.parametrize(
    "args",
    [
        ["-x"],
        ["-x", "-n", "2"],
        ["--maxfail", "1", "-p", "no:dependency"],
        ["-k", "not PRP-42.1.1"],
        ["conftest-skip"],
        ["conftest-skip", "-n", "2"],
    ],
    ids=["x", "x-xdist", "maxfail-no-dependency", "k", "conftest-skip", "conftest-skip-xdist"],
)
def test_no_prp_is_left_running_or_pending(
    pytester: pytest.Pytester, repo: Path, args: list[str]
) -> None:
    write_prp(repo, "PRP-42.1.1", gates=["false"])
    write_prp(repo, "PRP-42.1.2", gates=["true"])
    write_prp(repo, "PRP-42.2.1", deps=["PRP-42.1.2"], gates=["true"])
    write_prp(repo, "PRP-42.2.2", deps=["PRP-42.1.2"], gates=["true"])
    write_prp(repo, "PRP-42.3.1", deps=["PRP-42.2.1", "PRP-42.2.2"], gates=["true"])
    if args[0] == "conftest-skip":
        (repo / "conftest.py").write_text(SKIP_ONE)
        args = args[1:]
    result = pytester.runpytest_subprocess("--prp-batch", "42", "--junitxml=out.xml", *args)
    out = result.stdout.str()
    assert "Traceback" not in out + result.stderr.str()
    assert_nothing_unfinished(repo, "42", out)
    junit = (repo / "out.xml").read_text()
    assert 'value="running"' not in junit and 'value="pending"' not in junit
    records = entries(result_json(repo, "42"))
    assert all(records[pid]["stage"] == int(pid.split(".")[1]) for pid in records), records
    if (repo / "conftest.py").exists():
        skipped = records["PRP-42.2.2"]
        assert skipped["status"] == "not_started"
        assert skipped["errors"] == ["skipped: skipped by the team's conftest"]


# --- the batch's result describes the whole batch ---------------------------------------


def test_lf_keeps_the_records_of_prps_not_rerun_and_the_batch_stages(
    pytester: pytest.Pytester, repo: Path
) -> None:
    flag = repo.parent / "broken"
    flag.write_text("")
    write_prp(repo, "PRP-43.1.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-43.2.1", deps=["PRP-43.1.1"], gates=["true"])
    write_prp(repo, "PRP-43.2.2", deps=["PRP-43.1.1"], gates=[f"test ! -f {flag}"])
    write_prp(repo, "PRP-43.3.1", deps=["PRP-43.2.1", "PRP-43.2.2"], gates=["true"])
    first = pytester.runpytest("--prp-batch", "43")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first_doc = result_json(repo, "43")
    flag.unlink()
    again = pytester.runpytest("--prp-batch", "43", "--lf")
    assert again.ret == 0, again.stdout.str()
    again.assert_outcomes(passed=2)
    doc = result_json(repo, "43")
    assert {k: sorted(v) for k, v in doc["stages"].items()} == {
        "1": ["PRP-43.1.1"],
        "2": ["PRP-43.2.1", "PRP-43.2.2"],
        "3": ["PRP-43.3.1"],
    }
    records = entries(doc)
    for pid in ("PRP-43.1.1", "PRP-43.2.1"):  # not rerun: kept, marked, as they were
        kept = dict(records[pid])
        assert kept.pop("earlier_run") == first_doc["started_at"]
        assert kept == entries(first_doc)[pid]
    for pid in ("PRP-43.2.2", "PRP-43.3.1"):
        assert "earlier_run" not in records[pid] and records[pid]["status"] == "success"
    assert doc["summary"]["total"] == 4 and doc["summary"]["success"] == 4
    assert doc["summary"]["from_earlier_run"] == 2
    again.stdout.fnmatch_lines(
        [
            "Stage 1",
            "  PRP-43.1.1 * success *(earlier run, *)",
            "Stage 2",
            "  PRP-43.2.1 * success *(earlier run, *)",
            "  PRP-43.2.2 * success *",
            "Stage 3",
            "  PRP-43.3.1 * success *",
            "Totals: 4 PRPs, 4 success, * (2 from an earlier run)*",
        ]
    )
    # A run of the whole batch again: nothing from an earlier run is left.
    pytester.runpytest("--prp-batch", "43")
    assert not any("earlier_run" in e for e in entries(result_json(repo, "43")).values())


@pytest.mark.parametrize(
    "args",
    [
        ["--prp-stage", "9"],
        ["--prp-start", "PRP-44.9"],
        ["-k", "nothing-matches"],
        ["yaml-error"],
    ],
    ids=["stage", "start", "k", "yaml-error"],
)
def test_a_run_that_starts_no_prp_leaves_the_result_alone(
    pytester: pytest.Pytester, repo: Path, args: list[str]
) -> None:
    write_prp(repo, "PRP-44.1.1", gates=["true"])
    write_prp(repo, "PRP-44.2.1", deps=["PRP-44.1.1"], gates=["false"])
    assert pytester.runpytest("--prp-batch", "44").ret == pytest.ExitCode.TESTS_FAILED
    path = repo / RESULT / "batch-44.result.json"
    before = path.read_bytes()
    if args[0] == "yaml-error":
        other = repo / "PRPs" / "PRP-45.1.1.md"
        other.write_text("---\nprp_id: PRP-45.1.1\ntitle: [unclosed\n---\n# x\n")
        args = args[1:]
    result = pytester.runpytest_subprocess("--prp-batch", "44", *args)
    assert result.ret != 0
    assert path.read_bytes() == before
    assert list(path.parent.iterdir()) == [path]


def test_junit_skipped_points_at_the_prp_file(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-46.1.1", gates=["false"])
    blocked = write_prp(repo, "PRP-46.2.1", deps=["PRP-46.1.1"], gates=["true"])
    result = pytester.runpytest("--prp-batch", "46", "--junitxml=out.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    skipped = ET.parse(repo / "out.xml").getroot().find(".//skipped")
    assert skipped is not None and skipped.text is not None
    rel = blocked.relative_to(repo)
    assert skipped.text.startswith(f"{rel}:2: blocked: PRP-46.1.1 not completed"), skipped.text
    assert "pytest_prp" not in skipped.text


# --- interrupted, finished: what the status view and the JSON say ------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_an_interrupted_prp_has_its_time_and_kept_worktree(
    pytester: pytest.Pytester, repo: Path, workers: list[str]
) -> None:
    started = repo.parent / f"started-{len(workers)}"
    token = f"interrupt-token-{len(workers)}"
    write_prp(repo, "PRP-47.1.1", steps=[f"touch {started}; sleep 60 # {token}"], gates=["true"])
    cmd = [sys.executable, "-m", "pytest", "--prp-batch", "47", "-p", "no:cacheprovider"]
    proc = subprocess.Popen(
        [*cmd, *workers], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert wait_gone(token) == []
    record = entries(result_json(repo, "47"))["PRP-47.1.1"]
    assert record["status"] == "interrupted"
    assert record["elapsed_seconds"] >= 1.0, record
    kept = worktrees_dir(repo) / "PRP-47.1.1"
    assert record["worktree"] == str(kept) and kept.is_dir(), (record, out)


def test_status_knows_a_finished_batch_at_once(pytester: pytest.Pytester, repo: Path) -> None:
    # The last PRP starts just after a second begins and the run ends within that second:
    # the case where a result's finish time, kept to the second, looked older than the PRP.
    boundary = "python3 -c 'import time; time.sleep(1.02 - time.time() % 1)'"
    write_prp(repo, "PRP-48.1.1", gates=[boundary])
    write_prp(repo, "PRP-48.2.1", deps=["PRP-48.1.1"], gates=["true"])
    result = pytester.runpytest_subprocess("--prp-batch", "48", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    status = prp_status(repo)
    assert status.returncode == 0, status.stderr
    first = status.stdout.splitlines()[0]
    assert first.startswith("Batch 48 (prp/batch-48): finished at "), status.stdout
    assert "running" not in status.stdout


def test_status_finds_the_results_from_a_subdirectory(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-49.1.1", gates=["true"])
    assert pytester.runpytest("--prp-batch", "49").ret == 0
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    status = prp_status(deep)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("Batch 49 (prp/batch-49): finished at ")
    # Outside any repository holding results: one clear line.
    elsewhere = prp_status(repo.parent)
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.startswith("prp-status: no result JSON or heartbeats of any batch")


def prp_status(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
