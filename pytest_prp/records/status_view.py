"""How a batch is doing, read from its files: the model behind ``prp-status``.

It reads the batch result JSON (``<results_dir>/batches/batch-<batch>.result.json``, rewritten
after every PRP) and the heartbeats (``<results_dir>/heartbeats/<batch>/<id>.json``) into a
``BatchView``: finished PRPs with their status, running ones with their phase, current step or
gate, elapsed time and the age of their last heartbeat. A running PRP is marked ``stalled`` when
its heartbeat is older than three intervals, or when its process is gone (checked only for
heartbeats written on this machine). A result JSON without ``finished_at`` whose writer
(``controller``: pid and host) is gone belongs to a run that died before it could record its end
(killed, or a full disk): the batch is shown interrupted, never running.

Time left is an estimate: for every PRP not finished, its ``estimated_hours`` (from its
heartbeat, its JSON entry or the JSON's optional ``planned`` map) minus the time it has run so
far; without one, the average time of the PRPs that finished in this batch. The sum is divided
by the number of workers seen in the running heartbeats.

Heartbeats older than the result JSON's ``started_at`` belong to an earlier run and are left
out; heartbeats started after its ``finished_at`` belong to a new run that has not written its
result JSON yet, which is then shown from its heartbeats alone. ``status_table`` shows a view,
``status`` is the command.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_prp.base.ids import natural_key
from pytest_prp.base.naming import batch_folder, result_path, result_paths
from pytest_prp.base.timestamps import parse_time
from pytest_prp.records.heartbeat import (
    describe_position,
    format_duration,
    heartbeat_dir,
    read_heartbeats,
)
from pytest_prp.records.record import (
    NOT_STARTED,
    PENDING,
    RUNNING,
    WORKED,
    entries,
    read_int,
    read_number,
    read_result,
)
from pytest_prp.supervise.leftovers import pid_alive, process
from pytest_prp.workspace.merge_queue import merge_notes
from pytest_prp.workspace.merge_stack import stack_note

STALE_INTERVALS = 3
# Not a status of the record: the view's word for a PRP still running when its run ended.
LEFT_RUNNING = "unfinished"


@dataclass
class PrpState:
    """One PRP as the status view shows it."""

    prp_id: str
    status: str  # a record's status (``record``), or "unfinished" (its run ended meanwhile)
    stage: int | None = None
    title: str | None = None
    phase: str | None = None
    where: str | None = None  # "step 2/5 \"Phase 2\"" while running
    attempt: int | None = None
    elapsed_seconds: float | None = None
    cost_usd: float | None = None
    beat_age_seconds: float | None = None
    last_output: str | None = None
    last_output_age_seconds: float | None = None
    stalled: bool = False
    stalled_reason: str | None = None
    pid: int | None = None
    worker: str | None = None
    estimated_hours: float | None = None
    error: str | None = None  # the first error of a failed PRP

    @property
    def finished(self) -> bool:
        return self.status not in (RUNNING, PENDING)


@dataclass
class BatchView:
    batch_id: str
    integration_branch: str | None
    started_at: str | None
    finished_at: str | None
    interrupted: bool
    prps: list[PrpState] = field(default_factory=list)
    now: float = 0.0
    final_check: dict[str, Any] | None = None  # the result's block (--prp-final-check)
    # Why the batch is over though its result never said so (its run died unwritten), or None.
    ended: str | None = None

    @property
    def done(self) -> bool:
        return self.finished_at is not None or self.ended is not None


# --- reading -----------------------------------------------------------------------------


def known_batches(results_dir: Path) -> dict[str, float]:
    """Every batch with a result JSON or heartbeats, with the time it last changed."""
    found: dict[str, float] = {}

    def seen(batch: str, path: Path) -> None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        found[batch] = max(found.get(batch, 0.0), mtime)

    for batch, path in result_paths(results_dir).items():
        seen(batch, path)
    root = heartbeat_dir(results_dir)
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        folders = []
    for folder in folders:
        for beat in folder.glob("*.json"):
            seen(folder.name, beat)
    return found


def latest_batch(results_dir: Path) -> str | None:
    batches = known_batches(results_dir)
    return max(batches, key=lambda b: batches[b]) if batches else None


def _planned(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The optional ``planned`` key: a list of ids, or ids mapped to {stage, estimated_hours}."""
    planned = document.get("planned")
    if isinstance(planned, list):
        return {str(p): {} for p in planned}
    if isinstance(planned, dict):
        return {str(k): (v if isinstance(v, dict) else {}) for k, v in planned.items()}
    return {}


def beats_for(
    results_dir: Path, batch: str, document: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """This batch's heartbeats, without those left over from an earlier run of it."""
    folders = {batch}
    if document is not None:  # a run of several batches has one heartbeat folder per batch
        folders |= {str(batch_folder(e.get("batch"))) for e in entries(document).values()}
    beats = [b for name in sorted(folders) for b in read_heartbeats(results_dir, name)]
    started = parse_time(document.get("started_at")) if document else None
    if started is not None:
        beats = [b for b in beats if (parse_time(b.get("updated_at")) or 0.0) >= started - 1.0]
    runs = [b for b in beats if b.get("run_id")]
    if runs:  # several runs wrote here: the newest one is the one to show
        newest = max(runs, key=lambda b: parse_time(b.get("updated_at")) or 0.0)
        beats = [b for b in beats if b.get("run_id") == newest["run_id"]]
    return {b["prp_id"]: b for b in beats}


def _stall(beat: dict[str, Any], now: float, host: str) -> str | None:
    """Why a running PRP's heartbeat looks dead, or None."""
    pid = read_int(beat.get("pid"))
    if pid is not None and beat.get("host", host) == host and not pid_alive(pid):
        return f"process {pid} is gone"
    updated = parse_time(beat.get("updated_at"))
    interval = read_number(beat.get("interval")) or 30.0
    if updated is not None and now - updated > STALE_INTERVALS * interval:
        return f"no heartbeat for {format_duration(now - updated)}"
    return None


def _state(
    prp_id: str,
    entry: dict[str, Any] | None,
    beat: dict[str, Any] | None,
    batch_done: bool,
    now: float,
    host: str,
) -> PrpState:
    entry = entry or {}
    status = entry.get("status")
    if status == PENDING and beat is not None:
        status = None  # listed as planned, and it has started since: its heartbeat knows more
    if (not status or status == RUNNING) and beat is not None and beat.get("status"):
        status = beat["status"]
    if not status:
        status = RUNNING
    if status == PENDING and batch_done:
        status = NOT_STARTED  # its run died before it started (a finished run lists none)
    state = PrpState(
        prp_id=prp_id,
        status=str(status),
        stage=read_int(entry.get("stage")),
        title=entry.get("title"),
        elapsed_seconds=read_number(entry.get("elapsed_seconds")),
        cost_usd=read_number(entry.get("cost_usd")),
        estimated_hours=read_number(entry.get("estimated_hours")),
        # What its merge went through (redone, collides with ...), then its first error.
        error="; ".join(
            [*merge_notes(entry), *filter(None, [stack_note(entry)])]
            + (entry.get("errors") or [])[:1]
        )
        or None,
    )
    if beat is not None:
        state.phase = beat.get("phase")
        state.attempt = read_int(beat.get("attempt"))
        state.pid = read_int(beat.get("pid"))
        state.worker = beat.get("worker")
        state.last_output = beat.get("last_output")
        if state.estimated_hours is None:
            state.estimated_hours = read_number(beat.get("estimated_hours"))
        if state.cost_usd is None:
            state.cost_usd = read_number(beat.get("cost_usd"))
        updated = parse_time(beat.get("updated_at"))
        state.beat_age_seconds = None if updated is None else max(now - updated, 0.0)
        last = parse_time(beat.get("last_output_at"))
        state.last_output_age_seconds = None if last is None else max(now - last, 0.0)
    if state.status == RUNNING and beat is not None:
        state.where = describe_position(beat)
        started = parse_time(beat.get("started_at"))
        if started is not None:
            state.elapsed_seconds = max(now - started, 0.0)
        if batch_done:
            state.status = LEFT_RUNNING  # the run ended without finishing it
        else:
            reason = _stall(beat, now, host)
            state.stalled, state.stalled_reason = reason is not None, reason
    elif state.status == RUNNING and batch_done:
        state.status = LEFT_RUNNING
    return state


def load_view(results_dir: Path, batch: str, now: float | None = None) -> BatchView | None:
    """The batch as it stands, or None when it has neither a result JSON nor heartbeats."""
    now = time.time() if now is None else now
    document = read_result(result_path(results_dir, batch))
    beats = beats_for(results_dir, batch, document)
    finished = parse_time(document.get("finished_at")) if document else None
    if finished is not None:
        newer = {k: b for k, b in beats.items() if _started(b) > finished}
        if newer:  # a new run of the batch has begun and not yet written its result JSON
            document, beats = None, newer
    if document is None and not beats:
        return None
    doc = document or {}
    found = entries(doc)
    planned = _planned(doc)
    view = BatchView(
        batch_id=str(doc.get("batch_id") or batch),
        integration_branch=doc.get("integration_branch") or None,
        started_at=doc.get("started_at") or _earliest_start(beats.values()),
        finished_at=doc.get("finished_at") or None,
        interrupted=doc.get("interrupted") is True,
        now=now,
        final_check=doc.get("final_check") if isinstance(doc.get("final_check"), dict) else None,
    )
    host = socket.gethostname()
    if not view.done:
        view.ended = run_gone(document, host) if document else _beats_gone(beats, host)
        view.interrupted = view.interrupted or view.ended is not None
    for prp_id in sorted(set(found) | set(beats), key=natural_key):
        view.prps.append(_state(prp_id, found.get(prp_id), beats.get(prp_id), view.done, now, host))
    if not view.done:
        for prp_id in sorted(set(planned) - set(found) - set(beats), key=natural_key):
            plan = planned[prp_id]
            view.prps.append(
                PrpState(
                    prp_id=prp_id,
                    status=PENDING,
                    stage=read_int(plan.get("stage")),
                    estimated_hours=read_number(plan.get("estimated_hours")),
                )
            )
    return view


def run_gone(document: dict[str, Any], host: str | None = None) -> str | None:
    """Why a result JSON without ``finished_at`` is not a running batch: the process that
    writes it (``controller``) is gone. Known only on the machine it ran on."""
    if document.get("finished_at"):
        return None
    host = socket.gethostname() if host is None else host
    controller = document.get("controller")
    if not isinstance(controller, dict) or controller.get("host") != host:
        return None
    pid = read_int(controller.get("pid"))
    if pid is None:
        return None
    start = read_int(controller.get("start"))
    if pid_alive(pid) and (start is None or _process_start(pid) in (None, start)):
        return None
    # Gone, or its pid now names another process (started at another time): a container
    # restarted, say, and the pid given again.
    return f"its run (process {pid}) ended without recording its end"


def _process_start(pid: int) -> int | None:
    proc = process(pid)
    return proc.start if proc is not None else None


def _beats_gone(beats: dict[str, dict[str, Any]], host: str) -> str | None:
    """A run known by its heartbeats alone (its result JSON never written) whose every
    process, on this machine, is gone: it ended without recording its end."""
    if not beats:
        return None
    pids: set[int] = set()
    for beat in beats.values():
        pid = read_int(beat.get("pid"))
        if pid is None or beat.get("host", host) != host or pid_alive(pid):
            return None
        pids.add(pid)
    which = ", ".join(map(str, sorted(pids)))
    return f"its run (process{'es' if len(pids) > 1 else ''} {which}) ended without a result"


def _started(beat: dict[str, Any]) -> float:
    return parse_time(beat.get("started_at")) or 0.0


def _earliest_start(beats: Iterable[dict[str, Any]]) -> str | None:
    starts = [b["started_at"] for b in beats if parse_time(b.get("started_at")) is not None]
    return min(starts, key=lambda s: parse_time(s) or 0.0) if starts else None


# --- summing up --------------------------------------------------------------------------


@dataclass
class Estimate:
    seconds_left: float | None
    method: str


def estimate(view: BatchView) -> Estimate:
    """Time left: see the module docstring."""
    if view.done:
        return Estimate(0.0, "the batch has finished")
    open_prps = [p for p in view.prps if not p.finished]
    if not open_prps:
        return Estimate(None, "no PRP is running or planned")
    worked = [
        p.elapsed_seconds
        for p in view.prps
        if p.status in WORKED and p.elapsed_seconds is not None and p.elapsed_seconds > 0
    ]
    average = sum(worked) / len(worked) if worked else None
    total = 0.0
    by_hours = by_average = 0
    for prp in open_prps:
        if prp.estimated_hours is not None:
            expected = prp.estimated_hours * 3600
            by_hours += 1
        elif average is not None:
            expected = average
            by_average += 1
        else:
            return Estimate(None, "no estimated_hours and no finished PRP to time yet")
        total += max(expected - (prp.elapsed_seconds or 0.0), 0.0)
    workers = len({p.worker for p in open_prps if p.status == RUNNING and p.worker}) or 1
    parts = []
    if by_hours:
        parts.append(f"estimated_hours of {by_hours} PRP{'s' if by_hours > 1 else ''}")
    if by_average:
        assert average is not None
        parts.append(
            f"average time of {len(worked)} finished PRP{'s' if len(worked) > 1 else ''} "
            f"({format_duration(average)}) for {by_average}"
        )
    method = ", ".join(parts) + f", minus time spent, over {workers} worker"
    return Estimate(total / workers, method + ("s" if workers > 1 else ""))


def totals(view: BatchView) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for prp in view.prps:
        counts[prp.status] = counts.get(prp.status, 0) + 1
    costs = [p.cost_usd for p in view.prps if p.cost_usd is not None]
    started = parse_time(view.started_at)
    # A run that died unrecorded ended at a time nobody wrote down.
    ended = parse_time(view.finished_at) if view.finished_at else None if view.ended else view.now
    return {
        "total": len(view.prps),
        "by_status": dict(sorted(counts.items())),
        "stalled": sum(1 for p in view.prps if p.stalled),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "elapsed_seconds": None if started is None or ended is None else round(ended - started, 3),
    }
