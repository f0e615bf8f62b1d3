"""The final check of a batch (``--prp-final-check``): the gates of every PRP merged in the run,
run again on the integration branch's final tip; a gate that no longer passes is traced, by
bisecting the run's merges, to the merge that broke it.

Why it is needed: a PRP's merge check runs its own gates (and the integration gate) on the
merged tree, so a PRP that breaks what a sibling's gate checks merges all the same. The final
check catches that once per batch instead of on every merge.

The run's merges are the first-parent history of the integration branch from the oldest merge
of the run to its tip: each commit on it is one PRP's merge (a merge commit, or the PRP's own
commit when the branch fast-forwarded). A PRP's gate passed on its own merge (the merge queue's
rule), so the merge that broke it lies after that one, up to the tip: found by bisection
(``base.bisection``) in one worktree of its own, detached, checked out at each commit tried.

A merge that breaks the gate of a PRP it depends on (directly or not) may have changed that
work on purpose (a later PRP refactoring what an earlier one built): it is ``superseded``, not
a failure. Running a gate is the caller's (``RunGate``): this module knows git, not processes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_prp.base.bisection import first_failing
from pytest_prp.spec.model import Gate
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.repository import Repository


@dataclass(frozen=True)
class MergedPrp:
    """A PRP merged in this run: the commit its merge moved the integration branch to, and
    the gates to run again."""

    prp_id: str
    merged_commit: str
    gates: tuple[Gate, ...]


# Run one gate of a PRP in a worktree holding a commit (prp_id, gate, worktree, commit):
# passed, and the last lines of its output.
RunGate = Callable[[str, Gate, Path, str], tuple[bool, list[str]]]


@dataclass(frozen=True)
class FinalFailure:
    """A gate of ``prp_id`` that fails on the final tip; ``broken_by`` the PRP whose merge
    broke it (``broken_at`` that merge's commit; None when bisection found none)."""

    prp_id: str
    gate: str
    gate_index: int
    broken_by: str | None
    broken_at: str | None
    superseded: bool
    tail: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "prp_id": self.prp_id,
            "gate": self.gate,
            "gate_index": self.gate_index,
            "broken_by": self.broken_by,
            "broken_at": self.broken_at,
            "superseded": self.superseded,
            "tail": list(self.tail),
        }


@dataclass
class FinalCheckOutcome:
    """What the final check found on ``tip``: gates run there, gate runs spent bisecting,
    failures; ``error`` when it could not run (git failed)."""

    tip: str | None = None
    start: str | None = None  # the tip before the run's first merge
    prps: list[str] = field(default_factory=list)  # the PRPs whose gates ran, in merge order
    gates_run: int = 0
    bisect_runs: int = 0
    failures: list[FinalFailure] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def broken(self) -> list[FinalFailure]:
        """The failures that are not superseded: the ones that fail the run."""
        return [f for f in self.failures if not f.superseded]

    def as_json(self) -> dict[str, object]:
        return {
            "tip": self.tip,
            "start": self.start,
            "prps": list(self.prps),
            "gates_run": self.gates_run,
            "bisect_runs": self.bisect_runs,
            "failures": [f.as_json() for f in self.failures],
            "passed": not self.broken and self.error is None,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def depends_on(graph: Mapping[str, Sequence[str]], later: str, earlier: str) -> bool:
    """Whether ``later`` depends on ``earlier``, directly or through other PRPs."""
    seen: set[str] = set()
    todo = list(graph.get(later, ()))
    while todo:
        prp_id = todo.pop()
        if prp_id == earlier:
            return True
        if prp_id not in seen:
            seen.add(prp_id)
            todo.extend(graph.get(prp_id, ()))
    return False


def first_parent_chain(git: Repository, tip: str, commits: set[str]) -> list[str]:
    """The first-parent history of ``tip`` back to the oldest of ``commits`` on it, oldest
    first (commits not on that history, such as a branch reset by hand, are left out)."""
    out = git.run("rev-list", "--first-parent", tip)[1].split()
    left = set(commits)
    chain: list[str] = []
    oldest = 0  # length of the chain up to the oldest of ``commits`` seen
    for sha in out:
        if not left:
            break
        chain.append(sha)
        if sha in left:
            left.discard(sha)
            oldest = len(chain)
    return list(reversed(chain[:oldest]))


class _Checkout:
    """A detached worktree of its own, reset to each commit tried (nothing a gate left there
    reaches the next run), removed at the end."""

    def __init__(self, git: Repository, path: Path, commit: str) -> None:
        self.git, self.path = git, path
        self.at: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self.remove()
        git.run("worktree", "add", "-q", "--detach", str(path), commit)
        self.at = commit

    def reset(self, commit: str) -> None:
        self.git.run("checkout", "-q", "-f", "--detach", commit, cwd=self.path)
        self.git.run("clean", "-ffdxq", cwd=self.path)
        self.at = commit

    def remove(self) -> None:
        self.git.run("worktree", "remove", "--force", str(self.path), codes=None)
        shutil.rmtree(self.path, ignore_errors=True)
        self.git.run("worktree", "prune", codes=None)


def run_final_check(
    git: Repository,
    branch: str,
    merged: Sequence[MergedPrp],
    graph: Mapping[str, Sequence[str]],
    run_gate: RunGate,
    workdir: Path | None = None,
) -> FinalCheckOutcome:
    """The gates of every PRP in ``merged`` on the tip of ``branch``; each failing gate traced
    to the merge that broke it (``graph``: PRP id -> its dependencies, for ``superseded``)."""
    outcome = FinalCheckOutcome()
    try:
        tip = git.branch_sha(branch)
        if tip is None or not merged:
            return outcome
        outcome.tip = tip
        by_commit = {m.merged_commit: m for m in merged}
        chain = first_parent_chain(git, tip, set(by_commit))
        if not chain:
            outcome.error = f"none of the run's merges is on the history of {branch}"
            return outcome
        parent = git.run("rev-parse", "--verify", "-q", f"{chain[0]}^1", codes=(0, 1))[1]
        outcome.start = parent.strip() or None
        order = [by_commit[sha] for sha in chain if sha in by_commit]
        outcome.prps = [m.prp_id for m in order]
        prp_at = {m.merged_commit: m.prp_id for m in order}
        where = workdir or git.worktrees_dir / f"+final-check-{os.getpid()}"
        checkout = _Checkout(git, where, tip)
        try:
            for prp in order:
                _check_prp(checkout, prp, chain, prp_at, graph, run_gate, outcome)
        finally:
            checkout.remove()
    except GitError as exc:
        outcome.error = str(exc)
    return outcome


def _check_prp(
    checkout: _Checkout,
    prp: MergedPrp,
    chain: list[str],
    prp_at: Mapping[str, str],
    graph: Mapping[str, Sequence[str]],
    run_gate: RunGate,
    outcome: FinalCheckOutcome,
) -> None:
    """One PRP's gates on the tip, in order, in one fresh checkout (as they ran for it)."""
    tip = chain[-1]
    checkout.reset(tip)
    failed: list[tuple[Gate, list[str]]] = []
    for gate in prp.gates:
        passed, tail = run_gate(prp.prp_id, gate, checkout.path, tip)
        outcome.gates_run += 1
        if not passed:
            failed.append((gate, tail))
    for gate, tail in failed:
        after = chain.index(prp.merged_commit) + 1
        candidates = chain[after:]

        def passes(commit: str, gate: Gate = gate) -> bool:
            # The gates before it too, in order: a gate may rely on what an earlier one built.
            checkout.reset(commit)
            verdict = True
            for earlier in prp.gates:
                ok, _ = run_gate(prp.prp_id, earlier, checkout.path, commit)
                outcome.bisect_runs += 1
                if earlier is gate:
                    verdict = ok
                    break
            return verdict

        # The bisection assumes the gate passed on the PRP's own merge (the merge queue's rule);
        # checked, so that a gate failing everywhere (a flaky one, one that depends on the
        # machine) blames no later merge.
        passed_on_own = bool(candidates) and passes(chain[after - 1])
        found = first_failing(candidates, passes) if passed_on_own else None
        culprit_sha = candidates[found] if found is not None else None
        culprit = prp_at.get(culprit_sha) if culprit_sha is not None else None
        superseded = culprit is not None and depends_on(graph, culprit, prp.prp_id)
        outcome.failures.append(
            FinalFailure(
                prp.prp_id, gate.name, gate.index, culprit, culprit_sha, superseded, tuple(tail)
            )
        )
