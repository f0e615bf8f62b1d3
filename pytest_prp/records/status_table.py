"""The status view shown: ``prp-status``'s table and its ``--json`` document.

Both are made from a ``status_view.BatchView``: a header, one row per PRP, the totals and the
estimate of the time left; nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pytest_prp.records.final_check_view import lines as final_check_lines
from pytest_prp.records.heartbeat import format_duration
from pytest_prp.records.record import RUNNING
from pytest_prp.records.status_view import BatchView, estimate, totals


def _ago(seconds: float | None) -> str:
    return "" if seconds is None else f"{format_duration(seconds)} ago"


def _shorten(text: str | None, limit: int) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _state_line(view: BatchView) -> str:
    if view.ended is not None:
        return f"interrupted: {view.ended}"
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
        "ended": view.ended,
        "prps": [asdict(p) for p in view.prps],
        "totals": totals(view),
        "estimate": {"seconds_left": guess.seconds_left, "method": guess.method},
        **({"final_check": view.final_check} if view.final_check is not None else {}),
    }
