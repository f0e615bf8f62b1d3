"""prp-status on result and heartbeat files holding NaN, Infinity, 1e999 or huge integers
(Python's json reads all of them): the view shows them as unknown, never crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_prp.base.jsonfile import loads_finite
from pytest_prp.base.stream_json import parse_stream

ROOT = Path(__file__).resolve().parents[1]

RESULT = """{"batch_id":"47","integration_branch":"prp/batch-47",
"started_at":"2026-12-06T05:00:00+00:00","finished_at":null,"interrupted":false,
"stages":{"1":{
"PRP-47.1.1":{"prp_id":"PRP-47.1.1","title":"t","batch":"47","status":"success","errors":[],
  "elapsed_seconds":NaN,"cost_usd":1e999,"stage":1,"estimated_hours":NaN},
"PRP-47.1.2":{"prp_id":"PRP-47.1.2","title":"t","batch":"47","status":"running","errors":[],
  "elapsed_seconds":Infinity,"cost_usd":-Infinity,"stage":NaN,"estimated_hours":1e999},
"PRP-47.1.3":{"prp_id":"PRP-47.1.3","title":"t","batch":"47","status":"failed","errors":[],
  "elapsed_seconds":1%s,"cost_usd":0.5,"stage":1,"estimated_hours":2}}},
"summary":{"total":NaN,"cost_usd":NaN}}""" % ("0" * 400)

BEAT = """{"prp_id":"PRP-47.1.2","batch":"47","pid":%d,"worker":"gw0","interval":NaN,
"phase":"steps","current":"x","index":NaN,"total":1e999,"attempt":NaN,
"started_at":"2026-12-06T05:00:00+00:00","last_output_at":null,"elapsed_seconds":NaN,
"cost_usd":NaN,"estimated_hours":1e999,"status":null,"updated_at":"2026-12-06T05:20:00+00:00"}"""


def prp_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_non_finite_numbers_do_not_crash_the_status_view(tmp_path: Path, as_json: bool) -> None:
    (tmp_path / "batches").mkdir()
    (tmp_path / "batches" / "batch-47.result.json").write_text(RESULT)
    beats = tmp_path / "heartbeats" / "47"
    beats.mkdir(parents=True)
    (beats / "PRP-47.1.2.json").write_text(BEAT % os.getpid())
    done = prp_status("--results-dir", str(tmp_path), *(["--json"] if as_json else []))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "PRP-47.1.2" in done.stdout and "nan" not in done.stdout.lower()
    if as_json:
        document = json.loads(done.stdout)  # strict JSON: no NaN or Infinity in it
        json.dumps(document, allow_nan=False)
        costs = {p["prp_id"]: p["cost_usd"] for p in document["prps"]}
        assert costs == {"PRP-47.1.1": None, "PRP-47.1.2": None, "PRP-47.1.3": 0.5}


def test_loads_finite_reads_non_finite_numbers_as_null() -> None:
    assert loads_finite('{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e999, "e": 1.5}') == {
        "a": None,
        "b": None,
        "c": None,
        "d": None,
        "e": 1.5,
    }
    assert loads_finite("[1%s, 12]" % ("0" * 30)) == [None, 12]


def test_an_agent_reporting_a_non_finite_cost_costs_nothing_known() -> None:
    for cost in ("NaN", "Infinity", "1e999", "1" + "0" * 400):
        line = (
            '{"type":"result","subtype":"success","is_error":false,"total_cost_usd":' + cost + "}"
        )
        report = parse_stream([line])
        assert report.saw_result and report.cost_usd is None, cost
