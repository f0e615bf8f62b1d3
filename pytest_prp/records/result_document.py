"""The batch result JSON's shape: its PRPs by stage and its ``summary`` counts.

Pure: given the records (``record``'s entries) it makes the parts of the document that
``results.BatchResults`` writes; how and when it is written is ``results``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytest_prp.base.ids import natural_key
from pytest_prp.records.record import (
    BLOCKED,
    COMPLETED_EARLIER,
    EARLIER_RUN,
    FAILED_STATUSES,
    INTERRUPTED,
    NOT_STARTED,
    PENDING,
    RATE_LIMITED,
    SKIPPED_BUDGET,
    SUCCESS,
    UNVERIFIED,
)


def by_stage(records: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``stages`` of the document: stage number (a string) -> PRP id -> entry, in order."""
    stages: dict[str, dict[str, Any]] = {}
    for prp_id in sorted(records, key=natural_key):
        entry = records[prp_id]
        stages.setdefault(str(entry["stage"]), {})[prp_id] = entry
    return {k: stages[k] for k in sorted(stages, key=int)}


def summary_of(records: Mapping[str, dict[str, Any]], elapsed_seconds: float) -> dict[str, Any]:
    """The document's ``summary``: counts by status, success rate, cost, tokens."""
    statuses = [r["status"] for r in records.values()]
    total = len(statuses)
    success = statuses.count(SUCCESS)
    earlier = statuses.count(COMPLETED_EARLIER)
    return {
        "total": total,
        "success": success,
        "failed": sum(statuses.count(s) for s in FAILED_STATUSES),
        "blocked": statuses.count(BLOCKED),
        "unverified": statuses.count(UNVERIFIED),
        "completed_earlier": earlier,
        "skipped_budget": statuses.count(SKIPPED_BUDGET),
        "rate_limited": statuses.count(RATE_LIMITED),
        "not_started": statuses.count(NOT_STARTED),
        "pending": statuses.count(PENDING),
        "interrupted": statuses.count(INTERRUPTED),
        # Work already done counts as done: a resumed batch is not a worse batch.
        "success_rate": round((success + earlier) / total, 3) if total else 0.0,
        "from_earlier_run": sum(1 for r in records.values() if EARLIER_RUN in r),
        "elapsed_seconds": elapsed_seconds,
        "cost_usd": _sum_cost(records.values()),
        "tokens": _sum_tokens(records.values()),
        "refused_tool_calls": sum(len(e.get("refused_tool_calls") or []) for e in records.values()),
        "cost_by_stage": _cost_by_stage(records.values()),
    }


def _cost_by_stage(entries: Iterable[dict[str, Any]]) -> dict[str, float | None]:
    """One pass over the records: a batch may have as many stages as PRPs (a chain)."""
    by_stage: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        by_stage.setdefault(int(entry["stage"]), []).append(entry)
    return {str(stage): _sum_cost(by_stage[stage]) for stage in sorted(by_stage)}


def _sum_cost(entries: Iterable[dict[str, Any]]) -> float | None:
    costs = [e["cost_usd"] for e in entries if e.get("cost_usd") is not None]
    return round(sum(costs), 6) if costs else None


def _sum_tokens(entries: Iterable[dict[str, Any]]) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for entry in entries:
        for key, value in (entry.get("tokens") or {}).items():
            total[key] = total.get(key, 0) + int(value)
    return total or None
