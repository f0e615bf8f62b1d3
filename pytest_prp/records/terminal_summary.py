"""The batch summary at the end of the pytest run: the PRPs by stage, the totals, where the
result JSON and the integration branch are, and what blocked PRPs need.

Pure text from the records and the ``summary`` that ``result_document`` counted; the terminal
reporter is given, so nothing here knows pytest's plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_prp.base.ids import natural_key
from pytest_prp.records.final_check_view import lines as final_check_lines
from pytest_prp.records.record import EARLIER_RUN
from pytest_prp.workspace.merge_queue import merge_notes
from pytest_prp.workspace.merge_stack import stack_note


def write_summary(
    tr: Any,
    records: Mapping[str, dict[str, Any]],
    summary: Mapping[str, Any],
    blocked_outside: Mapping[str, list[str]],
    results: str,
    branch: str,
    final_check: Mapping[str, Any] | None = None,
) -> None:
    """The "PRP batch summary" section; ``results`` is the result JSON's path or why it was
    not written, ``branch`` the integration branch (empty in verify mode), ``final_check`` the
    final check's block (``--prp-final-check``)."""
    tr.section("PRP batch summary")
    s = summary
    by_stage: dict[int, list[dict[str, Any]]] = {}
    for entry in records.values():
        by_stage.setdefault(int(entry["stage"]), []).append(entry)
    costs = s["cost_by_stage"]
    for stage in sorted(by_stage):
        cost = costs.get(str(stage))
        tr.write_line(f"Stage {stage}" + (f"  (${cost:.4f})" if cost is not None else ""))
        for entry in sorted(by_stage[stage], key=lambda e: natural_key(e["prp_id"])):
            tr.write_line("  " + _summary_line(entry))
            for error in entry["errors"][:2]:
                tr.write_line(f"      {error}")
    tr.write_line(
        f"Totals: {s['total']} PRPs, {s['success']} success, {s['failed']} failed, "
        f"{s['blocked']} blocked, {s['unverified']} unverified, "
        f"{s['completed_earlier']} completed earlier"
        + (f", {s['skipped_budget']} over budget" if s["skipped_budget"] else "")
        + (f", {s['rate_limited']} rate limited" if s["rate_limited"] else "")
        + (f", {s['not_started']} not started" if s["not_started"] else "")
        + (f", {s['interrupted']} interrupted" if s["interrupted"] else "")
        + (f" ({s['from_earlier_run']} from an earlier run)" if s["from_earlier_run"] else "")
        + "; success rate "
        f"{s['success_rate']:.0%}; {s['elapsed_seconds']:.1f} s"
        + (f"; cost ${s['cost_usd']:.4f}" if s["cost_usd"] is not None else "")
    )
    for prp_id, deps in sorted(blocked_outside.items()):
        tr.write_line(
            f"prp: {prp_id} is blocked by {', '.join(deps)}, not complete and not in this "
            f"run: include {'them' if len(deps) > 1 else 'it'} in the selection (widen or "
            f"drop -k/-m/--lf/--prp-stage, add --prp-id {' --prp-id '.join(deps)}) "
            "or complete it first",
            red=True,
        )
    if final_check is not None:
        broken = not final_check.get("passed", True)
        for line in final_check_lines(dict(final_check)):
            tr.write_line(line, red=broken)
    tr.write_line(f"Results: {results}")
    if branch:
        tr.write_line(f"Integration branch: {branch} (merge it with: git merge {branch})")


def _summary_line(entry: dict[str, Any]) -> str:
    parts = [
        f"{entry['prp_id']:<14}",
        f"{entry['status']:<17}",
        f"{entry['elapsed_seconds']:6.1f} s",
        f"gates {entry['gates_passed']}/{entry['gates_executable']}",
    ]
    if entry.get("no_changes"):
        parts.append("no changes")
    if entry["gates_unverified"]:
        parts.append(f"unverified {entry['gates_unverified']}")
    if len(entry.get("attempts") or []) > 1:
        parts.append(f"attempts {len(entry['attempts'])}")
    if entry.get("rate_limit_waits"):
        waited = entry.get("rate_limit_waited_seconds") or 0.0
        parts.append(f"rate limit waits {entry['rate_limit_waits']} ({waited:.0f} s)")
    if entry.get("cost_usd") is not None:
        parts.append(f"${entry['cost_usd']:.4f}")
    if entry.get("refused_tool_calls"):
        parts.append(f"refused tool calls {len(entry['refused_tool_calls'])}")
    if entry.get("model"):
        parts.append(f"model {entry['model']}")
    if entry.get("worktree"):
        parts.append(f"worktree {entry['worktree']}")
    parts.extend(merge_notes(entry))
    parts.extend(filter(None, [stack_note(entry)]))
    if EARLIER_RUN in entry:
        parts.append(f"(earlier run, {entry[EARLIER_RUN] or 'time unknown'})")
    return "  ".join(parts)
