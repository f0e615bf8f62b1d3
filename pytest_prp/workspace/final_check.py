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
(``base.bisection_rounds``: with several slots, a round of probes at once).

Where the gates run: ``final_check_slots``, as many detached worktrees at once as the run had
workers, each checked out afresh at the commit of each piece of work (a PRP's gates on the tip,
or a probe of a bisection).

A merge that breaks the gate of a PRP it depends on (directly or not) may have changed that
work on purpose (a later PRP refactoring what an earlier one built): it is ``superseded``, not
a failure. Running a gate is the caller's (``RunGate``): this module knows git, not processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_prp.base.bisection_rounds import RoundBisection
from pytest_prp.spec.model import Gate
from pytest_prp.workspace.final_check_slots import RunGate, SlotPool, Unit, Verdicts
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.repository import Repository


@dataclass(frozen=True)
class MergedPrp:
    """A PRP merged in this run: the commit its merge moved the integration branch to, and
    the gates to run again."""

    prp_id: str
    merged_commit: str
    gates: tuple[Gate, ...]


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
    slots: int = 1  # the gates ran on this many worktrees at once

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
            "slots": self.slots,
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


def run_final_check(
    git: Repository,
    branch: str,
    merged: Sequence[MergedPrp],
    graph: Mapping[str, Sequence[str]],
    run_gate: RunGate,
    slots: int = 1,
    owners: Mapping[str, str] | None = None,
) -> FinalCheckOutcome:
    """The gates of every PRP in ``merged`` on the tip of ``branch``; each failing gate traced
    to the merge that broke it (``graph``: PRP id -> its dependencies, for ``superseded``).
    Spread over ``slots`` worktrees at once (``final_check_slots``); the outcome is the same
    whatever order the gates end in. ``owners``: merged commit -> PRP id of every PRP the
    run merged, those without gates to run too (an unverified one), so that a break is blamed
    on the PRP whose merge it is, not on "a commit of no PRP"."""
    outcome = FinalCheckOutcome(slots=max(1, slots))
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
        try:
            with SlotPool(git, outcome.slots, run_gate) as pool:
                _Check(pool, chain, order, graph, outcome, owners or {}).run()
        finally:
            moved = put_back(git, branch, tip)
            if moved is not None:
                outcome.error = moved
    except GitError as exc:
        outcome.error = str(exc)
    return outcome


def put_back(git: Repository, branch: str, tip: str) -> str | None:
    """A gate of the check moved or deleted ``branch`` (it shares the repository's refs):
    the branch goes back to ``tip``, where the run's last merge left it, so that no merge is
    lost; what was done, as the check's error (None when the branch is still at ``tip``).
    Nothing else moves it meanwhile: every PRP of the run has ended, and the run lock keeps
    other runs of the batch out."""
    now = git.branch_sha(branch)
    if now == tip:
        return None
    done = f"moved to {now[:12]}" if now is not None else "deleted"
    status, _, _ = git.run(
        "update-ref",
        "-m",
        "prp: put back after a gate of the final check moved it",
        f"refs/heads/{branch}",
        tip,
        now or "",
        codes=None,
    )
    back = f"put back at {tip[:12]}" if status == 0 else f"NOT put back: it held {tip[:12]}"
    return f"a gate of the final check {done} the integration branch {branch}; {back}"


@dataclass
class _Search:
    """The bisection of one gate that fails on the tip: over the PRP's own merge and every
    later one (the tip last, known to fail), a round of probes at a time."""

    prp: MergedPrp
    gate_pos: int  # the gate's position in ``prp.gates``
    items: list[str]  # commits: the PRP's own merge, then each later one up to the tip
    bisection: RoundBisection
    tail: tuple[str, ...]
    waiting: dict[int, bool | None] = field(default_factory=dict)  # this round's verdicts


class _Check:
    """Every PRP's gates on the tip, each a unit of its own for the slots; a gate failing
    there starts its bisection, whose probes go before the remaining tip runs (a bisection
    is a chain of rounds: the longest path of the check). Verdicts are taken as they come;
    what each round probes depends only on the verdicts, so the outcome does not depend on
    which slot ends first."""

    def __init__(
        self,
        pool: SlotPool,
        chain: list[str],
        order: list[MergedPrp],
        graph: Mapping[str, Sequence[str]],
        outcome: FinalCheckOutcome,
        owners: Mapping[str, str],
    ) -> None:
        self.pool, self.chain, self.order, self.graph = pool, chain, order, graph
        self.outcome = outcome
        self.prp_at = {**owners, **{m.merged_commit: m.prp_id for m in order}}
        self.searches: dict[tuple[int, int], _Search] = {}
        self.failures: dict[tuple[int, int], FinalFailure] = {}
        self.running = 0

    def run(self) -> None:
        tip = self.chain[-1]
        for n, prp in enumerate(self.order):
            self._submit(Unit((n,), prp.prp_id, prp.gates, tip))
        while self.running:
            unit, verdicts = self.pool.next_done()
            self.running -= 1
            if len(unit.key) == 1:  # a PRP's gates on the tip
                self._tip_done(unit.key[0], verdicts)
            else:
                n, gate_pos, index = unit.key
                self.outcome.bisect_runs += len(verdicts)
                self._probe_done(self.searches[(n, gate_pos)], (n, gate_pos), index, verdicts)
        # In merge order, each PRP's gates in order: the same whatever ended first.
        self.outcome.failures = [self.failures[key] for key in sorted(self.failures)]

    def _submit(self, unit: Unit, urgent: bool = False) -> None:
        self.running += 1
        self.pool.submit(unit, urgent=urgent)

    def _tip_done(self, n: int, verdicts: Verdicts) -> None:
        self.outcome.gates_run += len(verdicts)
        prp = self.order[n]
        for gate_pos, (passed, tail) in enumerate(verdicts):
            if passed:
                continue
            # The gate passed on the PRP's own merge (the merge queue's rule), so what broke it
            # is a later merge. The own merge is bisected over too: a gate failing there also
            # (a flaky one, one that depends on the machine) blames no later merge.
            items = self.chain[self.chain.index(prp.merged_commit) :]
            width = self.pool.slots
            search = _Search(prp, gate_pos, items, RoundBisection(len(items), width), tuple(tail))
            self.searches[(n, gate_pos)] = search
            self._next_round(search, (n, gate_pos))

    def _next_round(self, search: _Search, key: tuple[int, int]) -> None:
        if search.bisection.done:
            self._found(search, key)
            return
        search.waiting = {}
        n, gate_pos = key
        # The gates before it too, in order: a gate may rely on what an earlier one built.
        gates = search.prp.gates[: gate_pos + 1]
        for index in search.bisection.round():
            search.waiting[index] = None
            commit = search.items[index]
            self._submit(Unit((n, gate_pos, index), search.prp.prp_id, gates, commit), urgent=True)

    def _probe_done(
        self, search: _Search, key: tuple[int, int], index: int, verdicts: Verdicts
    ) -> None:
        search.waiting[index] = verdicts[-1][0]
        if any(v is None for v in search.waiting.values()):
            return
        search.bisection.learn({i: bool(v) for i, v in search.waiting.items()})
        self._next_round(search, key)

    def _found(self, search: _Search, key: tuple[int, int]) -> None:
        found = search.bisection.found
        # Index 0 is the PRP's own merge: failing there too, no later merge broke it.
        culprit_sha = search.items[found] if found else None
        culprit = self.prp_at.get(culprit_sha) if culprit_sha is not None else None
        prp = search.prp
        superseded = culprit is not None and depends_on(self.graph, culprit, prp.prp_id)
        gate = prp.gates[search.gate_pos]
        self.failures[key] = FinalFailure(
            prp.prp_id, gate.name, gate.index, culprit, culprit_sha, superseded, search.tail
        )
