"""Heartbeat files written by a real thread, read back as another terminal would."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_prp.records.heartbeat import (
    Heartbeat,
    format_duration,
    heartbeat_path,
    iso,
    parse_time,
    progress_line,
    read_heartbeats,
)


def read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def beat(results: Path, prp_id: str = "PRP-47.2.1", interval: float = 0.1) -> Heartbeat:
    path = heartbeat_path(results, "47", prp_id)
    return Heartbeat(path, prp_id=prp_id, batch="47", worker="gw1", interval=interval)


def test_the_path_is_per_batch_and_prp(tmp_path: Path) -> None:
    assert heartbeat_path(tmp_path, "47", "PRP-47.2.1") == (
        tmp_path / "heartbeats" / "47" / "PRP-47.2.1.json"
    )
    assert heartbeat_path(tmp_path, None, "PRP-A") == tmp_path / "heartbeats/none/PRP-A.json"


def test_the_file_is_rewritten_every_interval_and_final_on_finish(tmp_path: Path) -> None:
    hb = beat(tmp_path)
    hb.start()
    try:
        first = read(hb.path)
        assert first["prp_id"] == "PRP-47.2.1" and first["batch"] == "47"
        assert first["pid"] == os.getpid() and first["worker"] == "gw1"
        assert first["phase"] == "starting" and first["status"] is None
        assert first["interval"] == 0.1 and first["last_output_at"] is None
        time.sleep(0.35)
        second = read(hb.path)
        assert parse_time(second["updated_at"]) > parse_time(first["updated_at"])  # type: ignore[operator]
        assert second["elapsed_seconds"] > first["elapsed_seconds"]
        assert second["started_at"] == first["started_at"]
    finally:
        hb.finish("success")
    final = read(hb.path)
    assert final["phase"] == "done" and final["status"] == "success"
    time.sleep(0.3)
    assert read(hb.path) == final  # the thread has stopped: the final beat stays
    assert [p.name for p in hb.path.parent.iterdir()] == ["PRP-47.2.1.json"]  # no temp files


def written(hb: Heartbeat, phase: str) -> dict[str, Any]:
    """The file once the writer thread has written ``phase`` (it does so at once, not at
    the next beat: the interval here is a minute)."""
    deadline = time.monotonic() + 2
    while (now := read(hb.path))["phase"] != phase and time.monotonic() < deadline:
        time.sleep(0.005)
    return now


def test_a_phase_change_is_written_at_once(tmp_path: Path) -> None:
    hb = beat(tmp_path, interval=60)
    with hb:
        hb.phase("steps", current="Phase 2: Topological Sort", index=2, total=5, attempt=1)
        now = written(hb, "steps")
        assert (now["phase"], now["current"], now["index"], now["total"], now["attempt"]) == (
            "steps",
            "Phase 2: Topological Sort",
            2,
            5,
            1,
        )
        hb.phase("gates", current="Unit tests", index=1, total=3)
        now = written(hb, "gates")
        assert (now["phase"], now["current"], now["attempt"]) == ("gates", "Unit tests", 1)
        hb.finish("failed_gates")
    assert read(hb.path)["status"] == "failed_gates"


def test_output_and_cost_are_recorded_and_written_with_the_next_beat(tmp_path: Path) -> None:
    hb = beat(tmp_path)
    with hb:
        hb.output("collecting ... 12 items")
        hb.output("")  # a blank line is a sign of life, not a last line worth showing
        event = {"type": "assistant", "message": {"content": [{"type": "text", "text": "Hi"}]}}
        hb.output(json.dumps(event))
        hb.cost(0.25)
        time.sleep(0.3)
        now = read(hb.path)
    assert now["last_output"] == "[assistant] Hi"  # stream-json shown as people read it
    assert now["cost_usd"] == 0.25
    assert abs(parse_time(now["last_output_at"]) - time.time()) < 5  # type: ignore[operator]


def test_the_context_manager_marks_an_interrupted_run(tmp_path: Path) -> None:
    hb = beat(tmp_path)
    with pytest.raises(KeyboardInterrupt), hb:
        raise KeyboardInterrupt
    assert read(hb.path)["status"] == "interrupted"


def test_readers_never_see_a_half_written_file(tmp_path: Path) -> None:
    hb = beat(tmp_path, interval=0.001)
    hb.output("x" * 150)
    bad: list[str] = []
    reads = 0
    with hb:
        stop = time.monotonic() + 0.5
        while time.monotonic() < stop:
            try:
                json.loads(hb.path.read_text())
            except ValueError as exc:
                bad.append(str(exc))
            reads += 1
        hb.finish("success")
    assert reads > 50 and bad == []


def test_a_write_that_fails_does_not_fail_the_prp(tmp_path: Path) -> None:
    (tmp_path / "heartbeats").write_text("a file where a directory should be")
    hb = beat(tmp_path)
    with hb:
        hb.phase("steps")
    assert hb.write_error is not None and "heartbeats" in hb.write_error


def test_read_heartbeats_skips_what_it_cannot_read(tmp_path: Path) -> None:
    for prp_id in ("PRP-47.10.1", "PRP-47.9.1"):
        with beat(tmp_path, prp_id) as hb:
            hb.finish("success")
    other = heartbeat_path(tmp_path, "48", "PRP-48.1")
    Heartbeat(other, prp_id="PRP-48.1", batch="48").finish("failed")
    folder = tmp_path / "heartbeats" / "47"
    (folder / "half.json").write_text('{"prp_id": "PRP-47.1", "pha')
    (folder / "list.json").write_text("[1, 2]")
    (folder / "anonymous.json").write_text('{"phase": "steps"}')
    (folder / "notes.txt").write_text("not a heartbeat")
    assert [b["prp_id"] for b in read_heartbeats(tmp_path, "47")] == ["PRP-47.9.1", "PRP-47.10.1"]
    all_ids = [b["prp_id"] for b in read_heartbeats(tmp_path)]
    assert all_ids == ["PRP-47.9.1", "PRP-47.10.1", "PRP-48.1"]
    assert read_heartbeats(tmp_path / "missing") == []
    assert read_heartbeats(tmp_path, "49") == []


NOW = 1_750_000_000.0


def running(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prp_id": "PRP-47.2.1",
        "phase": "steps",
        "current": "Phase 2: Topological Sort",
        "index": 2,
        "total": 5,
        "attempt": 1,
        "started_at": iso(NOW - 192),
        "last_output_at": iso(NOW - 4),
        "cost_usd": None,
        "status": None,
    }
    data.update(fields)
    return data


def test_progress_line_of_a_step() -> None:
    assert progress_line(running(), NOW) == (
        'PRP-47.2.1 step 2/5 "Phase 2: Topological Sort" 3m12s, last output 4s ago'
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"phase": "gates", "current": "Unit tests", "index": 1, "total": 3, "attempt": 2},
            'PRP-47.2.1 gate 1/3 "Unit tests" (attempt 2) 3m12s, last output 4s ago',
        ),
        (
            {"current": None, "index": None, "total": None, "last_output_at": None},
            "PRP-47.2.1 steps 3m12s, no output yet",
        ),
        (
            {"phase": "merge", "current": None, "cost_usd": 1.5},
            "PRP-47.2.1 merge 3m12s, last output 4s ago, $1.5000",
        ),
        ({"phase": "done", "status": "success"}, "PRP-47.2.1 done (success) 3m12s"),
        (
            {"started_at": None, "elapsed_seconds": 7260.0},
            'PRP-47.2.1 step 2/5 "Phase 2: Topological Sort" 2h01m, last output 4s ago',
        ),
    ],
)
def test_progress_line_variants(fields: dict[str, Any], expected: str) -> None:
    assert progress_line(running(**fields), NOW) == expected


def test_progress_line_of_a_live_heartbeat(tmp_path: Path) -> None:
    with beat(tmp_path) as hb:
        hb.phase("gates", current="Lint", index=1, total=2)
        assert progress_line(read(hb.path), time.time()).endswith("0s, no output yet")
        hb.output("checking 14 files")
        # In the process that runs the PRP, the snapshot is current without waiting for a beat.
        line = progress_line(hb.snapshot(), time.time())
    assert line == 'PRP-47.2.1 gate 1/2 "Lint" 0s, last output 0s ago'


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 4.9, 59, 60, 192, 3599, 3600, 7500)] == [
        "0s",
        "4s",
        "59s",
        "1m00s",
        "3m12s",
        "59m59s",
        "1h00m",
        "2h05m",
    ]
    assert format_duration(-3) == "0s"


def test_iso_times_round_trip() -> None:
    text = iso(NOW)
    assert text is not None and text.endswith("+00:00")
    assert parse_time(text) == NOW
    assert parse_time("2025-06-15T15:06:40Z") == parse_time("2025-06-15T15:06:40+00:00")
    assert parse_time("not a time") is None and parse_time(None) is None


def test_finish_from_another_thread_while_beating(tmp_path: Path) -> None:
    hb = beat(tmp_path, interval=0.01)
    hb.start()
    done = threading.Thread(target=hb.finish, args=("success",))
    done.start()
    done.join(5)
    assert not done.is_alive() and read(hb.path)["status"] == "success"


def test_a_rate_limit_wait_is_written_at_once_and_shown(tmp_path: Path) -> None:
    hb = beat(tmp_path, interval=60)
    until = time.time() + 90
    with hb:
        hb.phase("steps", attempt=1)
        written(hb, "steps")
        hb.waiting(until)
        deadline = time.monotonic() + 2
        while read(hb.path)["rate_limit_until"] is None and time.monotonic() < deadline:
            time.sleep(0.005)
        now = read(hb.path)
        assert parse_time(now["rate_limit_until"]) == pytest.approx(until, abs=0.001)
        clock = time.strftime("%H:%M:%S", time.localtime(until))
        assert f"waiting for rate limit until {clock}" in progress_line(now, time.time())
        hb.waiting(None)
        while read(hb.path)["rate_limit_until"] is not None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert "waiting" not in progress_line(read(hb.path), time.time())
