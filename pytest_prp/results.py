"""The batch result: the JSON that scripts and the status view read, and the terminal summary.

Controller-only, as junitxml: it collects what the reports say of each PRP (``report.prp``,
from this process or an xdist worker) and writes ``batches/batch-<batch>.result.json``
atomically after every PRP.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_prp.ids import natural_key
from pytest_prp.jsonfile import write_json_atomically

FAILED_STATUSES = ("failed_gates", "failed", "failed_merge")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def prepare_results_dir(results_dir: Path) -> None:
    """Create the results directory so that it ignores itself: ``git status`` in the user's
    checkout must not change because a batch ran."""
    results_dir.mkdir(parents=True, exist_ok=True)
    ignore = results_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by pytest-prp: results and logs are not sources\n*\n")


class BatchResults:
    """Controller-only: collects PRP results from reports, writes the JSON, prints the summary."""

    def __init__(self, config: pytest.Config, results_dir: Path) -> None:
        self.config = config
        self.results_dir = results_dir
        self.started_at = _now()
        self.started = time.monotonic()
        self.results: dict[str, dict[str, Any]] = {}
        self.finished_at: str | None = None
        self.interrupted = False
        self.started_prps: dict[str, str] = {}  # PRP id -> node id, as items start
        self.expected: list[str] = []  # node ids of the PRPs this run was to run
        self.progress: Any = None
        self._facts: tuple[dict[str, int], dict[str, float | None]] | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.expected = [item.nodeid for item in session.items if _is_prp_nodeid(item.nodeid)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        # Under xdist the controller never collects: the first worker's collection says what
        # runs (the scheduler rejects workers whose collection differs from it).
        if not self.expected:
            self.expected = [nodeid for nodeid in ids if _is_prp_nodeid(nodeid)]

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        if _is_prp_nodeid(nodeid):
            if not self.started_prps:
                self._announce()
            self.started_prps[nodeid.rsplit("::", 1)[-1]] = nodeid
            if self.progress is None:
                self._start_progress()

    def _announce(self) -> None:
        """When the first PRP starts: every PRP of the run as ``pending``, written at once,
        so that a watcher sees the whole batch from the start."""
        for nodeid in self.expected:
            prp_id = nodeid.rsplit("::", 1)[-1]
            if prp_id not in self.results:
                entry = self._interrupted_entry(prp_id, None)
                entry["status"], entry["errors"] = "pending", []
                self.results[prp_id] = entry
        if self.results:
            self.write()

    def _start_progress(self) -> None:
        from pytest_prp.plugin import SETTINGS
        from pytest_prp.progress import ProgressPrinter

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            self.progress = False
            return
        interval = self.config.stash[SETTINGS].heartbeat
        self.progress = ProgressPrinter(reporter, self.results_dir, interval)
        self.progress.start()

    @property
    def branch(self) -> str:
        branches = {r["integration_branch"] for r in self.results.values()} - {""}
        return branches.pop() if len(branches) == 1 else ", ".join(sorted(branches))

    @property
    def label(self) -> str:
        """The batch id when the run holds one batch (as the branch), else ``integration``."""
        batches = {r["batch"] for r in self.results.values()}
        if not batches:  # nothing finished yet: what the command line asked for
            from pytest_prp.plugin import SETTINGS

            batches = set(self.config.stash[SETTINGS].selection.batches)
        if len(batches) == 1 and None not in batches:
            return str(batches.pop())
        return "integration"

    @property
    def path(self) -> Path:
        return self.results_dir / "batches" / f"batch-{self.label}.result.json"

    @pytest.hookimpl(trylast=True)  # after the --lf plugin forgot skipped items
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        prp = getattr(report, "prp", None)
        if not prp and report.failed and _is_prp_nodeid(report.nodeid):
            # No PRP data on it: the process running the PRP died (a crashed xdist worker).
            prp_id = report.nodeid.rsplit("::", 1)[-1]
            prp = self._interrupted_entry(prp_id, self.results.get(prp_id))
            last = str(report.longrepr).strip().splitlines()[-1:] if report.longrepr else []
            prp["status"], prp["errors"] = "failed", last or ["the process running it died"]
        if not prp:
            return
        self.results[prp["prp_id"]] = prp
        if report.skipped and prp["status"] == "blocked":
            self._remember_for_lf(report)
        if report.when == "teardown":
            self.write()

    def _remember_for_lf(self, report: pytest.TestReport) -> None:
        """A blocked PRP is work left undone: ``--lf`` reruns it with what blocked it."""
        lfplugin = self.config.pluginmanager.get_plugin("lfplugin")
        lastfailed = getattr(lfplugin, "lastfailed", None)
        if isinstance(lastfailed, dict):
            # pytest 9 keys by NodeId (report.id), earlier versions by the nodeid string.
            lastfailed[getattr(report, "id", report.nodeid)] = True

    def _interrupted_entry(self, prp_id: str, entry: dict[str, Any] | None) -> dict[str, Any]:
        """What is known of a PRP cut short before it reported: from the plan, when this
        process planned (a serial run), else (an xdist controller) from the PRP files."""
        from pytest_prp.execution import EXECUTION
        from pytest_prp.plugin import PLAN

        plan = self.config.stash.get(PLAN, None)
        execution = self.config.stash.get(EXECUTION, None)
        if plan is not None:
            stage = plan.stages.get(prp_id, 0)
            prp = next((p for p in plan.prps if p.id == prp_id), None)
            hours = prp.estimated_hours if prp is not None else None
        else:
            stages, estimates = self._unplanned()
            stage, hours = stages.get(prp_id, 0), estimates.get(prp_id)
        branch = execution.branch if execution is not None else self._unplanned_branch()
        base = _interrupted_entry_base(prp_id, stage, branch)
        base["estimated_hours"] = hours
        base.update(entry or {})
        base["status"] = "interrupted"
        base["errors"] = [*base["errors"], "interrupted"]
        return base

    def _unplanned(self) -> tuple[dict[str, int], dict[str, float | None]]:
        """Stages and estimates of the run's PRPs read from their files' frontmatter, as the
        scheduler reads them: an xdist controller never collects or plans (computed once)."""
        if self._facts is None:
            from pytest_prp.planning import stages_of
            from pytest_prp.scheduler import shared_graph_loader

            load = shared_graph_loader(self.config)  # the scheduler has read them already
            infos = [info for info in map(load, self.expected) if info is not None]
            graph = {info.id: list(info.dependencies) for info in infos}
            self._facts = stages_of(graph), {info.id: info.estimated_hours for info in infos}
        return self._facts

    def _unplanned_branch(self) -> str:
        """The integration branch as the workers name it, for PRPs none of them reported."""
        from pytest_prp.execution import integration_branch_name
        from pytest_prp.ids import batch_of
        from pytest_prp.plugin import SETTINGS

        batches = (batch_of(nodeid.rsplit("::", 1)[-1]) for nodeid in self.expected)
        return integration_branch_name(self.config.stash[SETTINGS], batches)

    def summary(self) -> dict[str, Any]:
        statuses = [r["status"] for r in self.results.values()]
        total = len(statuses)
        success = statuses.count("success")
        earlier = statuses.count("completed_earlier")
        return {
            "total": total,
            "success": success,
            "failed": sum(statuses.count(s) for s in FAILED_STATUSES),
            "blocked": statuses.count("blocked"),
            "unverified": statuses.count("unverified"),
            "completed_earlier": earlier,
            "skipped_budget": statuses.count("skipped_budget"),
            "not_started": statuses.count("not_started"),
            "pending": statuses.count("pending"),
            "interrupted": statuses.count("interrupted"),
            # Work already done counts as done: a resumed batch is not a worse batch.
            "success_rate": round((success + earlier) / total, 3) if total else 0.0,
            "elapsed_seconds": round(time.monotonic() - self.started, 3),
            "cost_usd": _sum_cost(self.results.values()),
            "tokens": _sum_tokens(self.results.values()),
            "cost_by_stage": {
                stage: _sum_cost(e for e in self.results.values() if str(e["stage"]) == stage)
                for stage in sorted({str(e["stage"]) for e in self.results.values()}, key=int)
            },
        }

    def document(self) -> dict[str, Any]:
        stages: dict[str, dict[str, Any]] = {}
        for prp_id in sorted(self.results, key=natural_key):
            entry = self.results[prp_id]
            stages.setdefault(str(entry["stage"]), {})[prp_id] = entry
        ordered = {k: stages[k] for k in sorted(stages, key=int)}
        return {
            "batch_id": self.label,
            "integration_branch": self.branch,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "budget_usd": self._budget(),
            "stages": ordered,
            "summary": self.summary(),
        }

    def _budget(self) -> float | None:
        from pytest_prp.plugin import SETTINGS

        return self.config.stash[SETTINGS].budget_usd

    def write(self, final: bool = False) -> None:
        """Rewritten after every PRP on one line (cheap); indented once the run is over."""
        prepare_results_dir(self.results_dir)
        write_json_atomically(self.path, self.document(), compact=not final)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.progress:
            self.progress.stop()
        self.finished_at = _now()
        self.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if self.results or self.interrupted:
            # -x, --maxfail, Ctrl-C: PRPs that never started are listed, not silently missing.
            for nodeid in self.expected:
                prp_id = nodeid.rsplit("::", 1)[-1]
                waiting = self.results.get(prp_id, {}).get("status", "pending") == "pending"
                if waiting and prp_id not in self.started_prps:
                    never = self._interrupted_entry(prp_id, None)
                    never["status"], never["errors"] = "not_started", []
                    self.results[prp_id] = never
        if self.interrupted:
            # PRPs cut short: recorded as such, so that a watcher knows they are not running.
            for prp_id in self.started_prps:
                known = self.results.get(prp_id)
                if known is None or known["status"] in ("pending", "running"):
                    self.results[prp_id] = self._interrupted_entry(prp_id, known)
        if self.results or self.interrupted:
            self.write(final=True)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        tr = terminalreporter
        tr.section("PRP batch summary")
        by_stage: dict[int, list[dict[str, Any]]] = {}
        for entry in self.results.values():
            by_stage.setdefault(int(entry["stage"]), []).append(entry)
        costs = self.summary()["cost_by_stage"]
        for stage in sorted(by_stage):
            cost = costs.get(str(stage))
            tr.write_line(f"Stage {stage}" + (f"  (${cost:.4f})" if cost is not None else ""))
            for entry in sorted(by_stage[stage], key=lambda e: natural_key(e["prp_id"])):
                tr.write_line("  " + _summary_line(entry))
                for error in entry["errors"][:2]:
                    tr.write_line(f"      {error}")
        s = self.summary()
        tr.write_line(
            f"Totals: {s['total']} PRPs, {s['success']} success, {s['failed']} failed, "
            f"{s['blocked']} blocked, {s['unverified']} unverified, "
            f"{s['completed_earlier']} completed earlier"
            + (f", {s['skipped_budget']} over budget" if s["skipped_budget"] else "")
            + (f", {s['not_started']} not started" if s["not_started"] else "")
            + (f", {s['interrupted']} interrupted" if s["interrupted"] else "")
            + "; success rate "
            f"{s['success_rate']:.0%}; {s['elapsed_seconds']:.1f} s"
            + (f"; cost ${s['cost_usd']:.4f}" if s["cost_usd"] is not None else "")
        )
        tr.write_line(f"Results: {self.path}")
        if self.branch:
            tr.write_line(
                f"Integration branch: {self.branch} (merge it with: git merge {self.branch})"
            )


def _sum_cost(entries: Any) -> float | None:
    costs = [e["cost_usd"] for e in entries if e.get("cost_usd") is not None]
    return round(sum(costs), 6) if costs else None


def _is_prp_nodeid(nodeid: str) -> bool:
    return "::" in nodeid and nodeid.rsplit("::", 1)[-1].startswith("PRP-")


def _interrupted_entry_base(prp_id: str, stage: int, branch: str) -> dict[str, Any]:
    from pytest_prp.ids import batch_of

    return {
        "prp_id": prp_id,
        "batch": batch_of(prp_id),
        "integration_branch": branch,
        "stage": stage,
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


def _sum_tokens(entries: Any) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for entry in entries:
        for key, value in (entry.get("tokens") or {}).items():
            total[key] = total.get(key, 0) + int(value)
    return total or None


def _summary_line(entry: dict[str, Any]) -> str:
    parts = [
        f"{entry['prp_id']:<14}",
        f"{entry['status']:<17}",
        f"{entry['elapsed_seconds']:6.1f} s",
        f"gates {entry['gates_passed']}/{entry['gates_executable']}",
    ]
    if entry["gates_unverified"]:
        parts.append(f"unverified {entry['gates_unverified']}")
    if len(entry.get("attempts") or []) > 1:
        parts.append(f"attempts {len(entry['attempts'])}")
    if entry.get("cost_usd") is not None:
        parts.append(f"${entry['cost_usd']:.4f}")
    if entry.get("model"):
        parts.append(f"model {entry['model']}")
    if entry.get("worktree"):
        parts.append(f"worktree {entry['worktree']}")
    return "  ".join(parts)
