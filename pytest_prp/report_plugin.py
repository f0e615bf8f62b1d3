"""pytest glue of the HTML batch report (``--prp-report``): controller-only, as the result JSON.

It renders ``results.BatchResults.document()`` (the same document the result JSON holds, so the
page and the JSON never disagree) with the plan's dependency graph and the heartbeats of the
PRPs running now, and rewrites the page atomically as PRPs start and finish. A page rendered
in ``cost`` seconds is rewritten at most once every ``THROTTLE * cost`` seconds while the batch
runs (so writing it stays a small share of the controller's time in a batch of hundreds of
quick PRPs), and always at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.options import DEFAULT_REPORT

if TYPE_CHECKING:
    from pytest_prp.results import BatchResults

THROTTLE = 10.0


def default_report_path(results_dir: Path, label: str) -> Path:
    """``<results_dir>/batches/batch-<batch>.html``, beside the result JSON."""
    return results_dir / "batches" / f"batch-{label}.html"


def write_report(
    path: Path,
    document: Mapping[str, Any],
    *,
    graph: Mapping[str, Any] | None = None,
    live: Mapping[str, Mapping[str, Any]] | None = None,
    budget_usd: float | None = None,
) -> None:
    """Render the report of a result document and write it atomically."""
    from pytest_prp.jsonfile import write_text_atomically
    from pytest_prp.report_data import build_view
    from pytest_prp.report_html import render

    view = build_view(
        document,
        graph=graph,
        live=live,
        budget_usd=budget_usd,
        report_dir=path.parent,
        now=time.time(),
    )
    write_text_atomically(path, render(view))


class HtmlReport:
    """Controller-only: rewrites the HTML report as the batch result changes."""

    def __init__(self, config: pytest.Config, results: BatchResults, target: Path) -> None:
        self.config = config
        self.results = results
        self.target = target
        self.started: dict[str, float] = {}  # PRP id -> when the controller saw it start
        self.last_write = 0.0
        self.cost = 0.0  # seconds the last write took
        self.written: Path | None = None
        self._graph: dict[str, tuple[str, ...]] | None = None

    @property
    def path(self) -> Path:
        if self.target == DEFAULT_REPORT:
            return default_report_path(self.results.results_dir, self.results.label)
        return self.target

    def graph(self) -> dict[str, tuple[str, ...]]:
        """Every PRP's dependencies, also of those that have not reported: from the plan (a
        serial run) or, on an xdist controller, from the files the scheduler has read."""
        if not self._graph:  # (an xdist controller learns its PRPs from the first worker)
            from pytest_prp.plugin import PLAN

            plan = self.config.stash.get(PLAN, None)
            if plan is not None:
                self._graph = {p.id: tuple(p.dependencies) for p in plan.prps}
            else:
                from pytest_prp.scheduler import shared_graph_loader

                load = shared_graph_loader(self.config)
                infos = [load(nodeid) for nodeid in self.results.expected]
                self._graph = {i.id: tuple(i.dependencies) for i in infos if i is not None}
        return self._graph

    def live(self) -> dict[str, dict[str, Any]]:
        """PRPs started and not finished: when they started, and their heartbeat if any."""
        from pytest_prp.heartbeat import heartbeat_path, iso
        from pytest_prp.ids import batch_of

        found: dict[str, dict[str, Any]] = {}
        for prp_id, started in self.started.items():
            entry = self.results.results.get(prp_id)
            if entry is not None and entry.get("status") not in ("pending", "running"):
                continue
            beat: dict[str, Any] = {"started_at": iso(started)}
            path = heartbeat_path(self.results.results_dir, batch_of(prp_id), prp_id)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and data.get("status") is None:
                beat.update({k: data[k] for k in ("worker", "phase", "attempt") if k in data})
            found[prp_id] = beat
        return found

    def write(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_write < THROTTLE * self.cost:
            return
        path = self.path
        write_report(
            path,
            self.results.document(),
            graph=self.graph(),
            live={} if final else self.live(),
        )
        self.written = path
        self.last_write = time.monotonic()
        self.cost = self.last_write - now

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        prp_id = nodeid.rsplit("::", 1)[-1]
        if "::" in nodeid and prp_id.startswith("PRP-"):
            self.started[prp_id] = time.time()
            self.write()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None]:
        result = yield  # after the batch result took the report in
        if report.when == "teardown" and getattr(report, "prp", None):
            self.write()
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None]:
        result = yield  # after the batch result's final state
        if self.results.results:
            self.write(final=True)
        return result

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written is not None:
            terminalreporter.write_line(f"Report: {self.written}")
