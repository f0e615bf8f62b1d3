"""The PRP record: what the batch result JSON says of one PRP, owned here and nowhere else.

Its statuses (which are final, which count as passed or failed), the record of a PRP in the
process running it (``PrpRun``) and its dict form (``PrpRun.to_dict``, the JSON entry), the entry
of a PRP that never reported (pending, interrupted, not started), the one way a status is set
(``PrpRun.set_status`` on a record, ``mark`` on an entry), and the reading back of a result JSON
(``read_result``, ``entries``, ``earlier_records``). The writers (runner, item_reports, results) and
the readers (``prp-status``, the HTML report) all go through it, so they cannot disagree.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_prp.base.ids import batch_of
from pytest_prp.base.jsonfile import read_json
from pytest_prp.base.timestamps import iso

if TYPE_CHECKING:
    from pytest_prp.base.stream_json import Refusal
    from pytest_prp.spec.model import Prp
    from pytest_prp.workspace.ref_watch import RefState

# --- statuses ----------------------------------------------------------------------------

PENDING = "pending"  # planned, not started yet (written when the first PRP starts)
RUNNING = "running"  # started, no final report yet
SUCCESS = "success"
UNVERIFIED = "unverified"  # passed, without an executable gate
FAILED = "failed"
FAILED_GATES = "failed_gates"
FAILED_MERGE = "failed_merge"
FAILED_INTEGRATION = "failed_integration"  # its gates fail on the merged tree
# Its steps changed nothing and no gate checks anything: nothing shows its work was done.
NO_CHANGES = "no_changes"
BLOCKED = "blocked"
COMPLETED_EARLIER = "completed_earlier"
SKIPPED_BUDGET = "skipped_budget"
RATE_LIMITED = "rate_limited"  # waited for the API past the bound
NOT_STARTED = "not_started"
INTERRUPTED = "interrupted"

UNFINISHED = (PENDING, RUNNING)  # never left in a finished run's result
PASSED = (SUCCESS, UNVERIFIED)
FAILED_STATUSES = (FAILED_GATES, FAILED, FAILED_MERGE, FAILED_INTEGRATION, NO_CHANGES)
# Finished with work done: their times make prp-status's average for the estimate.
WORKED = (*PASSED, *FAILED_STATUSES)
# Did work in this run: their time counts as work for the report's lower bound.
RAN = (*WORKED, INTERRUPTED)
# Work that is done: a resumed batch is not a worse batch.
DONE = (SUCCESS, COMPLETED_EARLIER)
FINAL = (
    *WORKED,
    BLOCKED,
    COMPLETED_EARLIER,
    SKIPPED_BUDGET,
    RATE_LIMITED,
    NOT_STARTED,
    INTERRUPTED,
)
STATUSES = (*UNFINISHED, *FINAL)

# A record kept from an earlier run of the batch (a PRP this run did not run, as under --lf or
# -k) carries this key: the ``started_at`` of the run that recorded it.
EARLIER_RUN = "earlier_run"


def _checked(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"not a PRP status: {status!r}")
    return status


def mark(entry: dict[str, Any], status: str, errors: list[str] | None = None) -> dict[str, Any]:
    """Set an entry's status (and its errors, when given): how any entry gets its status."""
    entry["status"] = _checked(status)
    if errors is not None:
        entry["errors"] = errors
    return entry


# --- the record of a PRP in the process running it ----------------------------------------


class Spend(Protocol):
    """What one run of a PRP's steps cost (``executors.StepsOutcome``)."""

    @property
    def cost_usd(self) -> float | None: ...
    @property
    def tokens(self) -> dict[str, int] | None: ...
    @property
    def tokens_by_model(self) -> dict[str, dict[str, int]] | None: ...
    @property
    def refusals(self) -> list[Refusal]: ...


@dataclass
class PrpRun:
    """What happened to one PRP in this process: the source of its report and JSON entry."""

    prp: Prp
    stage: int
    branch: str = ""
    _status: str = field(default=RUNNING, init=False)  # read as ``status``, set by set_status
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    workdir: Path | None = None
    commits: list[str] = field(default_factory=list)
    files_created: list[str] = field(default_factory=list)
    files_modified: list[str] = field(default_factory=list)
    gates_passed: int = 0
    gates_failed: int = 0
    gates_executable: int = 0
    gates_unverified: int = 0
    errors: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    tokens: dict[str, int] | None = None
    model: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    log_path: Path | None = None
    kept_worktree: bool = False
    base: str | None = None  # the integration tip the worktree started from
    rate_limit_waits: int = 0  # times the API refused the agent (rate limit, overload)
    rate_limit_waited: float = 0.0  # seconds waited for it
    refs_before: RefState | None = None  # git's refs when the steps started
    ref_changes: list[str] = field(default_factory=list)  # what the steps did to refs
    files_deleted: list[str] = field(default_factory=list)
    no_changes: bool = False  # its gates passed on the tree as it was: its commit is empty
    blocked_by: list[str] = field(default_factory=list)  # dependencies not complete
    tokens_by_model: dict[str, dict[str, int]] | None = None
    refusals: list[Refusal] = field(default_factory=list)  # over all attempts
    # For the report's timeline: wall-clock start and end, the process, and the phases.
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    worker: str = "main"  # the xdist worker id (gw0, ...) running it, or main
    phases: list[dict[str, Any]] = field(default_factory=list)
    failure_tail: list[str] = field(default_factory=list)  # of a failed step
    # The checked merge (merge_queue): gate runs on merged trees, of them after the tip moved,
    # redos on a newer tip, the tree merged, and the PRPs its failed merges collided with.
    merge_checks: int = 0
    merge_rechecks: int = 0
    redos: int = 0
    redone_on: list[str] = field(default_factory=list)
    merged_commit: str | None = None
    culprits: list[str] = field(default_factory=list)
    merge_failures: list[dict[str, Any]] = field(default_factory=list)
    # The siblings' gates its merge checks ran (--prp-merge-check siblings; None: not asked).
    sibling_gates: dict[str, Any] | None = None
    merge_stack: dict[str, Any] | None = None  # merged in a stack (merge_stack.stack_record)

    @property
    def status(self) -> str:
        return self._status

    def set_status(self, status: str, error: str | None = None) -> None:
        """The PRP's status from now on, and why, when that is worth an error line."""
        self._status = _checked(status)
        if error is not None:
            self.errors.append(error)

    def enter_phase(self, phase: str, attempt: int = 1) -> None:
        """A new phase (``workspace``, ``steps``, ``gates``, ``merge``) begins and the one
        before ends: seconds from ``started`` (the PRP's own clock)."""
        now = round(time.monotonic() - self.started, 3)
        self.end_phase(now)
        self.phases.append({"phase": phase, "attempt": attempt, "start": now, "end": None})

    def end_phase(self, at: float | None = None) -> None:
        if self.phases and self.phases[-1]["end"] is None:
            now = round(time.monotonic() - self.started, 3) if at is None else at
            self.phases[-1]["end"] = now

    def add_cost(self, outcome: Spend) -> None:
        """Cost, tokens and refused tool calls add up over attempts."""
        from pytest_prp.base.stream_json import add_tokens

        if outcome.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + outcome.cost_usd, 6)
        self.tokens = add_tokens(self.tokens, outcome.tokens)
        for model, tokens in (outcome.tokens_by_model or {}).items():
            self.tokens_by_model = self.tokens_by_model or {}
            self.tokens_by_model[model] = add_tokens(self.tokens_by_model.get(model), tokens) or {}
        self.refusals.extend(outcome.refusals)

    def refusals_text(self) -> str:
        """The refused tool calls, for a failure report ("" when there were none)."""
        if not self.refusals:
            return ""
        lines = [f"the agent CLI refused {len(self.refusals)} tool call(s):"]
        lines += [f"  - {r.describe()}" for r in self.refusals[:10]]
        if len(self.refusals) > 10:
            lines.append(f"  ... and {len(self.refusals) - 10} more (see the result JSON)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The PRP's entry in the result JSON (``report.prp``, sent to the controller)."""
        return {
            "prp_id": self.prp.id,
            "title": self.prp.title,
            "batch": self.prp.batch,
            "integration_branch": self.branch,
            "stage": self.stage,
            "status": self.status,
            "files_created": self.files_created,
            "files_modified": self.files_modified,
            "files_deleted": self.files_deleted,
            **({"no_changes": True} if self.no_changes else {}),
            "ref_changes": self.ref_changes,
            "commits": self.commits,
            "gates_passed": self.gates_passed,
            "gates_failed": self.gates_failed,
            "gates_executable": self.gates_executable,
            "gates_unverified": self.gates_unverified,
            "errors": self.errors,
            "elapsed_seconds": round(self.elapsed, 3),
            "cost_usd": self.cost_usd,
            "tokens": self.tokens,
            "tokens_by_model": self.tokens_by_model,
            "refused_tool_calls": [r.to_dict() for r in self.refusals],
            "model": self.model,
            "attempts": self.attempts,
            "rate_limit_waits": self.rate_limit_waits,
            "rate_limit_waited_seconds": round(self.rate_limit_waited, 3),
            "estimated_hours": self.prp.estimated_hours,
            "worktree": str(self.workdir) if self.kept_worktree and self.workdir else None,
            "log": str(self.log_path) if self.log_path else None,
            "blocked_by": self.blocked_by,
            "dependencies": list(self.prp.dependencies),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "worker": self.worker,
            "phases": self.phases,
            "failure_tail": self.failure_tail,
            "base_commit": self.base,
            "merged_commit": self.merged_commit,
            "merge_checks": self.merge_checks,
            "merge_rechecks": self.merge_rechecks,
            "redos": self.redos,
            "redone_on": self.redone_on,
            "collides_with": self.culprits,
            "merge_failures": self.merge_failures,
            "sibling_gates": self.sibling_gates,
            **({"merge_stack": self.merge_stack} if self.merge_stack else {}),
        }


# --- the entry of a PRP that never reported ----------------------------------------------


def blank_entry(
    prp_id: str, stage: int, branch: str, estimated_hours: float | None
) -> dict[str, Any]:
    """The entry of a PRP known only from the plan: who it is and no work. Its keys are those
    of ``PrpRun.to_dict`` that every reader counts on (a test holds the two together)."""
    return {
        "prp_id": prp_id,
        "batch": batch_of(prp_id),
        "integration_branch": branch,
        "stage": stage,
        "files_created": [],
        "files_modified": [],
        "files_deleted": [],
        "ref_changes": [],
        "commits": [],
        "gates_passed": 0,
        "gates_failed": 0,
        "gates_executable": 0,
        "gates_unverified": 0,
        "errors": [],
        "blocked_by": [],
        "elapsed_seconds": 0.0,
        "cost_usd": None,
        "tokens": None,
        "tokens_by_model": None,
        "refused_tool_calls": [],
        "estimated_hours": estimated_hours,
    }


def unreported_entry(
    prp_id: str,
    stage: int,
    branch: str,
    estimated_hours: float | None,
    known: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A blank entry with what is known of the PRP (its last report, if any) over it; the
    caller sets its status (``mark``)."""
    entry = blank_entry(prp_id, stage, branch, estimated_hours)
    entry.update(known or {})
    return entry


def interrupted_entry(
    prp_id: str,
    stage: int,
    branch: str,
    estimated_hours: float | None,
    known: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A PRP cut short before it reported: what is known of it, ``interrupted``."""
    entry = unreported_entry(prp_id, stage, branch, estimated_hours, known)
    return mark(entry, INTERRUPTED, [*entry["errors"], "interrupted"])


# --- reading a result JSON back ----------------------------------------------------------


def read_result(path: Path) -> dict[str, Any] | None:
    """A result JSON as written (``results``), or None when it is missing or not one."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def entries(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every PRP's entry of a result document, by id, each with its ``stage`` (as the JSON's
    key names it); whatever is not an entry (a hand-edited file) is left out."""
    found: dict[str, dict[str, Any]] = {}
    stages = document.get("stages")
    if not isinstance(stages, dict):
        return found
    for stage, prps in stages.items():
        if not isinstance(prps, dict):
            continue
        for prp_id, entry in prps.items():
            if isinstance(entry, dict):
                found[str(prp_id)] = {"stage": stage, **entry}
    return found


def earlier_records(path: Path) -> dict[str, dict[str, Any]]:
    """The records of the batch's last result JSON, each marked as from that earlier run
    (once: a record kept over several runs names the run that made it). A record the earlier
    run left unfinished (it was killed) is told as what it is now: not running."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stages = document["stages"]
        started = str(document.get("started_at") or "")
        found = {
            str(prp_id): dict(entry)
            for prps in stages.values()
            for prp_id, entry in prps.items()
            if isinstance(entry, dict) and isinstance(entry.get("status"), str)
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    for entry in found.values():
        entry.setdefault(EARLIER_RUN, started)
        if entry["status"] == RUNNING:
            mark(entry, INTERRUPTED)
        elif entry["status"] == PENDING:
            mark(entry, NOT_STARTED)
    return found


def spent_in_run(document: Mapping[str, Any]) -> float:
    """What the PRPs of the run that wrote a result JSON spent (not those kept from earlier)."""
    total = 0.0
    for prps in document["stages"].values():
        for entry in prps.values():
            if EARLIER_RUN not in entry:
                total += float(entry.get("cost_usd") or 0.0)
    return total


# --- lenient numbers: a record read back may come from another version, or by hand ------------


def read_number(value: object) -> float | None:
    """A number in a record read back: an int, a float or a string of one; None otherwise
    (a bool is not a number here, although Python says it is)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def read_int(value: object) -> int | None:
    """A whole number in a record read back: an int, a float (cut to its whole part) or a
    string of an int (JSON object keys, such as stage numbers, are strings); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
