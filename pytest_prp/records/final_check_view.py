"""The final check's block of the batch result (``final_check`` in the JSON, written by
``final_check_run``) as lines of text: the terminal summary and ``prp-status`` show the same."""

from __future__ import annotations

from typing import Any


def failure_text(failure: dict[str, Any]) -> str:
    """``PRP-A gate 1 "Tests" broken by PRP-B (abc123def456)``, with ``: superseded ...``."""
    line = f'{failure.get("prp_id")} gate {failure.get("gate_index")} "{failure.get("gate")}"'
    broken_at = failure.get("broken_at")
    if not broken_at:
        return line + " fails on the final tip and on its own merge (no later merge broke it)"
    line += f" broken by {failure.get('broken_by') or 'a commit of no PRP'} ({broken_at[:12]})"
    if failure.get("superseded"):
        line += f": superseded ({failure.get('broken_by')} depends on {failure.get('prp_id')})"
    return line


def headline(block: dict[str, Any]) -> str:
    """One line: what ran where, and the verdict."""
    if block.get("error"):
        return f"Final check: could not run: {block['error']}"
    prps = block.get("prps") or []
    if not prps:
        return "Final check: no PRP merged in this run, nothing to check"
    failures = block.get("failures") or []
    broken = [f for f in failures if not f.get("superseded")]
    superseded = len(failures) - len(broken)
    where = f" on {str(block.get('tip') or '')[:12]}" if block.get("tip") else ""
    slots = block.get("slots") or 1
    if slots > 1:
        where += f" in {slots} slots"
    text = f"Final check: {block.get('gates_run', 0)} gates of {len(prps)} PRPs{where}"
    if block.get("bisect_runs"):
        text += f" (and {block['bisect_runs']} gate runs to bisect)"
    text += ": "
    if broken:
        text += f"{len(broken)} broken"
    else:
        text += "passed"
    if superseded:
        text += f", {superseded} superseded"
    return text


def lines(block: dict[str, Any]) -> list[str]:
    """The headline, then one line per failing gate."""
    return [headline(block), *("  " + failure_text(f) for f in block.get("failures") or [])]
