"""The batch result: each PRP's record collected from the reports, and the JSON written.

Controller-only, as junitxml: it collects what the reports say of each PRP (``report.prp``,
from this process or an xdist worker) and writes ``batches/batch-<batch>.result.json``
atomically after every PRP. What an entry holds and how its status is set is ``record``'s; the
document's stages and summary are ``result_document``'s, the summary printed at the end
``terminal_summary``'s. What the run knows of PRPs that never reported (their stage, estimate,
branch) it is given by the glue (``RunFacts``), so that it imports nothing above itself.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_prp.base.ids import batch_of
from pytest_prp.base.jsonfile import write_json_atomically
from pytest_prp.base.naming import batch_label, integration_branch, result_path
from pytest_prp.base.timestamps import iso
from pytest_prp.records.record import (
    BLOCKED,
    FAILED,
    NOT_STARTED,
    PENDING,
    RATE_LIMITED,
    UNFINISHED,
    earlier_records,
    interrupted_entry,
    mark,
    unreported_entry,
)
from pytest_prp.records.result_document import by_stage, summary_of
from pytest_prp.records.terminal_summary import write_summary

if TYPE_CHECKING:
    from pytest_prp.plan.planning import Plan

# The JSON is rewritten after a PRP only when this many times the last write's duration has
# passed since: in a huge batch of instant PRPs a rewrite (which grows with the batch) must not
# dominate; in any real batch, whose PRPs take longer than this, it is every PRP.
WRITE_SPACING = 20.0


class PrpFacts(Protocol):
    """What a PRP's file says that its entry needs (``prp_info.PrpInfo``)."""

    @property
    def id(self) -> str: ...
    @property
    def dependencies(self) -> Sequence[str]: ...
    @property
    def estimated_hours(self) -> float | None: ...


@dataclass(frozen=True)
class RunFacts:
    """What the batch result is told of the run by the glue that starts it (``plugin``)."""

    results_dir: Path
    heartbeat: float  # seconds between progress lines
    budget_usd: float | None
    selected_batches: Sequence[str]  # --prp-batch: the label before any PRP has reported
    chosen_branch: str | None  # --prp-branch
    verify: bool  # verify mode: no integration branch
    plan: Callable[[], Plan | None]  # this process's plan, when it planned (a serial run)
    branch: Callable[[], str | None]  # this process's integration branch, when it runs PRPs
    load: Callable[[str], PrpFacts | None]  # a PRP's file by node id (the scheduler's loader)


def _controller() -> dict[str, Any]:
    """This process, named for good: pid, host and, where ``/proc`` tells it, its start (clock
    ticks after boot), so that another process given the same pid later is not taken for it."""
    from pytest_prp.supervise.leftovers import process

    me = process(os.getpid())
    named: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    if me is not None:
        named["start"] = me.start
    return named


def _now() -> str:
    # To the millisecond, as heartbeats: the status view compares the two.
    return iso(time.time()) or ""


def prepare_results_dir(results_dir: Path) -> None:
    """Create the results directory so that it ignores itself: ``git status`` in the user's
    checkout must not change because a batch ran."""
    results_dir.mkdir(parents=True, exist_ok=True)
    ignore = results_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by pytest-prp: results and logs are not sources\n*\n")


class BatchResults:
    """Controller-only: collects PRP results from reports, writes the JSON, prints the summary."""

    def __init__(self, config: pytest.Config, facts: RunFacts) -> None:
        self.config = config
        self.facts = facts
        self.results_dir = facts.results_dir
        self.started_at = _now()
        self.started = time.monotonic()
        self.results: dict[str, dict[str, Any]] = {}
        self.finished_at: str | None = None
        self.interrupted = False
        self.started_prps: dict[str, str] = {}  # PRP id -> node id, as items start
        self.expected: list[str] = []  # node ids of the PRPs this run was to run
        self.progress: Any = None
        self._from_files: tuple[dict[str, int], dict[str, float | None]] | None = None
        self.session: pytest.Session | None = None
        self.write_error: str | None = None  # why the JSON could not be written, if so
        self.compact_written = False  # the last write made room by leaving things out
        self._write_reason = ""
        # The block ``final_check_run`` leaves (``--prp-final-check``), before the last write.
        self.final_check: dict[str, Any] | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        self._earlier: dict[str, dict[str, Any]] | None = None  # read at the first write
        self._next_write = 0.0  # monotonic time before which a rewrite is skipped

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
                self.results[prp_id] = mark(self._unreported(prp_id), PENDING, [])
        if self.results:
            self.write()

    def _start_progress(self) -> None:
        from pytest_prp.records.progress import ProgressPrinter

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            self.progress = False
            return
        interval = self.facts.heartbeat
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
            batches = set(self.facts.selected_batches)
        return batch_label(batches)

    @property
    def path(self) -> Path:
        return result_path(self.results_dir, self.label)

    @pytest.hookimpl(trylast=True)  # after the --lf plugin forgot skipped items
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        prp = getattr(report, "prp", None)
        if not prp and report.failed and _is_prp_nodeid(report.nodeid):
            # No PRP data on it: the process running the PRP died (a crashed xdist worker).
            prp_id = report.nodeid.rsplit("::", 1)[-1]
            last = str(report.longrepr).strip().splitlines()[-1:] if report.longrepr else []
            known = self._unreported(prp_id, self.results.get(prp_id))
            prp = mark(known, FAILED, last or ["the process running it died"])
        if not prp:
            return
        self._record(prp)
        if report.skipped and prp["status"] in (BLOCKED, RATE_LIMITED):
            self._remember_for_lf(report)
        if report.when == "teardown":
            self._write_soon()

    def _record(self, prp: dict[str, Any]) -> None:
        self.results[prp["prp_id"]] = prp

    def _write_soon(self) -> None:
        """Rewrite the JSON after a PRP, unless the last rewrite was moments ago (see
        ``WRITE_SPACING``); the final write at the end of the session always happens."""
        now = time.monotonic()
        if now < self._next_write:
            return
        self.write()
        done = time.monotonic()
        self._next_write = done + WRITE_SPACING * (done - now)

    def _remember_for_lf(self, report: pytest.TestReport) -> None:
        """A blocked PRP (or one not started for rate limits) is work left undone: ``--lf``
        reruns it with what blocked it."""
        lfplugin = self.config.pluginmanager.get_plugin("lfplugin")
        lastfailed = getattr(lfplugin, "lastfailed", None)
        if isinstance(lastfailed, dict):
            # pytest 9 keys by NodeId (report.id), earlier versions by the nodeid string.
            lastfailed[getattr(report, "id", report.nodeid)] = True

    def _unreported(self, prp_id: str, known: dict[str, Any] | None = None) -> dict[str, Any]:
        """The entry of a PRP that made no (last) report, its status still to set: from the
        plan, when this process planned (a serial run), else (an xdist controller) from the
        PRP files."""
        stage, hours, branch = self._facts_of(prp_id)
        return unreported_entry(prp_id, stage, branch, hours, known)

    def _interrupted(self, prp_id: str, known: dict[str, Any] | None) -> dict[str, Any]:
        """A PRP cut short before it reported."""
        stage, hours, branch = self._facts_of(prp_id)
        return interrupted_entry(prp_id, stage, branch, hours, known)

    def _facts_of(self, prp_id: str) -> tuple[int, float | None, str]:
        """A PRP's stage, estimated hours and integration branch, as far as the run knows."""
        plan = self.facts.plan()
        stage: int | None = None
        if plan is not None:
            stage = plan.stages.get(prp_id)
            prp = next((p for p in plan.prps if p.id == prp_id), None)
            hours = prp.estimated_hours if prp is not None else None
        else:
            stages, estimates = self._unplanned()
            stage, hours = stages.get(prp_id), estimates.get(prp_id)
        if stage is None:  # not in the plan: the stage its files give it (at least 1)
            stage = self._unplanned()[0].get(prp_id, 1)
        branch = self.facts.branch()
        return stage, hours, branch if branch is not None else self._unplanned_branch()

    def _unplanned(self) -> tuple[dict[str, int], dict[str, float | None]]:
        """Stages and estimates of the run's PRPs read from their files' frontmatter, as the
        scheduler reads them: an xdist controller never collects or plans (computed once)."""
        if self._from_files is None:
            from pytest_prp.plan.planning import stages_of

            infos = [info for info in map(self.facts.load, self.expected) if info is not None]
            graph = {info.id: list(info.dependencies) for info in infos}
            self._from_files = stages_of(graph), {info.id: info.estimated_hours for info in infos}
        return self._from_files

    def _unplanned_branch(self) -> str:
        """The integration branch as the workers name it, for PRPs none of them reported."""
        if self.facts.verify:
            return ""
        batches: Iterable[str | None] = (
            batch_of(nodeid.rsplit("::", 1)[-1]) for nodeid in self.expected
        )
        return integration_branch(self.facts.chosen_branch, batches)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every PRP of the batch: this run's, and those kept from an earlier run."""
        earlier = self._earlier or {}
        if not earlier:
            return self.results
        kept = {k: v for k, v in earlier.items() if k not in self.results}
        return {**kept, **self.results}

    def summary(self, records: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        records = self.records() if records is None else records
        return summary_of(records, round(time.monotonic() - self.started, 3))

    def document(self) -> dict[str, Any]:
        records = self.records()
        return {
            "batch_id": self.label,
            "integration_branch": self.branch,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            # Who writes it: a status view tells a run that died from one that runs.
            "controller": _controller(),
            "budget_usd": self._budget(),
            "stages": by_stage(records),
            "summary": self.summary(records),
            **({"final_check": self.final_check} if self.final_check is not None else {}),
        }

    def _budget(self) -> float | None:
        return self.facts.budget_usd

    def write(self, final: bool = False) -> None:
        """Rewritten after every PRP on one line (cheap); indented once the run is over.

        A batch whose results cannot be written (a full disk) stops after the PRPs in progress,
        interrupted: what passed is merged, the same command resumes once there is room. The
        last write, refused for lack of room, is tried again smaller (one line, then without
        the failed steps' output tails): a result left saying ``finished_at: null`` would show
        the batch as running for ever."""
        try:
            if self._earlier is None:
                self._earlier = earlier_records(self.path)
            prepare_results_dir(self.results_dir)
            write_json_atomically(self.path, self.document(), compact=not final)
        except OSError as exc:
            self.write_error = f"cannot write {self.path}: {exc.strerror or exc}"
            self._write_reason = str(exc.strerror or exc)
            if final:
                self._write_smaller()
            elif self.session is not None:
                from pytest_prp.base.stopping import stop_batch

                reason = f"prp: {self.write_error}; free space and run the same command to resume"
                stop_batch(self.session, reason)
        else:
            self.write_error = None

    def _write_smaller(self) -> None:
        """The last write again, as small as it gets, the run marked interrupted (its record
        is not whole: it is resumed as one). ``written_compact`` says what was left out."""
        self.interrupted = True
        document = self.document()
        for slim in (False, True):
            if slim:
                _drop_tails(document)
            document["written_compact"] = (
                "no room for the full record: one line, without output tails"
                if slim
                else "no room for the full record: one line"
            )
            try:
                write_json_atomically(self.path, document, compact=True)
            except OSError:
                continue
            self.compact_written = True
            return

    # Last: after pytest's own session end has torn down a PRP cut short (which keeps its
    # worktree and writes its final heartbeat).
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.progress:
            self.progress.stop()
        self.finished_at = _now()
        self.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        if not self.started_prps:
            # No PRP started (a selection of nothing, a collection error anywhere): the
            # batch's last result stands, untouched.
            return
        # -x, --maxfail, Ctrl-C: PRPs that never started are listed, not silently missing.
        for nodeid in self.expected:
            prp_id = nodeid.rsplit("::", 1)[-1]
            if prp_id not in self.results:
                self.results[prp_id] = self.never_started(prp_id)
        # Whatever ended the run (Ctrl-C, -x, a plugin that skipped or swallowed a PRP), no PRP
        # is left looking as if it were still waiting or running.
        for prp_id, known in list(self.results.items()):
            if known["status"] not in UNFINISHED:
                continue
            if prp_id in self.started_prps:
                self.results[prp_id] = self._interrupted(prp_id, self._cut_short(known))
            else:
                self.results[prp_id] = self.never_started(prp_id)
        self.write(final=True)
        if self.write_error is not None:
            # Its record is not whole (or not written): resumed as an interrupted run is.
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        elif self.blocked_outside() and session.exitstatus == pytest.ExitCode.OK:
            # Nothing failed, yet selected work could not run: not a green run.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def blocked_outside(self) -> dict[str, list[str]]:
        """Blocked PRPs of this run whose missing dependencies this run does not include
        (left out by -k, -m, --lf, --prp-stage, --prp-id): PRP id -> those dependencies."""
        in_run = {nodeid.rsplit("::", 1)[-1] for nodeid in self.expected} | set(self.results)
        found: dict[str, list[str]] = {}
        for prp_id, entry in self.results.items():
            if entry["status"] == BLOCKED:
                outside = [d for d in entry.get("blocked_by") or [] if d not in in_run]
                if outside:
                    found[prp_id] = outside
        return found

    def _cut_short(self, known: dict[str, Any]) -> dict[str, Any]:
        """A PRP cut short made no last report: its final heartbeat (written by whichever
        process ran it, as it ended) says how long it ran and where its work was kept."""
        from pytest_prp.base.timestamps import parse_time
        from pytest_prp.records.heartbeat import heartbeat_path

        path = heartbeat_path(self.results_dir, known.get("batch"), known["prp_id"])
        try:
            beat = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return known
        began = parse_time(beat.get("started_at")) if isinstance(beat, dict) else None
        if began is None or began < (parse_time(self.started_at) or 0.0) - 1.0:
            return known  # an earlier run's heartbeat
        elapsed = beat.get("elapsed_seconds")
        worktree = beat.get("worktree")
        return {
            **known,
            "elapsed_seconds": elapsed if isinstance(elapsed, (int, float)) else 0.0,
            "worktree": worktree if isinstance(worktree, str) else None,
        }

    def never_started(self, prp_id: str) -> dict[str, Any]:
        """The entry of a PRP of the batch that did not start in this run."""
        return mark(self._unreported(prp_id), NOT_STARTED, [])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results or not self.started_prps:
            return
        records = self.records()
        write_summary(
            terminalreporter,
            records,
            self.summary(records),
            self.blocked_outside(),
            self._results_line(),
            self.branch,
            self.final_check,
        )

    def _results_line(self) -> str:
        """Where the result JSON is; when it could not be written whole, the one line that says
        so, names the file and tells how to resume."""
        if self.write_error is None:
            return str(self.path)
        if self.compact_written:
            what = (
                f"{self.path}, written compact and marked interrupted (the full record: "
                f"{self._write_reason})"
            )
        else:
            what = f"not written ({self.write_error}); the run is interrupted"
        return f"{what}; free space and run the same command to resume"


def _drop_tails(document: dict[str, Any]) -> None:
    """The ends of failed steps' and gates' output, left out of a record short of room (the
    logs have them, as far as they could be written)."""
    for stage in document["stages"].values():
        for entry in stage.values():
            entry.pop("failure_tail", None)
            for attempt in entry.get("attempts") or []:
                for gate in attempt.get("gates") or []:
                    gate.pop("tail", None)


def _is_prp_nodeid(nodeid: str) -> bool:
    return "::" in nodeid and nodeid.rsplit("::", 1)[-1].startswith("PRP-")
