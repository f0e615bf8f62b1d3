"""What the HTML batch report shows: a pure function from a batch result document (the result
JSON, as ``results`` writes it) to a view model. No HTML here (``report_html`` renders it) and no
pytest (``report_plugin`` is the glue), so that a report of any earlier run can be rebuilt from
its JSON and every rule is testable on plain dictionaries.

The document is read defensively: it may come from an older pytest-prp (no timing keys: no
timeline bars), from a run cut short (``pending``, ``interrupted``, ``not_started``), or be
edited by hand. Nothing here trusts a string to be safe HTML; the renderer escapes everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_prp.base.ids import natural_key
from pytest_prp.base.timestamps import parse_time
from pytest_prp.plan.planning import longest_chain
from pytest_prp.records.final_check_view import lines as final_check_lines
from pytest_prp.records.record import (
    BLOCKED,
    COMPLETED_EARLIER,
    DONE,
    FAILED,
    FAILED_GATES,
    FAILED_INTEGRATION,
    FAILED_MERGE,
    INTERRUPTED,
    NOT_STARTED,
    PENDING,
    RAN,
    RUNNING,
    SKIPPED_BUDGET,
    SUCCESS,
    UNFINISHED,
    UNVERIFIED,
    read_int,
    read_number,
)
from pytest_prp.records.record import entries as result_entries

STATUS_LABELS = {
    SUCCESS: "success",
    UNVERIFIED: "unverified",
    FAILED_GATES: "gates failed",
    FAILED: "failed",
    FAILED_MERGE: "merge failed",
    FAILED_INTEGRATION: "integration failed",
    BLOCKED: "blocked",
    COMPLETED_EARLIER: "completed earlier",
    SKIPPED_BUDGET: "over budget",
    INTERRUPTED: "interrupted",
    NOT_STARTED: "not started",
    PENDING: "pending",
    RUNNING: "running",
}
PHASES = ("workspace", "steps", "gates", "merge")


@dataclass(frozen=True)
class GateView:
    index: int | None
    name: str
    passed: bool
    exit_code: int | None
    timed_out: bool
    seconds: float | None
    tail: tuple[str, ...]


@dataclass(frozen=True)
class AttemptView:
    number: int
    gates_passed: int
    gates_failed: int
    gates: tuple[GateView, ...]  # empty in results of pytest-prp before 0.1 reports


@dataclass(frozen=True)
class Bar:
    """One phase of one attempt on the timeline, in seconds from the batch's start."""

    phase: str
    attempt: int
    start: float
    end: float


@dataclass(frozen=True)
class PrpView:
    prp_id: str
    title: str
    stage: int
    status: str
    dependencies: tuple[str, ...]
    critical: bool
    attempts: tuple[AttemptView, ...]
    gates_passed: int
    gates_failed: int
    gates_executable: int
    gates_unverified: int
    errors: tuple[str, ...]
    failure_tail: tuple[str, ...]
    files: tuple[str, ...]  # created, then modified
    files_created: int
    commit: str | None
    cost_usd: float | None
    tokens: Mapping[str, int]
    model: str | None
    worktree: str | None
    log: str | None  # as the result JSON has it
    log_href: str | None  # relative to the report's directory when it has one
    elapsed: float
    worker: str | None
    start: float | None  # seconds from the batch's start; None: no timing recorded
    end: float | None
    bars: tuple[Bar, ...]

    @property
    def label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def has_details(self) -> bool:
        return bool(
            self.errors or self.failure_tail or any(a.gates for a in self.attempts) or self.files
        )


@dataclass(frozen=True)
class StageView:
    stage: int
    prp_ids: tuple[str, ...]
    cost_usd: float | None


@dataclass(frozen=True)
class ReportView:
    batch_id: str
    integration_branch: str
    started_at: str | None
    finished_at: str | None
    interrupted: bool
    prps: tuple[PrpView, ...]  # by stage, then id
    stages: tuple[StageView, ...]
    edges: tuple[tuple[str, str], ...]  # (dependency, dependant), both in the batch
    critical_path: tuple[str, ...]
    critical_unit: str  # "seconds" (as run), "hours" (estimated) or "prps"
    critical_seconds: float  # the run's longest chain of actual times (0 before any ran)
    workers: tuple[str, ...]
    work_seconds: float
    lower_bound_seconds: float  # max(critical path, work / workers)
    wall_seconds: float
    prp_span_seconds: float  # from the first PRP's start to the last one's end
    counts: Mapping[str, int]
    success_rate: float
    cost_usd: float | None
    tokens: Mapping[str, int]
    budget_usd: float | None
    generated_at: float
    notes: tuple[str, ...] = field(default=())
    # The final check's lines (``final_check_view``): its headline, then one per failing gate.
    final_check: tuple[str, ...] = field(default=())
    final_check_passed: bool = True

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def timed(self) -> tuple[PrpView, ...]:
        return tuple(p for p in self.prps if p.start is not None)


# --- reading the document -----------------------------------------------------------------


def _int(value: object, default: int = 0) -> int:
    found = read_int(value)
    return default if found is None else found


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if v is not None)
    return ()


def _tokens(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): _int(v) for k, v in value.items()}


def _gate(record: object) -> GateView | None:
    if not isinstance(record, dict):
        return None
    index = record.get("index")
    return GateView(
        index=_int(index) if index is not None else None,
        name=str(record.get("name") or ""),
        passed=bool(record.get("passed")),
        exit_code=_int(record["exit_code"]) if record.get("exit_code") is not None else None,
        timed_out=bool(record.get("timed_out")),
        seconds=read_number(record.get("seconds")),
        tail=_strings(record.get("tail")),
    )


def _attempts(value: object) -> tuple[AttemptView, ...]:
    if not isinstance(value, list):
        return ()
    found = []
    for n, record in enumerate(value, 1):
        if not isinstance(record, dict):
            continue
        gates = tuple(g for g in map(_gate, record.get("gates") or []) if g is not None)
        found.append(
            AttemptView(
                number=_int(record.get("attempt"), n),
                gates_passed=_int(record.get("gates_passed")),
                gates_failed=_int(record.get("gates_failed")),
                gates=gates,
            )
        )
    return tuple(found)


def _bars(entry: Mapping[str, Any], start: float, end: float) -> tuple[Bar, ...]:
    """The PRP's phases, clipped to its own span; without phases, one bar for the whole PRP."""
    bars = []
    for record in entry.get("phases") or []:
        if not isinstance(record, dict):
            continue
        begin = read_number(record.get("start"))
        if begin is None:
            continue
        stop = read_number(record.get("end"))
        phase_start = min(start + max(begin, 0.0), end)
        phase_end = min(start + stop, end) if stop is not None else end
        bars.append(
            Bar(
                phase=str(record.get("phase") or "steps"),
                attempt=_int(record.get("attempt"), 1),
                start=phase_start,
                end=max(phase_end, phase_start),
            )
        )
    if not bars:
        bars.append(Bar(phase="prp", attempt=1, start=start, end=end))
    return tuple(bars)


def _href(log: str | None, base: Path | None) -> str | None:
    """A link to the log: relative to the report's directory, so the pair can move together."""
    if not log:
        return None
    if base is None:
        return Path(log).as_posix()
    try:
        return Path(os.path.relpath(log, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(log).as_posix()


def build_view(
    document: Mapping[str, Any],
    *,
    graph: Mapping[str, Iterable[str]] | None = None,
    live: Mapping[str, Mapping[str, Any]] | None = None,
    budget_usd: float | None = None,
    report_dir: Path | None = None,
    now: float,
) -> ReportView:
    """The report of one batch result document.

    ``graph``: each PRP's dependencies when known better than the document says (the plan; PRPs
    that have not reported yet carry none). ``live``: heartbeats of PRPs running now, by id
    (``worker``, ``started_at``, ``phase``, ``attempt``): shown running up to ``now``.
    ``report_dir``: where the report goes, for links to the logs. ``now``: ``time.time()``.
    """
    entries = result_entries(dict(document))
    live = live or {}
    started_doc = parse_time(document.get("started_at"))
    finished_doc = parse_time(document.get("finished_at"))
    starts = [
        t for t in (parse_time(e.get("started_at")) for e in entries.values()) if t is not None
    ]
    starts += [t for t in (parse_time(b.get("started_at")) for b in live.values()) if t]
    origin = min([t for t in (started_doc, *starts) if t is not None], default=now)
    horizon = finished_doc if finished_doc is not None else now

    deps_of: dict[str, tuple[str, ...]] = {}
    for prp_id, entry in entries.items():
        known = graph.get(prp_id) if graph is not None else None
        deps_of[prp_id] = tuple(known) if known is not None else _strings(entry.get("dependencies"))
    order = sorted(entries, key=lambda i: (_int(entries[i].get("stage")), natural_key(i)))

    timings: dict[str, tuple[float, float] | None] = {}
    for prp_id in order:
        timings[prp_id] = _span(entries[prp_id], live.get(prp_id), origin, horizon)
    durations = {i: (t[1] - t[0]) if t else 0.0 for i, t in timings.items()}
    spans = [t for t in timings.values() if t is not None]
    ran = {
        i
        for i in order
        if timings[i] is not None and _status(entries[i], live.get(i)) in (*RAN, RUNNING)
    }
    critical, unit = _critical(order, deps_of, entries, durations, ran)
    critical_seconds = sum(durations[i] for i in critical) if unit == "seconds" else 0.0

    prps = tuple(
        _prp_view(i, entries[i], live.get(i), deps_of[i], i in critical, timings[i], report_dir)
        for i in order
    )
    workers = tuple(sorted({p.worker for p in prps if p.worker is not None}, key=natural_key))
    work = sum(durations[i] for i in ran)
    lower = max(critical_seconds, work / max(len(workers), 1)) if ran else 0.0
    stage_ids: dict[int, list[str]] = {}
    for p in prps:
        stage_ids.setdefault(p.stage, []).append(p.prp_id)
    stages = tuple(
        StageView(stage, tuple(ids), _cost(p for p in prps if p.stage == stage))
        for stage, ids in sorted(stage_ids.items())
    )
    ids = set(entries)
    edges = tuple((d, p.prp_id) for p in prps for d in p.dependencies if d in ids)
    counts: dict[str, int] = {}
    for p in prps:
        counts[p.status] = counts.get(p.status, 0) + 1
    done = sum(counts.get(status, 0) for status in DONE)
    tokens: dict[str, int] = {}
    for p in prps:
        for key, value in p.tokens.items():
            tokens[key] = tokens.get(key, 0) + value
    budget = budget_usd if budget_usd is not None else read_number(document.get("budget_usd"))
    block = document.get("final_check")
    return ReportView(
        batch_id=str(document.get("batch_id") or "?"),
        integration_branch=str(document.get("integration_branch") or ""),
        started_at=_text(document.get("started_at")),
        finished_at=_text(document.get("finished_at")),
        interrupted=bool(document.get("interrupted")),
        prps=prps,
        stages=stages,
        edges=edges,
        critical_path=tuple(critical),
        critical_unit=unit,
        critical_seconds=critical_seconds,
        workers=workers,
        work_seconds=work,
        lower_bound_seconds=lower,
        # The document's own times are to the second: a PRP may end after its finished_at.
        wall_seconds=max(horizon - origin, *(t[1] for t in spans), 0.0),
        prp_span_seconds=max(t[1] for t in spans) - min(t[0] for t in spans) if spans else 0.0,
        counts=counts,
        success_rate=done / len(prps) if prps else 0.0,
        cost_usd=_cost(prps),
        tokens=tokens,
        budget_usd=budget,
        generated_at=now,
        final_check=tuple(final_check_lines(block)) if isinstance(block, dict) else (),
        final_check_passed=not isinstance(block, dict) or block.get("passed") is not False,
    )


def _text(value: object) -> str | None:
    return str(value) if value is not None else None


def _status(entry: Mapping[str, Any], beat: Mapping[str, Any] | None) -> str:
    status = str(entry.get("status") or PENDING)
    if beat is not None and status in UNFINISHED:
        return RUNNING
    return status


def _span(
    entry: Mapping[str, Any], beat: Mapping[str, Any] | None, origin: float, horizon: float
) -> tuple[float, float] | None:
    """When the PRP ran, in seconds from ``origin``: from its record, else (running now) from
    its heartbeat up to ``horizon``; None when nothing says."""
    start = parse_time(entry.get("started_at"))
    if start is None and beat is not None and beat.get("worker"):
        # Only once its worker is known (from its heartbeat): a bar must sit on its row.
        start = parse_time(beat.get("started_at"))
    if start is None:
        return None
    end = parse_time(entry.get("finished_at"))
    if end is None:
        elapsed = read_number(entry.get("elapsed_seconds")) or 0.0
        running = beat is not None or entry.get("status") in UNFINISHED
        end = horizon if running else start + elapsed
    return start - origin, max(end, start) - origin


def _critical(
    order: list[str],
    deps: Mapping[str, tuple[str, ...]],
    entries: Mapping[str, Mapping[str, Any]],
    durations: Mapping[str, float],
    ran: set[str],
) -> tuple[list[str], str]:
    """The longest chain: by the times PRPs took in this run once any ran, else as the plan
    view computes it (estimated hours when every PRP has them, else the count)."""
    if ran:
        path, _ = longest_chain(order, deps, {i: durations[i] for i in order})
        return path, "seconds"
    hours = {i: read_number(entries[i].get("estimated_hours")) for i in order}
    if order and all(h is not None for h in hours.values()):
        path, _ = longest_chain(order, deps, {i: h or 0.0 for i, h in hours.items()})
        return path, "hours"
    path, _ = longest_chain(order, deps, dict.fromkeys(order, 1.0))
    return path, "prps"


def _prp_view(
    prp_id: str,
    entry: Mapping[str, Any],
    beat: Mapping[str, Any] | None,
    deps: tuple[str, ...],
    critical: bool,
    timing: tuple[float, float] | None,
    report_dir: Path | None,
) -> PrpView:
    log = _text(entry.get("log"))
    commits = _strings(entry.get("commits"))
    status = _status(entry, beat)
    if timing is None:
        bars: tuple[Bar, ...] = ()
    elif beat is not None and not entry.get("phases"):
        phase = str(beat.get("phase") or "steps")
        attempt = _int(beat.get("attempt"), 1)
        bars = (Bar(phase if phase in PHASES else "steps", attempt, timing[0], timing[1]),)
    else:
        bars = _bars(entry, timing[0], timing[1])
    worker = entry.get("worker") or (beat.get("worker") if beat is not None else None)
    created = _strings(entry.get("files_created"))
    return PrpView(
        prp_id=prp_id,
        title=str(entry.get("title") or ""),
        stage=_int(entry.get("stage")),
        status=status,
        dependencies=deps,
        critical=critical,
        attempts=_attempts(entry.get("attempts")),
        gates_passed=_int(entry.get("gates_passed")),
        gates_failed=_int(entry.get("gates_failed")),
        gates_executable=_int(entry.get("gates_executable")),
        gates_unverified=_int(entry.get("gates_unverified")),
        errors=_strings(entry.get("errors")),
        failure_tail=_strings(entry.get("failure_tail")),
        files=created + _strings(entry.get("files_modified")),
        files_created=len(created),
        commit=commits[-1] if commits else None,
        cost_usd=read_number(entry.get("cost_usd")),
        tokens=_tokens(entry.get("tokens")),
        model=_text(entry.get("model")),
        worktree=_text(entry.get("worktree")),
        log=log,
        log_href=_href(log, report_dir),
        elapsed=read_number(entry.get("elapsed_seconds")) or 0.0,
        worker=(str(worker) if worker else "main") if timing is not None else None,
        start=timing[0] if timing else None,
        end=timing[1] if timing else None,
        bars=bars,
    )


def _cost(prps: Iterable[PrpView]) -> float | None:
    costs = [p.cost_usd for p in prps if p.cost_usd is not None]
    return round(sum(costs), 6) if costs else None


def prp_view_of(entry: Mapping[str, Any]) -> PrpView:
    """One PRP record alone (no batch: no timeline), e.g. for a pytest-html row."""
    prp_id = str(entry.get("prp_id") or "?")
    deps = _strings(entry.get("dependencies"))
    return _prp_view(prp_id, entry, None, deps, False, None, None)
