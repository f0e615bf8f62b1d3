"""The wider merge check (``--prp-merge-check siblings``): a merge that is not a fast-forward
combines the PRP's work with that of the PRPs merged since its base, its siblings; their gates
run on the merged tree too, after the PRP's own. Breaking a sibling's gate is a conflict.

What is re-checked, and why it is safe:

- the siblings are the PRPs of this run whose commits the checked tree holds and the PRP's
  *first* base does not (``merged_since``, read from the PRP-Id trailers). The first base, not
  the base of a redo: a PRP redone on a tip that holds a sibling's work merges there by
  fast-forward, and must not break that sibling's gate either (``precheck_needed``).
- PRPs merged before the PRP's base are not re-checked: the PRP started from a tree holding
  their work and its own gates passed on it; whether it broke their gates is the final check's
  question. Nor a fast-forward: nothing was combined.
- a sibling's gate that fails on the merged tree is
  - ``superseded`` when the merging PRP depends on that sibling, directly or through other
    PRPs: a later PRP may change earlier work on purpose. Recorded, not a failure;
  - ``broken_before`` when it fails on the tree without the PRP's work too (the tip the merge
    was built on): an earlier merge broke it (a dependent that superseded it, say), not this
    one. Recorded, not a failure;
  - else a semantic conflict: the sibling and its gate are the culprit.

Running a gate is the caller's (``RunGate``): this module knows git, not processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_prp.spec.model import Gate
from pytest_prp.workspace.git_merge import Merging
from pytest_prp.workspace.merge_check import check_out, merged_since

OWN = "own"
SIBLINGS = "siblings"

# Run one gate in the worktree as it stands: passed, and the failure's text.
RunGate = Callable[[Gate], tuple[bool, str]]


@dataclass(frozen=True)
class SiblingGate:
    """A gate of a sibling PRP."""

    prp_id: str
    gate: Gate

    @property
    def label(self) -> str:
        return f"{self.prp_id} gate {self.gate.index} {self.gate.name!r}"


@dataclass
class SiblingChecks:
    """What the sibling gates of one PRP's merge checks found, over all its checks: the
    result JSON's ``sibling_gates``."""

    runs: int = 0  # gate runs, on merged trees and on the tips without the PRP's work
    ran: list[str] = field(default_factory=list)  # the sibling gates run (labels, once each)
    superseded: list[str] = field(default_factory=list)
    broken_before: list[str] = field(default_factory=list)
    culprit: dict[str, Any] | None = None  # the last sibling gate the PRP's work broke
    failing: SiblingGate | None = None  # of the last check, when a sibling's gate failed it

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "ran": list(self.ran),
            "superseded": list(self.superseded),
            "broken_before": list(self.broken_before),
            "culprit": self.culprit,
        }


def sibling_gates(
    git: Merging,
    first_base: str,
    commit: str,
    own_id: str,
    gates_of: Callable[[str], Sequence[Gate]],
) -> list[SiblingGate]:
    """The gates of the PRPs merged in ``commit``'s history since ``first_base``, oldest
    first; ``gates_of`` gives a PRP's gates (none for a PRP not of this run)."""
    ids = [m.prp_id for m in merged_since(git, first_base, commit) if m.prp_id]
    return [
        SiblingGate(prp_id, gate)
        for prp_id in dict.fromkeys(ids)
        if prp_id != own_id
        for gate in gates_of(prp_id)
    ]


def check_siblings(
    git: Merging,
    worktree: Path,
    commit: str,
    without: str | None,
    gates: Sequence[SiblingGate],
    depends_on: Callable[[str], bool],
    run_gate: RunGate,
    record: SiblingChecks,
) -> tuple[list[str], str]:
    """Run ``gates`` in ``worktree``, which holds ``commit``; ``without`` is that tree without
    the PRP's work (None: unknown, a failure is then the PRP's). The label of the sibling gate
    the PRP's work breaks and its output, or [] and "" (see the module's rules)."""
    record.failing = None
    for sibling in gates:
        passed, text = run_gate(sibling.gate)
        record.runs += 1
        if sibling.label not in record.ran:
            record.ran.append(sibling.label)
        if passed:
            continue
        if depends_on(sibling.prp_id):
            _add(record.superseded, sibling.label)
            continue
        if without is not None:
            check_out(git, worktree, without)
            try:
                before, _ = run_gate(sibling.gate)
                record.runs += 1
            finally:
                check_out(git, worktree, commit)
            if not before:
                _add(record.broken_before, sibling.label)
                continue
        record.failing = sibling
        record.culprit = {
            "prp_id": sibling.prp_id,
            "gate": sibling.gate.name,
            "gate_index": sibling.gate.index,
            "on": commit,
        }
        return [sibling.label], f"{sibling.label}, a gate of a sibling PRP:\n{text}"
    return [], ""


def _add(labels: list[str], label: str) -> None:
    if label not in labels:
        labels.append(label)


def sibling_notes(found: dict[str, Any] | None, merged: bool) -> list[str]:
    """What the summary line of a PRP says about its sibling gates (its ``sibling_gates``)."""
    if not found:
        return []
    notes = [f"supersedes {label}" for label in found.get("superseded") or []]
    notes.extend(f"{label} broken before" for label in found.get("broken_before") or [])
    culprit = found.get("culprit")
    if culprit and not merged:
        notes.append(f"breaks {culprit['prp_id']} gate {culprit['gate_index']} {culprit['gate']!r}")
    if merged and found.get("ran"):
        notes.append(f"{len(found['ran'])} sibling gate(s) checked")
    return notes
