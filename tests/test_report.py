"""The HTML batch report (``--prp-report``): what the page's data says of each PRP, that every
text is escaped, and real runs whose page a real browser (headless Chromium, no network) loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_prp.records.heartbeat import iso
from pytest_prp.records.report_data import build_view
from pytest_prp.records.report_html import render
from pytest_prp.report_plugin import write_report
from tests.conftest import git, write_prp

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_800_000_000.0  # a fixed batch start: times below are seconds after it


def entry(prp_id: str, status: str, stage: int = 1, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prp_id": prp_id,
        "title": f"Work for {prp_id}",
        "batch": "47",
        "stage": stage,
        "status": status,
        "files_created": [],
        "files_modified": [],
        "commits": [],
        "gates_passed": 0,
        "gates_failed": 0,
        "gates_executable": 0,
        "gates_unverified": 0,
        "errors": [],
        "elapsed_seconds": 0.0,
        "cost_usd": None,
        "tokens": None,
    }
    data.update(fields)
    return data


def timed(start: float, end: float, worker: str, **fields: Any) -> dict[str, Any]:
    """Timing keys as a PRP record has them: wall-clock start and end, worker, phases."""
    length = end - start
    return {
        "started_at": iso(T0 + start),
        "finished_at": iso(T0 + end),
        "elapsed_seconds": length,
        "worker": worker,
        "phases": [
            {"phase": "workspace", "attempt": 1, "start": 0.0, "end": 0.1 * length},
            {"phase": "steps", "attempt": 1, "start": 0.1 * length, "end": 0.6 * length},
            {"phase": "gates", "attempt": 1, "start": 0.6 * length, "end": 0.9 * length},
            {"phase": "merge", "attempt": 1, "start": 0.9 * length, "end": length},
        ],
        **fields,
    }


def document(*entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    stages: dict[str, dict[str, Any]] = {}
    for e in entries:
        stages.setdefault(str(e["stage"]), {})[e["prp_id"]] = e
    doc: dict[str, Any] = {
        "batch_id": "47",
        "integration_branch": "prp/batch-47",
        "started_at": iso(T0),
        "finished_at": iso(T0 + 100),
        "interrupted": False,
        "stages": stages,
        "summary": {},
    }
    doc.update(extra)
    return doc


def failed_gate_attempt(n: int, tail: list[str]) -> dict[str, Any]:
    return {
        "attempt": n,
        "gates_passed": 1,
        "gates_failed": 1,
        "failed_gates": ["Unit tests"],
        "gates": [
            {"index": 1, "name": "Lint", "passed": True, "exit_code": 0, "seconds": 0.5},
            {"index": 2, "name": "Unit tests", "passed": False, "exit_code": 1, "tail": tail},
        ],
    }


# --- the page's data ------------------------------------------------------------------------


def test_each_prp_shows_its_status_attempts_gates_files_commit_cost_worktree_and_log(
    tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "47" / "PRP-47.1.2.log"
    doc = document(
        entry(
            "PRP-47.1.1",
            "success",
            **timed(0, 40, "gw0"),
            files_created=["src/a.py"],
            files_modified=["README.md"],
            commits=["a" * 40],
            gates_passed=2,
            gates_executable=2,
            cost_usd=0.25,
            tokens={"input": 1000, "output": 200},
            model="sonnet",
        ),
        entry(
            "PRP-47.1.2",
            "failed_gates",
            **timed(0, 60, "gw1"),
            attempts=[failed_gate_attempt(1, ["E assert 1 == 2"]), failed_gate_attempt(2, ["E x"])],
            gates_passed=1,
            gates_failed=1,
            gates_executable=2,
            errors=["gate 2 'Unit tests' failed"],
            worktree="/wt/PRP-47.1.2",
            log=str(log),
            cost_usd=0.5,
        ),
    )
    view = build_view(doc, report_dir=tmp_path / "batches", now=T0 + 100)
    ok, bad = view.prps
    assert (ok.status, ok.label, ok.commit, ok.cost_usd, ok.model) == (
        "success",
        "success",
        "a" * 40,
        0.25,
        "sonnet",
    )
    assert ok.files == ("src/a.py", "README.md") and ok.files_created == 1
    assert dict(ok.tokens) == {"input": 1000, "output": 200}
    assert bad.label == "gates failed"
    assert [a.number for a in bad.attempts] == [1, 2]
    gates = bad.attempts[0].gates
    assert [(g.name, g.passed, g.exit_code) for g in gates] == [
        ("Lint", True, 0),
        ("Unit tests", False, 1),
    ]
    assert gates[1].tail == ("E assert 1 == 2",)
    assert bad.worktree == "/wt/PRP-47.1.2"
    assert bad.log_href == "../logs/47/PRP-47.1.2.log"  # relative: the page and logs move together
    assert view.cost_usd == 0.75 and dict(view.tokens) == {"input": 1000, "output": 200}
    assert view.success_rate == 0.5
    page = render(view)
    assert "E assert 1 == 2" in page and "/wt/PRP-47.1.2" in page
    assert 'href="../logs/47/PRP-47.1.2.log"' in page


def test_timeline_rows_per_worker_bars_per_phase_and_the_lower_bound() -> None:
    # 47.1.1 (30 s) -> 47.2.1 (50 s) is the critical path; 47.1.2 (40 s) runs beside it.
    doc = document(
        entry("PRP-47.1.1", "success", 1, **timed(0, 30, "gw0"), dependencies=[]),
        entry("PRP-47.1.2", "success", 1, **timed(0, 40, "gw1"), dependencies=[]),
        entry("PRP-47.2.1", "success", 2, **timed(30, 80, "gw0"), dependencies=["PRP-47.1.1"]),
    )
    view = build_view(doc, now=T0 + 100)
    assert view.workers == ("gw0", "gw1")
    assert view.critical_path == ("PRP-47.1.1", "PRP-47.2.1")
    assert view.critical_seconds == pytest.approx(80)
    assert view.work_seconds == pytest.approx(120)
    assert view.lower_bound_seconds == pytest.approx(80)  # max(80, 120 / 2)
    assert view.edges == (("PRP-47.1.1", "PRP-47.2.1"),)
    last = view.prps[-1]
    assert (last.start, last.end) == (pytest.approx(30), pytest.approx(80))
    assert [b.phase for b in last.bars] == ["workspace", "steps", "gates", "merge"]
    assert last.bars[1].start == pytest.approx(35) and last.bars[1].end == pytest.approx(60)
    # More work than the chain: the work per worker is the bound.
    doc["stages"]["1"]["PRP-47.1.2"].update(timed(0, 60, "gw1"))
    doc["stages"]["1"]["PRP-47.1.3"] = entry("PRP-47.1.3", "success", 1, **timed(60, 120, "gw1"))
    assert build_view(doc, now=T0 + 300).lower_bound_seconds == pytest.approx(100)  # 200 / 2
    page = render(view)
    assert 'id="lower-bound"' in page and page.count('class="lane"') == 2


def test_attempts_are_separate_bars_and_a_later_attempt_is_marked() -> None:
    phases = [
        {"phase": "steps", "attempt": 1, "start": 0.0, "end": 10.0},
        {"phase": "gates", "attempt": 1, "start": 10.0, "end": 12.0},
        {"phase": "steps", "attempt": 2, "start": 12.0, "end": 20.0},
        {"phase": "gates", "attempt": 2, "start": 20.0, "end": 22.0},
    ]
    doc = document(
        entry("PRP-47.1.1", "success", **{**timed(0, 22, "main"), "phases": phases}),
    )
    view = build_view(doc, now=T0 + 30)
    bars = view.prps[0].bars
    assert [(b.phase, b.attempt) for b in bars] == [
        ("steps", 1),
        ("gates", 1),
        ("steps", 2),
        ("gates", 2),
    ]
    assert render(view).count('class="p-steps a2"') == 1


def test_before_anything_ran_the_critical_path_is_the_plans() -> None:
    doc = document(
        entry("PRP-47.1.1", "pending", 1, estimated_hours=1),
        entry("PRP-47.1.2", "pending", 1, estimated_hours=5),
        entry("PRP-47.2.1", "pending", 2, estimated_hours=1),
        finished_at=None,
    )
    # Pending PRPs have not reported their dependencies: the plan's graph is given.
    graph = {"PRP-47.2.1": ["PRP-47.1.1"], "PRP-47.1.1": [], "PRP-47.1.2": []}
    view = build_view(doc, graph=graph, now=T0 + 1)
    assert (view.critical_path, view.critical_unit) == (("PRP-47.1.2",), "hours")
    assert view.edges == (("PRP-47.1.1", "PRP-47.2.1"),)
    page = render(view)
    assert "No PRP has started yet" in page
    assert 'http-equiv="refresh"' in page  # still running: the page reloads itself


def test_a_running_prp_shows_on_its_workers_row_up_to_now() -> None:
    doc = document(
        entry("PRP-47.1.1", "success", **timed(0, 10, "gw0")),
        entry("PRP-47.1.2", "pending"),
        finished_at=None,
    )
    live = {"PRP-47.1.2": {"started_at": iso(T0 + 5), "worker": "gw1", "phase": "gates"}}
    view = build_view(doc, live=live, now=T0 + 25)
    running = view.prps[1]
    assert (running.status, running.worker) == ("running", "gw1")
    assert (running.start, running.end) == (pytest.approx(5), pytest.approx(25))
    assert [b.phase for b in running.bars] == ["gates"]
    assert view.workers == ("gw0", "gw1")
    # Just started under xdist, no heartbeat yet: running, but on no row until its worker is known.
    live["PRP-47.1.2"] = {"started_at": iso(T0 + 5)}
    running = build_view(doc, live=live, now=T0 + 25).prps[1]
    assert (running.status, running.start, running.bars) == ("running", None, ())


def test_interrupted_and_resumed_batches() -> None:
    doc = document(
        entry("PRP-47.1.1", "completed_earlier", commits=["b" * 40]),
        entry("PRP-47.1.2", "interrupted", **timed(0, 12, "main"), errors=["interrupted"]),
        entry("PRP-47.1.3", "not_started"),
        entry("PRP-47.1.4", "skipped_budget", errors=["skipped: budget exhausted ($1.00)"]),
        entry("PRP-47.1.5", "failed_merge", **timed(12, 20, "main"), cost_usd=1.5),
        interrupted=True,
        budget_usd=1.0,
    )
    view = build_view(doc, now=T0 + 30)
    assert [p.label for p in view.prps] == [
        "completed earlier",
        "interrupted",
        "not started",
        "over budget",
        "merge failed",
    ]
    assert view.prps[0].start is None  # nothing ran: no bar on the timeline
    assert view.success_rate == pytest.approx(0.2)  # work done earlier counts as done
    page = render(view)
    assert 'data-state="interrupted"' in page
    assert "$1.5000 of $1.0000 (150%)" in page  # spend vs budget


def test_results_of_an_older_version_without_times_still_render() -> None:
    doc = document(entry("PRP-47.1.1", "success", elapsed_seconds=3.0))
    del doc["started_at"]
    view = build_view(doc, now=T0)
    assert view.timed == () and view.lower_bound_seconds == 0
    assert 'id="prp-PRP-47.1.1"' in render(view)


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_titles_errors_and_gate_output_are_escaped() -> None:
    doc = document(
        entry(
            "PRP-47.1.1",
            "failed_gates",
            **timed(0, 5, HOSTILE),
            title=HOSTILE,
            errors=[HOSTILE],
            failure_tail=[HOSTILE],
            files_created=[HOSTILE],
            worktree=HOSTILE,
            log=HOSTILE,
            model=HOSTILE,
            tokens={HOSTILE: 1},
            attempts=[failed_gate_attempt(1, [HOSTILE, "</pre></details></table>"])],
        ),
        batch_id=HOSTILE,
        integration_branch=HOSTILE,
    )
    page = render(build_view(doc, now=T0 + 10))
    assert "<script" not in page and "<img" not in page and "</pre></details></table>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "default-src 'none'" in page  # and nothing could be loaded anyway


def test_500_prps_stay_small() -> None:
    view = build_view(big_document(500), now=T0 + 2000)
    page = render(view)
    assert page.count('<tr id="prp-') == 500
    assert len(page.encode()) < 1_500_000, len(page.encode())


def big_document(n: int, workers: int = 4) -> dict[str, Any]:
    """``n`` PRPs in stages of 25, each depending on one of the stage before, on ``workers``
    workers, with a mix of statuses (every 10th failed with output, every 25th blocked)."""
    entries = []
    clock = [0.0] * workers
    for i in range(n):
        stage = i // 25 + 1
        prp_id = f"PRP-9.{stage}.{i % 25 + 1}"
        deps = [f"PRP-9.{stage - 1}.{(i * 7) % 25 + 1}"] if stage > 1 else []
        if i % 25 == 24:
            entries.append(entry(prp_id, "blocked", stage, dependencies=deps, errors=["blocked"]))
            continue
        w = i % workers
        start, clock[w] = clock[w], clock[w] + 3 + i % 5
        fields = timed(start, clock[w], f"gw{w}", dependencies=deps, commits=[f"{i:040x}"])
        fields.update(gates_executable=2, gates_passed=2, files_created=[f"src/m{i}.py"])
        if i % 10 == 9:
            fields.update(
                gates_passed=1,
                gates_failed=1,
                errors=["gate 2 'Unit tests' failed"],
                attempts=[failed_gate_attempt(1, [f"line {k}" for k in range(20)])],
            )
        entries.append(entry(prp_id, "failed_gates" if i % 10 == 9 else "success", stage, **fields))
    return document(*entries, finished_at=iso(T0 + max(clock) + 1))


# --- real runs ------------------------------------------------------------------------------


def six_prp_batch(repo: Path) -> None:
    """Every status one run can reach: success, unverified, failed gates, a failed step,
    blocked, completed earlier (declared in its frontmatter)."""
    write_prp(repo, "PRP-60.1.1", creates={"a.txt": "a"}, gates=["test -f a.txt"])
    write_prp(repo, "PRP-60.1.2", creates={"b.txt": "b"}, checklist=["Looks right"])
    write_prp(
        repo,
        "PRP-60.1.3",
        title="Gate <b>fails</b> & more",
        creates={"c.txt": "c"},
        gates=["true", "echo 'expected 3, got <2>'; exit 3"],
    )
    write_prp(repo, "PRP-60.1.4", steps=["echo 'step broke' >&2; exit 7"], gates=["true"])
    write_prp(repo, "PRP-60.2.1", deps=["PRP-60.1.3"], gates=["true"])
    write_prp(repo, "PRP-60.1.5", gates=["true"], extra="status: completed")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PRPs")


def report_of(repo: Path, batch: str) -> Path:
    return repo / ".ce" / "orchestration" / "batches" / f"batch-{batch}.html"


SIX = {
    "PRP-60.1.1": "success",
    "PRP-60.1.2": "unverified",
    "PRP-60.1.3": "failed_gates",
    "PRP-60.1.4": "failed",
    "PRP-60.1.5": "completed_earlier",
    "PRP-60.2.1": "blocked",
}


def test_a_parallel_run_writes_the_report_and_a_resumed_run_rewrites_it(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    six_prp_batch(repo)
    result = pytester.runpytest_subprocess("--prp-batch", "60", "-n", "2", "--prp-report")
    assert result.ret == 1
    page = report_of(repo, "60")
    result.stdout.fnmatch_lines([f"Report: {page}"])
    dom = browser_dom(page, tmp_path / "six")
    assert dom.statuses == SIX
    assert set(dom.graph_nodes) == set(SIX)
    # The PRPs that ran are on the timeline, on the workers' rows.
    assert {"PRP-60.1.1", "PRP-60.1.2", "PRP-60.1.3", "PRP-60.1.4"} <= set(dom.timeline_bars)
    assert dom.lanes and dom.lanes <= {"gw0", "gw1"}
    text = page.read_text(encoding="utf-8")
    assert "expected 3, got &lt;2&gt;" in text and "step broke" in text
    assert "Gate &lt;b&gt;fails&lt;/b&gt; &amp; more" in text
    assert "lower-bound" in text
    data = json.loads(page.with_name("batch-60.result.json").read_text())
    first = data["stages"]["1"]["PRP-60.1.1"]
    assert first["worker"] in ("gw0", "gw1")
    assert [p["phase"] for p in first["phases"]] == ["workspace", "steps", "gates", "merge"]
    assert first["started_at"] < first["finished_at"]
    gates = data["stages"]["1"]["PRP-60.1.3"]["attempts"][0]["gates"]
    assert [(g["passed"], g["exit_code"]) for g in gates] == [(True, 0), (False, 3)]
    assert gates[1]["tail"] == ["expected 3, got <2>"]

    # Resumed, serially: what passed is completed earlier, the rest runs again.
    again = pytester.runpytest_subprocess("--prp-batch", "60", "--prp-report")
    assert again.ret == 1
    dom = browser_dom(page, tmp_path / "again")
    assert dom.statuses == {
        **SIX,
        "PRP-60.1.1": "completed_earlier",
        "PRP-60.1.2": "completed_earlier",
    }
    assert dom.lanes == {"main"}


def test_a_running_batch_shows_it_and_an_interrupted_one_says_so(
    pytester: pytest.Pytester, repo: Path
) -> None:
    started = repo.parent / "step-started-64"
    write_prp(repo, "PRP-64.1.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-64.2.1", deps=["PRP-64.1.1"], steps=[f"touch {started}; sleep 60"])
    write_prp(repo, "PRP-64.3.1", deps=["PRP-64.2.1"], gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PRPs")
    command = [sys.executable, "-m", "pytest", "--prp-batch", "64", "--prp-report"]
    proc = subprocess.Popen(
        [*command, "-p", "no:cacheprovider"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    page = report_of(repo, "64")
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        # Rewritten when PRP-64.2.1 started, by the writer's thread: within its gap (at most
        # 2 s after its last write), not necessarily before the step's first command.
        deadline = time.monotonic() + 20
        text = page.read_text()
        while 'id="prp-PRP-64.2.1" data-status="running"' not in text:
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
            text = page.read_text()
        assert 'id="prp-PRP-64.3.1" data-status="pending"' in text
        assert '<g data-prp="PRP-64.2.1">' in text  # on the timeline, running up to now
        assert 'data-state="running"' in text and 'http-equiv="refresh"' in text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    text = page.read_text()
    assert 'data-state="interrupted"' in text and 'http-equiv="refresh"' not in text
    assert 'id="prp-PRP-64.1.1" data-status="success"' in text
    assert 'id="prp-PRP-64.2.1" data-status="interrupted"' in text
    assert 'id="prp-PRP-64.3.1" data-status="not_started"' in text


def test_200_prps_load_in_a_browser(tmp_path: Path) -> None:
    doc = big_document(200)
    page = tmp_path / "batches" / "batch-9.html"
    write_report(page, doc)
    dom = browser_dom(page, tmp_path / "big")
    assert len(dom.statuses) == 200
    assert set(dom.graph_nodes) == set(dom.statuses)
    assert len(dom.timeline_bars) == 192  # every 25th is blocked and never ran
    assert dom.lanes == {"gw0", "gw1", "gw2", "gw3"}


def test_report_path_and_ini_and_a_mistyped_path(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-61.1.1", creates={"a.txt": "a"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PRPs")
    wrong = pytester.runpytest_subprocess("--prp-report", "PRPs/", "--prp-batch", "61")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    wrong.stderr.fnmatch_lines(["*--prp-report 'PRPs/': the report's path must end in .html*"])
    assert not (repo / ".ce").exists()
    result = pytester.runpytest_subprocess("--prp-batch", "61", "--prp-report=out/page.html")
    assert result.ret == 0
    assert 'id="prp-PRP-61.1.1"' in (repo / "out" / "page.html").read_text()
    assert not report_of(repo, "61").exists()
    # A page that cannot be written is said so; the batch is not affected.
    broken = pytester.runpytest_subprocess(
        "--prp-batch", "61", "--prp-rerun", "--prp-report=README.md/page.html"
    )
    assert broken.ret == 0
    broken.stdout.fnmatch_lines(["Report: *README.md/page.html could not be written: *"])
    pytester.makeini("[pytest]\nprp_report = true\n")
    result = pytester.runpytest_subprocess("--prp-batch", "61")
    assert result.ret == 0
    assert 'data-status="completed_earlier"' in report_of(repo, "61").read_text()
    pytester.makeini("[pytest]\n")
    report_of(repo, "61").unlink()
    pytester.runpytest_subprocess("--prp-batch", "61")
    assert not report_of(repo, "61").exists()  # off unless asked for


def test_prp_status_html_rebuilds_the_report_of_an_earlier_run(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-62.1.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-62.1.2", gates=["echo nope; exit 1"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PRPs")
    pytester.runpytest_subprocess("--prp-batch", "62")  # no report asked for
    results = repo / ".ce" / "orchestration"
    out = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", str(results), "--html"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=repo,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    page = report_of(repo, "62")
    assert out.stdout.strip() == f"prp-status: report written to {page}"
    text = page.read_text()
    assert 'data-status="success"' in text and 'data-status="failed_gates"' in text
    assert "nope" in text and 'href="../logs/62/PRP-62.1.2.log"' in text
    elsewhere = pytester.path / "copy.html"
    subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", str(results)]
        + ["--batch", "62", "--html", str(elsewhere)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=repo,
        timeout=60,
    )
    assert 'id="prp-PRP-62.1.2"' in elsewhere.read_text()


@pytest.mark.usefixtures("with_pytest_html")
def test_pytest_html_pages_carry_the_prp_details(pytester: pytest.Pytester, repo: Path) -> None:
    pytest.importorskip("pytest_html")
    write_prp(repo, "PRP-63.1.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-63.1.2", gates=["echo 'gate said <no>'; exit 1"])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "PRPs")
    result = pytester.runpytest_subprocess("--prp-batch", "63", "-n", "2", "--html=ci.html")
    assert result.ret == 1
    page = (repo / "ci.html").read_text()
    # pytest-html keeps its table's data as JSON in an attribute: the fragments are in it.
    assert page.count("prp-details") >= 2
    assert "gate said &amp;lt;no&amp;gt;" in page or "gate said &lt;no&gt;" in page


# --- the browser ----------------------------------------------------------------------------


class Dom(HTMLParser):
    """What the browser rendered: table rows, graph nodes, timeline bars and rows."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, str] = {}
        self.graph_nodes: list[str] = []
        self.timeline_bars: list[str] = []
        self.lanes: set[str] = set()
        self._svg: str | None = None
        self._lane_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self._svg = a.get("id")
        if tag == "tr" and a.get("id", "").startswith("prp-") and a.get("data-status"):
            self.statuses[str(a["id"])[4:]] = str(a["data-status"])
        if tag == "a" and self._svg == "graph-svg" and a.get("data-prp"):
            self.graph_nodes.append(str(a["data-prp"]))
        if tag == "g" and self._svg == "timeline-svg" and a.get("data-prp"):
            self.timeline_bars.append(str(a["data-prp"]))
        self._lane_label = tag == "text" and self._svg == "timeline-svg" and a.get("x") == "2"

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        self._lane_label = False

    def handle_data(self, data: str) -> None:
        if self._lane_label:
            self.lanes.add(data)


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # No network at all: every host resolves to nothing and every proxy is a closed port.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browser_dom(page: Path, scratch: Path) -> Dom:
    """Load the page from disk in headless Chromium: a screenshot (it renders) and its DOM."""
    browser = chromium()
    scratch.mkdir(parents=True, exist_ok=True)
    shot = scratch / "page.png"
    url = page.resolve().as_uri()
    for args in (
        [f"--screenshot={shot}", "--window-size=1280,1000"],
        ["--dump-dom"],
    ):
        profile = scratch / f"profile-{len(args)}"  # a fresh profile each time
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000  # rendered, not blank
    dom = Dom()
    dom.feed(done.stdout)
    assert re.search(r'<section id="graph">', done.stdout)
    assert re.search(r'<svg id="timeline-svg"|<p id="timeline-svg"', done.stdout)
    return dom
