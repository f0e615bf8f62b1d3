"""A batch's result is true: what the summary, the result JSON and JUnit say of every PRP is
what happened to it, whatever else took part in the run (other plugins, -k, -x, --lf)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import RESULT, copy_example, entries, git, result_json, write_prp

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


def test_blocked_by_a_dependency_outside_the_selection_fails_the_run(
    pytester: pytest.Pytester, repo: Path
) -> None:
    copy_example(repo)
    commit_all(repo)
    result = pytester.runpytest("PRPs", "--prp-batch", "7", "-k", "PRP-7.2")
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
