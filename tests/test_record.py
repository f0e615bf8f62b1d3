"""The PRP record has one owner (``record``): what a run writes is what its readers read back.

A real batch run writes the result JSON; ``record`` reads it back entry for entry, and
``prp-status`` (a real subprocess) shows each PRP with the status the run recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RESULT, entries, result_json, write_prp
from pytest_prp.base import naming
from pytest_prp.base.stream_json import Refusal
from pytest_prp.records import record
from pytest_prp.spec.model import Prp

ROOT = Path(__file__).resolve().parents[1]


def run_batch(pytester: pytest.Pytester, repo: Path) -> None:
    """Batch 51: one PRP passes, one fails its gate, one is blocked by the failed one."""
    write_prp(repo, "PRP-51.1.1", creates={"a.txt": "a\n"}, gates=["test -f a.txt"])
    write_prp(repo, "PRP-51.1.2", gates=["false"])
    write_prp(repo, "PRP-51.2.1", deps=["PRP-51.1.2"], gates=["true"])
    result = pytester.runpytest_subprocess("--prp-batch", "51")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()


def test_a_written_result_reads_back_through_the_record_and_prp_status(
    pytester: pytest.Pytester, repo: Path
) -> None:
    run_batch(pytester, repo)
    path = naming.result_path(repo / RESULT.parent, "51")
    assert path == repo / RESULT / "batch-51.result.json"
    assert naming.result_paths(repo / RESULT.parent) == {"51": path}
    document = record.read_result(path)
    assert document is not None and document == result_json(repo, "51")
    # The record's reading of the entries is the file's, each under its own stage.
    read = record.entries(document)
    assert read == entries(document)
    assert set(read) == {"PRP-51.1.1", "PRP-51.1.2", "PRP-51.2.1"}
    for entry in read.values():
        assert entry in document["stages"][str(entry["stage"])].values()
        assert entry["status"] in record.FINAL
    statuses = {prp_id: entry["status"] for prp_id, entry in read.items()}
    assert statuses == {
        "PRP-51.1.1": record.SUCCESS,
        "PRP-51.1.2": record.FAILED_GATES,
        "PRP-51.2.1": record.BLOCKED,
    }
    assert document["integration_branch"] == naming.integration_branch(None, ["51"])

    # prp-status, run for real, shows the same statuses (and nothing running).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--batch", "51", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=repo,
    )
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert {p["prp_id"]: p["status"] for p in view["prps"]} == statuses
    assert view["running"] is False and view["integration_branch"] == "prp/batch-51"
    # An earlier run's records, read back for the next run: final ones as they were.
    earlier = record.earlier_records(path)
    assert {k: e["status"] for k, e in earlier.items()} == statuses
    assert all(e[record.EARLIER_RUN] == document["started_at"] for e in earlier.values())


def a_prp(prp_id: str = "PRP-52.1.1") -> Prp:
    return Prp(
        id=prp_id,
        title="Work",
        path=Path(f"{prp_id}.md"),
        line=2,
        batch="52",
        dependencies=["PRP-52.0.1"],
        estimated_hours=1.5,
    )


def test_an_entry_round_trips_through_json_and_agrees_with_the_blank_entry() -> None:
    run = record.PrpRun(prp=a_prp(), stage=2, branch="prp/batch-52")
    run.set_status(record.FAILED, "it broke")
    run.refusals.append(Refusal(tool="Bash", target="rm -rf /", reason="denied"))
    run.finished_at = time.time()
    entry = run.to_dict()
    assert json.loads(json.dumps(entry)) == entry
    assert entry["status"] == record.FAILED and entry["errors"] == ["it broke"]
    # Every key of a PRP that never reported is a key of a reported one, with the same value
    # as a record that did nothing: the two forms cannot drift apart.
    fresh = record.PrpRun(prp=a_prp(), stage=2, branch="prp/batch-52").to_dict()
    blank = record.blank_entry("PRP-52.1.1", 2, "prp/batch-52", 1.5)
    assert set(blank) <= set(fresh)
    assert {key: fresh[key] for key in blank} == blank
    # Written into a result document, it reads back as it was written.
    document = {"stages": {"2": {"PRP-52.1.1": json.loads(json.dumps(entry))}}}
    assert record.entries(document) == {"PRP-52.1.1": entry}
    del document["stages"]["2"]["PRP-52.1.1"]["stage"]  # an entry without one: its stage key's
    assert record.entries(document)["PRP-52.1.1"]["stage"] == "2"


def test_the_entries_of_prps_that_never_reported() -> None:
    known = {"prp_id": "PRP-53.1.1", "errors": ["step 2 failed"], "elapsed_seconds": 4.0}
    cut = record.interrupted_entry("PRP-53.1.1", 1, "prp/batch-53", None, known)
    assert cut["status"] == record.INTERRUPTED
    assert cut["errors"] == ["step 2 failed", "interrupted"]
    assert cut["elapsed_seconds"] == 4.0 and cut["batch"] == "53"
    never = record.mark(record.unreported_entry("PRP-53.1.2", 1, "b", 2.0), record.NOT_STARTED, [])
    assert never["status"] == record.NOT_STARTED and never["estimated_hours"] == 2.0


def test_a_status_is_one_of_the_records() -> None:
    run = record.PrpRun(prp=a_prp(), stage=1)
    with pytest.raises(ValueError, match="not a PRP status: 'done'"):
        run.set_status("done")
    with pytest.raises(AttributeError):
        run.status = record.SUCCESS  # type: ignore[misc]  # only set_status sets it
    assert run.status == record.RUNNING
    with pytest.raises(ValueError, match="not a PRP status"):
        record.mark({}, "passed")
    assert set(record.STATUSES) == set(record.FINAL) | set(record.UNFINISHED)
    assert not set(record.FINAL) & set(record.UNFINISHED)
    assert set(record.PASSED) | set(record.FAILED_STATUSES) == set(record.WORKED)


def test_an_earlier_run_left_unfinished_reads_back_as_not_running(tmp_path: Path) -> None:
    path = naming.result_path(tmp_path, "54")
    path.parent.mkdir(parents=True)
    stages = {
        "1": {
            "PRP-54.1.1": {"prp_id": "PRP-54.1.1", "status": "running"},
            "PRP-54.1.2": {"prp_id": "PRP-54.1.2", "status": "pending"},
            "PRP-54.1.3": {"prp_id": "PRP-54.1.3", "status": "success", "cost_usd": 0.5},
        }
    }
    path.write_text(json.dumps({"started_at": "2026-01-01T00:00:00.000+00:00", "stages": stages}))
    found = record.earlier_records(path)
    assert {k: e["status"] for k, e in found.items()} == {
        "PRP-54.1.1": record.INTERRUPTED,
        "PRP-54.1.2": record.NOT_STARTED,
        "PRP-54.1.3": record.SUCCESS,
    }
    document = record.read_result(path)
    assert document is not None and record.spent_in_run(document) == 0.5
    assert record.spent_in_run({"stages": {"1": found}}) == 0.0  # all from the earlier run
    assert record.read_result(tmp_path / "missing.json") is None


def test_the_names_of_a_run() -> None:
    assert naming.batch_label(["7", "7"]) == "7"
    assert naming.batch_label(["7", "8"]) == naming.batch_label([None]) == "integration"
    assert naming.integration_branch(None, ["7"]) == "prp/batch-7"
    assert naming.integration_branch(None, ["7", None]) == naming.INTEGRATION_BRANCH
    assert naming.integration_branch("mine", ["7"]) == "mine"
    assert naming.known_integration_branch(None, ["7"]) == "prp/batch-7"
    assert naming.known_integration_branch(None, ["7", "8"]) is None
    assert naming.prp_branch(None, "PRP-1") == "prp/none/PRP-1"
    assert naming.earlier_branch("prp/7/PRP-7.1.1") == "prp/7/PRP-7.1.1-before-redo"
    assert naming.log_path(Path("r"), None, "PRP-1") == Path("r/logs/none/PRP-1.log")
