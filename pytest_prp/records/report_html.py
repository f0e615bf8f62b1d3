"""The HTML batch report: one self-contained page rendered from a ``report_data.ReportView``.

No network and no script: inline CSS and SVG only, and a Content-Security-Policy that forbids
loading anything, so that even a string that escaped escaping could not fetch or run code. PRP
titles, errors and gate output are hostile input: every text goes through ``_e``.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_prp.records.heartbeat import format_duration
from pytest_prp.records.record import (
    BLOCKED,
    COMPLETED_EARLIER,
    FAILED,
    FAILED_GATES,
    FAILED_INTEGRATION,
    FAILED_MERGE,
    INTERRUPTED,
    NOT_STARTED,
    PASSED,
    PENDING,
    RUNNING,
    SKIPPED_BUDGET,
    SUCCESS,
    UNVERIFIED,
)
from pytest_prp.records.report_data import STATUS_LABELS, PrpView, ReportView

STATUS_COLOURS = {
    SUCCESS: "#2e7d32",
    UNVERIFIED: "#9e9d24",
    FAILED_GATES: "#c62828",
    FAILED: "#b71c1c",
    FAILED_MERGE: "#ad1457",
    FAILED_INTEGRATION: "#880e4f",
    BLOCKED: "#ef6c00",
    COMPLETED_EARLIER: "#81c784",
    SKIPPED_BUDGET: "#8d6e63",
    INTERRUPTED: "#6a1b9a",
    NOT_STARTED: "#bdbdbd",
    PENDING: "#e0e0e0",
    RUNNING: "#1565c0",
}
PHASE_COLOURS = {
    "workspace": "#b0bec5",
    "steps": "#42a5f5",
    "gates": "#ffb300",
    "merge": "#26a69a",
    "prp": "#90a4ae",
}
REFRESH_SECONDS = 15  # while the batch runs: the page reloads itself (a meta tag, no script)

# The graph: one column per stage (split into several past COLUMN_ROWS PRPs).
COLUMN_ROWS = 40
NODE_W, NODE_H, COL_W, ROW_H, GRAPH_TOP = 150, 20, 180, 26, 28
# The timeline.
LABEL_W, LANE_H, AXIS_H, MIN_TIMELINE_W, MAX_TIMELINE_W = 64, 30, 38, 800, 8000


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _anchor(prp_id: str) -> str:
    return "prp-" + "".join(c if c.isalnum() or c in "-._" else "_" for c in prp_id)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{format_duration(value)}"


def _money(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "–"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _css() -> str:
    statuses = "".join(f".s-{s}{{fill:{c};background:{c}}}" for s, c in STATUS_COLOURS.items())
    outlines = "".join(f".prp.s-{s}{{fill:none;stroke:{c}}}" for s, c in STATUS_COLOURS.items())
    phases = "".join(f".p-{p}{{fill:{c}}}" for p, c in PHASE_COLOURS.items())
    return (
        "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#212121}"
        "h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .4em}"
        ".meta{color:#555}.scroll{overflow:auto;max-height:80vh;border:1px solid #ddd}"
        "svg text{font:11px system-ui,sans-serif}"
        ".n{stroke:#fff;stroke-width:1}.n.crit{stroke:#000;stroke-width:2.5}"
        ".nl{fill:#fff;pointer-events:none}.nl.light{fill:#212121}"
        ".e{fill:none;stroke:#9e9e9e;stroke-width:1}.e.crit{stroke:#000;stroke-width:2.5}"
        ".lane{fill:#fafafa;stroke:#eee}.prp{stroke-width:1.2;pointer-events:all}"
        ".prp.crit{stroke-width:3}.a2{stroke:#000;stroke-dasharray:2 2}"
        ".lb{stroke:#d32f2f;stroke-width:2;stroke-dasharray:6 3}.wall{stroke:#212121}"
        ".tick{stroke:#ddd}"
        "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 6px;"
        "border-bottom:1px solid #eee;text-align:left;vertical-align:top}"
        "th{background:#f5f5f5}"
        ".b{color:#fff;border-radius:3px;padding:0 4px;white-space:nowrap}"
        ".b.s-pending,.b.s-not_started,.b.s-completed_earlier{color:#212121}"
        "pre{background:#f7f7f7;padding:4px;margin:2px 0;white-space:pre-wrap;"
        "max-width:100em;font-size:12px}"
        ".ok{color:#2e7d32}.ko{color:#c62828}.key span{margin-right:1em}"
        ".sw{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin-right:.2em}"
        ".cards{display:flex;flex-wrap:wrap;gap:.5em 2em}.cards div b{display:block;"
        "font-size:1.3em}code{font-size:12px}" + statuses + outlines + phases
    )


def render(view: ReportView) -> str:
    title = f"PRP batch {view.batch_id}"
    refresh = "" if view.done else f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be loaded: the page is one file, readable offline and from CI artifacts.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        refresh,
        f"<title>{_e(title)} · pytest-prp</title><style>{_css()}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _header(view),
        _totals(view),
        _final_check(view),
        '<section id="graph"><h2>Dependency graph</h2>',
        _status_key(view),
        f'<div class="scroll">{_graph(view)}</div></section>',
        '<section id="timeline"><h2>Timeline</h2>',
        _phase_key(),
        f'<div class="scroll">{_timeline(view)}</div></section>',
        f'<section id="prps"><h2>PRPs ({len(view.prps)})</h2>{_table(view)}</section>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _when(iso: str | None) -> str:
    return _e(iso.replace("T", " ")) if iso else "–"


def _share(view: ReportView) -> str:
    """How close the run came to its lower bound: 100% is as fast as it could have gone."""
    if view.prp_span_seconds <= 0 or view.lower_bound_seconds <= 0:
        return ""
    return f" · bound {view.lower_bound_seconds / view.prp_span_seconds:.0%} of it"


def _header(view: ReportView) -> str:
    state = "finished" if view.done else "running"
    if view.interrupted:
        state = "interrupted"
    generated = datetime.fromtimestamp(view.generated_at, timezone.utc)
    branch = (
        f" · integration branch <code>{_e(view.integration_branch)}</code>"
        if view.integration_branch
        else ""
    )
    return (
        f'<p class="meta" id="state" data-state="{state}">{state}{branch} · started '
        f"{_when(view.started_at)} · finished {_when(view.finished_at)} · "
        f"page written {_e(generated.isoformat(timespec='seconds'))}</p>"
    )


def _totals(view: ReportView) -> str:
    counts = " ".join(
        f'<span class="b s-{_e(s)}">{_e(STATUS_LABELS.get(s, s))} {n}</span>'
        for s, n in sorted(
            view.counts.items(),
            key=lambda kv: list(STATUS_COLOURS).index(kv[0]) if kv[0] in STATUS_COLOURS else 99,
        )
    )
    cards = [
        ("PRPs", str(len(view.prps))),
        ("success rate", f"{view.success_rate:.0%}"),
        ("wall time", _seconds(view.wall_seconds)),
        ("work", _seconds(view.work_seconds)),
        ("lower bound", _seconds(view.lower_bound_seconds)),
        ("first PRP start to last end", _seconds(view.prp_span_seconds) + _share(view)),
        ("workers", str(len(view.workers))),
        ("cost", _money(view.cost_usd)),
    ]
    if view.budget_usd is not None:
        spent = view.cost_usd or 0.0
        share = spent / view.budget_usd if view.budget_usd > 0 else 1.0
        budget = f"{_money(spent)} of {_money(view.budget_usd)} ({share:.0%})"
        cards.append(("spend vs budget", budget))
    if view.tokens:
        tokens = ", ".join(f"{_e(k)} {v:,}" for k, v in sorted(view.tokens.items()))
        cards.append(("tokens", tokens))
    card_html = "".join(f"<div>{_e(name)}<b>{value}</b></div>" for name, value in cards)
    stage_rows = "".join(
        f"<tr><td>{s.stage}</td><td>{len(s.prp_ids)}</td><td>{_money(s.cost_usd)}</td></tr>"
        for s in view.stages
    )
    return (
        f'<section id="totals"><h2>Totals</h2><div class="cards">{card_html}</div>'
        f"<p>{counts}</p>"
        f"<table><tr><th>stage</th><th>PRPs</th><th>cost</th></tr>{stage_rows}</table>"
        "</section>"
    )


def _final_check(view: ReportView) -> str:
    """``--prp-final-check``'s verdict, as the terminal and ``prp-status`` say it."""
    if not view.final_check:
        return ""
    headline, *failures = view.final_check
    verdict = "passed" if view.final_check_passed else "failed"
    items = "".join(f"<li>{_e(line.strip())}</li>" for line in failures)
    return (
        f'<section id="final-check" data-verdict="{verdict}"><h2>Final check</h2>'
        f"<p>{_e(headline)}</p>{f'<ul>{items}</ul>' if items else ''}</section>"
    )


def _status_key(view: ReportView) -> str:
    shown = [s for s in STATUS_COLOURS if s in view.counts]
    keys = "".join(f'<span><i class="sw s-{s}"></i>{_e(STATUS_LABELS[s])}</span>' for s in shown)
    crit = " → ".join(view.critical_path)
    unit = {"seconds": "by time taken", "hours": "by estimated hours", "prps": "by PRP count"}
    return (
        f'<p class="key">{keys}<span>bold outline: critical path '
        f"({_e(unit.get(view.critical_unit, ''))}): {_e(crit) or '–'}</span></p>"
    )


def _phase_key() -> str:
    keys = "".join(
        f'<span><i class="sw p-{p}" style="background:{c}"></i>{p}</span>'
        for p, c in PHASE_COLOURS.items()
        if p != "prp"
    )
    return (
        f'<p class="key">{keys}<span>dashed outline: a later attempt</span>'
        '<span style="color:#d32f2f">red dashed line: lower bound max(critical path, '
        "work / workers)</span></p>"
    )


# --- the graph ----------------------------------------------------------------------------


def _graph(view: ReportView) -> str:
    where: dict[str, tuple[float, float]] = {}
    column = 0
    heads: list[str] = []
    rows_used = 0
    for stage in view.stages:
        ids = stage.prp_ids
        columns = max(1, math.ceil(len(ids) / COLUMN_ROWS))
        heads.append(
            f'<text x="{column * COL_W + 4}" y="16" font-weight="bold">stage {stage.stage}'
            f" ({len(ids)})</text>"
        )
        for n, prp_id in enumerate(ids):
            col, row = column + n // COLUMN_ROWS, n % COLUMN_ROWS
            where[prp_id] = (col * COL_W + 4, GRAPH_TOP + row * ROW_H)
            rows_used = max(rows_used, row + 1)
        column += columns
    width = max(column * COL_W, 200)
    height = GRAPH_TOP + rows_used * ROW_H + 4
    critical = set(zip(view.critical_path, view.critical_path[1:], strict=False))
    edges = []
    for dep, prp_id in view.edges:
        x1, y1 = where[dep]
        x2, y2 = where[prp_id]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        mid = (x1 + x2) / 2
        cls = "e crit" if (dep, prp_id) in critical else "e"
        edges.append(
            f'<path class="{cls}" d="M{x1:.0f} {y1:.0f}C{mid:.0f} {y1:.0f} {mid:.0f} {y2:.0f} '
            f'{x2:.0f} {y2:.0f}"/>'
        )
    nodes = []
    for prp in view.prps:
        x, y = where[prp.prp_id]
        cls = f"n s-{_e(prp.status)}" + (" crit" if prp.critical else "")
        light = " light" if prp.status in (PENDING, NOT_STARTED, COMPLETED_EARLIER) else ""
        tip = f"{prp.prp_id}: {prp.title} ({prp.label})"
        nodes.append(
            f'<a href="#{_anchor(prp.prp_id)}" data-prp="{_e(prp.prp_id)}">'
            f'<rect class="{cls}" x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="3">'
            f"<title>{_e(tip)}</title></rect>"
            f'<text class="nl{light}" x="{x + 5}" y="{y + 14}">{_e(_clip(prp.prp_id, 24))}</text>'
            "</a>"
        )
    return (
        f'<svg id="graph-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="dependency graph">'
        + "".join(heads)
        + "".join(edges)
        + "".join(nodes)
        + "</svg>"
    )


# --- the timeline -------------------------------------------------------------------------


def _timeline(view: ReportView) -> str:
    timed = view.timed
    if not timed:
        return '<p id="timeline-svg">No PRP has started yet, or the result JSON has no times.</p>'
    lanes = {w: i for i, w in enumerate(view.workers)}
    # The lower bound counts from the first PRP's start: start-up is no PRP's work.
    first = min(p.start or 0.0 for p in timed)
    ends = max(p.end or 0.0 for p in timed)
    span = max(view.wall_seconds, first + view.lower_bound_seconds, ends)
    span = max(span, 1e-3) * 1.02
    busiest = max(sum(1 for p in timed if p.worker == w) for w in view.workers)
    width = min(max(MIN_TIMELINE_W, busiest * 8), MAX_TIMELINE_W)
    scale = width / span
    height = AXIS_H + len(lanes) * LANE_H + 6

    def x(t: float) -> float:
        return LABEL_W + t * scale

    out = []
    step = _tick_step(span)
    ticks = int(span / step) + 1
    for n in range(ticks):
        t = n * step
        out.append(
            f'<line class="tick" x1="{x(t):.1f}" y1="{AXIS_H - 6}" x2="{x(t):.1f}" '
            f'y2="{height}"/><text x="{x(t) + 2:.1f}" y="12">{_e(_axis(t))}</text>'
        )
    for worker, lane in lanes.items():
        y = AXIS_H + lane * LANE_H
        out.append(
            f'<rect class="lane" x="{LABEL_W}" y="{y}" width="{width}" height="{LANE_H - 4}"/>'
            f'<text x="2" y="{y + 17}">{_e(_clip(worker, 10))}</text>'
        )
    for prp in timed:
        y = AXIS_H + lanes[prp.worker or "main"] * LANE_H
        out.append(_prp_bars(prp, y, x))
    if view.lower_bound_seconds > 0:
        lb = x(first + view.lower_bound_seconds)
        out.append(
            f'<line class="lb" id="lower-bound" x1="{lb:.1f}" y1="{AXIS_H - 8}" x2="{lb:.1f}" '
            f'y2="{height}"><title>lower bound {_e(_seconds(view.lower_bound_seconds))}: '
            f"max(critical path {_e(_seconds(view.critical_seconds))}, work "
            f"{_e(_seconds(view.work_seconds))} / {len(view.workers)} workers)</title></line>"
            f'<text x="{lb + 3:.1f}" y="{AXIS_H - 9}" fill="#d32f2f">lower bound</text>'
        )
    wall = x(view.wall_seconds)
    out.append(
        f'<line class="wall" x1="{wall:.1f}" y1="{AXIS_H - 8}" x2="{wall:.1f}" y2="{height}">'
        f"<title>wall time {_e(_seconds(view.wall_seconds))}</title></line>"
    )
    return (
        f'<svg id="timeline-svg" xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + width + 80}"'
        f' height="{height}" role="img" aria-label="timeline">' + "".join(out) + "</svg>"
    )


def _prp_bars(prp: PrpView, y: float, x: Callable[[float], float]) -> str:
    """The PRP's phases as coloured bars under one outline in its status colour; the outline
    carries the tooltip (phase times, attempts) and the link to the PRP's row. Compact: 500
    PRPs draw 2,500 shapes."""
    start, end = prp.start or 0.0, prp.end or 0.0
    x0, x1 = x(start), max(x(end), x(start) + 1.5)
    parts = [f'<g data-prp="{_e(prp.prp_id)}">']
    for bar in prp.bars:
        b0, b1 = x(bar.start), max(x(bar.end), x(bar.start) + 1.0)
        cls = f"p-{_e(bar.phase)}" + (" a2" if bar.attempt > 1 else "")
        parts.append(
            f'<rect class="{cls}" x="{b0:.1f}" y="{y + 3}" width="{b1 - b0:.1f}" '
            f'height="{LANE_H - 10}"/>'
        )
    cls = f"prp s-{_e(prp.status)}" + (" crit" if prp.critical else "")
    several = len({bar.attempt for bar in prp.bars}) > 1
    phases = ", ".join(
        (f"{bar.attempt}:" if several else "") + f"{bar.phase} {_seconds(bar.end - bar.start)}"
        for bar in prp.bars
    )
    tip = f"{prp.prp_id}: {prp.title} ({prp.label}, {_seconds(end - start)}; {phases})"
    parts.append(
        f'<a href="#{_anchor(prp.prp_id)}"><rect class="{cls}" x="{x0:.1f}" y="{y + 1}" '
        f'width="{x1 - x0:.1f}" height="{LANE_H - 6}"><title>{_e(tip)}</title></rect></a>'
    )
    if x1 - x0 > 7 * len(prp.prp_id):
        parts.append(f'<text x="{x0 + 3:.1f}" y="{y + LANE_H - 9}">{_e(prp.prp_id)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _tick_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 12:
            return float(step)
    return 3600.0 * math.ceil(span / 3600 / 12)


def _axis(t: float) -> str:
    return f"{_num(round(t, 1))}s" if t < 60 else format_duration(t)


# --- the table of PRPs --------------------------------------------------------------------

COLUMNS = (
    "PRP", "title", "stage", "status", "attempts", "gates", "files", "commit", "cost",
    "tokens", "time", "worker", "worktree", "log",
)  # fmt: skip


def _table(view: ReportView) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    rows = "".join(prp_rows(p) for p in view.prps)
    return f'<table id="prp-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def prp_rows(prp: PrpView) -> str:
    """The PRP's row and, when it has any, a row of details (gates, errors, output tails)."""
    gates = f"{prp.gates_passed}/{prp.gates_executable}"
    if prp.gates_unverified:
        gates += f" +{prp.gates_unverified} unverified"
    files = (
        f"<details><summary>{len(prp.files)}</summary>"
        + "<br>".join(_e(f) for f in prp.files)
        + "</details>"
        if prp.files
        else "0"
    )
    tokens = ", ".join(f"{_e(k)} {v:,}" for k, v in sorted(prp.tokens.items())) or "–"
    log = f'<a href="{_e(prp.log_href)}">log</a>' if prp.log_href else "–"
    cells = [
        f'<a href="#{_anchor(prp.prp_id)}">{_e(prp.prp_id)}</a>',
        _e(prp.title),
        str(prp.stage),
        f'<span class="b s-{_e(prp.status)}">{_e(prp.label)}</span>'
        + (" ★" if prp.critical else ""),
        str(len(prp.attempts)) if prp.attempts else "–",
        gates,
        files,
        f"<code>{_e(prp.commit[:10])}</code>" if prp.commit else "–",
        _money(prp.cost_usd),
        tokens,
        _seconds(prp.elapsed),
        _e(prp.worker or "–"),
        f"<code>{_e(prp.worktree)}</code>" if prp.worktree else "–",
        log,
    ]
    row = (
        f'<tr id="{_anchor(prp.prp_id)}" data-status="{_e(prp.status)}">'
        + "".join(f"<td>{c}</td>" for c in cells)
        + "</tr>"
    )
    detail = prp_details(prp)
    if detail:
        row += f'<tr class="more"><td colspan="{len(COLUMNS)}">{detail}</td></tr>'
    return row


def prp_details(prp: PrpView) -> str:
    """Errors, each attempt's gates with pass or fail, and the failure tails; open when the
    PRP failed. Empty for a PRP with nothing to tell."""
    body: list[str] = []
    if prp.errors:
        body.append("<ul>" + "".join(f"<li>{_e(e)}</li>" for e in prp.errors) + "</ul>")
    if prp.failure_tail:
        body.append(f"<div>step output (end):</div>{_pre(prp.failure_tail)}")
    for attempt in prp.attempts:
        if not attempt.gates:
            continue
        label = f"attempt {attempt.number}: " if len(prp.attempts) > 1 else ""
        items = []
        for gate in attempt.gates:
            mark = '<span class="ok">✓</span>' if gate.passed else '<span class="ko">✗</span>'
            how = ""
            if not gate.passed:
                how = " timed out" if gate.timed_out else f" exit {gate.exit_code}"
            seconds = f" ({_seconds(gate.seconds)})" if gate.seconds is not None else ""
            number = f"{gate.index}. " if gate.index is not None else ""
            items.append(
                f"<li>{mark} {number}{_e(gate.name)}{_e(how)}{seconds}"
                + (_pre(gate.tail) if gate.tail else "")
                + "</li>"
            )
        body.append(f"<div>{label}gates</div><ul>{''.join(items)}</ul>")
    if not body:
        return ""
    failed = prp.status not in (*PASSED, COMPLETED_EARLIER)
    opened = " open" if failed and (prp.errors or prp.failure_tail) else ""
    return f"<details{opened}><summary>details</summary>{''.join(body)}</details>"


def _pre(lines: Iterable[str]) -> str:
    return "<pre>" + _e("\n".join(lines)) + "</pre>"


def prp_fragment(prp: PrpView) -> str:
    """One PRP's facts for another page (pytest-html's row extras): styled inline, since that
    page has none of this page's CSS."""
    colour = STATUS_COLOURS.get(prp.status, "#616161")
    facts = [
        ("status", prp.label),
        ("stage", str(prp.stage)),
        (
            "gates",
            f"{prp.gates_passed}/{prp.gates_executable} passed"
            + (f", {prp.gates_unverified} unverified" if prp.gates_unverified else ""),
        ),
        ("attempts", str(len(prp.attempts)) if prp.attempts else "–"),
        ("commit", prp.commit or "–"),
        ("files", ", ".join(prp.files) or "–"),
        ("cost", _money(prp.cost_usd)),
        ("tokens", ", ".join(f"{k} {v:,}" for k, v in sorted(prp.tokens.items())) or "–"),
        ("model", prp.model or "–"),
        ("worktree", prp.worktree or "–"),
        ("log", prp.log or "–"),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    return (
        f'<div class="prp-details" style="border-left:4px solid {colour};padding-left:6px">'
        f"<b>{_e(prp.prp_id)}</b> {_e(prp.title)}<table>{rows}</table>{prp_details(prp)}</div>"
    )


def default_report_path(results_dir: Path, label: str) -> Path:
    """``<results_dir>/batches/batch-<batch>.html``, beside the result JSON."""
    from pytest_prp.base.naming import report_path

    return report_path(results_dir, label)


def write_report(
    path: Path,
    document: Mapping[str, Any],
    *,
    graph: Mapping[str, Any] | None = None,
    live: Mapping[str, Mapping[str, Any]] | None = None,
    budget_usd: float | None = None,
) -> None:
    """Render the report of a result document and write it atomically."""
    from pytest_prp.base.jsonfile import write_text_atomically
    from pytest_prp.records.report_data import build_view

    view = build_view(
        document,
        graph=graph,
        live=live,
        budget_usd=budget_usd,
        report_dir=path.parent,
        now=time.time(),
    )
    write_text_atomically(path, render(view))
