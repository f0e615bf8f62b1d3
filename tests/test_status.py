"""``prp-status`` on results directories written the way a batch run writes them.

The command runs for real (``python -m pytest_prp status`` in a subprocess); heartbeats come
from the real Heartbeat class, from this very process (alive), or name a process that is gone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_prp.records.heartbeat import Heartbeat, heartbeat_path, iso
from pytest_prp.records.status_view import estimate, load_view
from pytest_prp.supervise.leftovers import pid_alive

ROOT = Path(__file__).resolve().parents[1]


def prp_status(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def entry(prp_id: str, status: str, elapsed: float, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prp_id": prp_id,
        "title": f"Work for {prp_id}",
        "batch": "47",
        "status": status,
        "errors": [],
        "elapsed_seconds": elapsed,
        "cost_usd": None,
    }
    data.update(fields)
    return data


def write_result(results: Path, finished: bool = False, **extra: Any) -> Path:
    document: dict[str, Any] = {
        "batch_id": "47",
        "integration_branch": "prp/batch-47",
        "started_at": iso(time.time() - 3600),
        "finished_at": iso(time.time()) if finished else None,
        "interrupted": False,
        "stages": {
            "1": {
                "PRP-47.1.1": entry("PRP-47.1.1", "success", 600.0, cost_usd=0.5, stage=1),
                "PRP-47.1.2": entry(
                    "PRP-47.1.2",
                    "failed_gates",
                    1200.0,
                    stage=1,
                    errors=["gate 2 'Unit tests' failed"],
                ),
            },
            "2": {"PRP-47.2.1": entry("PRP-47.2.1", "running", 0.0, stage=2)},
        },
        "summary": {"total": 3},
    }
    document.update(extra)
    path = results / "batches" / "batch-47.result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)
    return path


def fake_beat(results: Path, prp_id: str, **fields: Any) -> None:
    """A heartbeat file as another process left it."""
    data: dict[str, Any] = {
        "prp_id": prp_id,
        "batch": "47",
        "pid": os.getpid(),
        "worker": "gw1",
        "interval": 5.0,
        "phase": "gates",
        "current": "Unit tests",
        "index": 1,
        "total": 2,
        "attempt": 1,
        "started_at": iso(time.time() - 900),
        "last_output_at": iso(time.time() - 600),
        "last_output": "test_parser.py ....",
        "elapsed_seconds": 300.0,
        "cost_usd": None,
        "status": None,
        "updated_at": iso(time.time()),
    }
    data.update(fields)
    path = heartbeat_path(results, "47", prp_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def gone_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / ".ce" / "orchestration"


@pytest.fixture
def live(results: Path) -> Any:
    """PRP-47.2.1 running right now, in this process."""
    hb = Heartbeat(
        heartbeat_path(results, "47", "PRP-47.2.1"),
        prp_id="PRP-47.2.1",
        batch="47",
        worker="gw0",
        interval=0.2,
    )
    hb.start()
    hb.phase("steps", current="Phase 2: Topological Sort", index=2, total=5, attempt=1)
    hb.output("sorting 40 nodes")
    yield hb
    hb.finish("success")


def write_running_batch(results: Path) -> None:
    write_result(results)
    # Stale: the process lives (it is this one) but stopped beating ten minutes ago.
    fake_beat(results, "PRP-47.2.2", updated_at=iso(time.time() - 600))
    # Dead: the process is gone although it beat a moment ago.
    fake_beat(results, "PRP-47.2.3", pid=gone_pid(), phase="steps", current=None, index=None)


def test_the_table_shows_finished_running_and_stalled_prps(results: Path, live: Any) -> None:
    write_running_batch(results)
    time.sleep(0.3)  # a beat writes the output line
    done = prp_status("--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Batch 47 (prp/batch-47): running since ")
    assert lines[1].split() == ["PRP", "STATUS", "WHERE", "ELAPSED", "BEAT", "COST", "NOTE"]
    rows = {line.split()[0]: line for line in lines[2:7]}
    assert rows["PRP-47.1.1"].split() == ["PRP-47.1.1", "success", "10m00s", "$0.5000"]
    assert rows["PRP-47.1.2"].split()[:3] == ["PRP-47.1.2", "failed_gates", "20m00s"]
    assert rows["PRP-47.1.2"].endswith("gate 2 'Unit tests' failed")
    live_row = rows["PRP-47.2.1"]
    assert live_row.split()[1:5] == ["running", "step", "2/5", '"Phase']
    assert "STALLED" not in live_row and "sorting 40 nodes" in live_row
    assert "STALLED: no heartbeat for 10m0" in rows["PRP-47.2.2"]
    assert 'gate 1/2 "Unit tests"' in rows["PRP-47.2.2"]
    assert "STALLED: process" in rows["PRP-47.2.3"] and "is gone" in rows["PRP-47.2.3"]
    assert lines[7].startswith(
        "Totals: 5 PRPs: 1 failed_gates, 3 running, 1 success (2 stalled); cost $0.5000; "
        "elapsed 1h00m"
    )
    # Two finished PRPs took 15 minutes on average; three are running on two workers.
    assert lines[8].startswith("Estimated time left: ~")
    assert "average time of 2 finished PRPs (15m00s) for 3" in lines[8]
    assert "over 2 workers" in lines[8]


def test_json_output(results: Path, live: Any) -> None:
    write_running_batch(results)
    done = prp_status("--results-dir", str(results), "--batch", "47", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["batch_id"] == "47" and document["running"] is True
    prps = {p["prp_id"]: p for p in document["prps"]}
    assert prps["PRP-47.2.1"]["status"] == "running" and not prps["PRP-47.2.1"]["stalled"]
    assert prps["PRP-47.2.1"]["where"] == 'step 2/5 "Phase 2: Topological Sort"'
    assert prps["PRP-47.2.1"]["pid"] == os.getpid()
    assert prps["PRP-47.2.2"]["stalled"] is True
    assert prps["PRP-47.2.2"]["stalled_reason"].startswith("no heartbeat for ")
    assert prps["PRP-47.2.3"]["stalled_reason"].endswith("is gone")
    assert prps["PRP-47.1.1"]["cost_usd"] == 0.5
    assert document["totals"]["by_status"] == {"failed_gates": 1, "running": 3, "success": 1}
    assert document["totals"]["stalled"] == 2
    assert document["estimate"]["seconds_left"] > 0


def test_watch_refreshes_until_the_batch_has_finished(results: Path) -> None:
    write_result(results)
    args = ["--results-dir", str(results), "--watch", "--every", "0.2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    watch = subprocess.Popen(
        [sys.executable, "-m", "pytest_prp", "status", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.0)
        assert watch.poll() is None  # still watching a running batch
        write_result(results, finished=True)
        out, err = watch.communicate(timeout=10)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, err
    frames = [line for line in out.splitlines() if line.startswith("Batch 47")]
    assert len(frames) >= 3 and "running since" in frames[0]
    assert "finished at" in frames[-1]
    assert not out.rstrip().splitlines()[-1].startswith("Estimated")


def test_nothing_to_show_is_one_clear_line(tmp_path: Path) -> None:
    done = prp_status("--results-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"prp-status: no result JSON or heartbeats of any batch in {tmp_path / 'nowhere'}\n"
    )
    write_result(tmp_path)
    other = prp_status("--results-dir", str(tmp_path), "--batch", "12")
    assert other.returncode == 1
    assert other.stderr.startswith("prp-status: no result JSON or heartbeats of batch 12 in ")


def test_a_heartbeat_without_a_json_entry_is_running(results: Path, live: Any) -> None:
    # The first PRP of a batch: no result JSON yet, only its heartbeat.
    view = load_view(results, "47")
    assert view is not None and not view.done
    [only] = view.prps
    assert only.prp_id == "PRP-47.2.1" and only.status == "running" and not only.stalled
    assert view.started_at is not None
    done = prp_status("--results-dir", str(results))  # the latest batch: found by its heartbeat
    assert done.returncode == 0 and "PRP-47.2.1  running" in done.stdout
    assert "Estimated time left: unknown (no estimated_hours and no finished PRP" in done.stdout


def test_estimate_prefers_estimated_hours(results: Path) -> None:
    write_result(results, planned={"PRP-47.3.1": {"stage": 3, "estimated_hours": 2}})
    fake_beat(results, "PRP-47.2.1", estimated_hours=1.0, started_at=iso(time.time() - 1800))
    view = load_view(results, "47")
    assert view is not None
    statuses = {p.prp_id: p.status for p in view.prps}
    assert statuses["PRP-47.3.1"] == "pending"
    guess = estimate(view)
    # 2 h for the pending one, 1 h minus 30 min spent for the running one, one worker.
    assert guess.seconds_left == pytest.approx(2.5 * 3600, abs=5)
    assert guess.method == "estimated_hours of 2 PRPs, minus time spent, over 1 worker"


def test_a_finished_batch_shows_prps_it_left_running_as_unfinished(results: Path) -> None:
    write_result(results, finished=True, interrupted=True)
    fake_beat(results, "PRP-47.2.1")
    done = prp_status("--results-dir", str(results))
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].startswith("Batch 47 (prp/batch-47): interrupted at ")
    assert "PRP-47.2.1  unfinished" in done.stdout and "STALLED" not in done.stdout
    assert "Estimated" not in done.stdout


def test_a_batch_whose_run_died_unrecorded_is_interrupted_not_running(results: Path) -> None:
    # The result JSON as a run left it when it was killed (or found no room for its last
    # write): no finished_at, and the process that wrote it is gone.
    here = socket.gethostname()
    write_result(results, controller={"pid": gone_pid(), "host": here})
    fake_beat(results, "PRP-47.2.1", pid=gone_pid())
    done = prp_status("--results-dir", str(results))
    assert done.returncode == 0
    first = done.stdout.splitlines()[0]
    assert first.startswith("Batch 47 (prp/batch-47): interrupted: its run (process "), first
    assert "running" not in done.stdout and "Estimated" not in done.stdout
    assert "PRP-47.2.1  unfinished" in done.stdout
    as_json = json.loads(prp_status("--results-dir", str(results), "--json").stdout)
    assert as_json["running"] is False and as_json["interrupted"] is True
    page = results / "page.html"
    assert prp_status("--results-dir", str(results), "--html", str(page)).returncode == 0
    assert 'data-state="interrupted"' in page.read_text()
    # Its writer alive (this process), or on another machine: it may well be running.
    for controller in (
        {"pid": os.getpid(), "host": here},
        {"pid": gone_pid(), "host": "elsewhere"},
    ):
        write_result(results, controller=controller)
        shown = prp_status("--results-dir", str(results)).stdout
        assert "running since" in shown.splitlines()[0], shown


def test_a_run_known_by_heartbeats_alone_whose_processes_are_gone_is_interrupted(
    results: Path,
) -> None:
    # No result JSON was ever written (a full disk from the start): the heartbeats tell.
    fake_beat(results, "PRP-47.1.1", pid=gone_pid(), host=socket.gethostname())
    fake_beat(results, "PRP-47.1.2", pid=gone_pid(), phase="done", status="success")
    first = prp_status("--results-dir", str(results)).stdout.splitlines()[0]
    assert first.startswith("Batch 47: interrupted: its run (processes "), first
    # One of them alive: it may be running.
    fake_beat(results, "PRP-47.1.2", phase="done", status="success")
    first = prp_status("--results-dir", str(results)).stdout.splitlines()[0]
    assert first.startswith("Batch 47: running since"), first


def test_heartbeats_of_an_earlier_run_are_ignored(results: Path) -> None:
    write_result(results)
    fake_beat(results, "PRP-47.9.9", updated_at=iso(time.time() - 7200), status="success")
    view = load_view(results, "47")
    assert view is not None and "PRP-47.9.9" not in {p.prp_id for p in view.prps}


def test_a_finished_heartbeat_gives_the_status_before_the_json_has_it(results: Path) -> None:
    write_result(results)
    fake_beat(results, "PRP-47.2.1", phase="done", status="success")
    view = load_view(results, "47")
    assert view is not None
    assert {p.prp_id: p.status for p in view.prps}["PRP-47.2.1"] == "success"


def test_pid_alive_counts_a_zombie_as_gone() -> None:
    assert pid_alive(os.getpid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pid_alive(zombie.pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # it exits; not reaped yet, it stays a zombie
    try:
        assert Path(f"/proc/{zombie.pid}").exists()  # still there, as a zombie
        assert not pid_alive(zombie.pid)
    finally:
        zombie.wait()
    assert not pid_alive(zombie.pid)


def test_python_m_pytest_prp_without_a_command_shows_usage() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest_prp"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m pytest_prp status")


def test_a_new_run_is_shown_before_it_rewrites_the_result_json(results: Path, live: Any) -> None:
    # The result JSON is the last run's (finished an hour ago): the live heartbeat is newer.
    write_result(results, finished=True)
    path = results / "batches" / "batch-47.result.json"
    document = json.loads(path.read_text())
    document["finished_at"] = iso(time.time() - 3000)
    path.write_text(json.dumps(document))
    view = load_view(results, "47")
    assert view is not None and not view.done
    assert [(p.prp_id, p.status) for p in view.prps] == [("PRP-47.2.1", "running")]


def test_a_prp_waiting_for_a_rate_limit(results: Path) -> None:
    write_result(results)
    until = time.time() + 300
    fake_beat(results, "PRP-47.2.1", phase="steps", rate_limit_until=iso(until))
    done = prp_status("--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    clock = time.strftime("%H:%M:%S", time.localtime(until))
    row = next(line for line in done.stdout.splitlines() if line.startswith("PRP-47.2.1 "))
    assert row.split()[1:7] == ["running", "waiting", "for", "rate", "limit", "until"]
    assert row.split()[7] == clock


def test_a_dead_runs_pid_given_to_another_process_is_not_a_running_batch(
    results: Path, tmp_path: Path
) -> None:
    # The result JSON of a run that died unrecorded names a pid that a new process holds now
    # (a restarted container gives small pids again): its start tells them apart.
    from pytest_prp.records.status_view import run_gone
    from pytest_prp.supervise.leftovers import process

    other = subprocess.Popen(["sleep", "30"])
    try:
        me = process(other.pid)
        assert me is not None
        host = socket.gethostname()
        reused = {"pid": other.pid, "host": host, "start": me.start - 1}
        write_result(results, controller=reused)
        shown = prp_status("--results-dir", str(results))
        assert "interrupted" in shown.stdout.splitlines()[0], shown.stdout + shown.stderr
        doc = {"finished_at": None, "controller": {**reused, "start": me.start}}
        assert run_gone(doc, host) is None  # the same process: still running
        assert run_gone({**doc, "controller": {"pid": other.pid, "host": host}}, host) is None
    finally:
        other.kill()
        other.wait()
