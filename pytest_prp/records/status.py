"""``prp-status`` (or ``python -m pytest_prp status``): how a batch is doing, from another terminal.

It reads the batch result JSON (``<results_dir>/batches/batch-<batch>.result.json``, rewritten
after every PRP) and the heartbeats (``<results_dir>/heartbeats/<batch>/<id>.json``) and prints
one line per PRP: finished ones with their status, running ones with their phase, current step
or gate, elapsed time and the age of their last heartbeat. A running PRP is marked ``stalled``
when its heartbeat is older than three intervals, or when its process is gone (checked only for
heartbeats written on this machine).

Time left is an estimate: for every PRP not finished, its ``estimated_hours`` (from its
heartbeat, its JSON entry or the JSON's optional ``planned`` map) minus the time it has run so
far; without one, the average time of the PRPs that finished in this batch. The sum is divided
by the number of workers seen in the running heartbeats.

Heartbeats older than the result JSON's ``started_at`` belong to an earlier run and are left
out; heartbeats started after its ``finished_at`` belong to a new run that has not written its
result JSON yet, which is then shown from its heartbeats alone.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_prp.base.ids import batch_id_problem, natural_key
from pytest_prp.base.naming import batch_folder, result_path, result_paths
from pytest_prp.records.heartbeat import (
    describe_position,
    format_duration,
    heartbeat_dir,
    parse_time,
    read_heartbeats,
)
from pytest_prp.records.record import PENDING, RUNNING, WORKED, entries, read_result
from pytest_prp.supervise.leftovers import pid_alive
from pytest_prp.workspace.merge_queue import merge_notes

DEFAULT_RESULTS_DIR = Path(".ce/orchestration")
STALE_INTERVALS = 3
WATCH_SECONDS = 2.0
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

    @property
    def done(self) -> bool:
        return self.finished_at is not None


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


def _beats_for(
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


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    """An int, or a string of one (JSON object keys, such as stage numbers, are strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _stall(beat: dict[str, Any], now: float, host: str) -> str | None:
    """Why a running PRP's heartbeat looks dead, or None."""
    pid = _integer(beat.get("pid"))
    if pid is not None and beat.get("host", host) == host and not pid_alive(pid):
        return f"process {pid} is gone"
    updated = parse_time(beat.get("updated_at"))
    interval = _number(beat.get("interval")) or 30.0
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
    state = PrpState(
        prp_id=prp_id,
        status=str(status),
        stage=_integer(entry.get("stage")),
        title=entry.get("title"),
        elapsed_seconds=_number(entry.get("elapsed_seconds")),
        cost_usd=_number(entry.get("cost_usd")),
        estimated_hours=_number(entry.get("estimated_hours")),
        # What its merge went through (redone, collides with ...), then its first error.
        error="; ".join([*merge_notes(entry), *(entry.get("errors") or [])[:1]]) or None,
    )
    if beat is not None:
        state.phase = beat.get("phase")
        state.attempt = _integer(beat.get("attempt"))
        state.pid = _integer(beat.get("pid"))
        state.worker = beat.get("worker")
        state.last_output = beat.get("last_output")
        if state.estimated_hours is None:
            state.estimated_hours = _number(beat.get("estimated_hours"))
        if state.cost_usd is None:
            state.cost_usd = _number(beat.get("cost_usd"))
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
    beats = _beats_for(results_dir, batch, document)
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
    for prp_id in sorted(set(found) | set(beats), key=natural_key):
        view.prps.append(_state(prp_id, found.get(prp_id), beats.get(prp_id), view.done, now, host))
    if not view.done:
        for prp_id in sorted(set(planned) - set(found) - set(beats), key=natural_key):
            plan = planned[prp_id]
            view.prps.append(
                PrpState(
                    prp_id=prp_id,
                    status=PENDING,
                    stage=_integer(plan.get("stage")),
                    estimated_hours=_number(plan.get("estimated_hours")),
                )
            )
    return view


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
    ended = parse_time(view.finished_at) if view.finished_at else view.now
    return {
        "total": len(view.prps),
        "by_status": dict(sorted(counts.items())),
        "stalled": sum(1 for p in view.prps if p.stalled),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "elapsed_seconds": None if started is None or ended is None else round(ended - started, 3),
    }


# --- showing -----------------------------------------------------------------------------


def _ago(seconds: float | None) -> str:
    return "" if seconds is None else f"{format_duration(seconds)} ago"


def _shorten(text: str | None, limit: int) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _state_line(view: BatchView) -> str:
    if view.done:
        how = "interrupted" if view.interrupted else "finished"
        return f"{how} at {view.finished_at}"
    return f"running since {view.started_at}" if view.started_at else "running"


def render_table(view: BatchView) -> str:
    """The status view as text: a header, one row per PRP, totals and the estimate."""
    header = f"Batch {view.batch_id}"
    if view.integration_branch:
        header += f" ({view.integration_branch})"
    lines = [f"{header}: {_state_line(view)}"]
    columns = ("PRP", "STATUS", "WHERE", "ELAPSED", "BEAT", "COST", "NOTE")
    rows = []
    for prp in view.prps:
        note = ""
        if prp.stalled:
            note = f"STALLED: {prp.stalled_reason}"
        elif prp.status == RUNNING and prp.last_output:
            said = _shorten(prp.last_output, 60)
            note = f"output {_ago(prp.last_output_age_seconds)}: {said}"
        elif prp.error:
            note = _shorten(prp.error, 70)
        rows.append(
            (
                prp.prp_id,
                prp.status,
                prp.where or "",
                "" if prp.elapsed_seconds is None else format_duration(prp.elapsed_seconds),
                _ago(prp.beat_age_seconds) if prp.status == RUNNING else "",
                "" if prp.cost_usd is None else f"${prp.cost_usd:.4f}",
                note,
            )
        )
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    lines.append(_totals_line(view))
    if view.final_check is not None:
        from pytest_prp.records.final_check_view import lines as final_check_lines

        lines.extend(final_check_lines(view.final_check))
    if not view.done:
        guess = estimate(view)
        if guess.seconds_left is None:
            lines.append(f"Estimated time left: unknown ({guess.method})")
        else:
            left = format_duration(guess.seconds_left)
            lines.append(f"Estimated time left: ~{left} ({guess.method})")
    return "\n".join(lines)


def _totals_line(view: BatchView) -> str:
    t = totals(view)
    counts = ", ".join(f"{n} {status}" for status, n in t["by_status"].items())
    text = f"Totals: {t['total']} PRPs" + (f": {counts}" if counts else "")
    if t["stalled"]:
        text += f" ({t['stalled']} stalled)"
    if t["cost_usd"] is not None:
        text += f"; cost ${t['cost_usd']:.4f}"
    if t["elapsed_seconds"] is not None:
        text += f"; elapsed {format_duration(t['elapsed_seconds'])}"
    return text


def view_document(view: BatchView) -> dict[str, Any]:
    """The status view as JSON (``--json``)."""
    guess = estimate(view)
    return {
        "batch_id": view.batch_id,
        "integration_branch": view.integration_branch,
        "started_at": view.started_at,
        "finished_at": view.finished_at,
        "interrupted": view.interrupted,
        "running": not view.done,
        "prps": [asdict(p) for p in view.prps],
        "totals": totals(view),
        "estimate": {"seconds_left": guess.seconds_left, "method": guess.method},
        **({"final_check": view.final_check} if view.final_check is not None else {}),
    }


# --- the command -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prp-status",
        description="Show how a pytest-prp batch is doing, from its result JSON and heartbeats.",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"where pytest-prp writes results (default: {DEFAULT_RESULTS_DIR} in this "
        "directory or the nearest one above it, up to the repository's root)",
    )
    parser.add_argument("--batch", help="the batch to show (default: the latest one)")
    parser.add_argument("--watch", action="store_true", help="refresh until the batch has finished")
    parser.add_argument(
        "--every",
        type=float,
        default=WATCH_SECONDS,
        metavar="SECONDS",
        help=f"refresh interval of --watch (default {WATCH_SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--html",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the batch's HTML report from its result JSON instead (default: "
        "batches/batch-<batch>.html in the results directory)",
    )
    return parser.parse_args(list(argv))


def write_html(results_dir: Path, batch: str, target: str) -> int:
    """``--html``: the report of a batch, rebuilt from its result JSON (and, while it runs,
    the heartbeats of its running PRPs), as ``--prp-report`` writes it during the run."""
    from pytest_prp.records.report_html import default_report_path, write_report

    document = read_result(result_path(results_dir, batch))
    if document is None:
        print(
            f"prp-status: no result JSON of batch {batch} in {results_dir}: "
            f"{result_path(results_dir, batch)}",
            file=sys.stderr,
        )
        return 1
    path = Path(target) if target else default_report_path(results_dir, batch)
    live: dict[str, dict[str, Any]] = {}
    if not document.get("finished_at"):
        for prp_id, beat in _beats_for(results_dir, batch, document).items():
            if beat.get("status") is None:  # still running
                live[prp_id] = beat
    try:
        write_report(path, document, live=live)
    except OSError as exc:
        print(f"prp-status: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    print(f"prp-status: report written to {path}")
    return 0


def _show(view: BatchView, as_json: bool, clear: bool) -> None:
    if as_json:
        text = json.dumps(view_document(view), separators=(",", ":"))
    else:
        text = render_table(view)
    if clear:
        text = "\x1b[H\x1b[2J" + text
    print(text, flush=True)


def find_results_dir(start: Path) -> Path:
    """``.ce/orchestration`` of ``start`` or of the nearest directory above it that has one,
    looking no higher than the repository's root (as git finds its root from a subdirectory);
    ``start``'s own when there is none (for the message saying so)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / DEFAULT_RESULTS_DIR).is_dir():
            return folder / DEFAULT_RESULTS_DIR
        if (folder / ".git").exists():
            break
    return DEFAULT_RESULTS_DIR


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results_dir: Path = args.results_dir or find_results_dir(Path.cwd())
    batch = args.batch.removeprefix("batch-") if args.batch else latest_batch(results_dir)
    problem = batch_id_problem(batch) if batch else None
    if problem:  # it would name a file outside the results directory
        print(f"prp-status: --batch {batch!r:.60} {problem}", file=sys.stderr)
        return 2
    if args.html is not None and batch:
        return write_html(results_dir, batch, args.html)
    view = load_view(results_dir, batch) if batch else None
    if view is None:
        what = f"batch {batch}" if args.batch else "any batch"
        print(
            f"prp-status: no result JSON or heartbeats of {what} in {results_dir}",
            file=sys.stderr,
        )
        return 1
    clear = args.watch and not args.json and sys.stdout.isatty()
    try:
        _show(view, args.json, clear)
        while args.watch and not view.done:
            time.sleep(max(args.every, 0.1))
            view = load_view(results_dir, str(batch)) or view
            _show(view, args.json, clear)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # prp-status | head
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
