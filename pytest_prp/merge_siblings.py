"""The sibling gates of one PRP's merge checks (``--prp-merge-check siblings``): the pytest
side of ``workspace.sibling_check`` (which siblings, whose gates, what a failure means)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.model import GATE_SHELL, Gate
from pytest_prp.workspace.final_check import depends_on
from pytest_prp.workspace.merge_check import check_out, head_of, parents_of
from pytest_prp.workspace.merge_queue import SEMANTIC, MergeOutcome
from pytest_prp.workspace.sibling_check import (
    RunGate,
    SiblingChecks,
    check_siblings,
    sibling_gates,
)

if TYPE_CHECKING:
    from pytest_prp.execution import Execution
    from pytest_prp.spec.model import Prp


class SiblingMergeCheck:
    """Checks the gates of the PRPs merged since ``first_base`` (the tip the PRP's first
    attempt started from) on the trees its merge would move the branch to."""

    def __init__(self, execution: Execution, prp: Prp, first_base: str, run_gate: RunGate) -> None:
        self.execution = execution
        self.prp = prp
        self.first_base = first_base
        self.run_gate = run_gate
        self.record = SiblingChecks()
        self.graph = {p.id: list(p.dependencies) for p in execution.known.values()}

    def gates_of(self, prp_id: str) -> list[Gate]:
        """A sibling's shell gates, as its file says (not a PRP of this run: none). Gate kinds
        a plugin adds are left out: their hooks would get the merging PRP's context."""
        prp = self.execution.known.get(prp_id)
        if prp is None:
            return []
        return [g for g in body_of(prp).executable_gates if g.kind == GATE_SHELL]

    def _check(self, worktree: Path, commit: str, without: str | None) -> tuple[list[str], str]:
        git = self.execution.git
        gates = sibling_gates(git, self.first_base, commit, self.prp.id, self.gates_of)
        return check_siblings(
            git,
            worktree,
            commit,
            without,
            gates,
            lambda sibling: depends_on(self.graph, self.prp.id, sibling),
            self.run_gate,
            self.record,
        )

    def on_merged_tree(self, worktree: Path) -> tuple[list[str], str]:
        """In a merge check, after the PRP's own gates passed: the merged commit is checked
        out in ``worktree``, its first parent the tip without the PRP's work."""
        git = self.execution.git
        commit = head_of(git, worktree)
        parents = parents_of(git, commit)
        return self._check(worktree, commit, parents[0] if len(parents) > 1 else None)

    def before_fast_forward(
        self, worktree: Path, commit: str, base: str, own_branch: str
    ) -> MergeOutcome | None:
        """A redone PRP whose base holds siblings merged since its first base, about to
        fast-forward (the tip is still its base): their gates on its own tree, which the
        merge would not check. None when they pass (or there is nothing to check); else the
        failed merge, its commit back on ``own_branch``."""
        git = self.execution.git
        if base == self.first_base or git.branch_sha(self.execution.branch) != base:
            return None  # nothing combined since, or not a fast-forward: the check sees it
        check_out(git, worktree, commit)
        try:
            failed, detail = self._check(worktree, commit, base)
        finally:  # as the merge leaves it: its commit on its branch (deleted once merged)
            check_out(git, worktree, commit, own_branch)
        if not failed:
            return None
        outcome = MergeOutcome(tip=base, conflict=SEMANTIC, failed=failed, detail=detail)
        outcome.checks = 1
        return outcome
