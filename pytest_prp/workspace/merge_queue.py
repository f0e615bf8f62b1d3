"""The rule of the integration branch: it only moves to a commit whose tree passed the merging
PRP's gates (and the integration gate). This module decides what to check, when to check
again, and whom a failed merge collides with; ``merge_check`` does the git side.

How a merge is decided (and why it is safe):

- the PRP's gates ran on its own commit's tree. If the tip is still the PRP's base (or an
  ancestor of its commit), the branch moves to that very commit: the tree that passed.
- otherwise the merged commit is built on the current tip (``merge-tree``), checked out in the
  PRP's worktree and its gates run there, without the merge lock: other merges go on.
- the branch then moves by compare-and-swap from the tip the merge was built on. If another
  merge moved it meanwhile the swap fails, the merge is built again on the new tip, and its
  tree is checked again unless that very tree already passed (gates are a function of the
  tree: the same tree needs no second run). The branch so never moves to an unchecked tree.
- a PRP that lost the race ``HOLD_AFTER`` times checks with the merge lock held: it cannot
  starve behind faster PRPs (only then do other merges wait behind its gates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace
from pytest_prp.workspace.merge_check import Merged, build, check_out, swap, tip_of, tree_of
from pytest_prp.workspace.sibling_check import sibling_notes

HOLD_AFTER = 3
# With the lock held only something outside pytest-prp (or a broken ref) fails the swap: a
# bound instead of looping for ever.
GIVE_UP_AFTER = 20

TEXTUAL = "textual"
SEMANTIC = "semantic"


@dataclass
class MergeOutcome:
    """How a PRP's checked merge ended: ``sha`` (the new tip) when merged, else ``conflict``
    (TEXTUAL or SEMANTIC) on the ``tip`` it was tried on, with its paths or failed gates."""

    sha: str | None = None
    fast_forward: bool = False
    checks: int = 0  # gate runs on merged trees
    rechecks: int = 0  # of them, after the tip moved during a check
    tip: str | None = None
    conflict: str | None = None
    paths: tuple[str, ...] = ()
    failed: list[str] = field(default_factory=list)  # names of the gates that failed
    detail: str = ""  # the failed gates' output


# A check: run the gates in the worktree (which holds the merged tree); the names of the
# failed gates and their output ([] and "" when all passed).
Check = Callable[[], tuple[list[str], str]]


class MergeFunction(Protocol):
    """A checked merge, as ``checked_merge`` is (``remote_worker.remote_merge`` and
    ``merge_stack.stacked_merge`` make others with the same rule)."""

    def __call__(
        self,
        git: GitWorkspace,
        branch: str,
        commit: str,
        base: str,
        worktree: Path,
        message: str,
        check: Check,
        delete_branch: str | None,
    ) -> MergeOutcome: ...


def checked_merge(
    git: GitWorkspace,
    branch: str,
    commit: str,
    base: str,
    worktree: Path,
    message: str,
    check: Check,
    delete_branch: str | None,
) -> MergeOutcome:
    """Merge ``commit`` (whose tree passed its gates) into ``branch`` under the rule above."""
    return merge_until_moved(
        git,
        branch,
        commit,
        base,
        worktree,
        message,
        check,
        tip=tip_of(git, branch),
        move=lambda new, tip, held: swap(git, branch, new, tip, delete_branch, held),
        next_tip=lambda: tip_of(git, branch),
        holds=lambda lost: lost >= HOLD_AFTER,
    )


def merge_until_moved(
    git: GitWorkspace,
    branch: str,
    commit: str,
    base: str,
    worktree: Path,
    message: str,
    check: Check,
    *,
    tip: str,
    move: Callable[[str, str, bool], bool],
    next_tip: Callable[[], str],
    holds: Callable[[int], bool] = lambda lost: False,
) -> MergeOutcome:
    """The one loop of the rule, whoever holds the branch (this repository, or the controller
    of remote workers): build the merge of ``commit`` on ``tip``, check the merged tree unless
    that very tree passed already, and ``move(new, tip, held)`` the branch from ``tip`` to it;
    when it has moved meanwhile (``move`` says False), take ``next_tip()`` and do it again.
    Once ``holds(times lost)``, a try is made with the merge turn held. On ``base`` itself the
    branch moves to ``commit``: the tree its gates passed on, no second check."""
    outcome = MergeOutcome(tip=tip)
    if tip == base and move(commit, tip, False):
        outcome.sha, outcome.fast_forward = commit, True
        return outcome
    passed = {tree_of(git, commit)}
    lost = 0
    while True:
        held = holds(lost)
        with git.merge_turn(branch) if held else nullcontext():
            if lost or tip == base:  # the tip moved (a failed move says so)
                tip = next_tip()
            outcome.tip = tip
            built = build(git, tip, commit, message)
            if built.sha is None:
                outcome.conflict, outcome.paths = TEXTUAL, built.conflicts
                return outcome
            tree = tree_of(git, built.sha)
            if tree not in passed:
                check_out(git, worktree, built.sha)
                # A re-check: an earlier check passed and the tip moved since.
                outcome.rechecks += 1 if outcome.checks else 0
                outcome.checks += 1
                failed, detail = check()
                if failed:
                    outcome.conflict, outcome.failed, outcome.detail = SEMANTIC, failed, detail
                    return outcome
                passed.add(tree)
            if move(built.sha, tip, held):
                outcome.sha, outcome.fast_forward = built.sha, built.fast_forward
                return outcome
        lost += 1
        if lost >= GIVE_UP_AFTER:
            raise GitError(f"could not merge into {branch}: it kept changing")


def collisions(merged: Sequence[Merged], conflict: str, paths: Sequence[str]) -> list[str]:
    """The PRPs merged since a PRP's base that its merge collides with: for a textual conflict
    those that touched a conflicting path; for a semantic one (a gate that passed alone fails
    on the merged tree) every PRP merged since its base, as any of them may have broken it."""
    ids = [m.prp_id for m in merged if m.prp_id]
    if conflict == TEXTUAL:
        wanted = set(paths)
        touching = [m.prp_id for m in merged if m.prp_id and wanted.intersection(m.paths)]
        ids = touching or ids
    return list(dict.fromkeys(ids))


def redo_prompt(
    conflict: str,
    tip: str,
    paths: Sequence[str],
    failed: Sequence[str],
    merged: Sequence[Merged],
    diff: str,
) -> str:
    """What an agent redoing a PRP on the new tip is told, after the PRP's own prompt."""
    moved = [f"- {m.sha[:12]} {m.prp_id or '(no PRP id)'}" for m in merged] or ["- (none)"]
    if conflict == TEXTUAL:
        why = "merging your earlier work conflicted in these paths:\n" + "\n".join(
            f"- {p}" for p in paths
        )
    else:
        why = "your earlier work, merged with theirs, fails these gates:\n" + "\n".join(
            f"- {g}" for g in failed
        )
    return (
        f"## Redo on the current integration tip {tip[:12]}\n\n"
        "Other PRPs were merged since you started, and "
        f"{why}\n\n"
        "This directory now holds the current tip, without your earlier changes. Do the task "
        "again on it, keeping the other PRPs' work (do not commit).\n\n"
        "Commits that moved the tip since your base:\n" + "\n".join(moved) + "\n\n"
        "Your earlier diff:\n```diff\n" + diff + "\n```\n"
    )


def merge_notes(entry: Mapping[str, Any]) -> list[str]:
    """What the summary line of a PRP says about its merge (a result JSON entry)."""
    notes = [f"redone on tip {tip[:12]}" for tip in entry.get("redone_on") or []]
    if entry.get("merged_commit") and entry.get("merge_rechecks"):
        notes.append("merged after re-check")
    elif entry.get("merged_commit") and entry.get("merge_checks"):
        notes.append("merged after check")
    notes.extend(sibling_notes(entry.get("sibling_gates"), bool(entry.get("merged_commit"))))
    if entry.get("collides_with"):
        notes.append("collides with " + ", ".join(entry["collides_with"]))
    return notes
