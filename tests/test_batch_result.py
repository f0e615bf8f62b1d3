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
    assert {p.get("value") for c in cases for p in c.iter("property") if p.get("name") == "status"} == {
        "success"
    }
