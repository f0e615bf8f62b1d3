"""pytest glue of the HTML batch report (``--prp-report``): controller-only, as the result JSON.

It renders ``results.BatchResults.document()`` (the same document the result JSON holds, so the
page and the JSON never disagree) with the plan's dependency graph and the heartbeats of the
PRPs running now, and rewrites the page atomically when a PRP starts or finishes.

Rendering a page of hundreds of PRPs takes tens of milliseconds, so it happens in a thread of
its own (``ReportWriter``): the controller only hands it a snapshot of the document (one call
of json's C encoder) and goes on. The thread always writes the newest snapshot, and rests
``GAP`` times as long as its last write took before the next one, so that in a batch of many
quick PRPs it takes a small share of the controller's CPU; a PRP that starts is on the page
within that gap, not only when the next PRP finishes. The last write, at the end of the session,
is made by the controller itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.plan.settings import DEFAULT_REPORT
from pytest_prp.records.record import PENDING, UNFINISHED
from pytest_prp.records.report_html import default_report_path as default_report_path
from pytest_prp.records.report_html import write_report as write_report

if TYPE_CHECKING:
    from pytest_prp.records.results import BatchResults

GAP = 10.0  # the writer rests this many times as long as its last write took
MAX_GAP = 2.0  # seconds, at most


class ReportWriter:
    """Writes the newest snapshot handed to it, in a daemon thread, one write at a time."""

    def __init__(self, path: Path, graph: dict[str, tuple[str, ...]], serial: bool) -> None:
        self.path = path
        self.graph = graph
        self.serial = serial
        self.error: str | None = None
        self._cond = threading.Condition()
        self._pending: tuple[str, dict[str, float], Path] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="prp-report", daemon=True)
        self._thread.start()

    def submit(self, snapshot: str, running: dict[str, float], results_dir: Path) -> None:
        """``snapshot``: the result document as JSON; ``running``: PRPs started and not
        finished, with the time the controller saw them start."""
        with self._cond:
            self._pending = (snapshot, running, results_dir)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                assert self._pending is not None
                snapshot, running, results_dir = self._pending
                self._pending = None
            start = time.monotonic()
            try:
                live = live_prps(running, results_dir, self.serial)
                write_report(self.path, json.loads(snapshot), graph=self.graph, live=live)
            except Exception as exc:  # a page that cannot be written must not end the batch
                self.error = f"{type(exc).__name__}: {exc}"
            gap = GAP * (time.monotonic() - start)
            with self._cond:
                if not self._closed:
                    self._cond.wait(timeout=min(gap, MAX_GAP))


def live_prps(
    running: dict[str, float], results_dir: Path, serial: bool
) -> dict[str, dict[str, Any]]:
    """PRPs started and not finished: when they started, and their heartbeat if any (its
    worker, phase and attempt). In a serial run a PRP runs on ``main`` before it beats."""
    from pytest_prp.base.ids import batch_of
    from pytest_prp.base.timestamps import iso
    from pytest_prp.records.heartbeat import heartbeat_path

    found: dict[str, dict[str, Any]] = {}
    for prp_id, started in running.items():
        beat: dict[str, Any] = {"started_at": iso(started)}
        if serial:
            beat["worker"] = "main"
        path = heartbeat_path(results_dir, batch_of(prp_id), prp_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("status") is None:
            beat.update({k: data[k] for k in ("worker", "phase", "attempt") if k in data})
        found[prp_id] = beat
    return found


class HtmlReport:
    """Controller-only: has the HTML report rewritten as the batch result changes."""

    def __init__(self, config: pytest.Config, results: BatchResults, target: Path) -> None:
        self.config = config
        self.results = results
        self.target = target
        self.started: dict[str, float] = {}  # PRP id -> when the controller saw it start
        self.written: Path | None = None
        self.error: str | None = None  # why a write failed
        self.writer: ReportWriter | None = None
        self._graph: dict[str, tuple[str, ...]] | None = None

    @property
    def serial(self) -> bool:
        """No xdist workers: a PRP that started runs here, before its heartbeat says so."""
        if not self.config.pluginmanager.has_plugin("xdist"):
            return True
        return bool(self.config.getvalue("dist") == "no")

    @property
    def path(self) -> Path:
        if self.target == DEFAULT_REPORT:
            return default_report_path(self.results.results_dir, self.results.label)
        return self.target

    def graph(self) -> dict[str, tuple[str, ...]]:
        """Every PRP's dependencies, also of those that have not reported: from the plan (a
        serial run) or, on an xdist controller, from the files the scheduler has read."""
        if not self._graph:  # (an xdist controller learns its PRPs from the first worker)
            from pytest_prp.keys import PLAN

            plan = self.config.stash.get(PLAN, None)
            if plan is not None:
                self._graph = {p.id: tuple(p.dependencies) for p in plan.prps}
            else:
                from pytest_prp.keys import GRAPH_LOADER
                from pytest_prp.plan.prp_info import file_graph_loader

                # The scheduler's loader: it has read the files already.
                load = self.config.stash.setdefault(
                    GRAPH_LOADER, file_graph_loader(self.config.rootpath)
                )
                infos = [load(nodeid) for nodeid in self.results.expected]
                self._graph = {i.id: tuple(i.dependencies) for i in infos if i is not None}
        return self._graph

    def update(self) -> None:
        """Hand the writer the batch as it stands now."""
        path = self.path
        if self.writer is None or self.writer.path != path:
            if self.writer is not None:
                self.writer.close()
            self.writer = ReportWriter(path, self.graph(), self.serial)
        running = {
            prp_id: started
            for prp_id, started in self.started.items()
            if self.results.results.get(prp_id, {}).get("status", PENDING) in UNFINISHED
        }
        snapshot = json.dumps(self.results.document(), default=str, separators=(",", ":"))
        self.writer.submit(snapshot, running, self.results.results_dir)
        self.written = path

    def finish(self) -> None:
        """The final page, written by the controller once the writer has stopped."""
        if self.writer is not None:
            self.writer.close()  # its errors, if any, the last write meets again
        error = None
        path = self.path
        try:
            write_report(path, self.results.document(), graph=self.graph())
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.written = path
        self.error = error

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        prp_id = nodeid.rsplit("::", 1)[-1]
        if "::" in nodeid and prp_id.startswith("PRP-"):
            self.started[prp_id] = time.time()
            self.update()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None]:
        result = yield  # after the batch result took the report in
        if report.when == "teardown" and getattr(report, "prp", None):
            self.update()
        return result

    @pytest.hookimpl(trylast=True)  # after the batch result's final state, before the summary
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.results.results:
            self.finish()
        elif self.writer is not None:
            self.writer.close()

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.error is not None:
            terminalreporter.write_line(
                f"Report: {self.written} could not be written: {self.error}", red=True
            )
        elif self.written is not None:
            terminalreporter.write_line(f"Report: {self.written}")
