"""Render a Plan for people (text), programs (JSON) and diagrams (Mermaid). Pure: str out."""

from __future__ import annotations

import json
import re
from typing import Any

from pytest_prp.base.ids import natural_key
from pytest_prp.plan.planning import HOURS, Plan
from pytest_prp.spec.body_cache import summary_of
from pytest_prp.spec.model import Problem, Prp, display_path

_TITLE_WIDTH = 48  # longer titles are shortened so the step/gate column stays aligned


def _counts(prp: Prp) -> tuple[int, int, int] | None:
    """Steps, executable gates and unverified (checklist) gates; None if the file is unreadable."""
    try:
        summary = summary_of(prp)
    except (OSError, UnicodeDecodeError):
        return None
    return summary.steps, summary.executable, summary.unverified


def _warnings(plan: Plan) -> list[Problem]:
    """The plan's warnings, then those of each PRP's body (read when the counts were made)."""
    found = list(plan.warnings)
    for prp in plan.prps:
        if _counts(prp) is not None:
            found.extend(summary_of(prp).warnings)
    return found


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _number(value: float) -> str:
    return f"{value:g}"


def _batches(plan: Plan) -> str:
    """The batches of the plan; PRPs without one are counted, not hidden behind a batch."""
    batches = sorted({p.batch for p in plan.prps if p.batch is not None}, key=natural_key)
    if not batches:
        return ""
    label = ("batch " if len(batches) == 1 else "batches ") + ", ".join(batches)
    without = sum(1 for p in plan.prps if p.batch is None)
    if without:
        label += f" and {_plural(without, 'PRP')} without a batch"
    return f" ({label})"


def _short(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= _TITLE_WIDTH else title[: _TITLE_WIDTH - 3].rstrip() + "..."


def render_text(plan: Plan) -> str:
    """The plan as a terminal-friendly outline: stages, critical path, conflicts, problems."""
    groups = plan.stage_groups()
    if plan.prps:
        lines = [
            f"PRP plan: {_plural(len(plan.prps), 'PRP')} in "
            f"{_plural(len(groups), 'stage')}{_batches(plan)}"
        ]
    else:
        lines = ["PRP plan: no PRPs selected"]

    in_plan = set(plan.stages)
    id_width = max((len(p.id) for p in plan.prps), default=0)
    title_width = max((len(_short(p.title)) for p in plan.prps), default=0)
    for stage, prps in groups.items():
        lines.append(f"Stage {stage}")
        for prp in prps:
            details = []
            counts = _counts(prp)
            if counts is None:
                details.append("file unreadable")
            else:
                steps, gates, unverified = counts
                extra = f" (+{unverified} unverified)" if unverified else ""
                details.append(f"steps {steps}, gates {gates}{extra}")
            deps = [
                dep if dep in in_plan else f"{dep} (not in this plan)"
                for dep in dict.fromkeys(prp.dependencies)
                if dep != prp.id
            ]
            if deps:
                details.append("after " + ", ".join(deps))
            if prp.declared_stage is not None and prp.declared_stage != stage:
                details.append(f"declared stage {prp.declared_stage}")
            row = f"  {prp.id:<{id_width}}  {_short(prp.title):<{title_width}}  "
            lines.append((row + "; ".join(details)).rstrip())

    if plan.critical_path:
        if plan.critical_unit == HOURS:
            length = f"{_number(plan.critical_length)} hours"
        else:
            length = _plural(int(plan.critical_length), "PRP")
        lines.append(f"Critical path ({length}): " + " -> ".join(plan.critical_path))
    if plan.conflicts:
        lines.append("Potential conflicts:")
        for c in plan.conflicts:
            lines.append(f"  stage {c.stage}: {c.path} changed by {', '.join(c.prp_ids)}")
    warnings = _warnings(plan)
    if warnings:
        lines.append("Warnings:")
        lines.extend(f"  {w}" for w in warnings)
    if plan.errors:
        lines.append("Errors (nothing will run):")
        lines.extend(f"  {e}" for e in plan.errors)
    return "\n".join(lines) + "\n"


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON data (no frontmatter: it may hold dates and other non-JSON)."""
    prps = []
    for prp in plan.prps:
        counts = _counts(prp)
        prps.append(
            {
                "id": prp.id,
                "file": display_path(prp.path),
                "batch": prp.batch,
                "stage": plan.stages[prp.id],
                "declared_stage": prp.declared_stage,
                "dependencies": list(prp.dependencies),
                "title": prp.title,
                "steps": counts[0] if counts else None,
                "gates": {
                    "executable": counts[1] if counts else None,
                    "unverified": counts[2] if counts else None,
                },
            }
        )
    return {
        "prps": prps,
        "stages": {
            str(stage): [p.id for p in members] for stage, members in plan.stage_groups().items()
        },
        "critical_path": list(plan.critical_path),
        "warnings": [str(w) for w in _warnings(plan)],
        # Structured, for scripts: a plan with errors is shown but nothing of it may run.
        "errors": [
            {
                "file": display_path(e.path) if e.path is not None else None,
                "line": e.line,
                "message": e.message,
            }
            for e in plan.errors
        ],
        "conflicts": [
            {"stage": c.stage, "path": c.path, "prps": list(c.prp_ids)} for c in plan.conflicts
        ],
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2) + "\n"


# Words Mermaid's flowchart grammar treats specially when used as a node id.
_MERMAID_KEYWORDS = {
    "end",
    "graph",
    "flowchart",
    "subgraph",
    "style",
    "class",
    "classdef",
    "click",
    "linkstyle",
    "direction",
    "call",
    "href",
    "default",
}


def _mermaid_ids(prps: list[Prp]) -> dict[str, str]:
    """Readable node ids made of [A-Za-z0-9_] only, unique even if sanitising collides."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for prp in prps:
        base = re.sub(r"[^A-Za-z0-9_]", "_", prp.id)
        if not base[:1].isalpha() or base.lower() in _MERMAID_KEYWORDS:
            base = "n_" + base
        node, n = base, 2
        while node in used:
            node, n = f"{base}_{n}", n + 1
        used.add(node)
        ids[prp.id] = node
    return ids


def _mermaid_label(text: str) -> str:
    """Text safe inside a quoted Mermaid label: '#' first, since escapes are '#...;' entities."""
    text = " ".join(text.split())
    for char, entity in (("#", "#35;"), ('"', "#quot;"), ("<", "#60;"), (">", "#62;")):
        text = text.replace(char, entity)
    return text


def render_mermaid(plan: Plan) -> str:
    """A Mermaid flowchart: one subgraph per stage, edges from each dependency to its dependent."""
    nodes = _mermaid_ids(plan.prps)
    lines = ["flowchart TD"]
    for stage, prps in plan.stage_groups().items():
        lines.append(f'  subgraph stage_{stage}["Stage {stage}"]')
        for prp in prps:
            label = _mermaid_label(f"{prp.id}: {prp.title}")
            lines.append(f'    {nodes[prp.id]}["{label}"]')
        lines.append("  end")
    for prp in plan.prps:
        for dep in dict.fromkeys(prp.dependencies):
            if dep in nodes and dep != prp.id:
                lines.append(f"  {nodes[dep]} --> {nodes[prp.id]}")
    critical = [nodes[i] for i in plan.critical_path if i in nodes]
    if len(critical) > 1:
        lines.append("  classDef critical stroke-width:3px")
        lines.append(f"  class {','.join(critical)} critical")
    return "\n".join(lines) + "\n"
