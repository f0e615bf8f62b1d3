"""Batching the merges that queue up (``--prp-merge-batch``): the integration gate runs once
on the tip of a stack of PRPs ready to merge, instead of once per merging PRP.

How it goes, for the workers of one repository (they share its git dir):

- a PRP whose merge is not a fast-forward onto an empty queue joins the queue (a JSON file in
  the git dir, changed under the merge lock): its merge is built on the queue's top (the last
  PRP's merge, else the branch tip), and its own gates run there, without the lock. A PRP
  whose merge conflicts with PRPs still queued waits for them to leave, then tries again.
- it then waits for the runner's turn (a lock file). Whoever takes it with its PRP still
  queued runs the integration gate once on the stack: the first PRPs of the queue whose own
  gates passed (one still checking right above them is waited for, up to the gate's last run
  time). Passed: the branch moves to the stack's top by compare-and-swap, all of it merged.
  Failed: a bisection over the stack's merges finds the first on which it fails; the branch
  moves to the one before (the gate passed there); that PRP fails naming the integration
  gate (and is redone as any failed merge); the PRPs after it build again on the new tip.
  A PRP whose own gates failed fails once it is first in the queue (its merge then is on the
  branch tip); if a PRP under it does not merge, it builds again instead.

The rule holds: the branch only moves to a commit on which the integration gate passed; each
PRP's own gates passed on the merge that brought it in (a tree holding it and every PRP
stacked before it). Crash safety: each queued PRP's worker holds a lock file of its own; the
runner drops a PRP whose lock is free (its worker died), with every PRP stacked on it (they
build again), before it runs the gate and again before it moves the branch. A runner killed
in its turn frees the turn; the next one finds its PRP dead. Nothing is merged that its
worker does not report, and every merged PRP is in the branch once (its commit, trailers).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_prp.base.bisection import first_failing
from pytest_prp.base.jsonfile import write_json_atomically
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_merge import Merging
from pytest_prp.workspace.merge_check import build, check_out, tip_of, tree_of
from pytest_prp.workspace.merge_queue import (
    GIVE_UP_AFTER,
    SEMANTIC,
    TEXTUAL,
    Check,
    MergeFunction,
    MergeOutcome,
)
from pytest_prp.workspace.worktree_files import safe_name

MERGED = "merged"
FAILED = "failed"
AGAIN = "again"  # build again on the new top: a PRP stacked under it did not merge

# The states of a PRP in the queue: its own gates running on its merge, passed, failed.
CHECKING, READY, BROKEN = "checking", "ready", "broken"

POLL = 0.05  # seconds between looks at a queue whose first PRP is still checking


@dataclass
class StackedOutcome(MergeOutcome):
    """A ``MergeOutcome`` with the stack that merged the PRP: ``stack`` PRPs merged at once,
    the integration gate passed on ``gate_commit``; ``gate_runs`` of it by this worker
    (for stacks it ran, bisection probes included)."""

    stack: int = 0
    gate_commit: str | None = None
    gate_runs: int = 0


@dataclass
class Entry:
    """A PRP in the queue: its commit, its merge onto the PRP before it (``merged``, where its
    gates run), its state, its branch (deleted when it merges), and its failed gates."""

    prp_id: str
    commit: str
    merged: str
    state: str = CHECKING
    delete_branch: str | None = None
    failed: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass
class Queue:
    """The queue of one branch: ``base`` (the branch tip the first entry is built on), the
    entries, each built on the one before, ``results`` for their workers to read, and how
    long the integration gate last took (how long a runner waits for a PRP still checking
    to join its stack)."""

    base: str | None = None
    entries: list[Entry] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    gate_seconds: float = 0.0

    def top(self) -> str | None:
        return self.entries[-1].merged if self.entries else None

    def index_of(self, prp_id: str) -> int | None:
        return next((i for i, e in enumerate(self.entries) if e.prp_id == prp_id), None)

    def drop_from(self, index: int, result: Mapping[str, Any] | None = None) -> None:
        """Entries from ``index`` on leave the queue (``result`` for their workers)."""
        for entry in self.entries[index:]:
            if result is not None:
                self.results[entry.prp_id] = dict(result)
        del self.entries[index:]


def _queue_path(git: Merging, branch: str) -> Path:
    return git.common_dir / "prp" / "merge-stack" / f"{safe_name(branch)}.json"


def load(git: Merging, branch: str) -> Queue:
    """The branch's queue (empty when there is none, or it cannot be read: a queue lost is
    PRPs building again, never merged unchecked). Read under the merge turn."""
    try:
        data = json.loads(_queue_path(git, branch).read_text(encoding="utf-8"))
        entries = [Entry(**e) for e in data.get("entries") or []]
        results = dict(data.get("results") or {})
        return Queue(data.get("base"), entries, results, float(data.get("gate_seconds") or 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return Queue()


def save(git: Merging, branch: str, queue: Queue) -> None:
    document = {
        "base": queue.base,
        "entries": [asdict(e) for e in queue.entries],
        "results": queue.results,
        "gate_seconds": queue.gate_seconds,
    }
    write_json_atomically(_queue_path(git, branch), document)


def _alive_name(branch: str, prp_id: str) -> str:
    return f"merge-stack-{safe_name(branch)}-{safe_name(prp_id)}.lock"


def _is_alive(git: Merging, branch: str, prp_id: str) -> bool:
    """Whether the worker of ``prp_id``'s entry still holds its lock (a dead one's is free)."""
    fd = git.try_lock(_alive_name(branch, prp_id))
    if fd is None:
        return True
    os.close(fd)
    return False


def _first_dead(git: Merging, branch: str, entries: Sequence[Entry]) -> int | None:
    for index, entry in enumerate(entries):
        if not _is_alive(git, branch, entry.prp_id):
            return index
    return None


def _prune_dead(git: Merging, branch: str, queue: Queue, upto: int | None = None) -> bool:
    """Drop the first entry (of the first ``upto``) whose worker died, and every entry
    stacked on it (they build again): whether there was one."""
    dead = _first_dead(git, branch, queue.entries[:upto])
    if dead is None:
        return False
    del queue.entries[dead]
    queue.drop_from(dead, {"kind": AGAIN})
    return True


@contextmanager
def _held(git: Merging, name: str) -> Iterator[None]:
    fd = git.open_lock(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _runner_turn(git: Merging, branch: str) -> AbstractContextManager[None]:
    return _held(git, f"merge-stack-run-{safe_name(branch)}.lock")


def stacked_merge(prp_id: str, gate: Check, gate_name: str) -> MergeFunction:
    """``merge_queue.checked_merge``'s signature, merging through the queue; ``gate`` runs the
    integration gate (named ``gate_name``) in the worktree, ``check`` the PRP's own gates."""

    def merge(
        git: Merging,
        branch: str,
        commit: str,
        base: str,
        worktree: Path,
        message: str,
        check: Check,
        delete_branch: str | None,
    ) -> StackedOutcome:
        runner = _Runner(git, branch, worktree, gate, gate_name, StackedOutcome())
        mine = Entry(prp_id, commit, commit, CHECKING, delete_branch)
        return _merge(runner, mine, base, message, check)

    return merge


@dataclass
class _Runner:
    """What a worker needs to run stacks: the branch, its worktree (where the integration
    gate runs), the gate, and the outcome counting its runs."""

    git: Merging
    branch: str
    worktree: Path
    gate: Check
    gate_name: str
    outcome: StackedOutcome


def _merge(runner: _Runner, mine: Entry, base: str, message: str, check: Check) -> StackedOutcome:
    git, branch, outcome = runner.git, runner.branch, runner.outcome
    alive = git.try_lock(_alive_name(branch, mine.prp_id))
    if alive is None:
        raise GitError(f"{mine.prp_id} is already waiting to merge into {branch} (another run?)")
    try:
        passed = {tree_of(git, mine.commit)}
        for _ in range(GIVE_UP_AFTER):
            with git.merge_turn(branch):
                joined = _join(git, branch, mine, base, message, passed, outcome)
            if joined == _DONE:
                return outcome
            if isinstance(joined, list):  # conflicts on PRPs still waiting: may not merge
                _drain(runner, joined)
                continue
            if mine.state == CHECKING:
                _check(git, branch, mine, runner.worktree, check, passed, outcome)
            result = _wait(runner, mine.prp_id)
            if result["kind"] == MERGED:
                outcome.sha = mine.merged
                outcome.stack, outcome.gate_commit = result["stack"], result["gate_commit"]
                return outcome
            if result["kind"] == FAILED:
                outcome.tip, outcome.conflict = result["tip"], SEMANTIC
                outcome.failed, outcome.detail = result["failed"], result["detail"]
                return outcome
        raise GitError(f"could not merge into {branch}: its merge queue kept changing")
    finally:
        os.close(alive)


_DONE, _JOINED = "done", "joined"


def _join(
    git: Merging,
    branch: str,
    mine: Entry,
    base: str,
    message: str,
    passed: set[str],
    outcome: StackedOutcome,
) -> str | list[str]:
    """With the merge turn held: merge by fast-forward, or fail on a textual conflict with the
    branch (``_DONE``); join the queue, built on its top (``_JOINED``); or the ids of the PRPs
    waiting under its conflict."""
    git.undo_foreign_tail(branch, held=True)  # a gate that reset it: not built on
    queue = load(git, branch)
    changed = _forget(queue, mine.prp_id)
    # A PRP whose worker died (left by a killed run): not built on.
    changed = _prune_dead(git, branch, queue) or changed
    tip = tip_of(git, branch)
    top = queue.top() or tip
    outcome.tip = top
    if not queue.entries and tip == base:
        # Its gates (the integration gate among them) passed on this very tree.
        ref, reflog = f"refs/heads/{branch}", f"prp: merge {mine.commit[:12]}"
        if git.compare_and_swap(ref, mine.commit, tip, reflog, mine.delete_branch)[0] == 0:
            if changed:
                save(git, branch, queue)
            outcome.sha, outcome.fast_forward = mine.commit, True
            return _DONE
    if _is_ancestor(git, mine.commit, tip):
        # Merged by a runner that died before it could say so: on the branch, once.
        if changed:
            save(git, branch, queue)
        outcome.sha = tip
        return _DONE
    built = build(git, top, mine.commit, message)
    if built.sha is None:
        on_tip = build(git, tip, mine.commit, message) if queue.entries else built
        if changed:
            save(git, branch, queue)
        if on_tip.sha is not None:
            # It conflicts with PRPs still queued, not with the branch: they may not merge.
            return [e.prp_id for e in queue.entries]
        outcome.tip = tip
        outcome.conflict, outcome.paths = TEXTUAL, on_tip.conflicts
        return _DONE
    if not queue.entries:
        queue.base = tip
    mine.merged, mine.failed, mine.detail = built.sha, [], ""
    mine.state = READY if tree_of(git, built.sha) in passed else CHECKING
    outcome.fast_forward = built.fast_forward
    queue.entries.append(mine)
    save(git, branch, queue)
    return _JOINED


def _is_ancestor(git: Merging, commit: str, tip: str) -> bool:
    status = git.run("merge-base", "--is-ancestor", commit, tip, codes=(0, 1))[0]
    return status == 0


def _check(
    git: Merging,
    branch: str,
    mine: Entry,
    worktree: Path,
    check: Check,
    passed: set[str],
    outcome: StackedOutcome,
) -> None:
    """The PRP's own gates on its merge, in its worktree (no lock held); its entry says how
    they went, unless it left the queue meanwhile (a PRP under it did not merge)."""
    check_out(git, worktree, mine.merged)
    outcome.rechecks += 1 if outcome.checks else 0
    outcome.checks += 1
    failed, detail = check()
    if not failed:
        passed.add(tree_of(git, mine.merged))
    with git.merge_turn(branch):
        queue = load(git, branch)
        index = queue.index_of(mine.prp_id)
        if index is not None:
            entry = queue.entries[index]
            entry.state = BROKEN if failed else READY
            entry.failed, entry.detail = failed, detail
            save(git, branch, queue)


def _forget(queue: Queue, prp_id: str) -> bool:
    """A result or an entry of ``prp_id`` left by an earlier worker of it (killed, or an
    earlier run): the PRPs stacked on that entry build again. Whether there was one."""
    found = queue.results.pop(prp_id, None) is not None
    index = queue.index_of(prp_id)
    if index is not None:
        del queue.entries[index]
        queue.drop_from(index, {"kind": AGAIN})
        return True
    return found


def _wait(runner: _Runner, prp_id: str) -> dict[str, Any]:
    """Wait for the runner's turn until ``prp_id``'s result is in; taking the turn with the
    PRP still waiting, run the stack."""
    git, branch = runner.git, runner.branch
    while True:
        with _runner_turn(git, branch):
            with git.merge_turn(branch):
                queue = load(git, branch)
                result = queue.results.pop(prp_id, None)
                if result is not None:
                    save(git, branch, queue)
            if result is not None:
                return result
            if queue.index_of(prp_id) is None:
                return {"kind": AGAIN}  # dropped (a queue that could not be read)
            ran = _run_stack(runner)
        if not ran:
            time.sleep(POLL)


def _drain(runner: _Runner, below: Sequence[str]) -> None:
    """Wait until the PRPs ``below`` have left the queue (merged or not), running their
    stacks when it is their turn: the caller's merge conflicts on them."""
    git, branch = runner.git, runner.branch
    while True:
        with git.merge_turn(branch):
            queue = load(git, branch)
        if not any(queue.index_of(prp_id) is not None for prp_id in below):
            return
        with _runner_turn(git, branch):
            ran = _run_stack(runner)
        if not ran:
            time.sleep(POLL)


def _snapshot(runner: _Runner) -> tuple[list[Entry], str] | bool:
    """With the runner's turn held: the stack to check (the first PRPs of the queue whose
    gates passed) and the tip it is built on; or whether the queue changed (the first PRP's
    own gates failed: it fails; a dead PRP dropped) when there is no stack to check.

    A PRP still checking right above the stack is waited for, up to the integration gate's
    last run time: joining this stack saves it a run of its own."""
    git, branch = runner.git, runner.branch
    since = time.monotonic()
    while True:
        with git.merge_turn(branch):
            queue = load(git, branch)
            changed = _prune_dead(git, branch, queue)
            entries = queue.entries
            ready = next((i for i, e in enumerate(entries) if e.state != READY), len(entries))
            if ready == 0 and entries and entries[0].state == BROKEN:
                # Its own gates failed on its merge onto the branch tip: its own failure.
                first = entries[0]
                queue.results[first.prp_id] = {
                    "kind": FAILED, "tip": queue.base, "failed": first.failed,
                    "detail": first.detail,
                }  # fmt: skip
                queue.drop_from(1, {"kind": AGAIN})
                del entries[0]
                save(git, branch, queue)
                return True
            if changed:
                save(git, branch, queue)
            if ready == 0 or queue.base is None:
                return changed
            later = entries[ready] if ready < len(entries) else None
            waited = time.monotonic() - since
            if later is None or later.state != CHECKING or waited >= queue.gate_seconds:
                return entries[:ready], queue.base
        time.sleep(POLL)


def _run_stack(runner: _Runner) -> bool:
    """With the runner's turn held: the integration gate on the top of the stack, bisection
    on failure, and the branch moved to the last commit it passed on. Whether anything
    changed (False: the first PRP of the queue is still checking, or there is none)."""
    git, branch, outcome = runner.git, runner.branch, runner.outcome
    snapshot = _snapshot(runner)
    if isinstance(snapshot, bool):
        return snapshot
    stack, base = snapshot
    details: dict[int, tuple[list[str], str]] = {}

    def passes(index: int) -> bool:
        check_out(git, runner.worktree, stack[index].merged)
        outcome.checks += 1
        outcome.gate_runs += 1
        details[index] = runner.gate()
        return not details[index][0]

    started = time.monotonic()
    last = len(stack) - 1
    top_passes = passes(last)
    seconds = time.monotonic() - started
    culprit = None if top_passes else first_failing(range(len(stack)), passes)
    good = len(stack) if culprit is None else culprit
    with git.merge_turn(branch):
        queue = load(git, branch)
        queue.gate_seconds = seconds
        if _prune_dead(git, branch, queue, good):
            # The gate has not run on the stack without it: merge nothing this turn.
            save(git, branch, queue)
            return True
        new_tip = stack[good - 1].merged if good else base
        if good and not _move(git, branch, base, new_tip, stack[:good]):
            queue.drop_from(0, {"kind": AGAIN})  # moved by something else: build again
            save(git, branch, queue)
            return True
        for entry in stack[:good]:
            queue.results[entry.prp_id] = {"kind": MERGED, "stack": good, "gate_commit": new_tip}
        if culprit is not None:
            detail = details.get(culprit, ([], ""))[1]
            queue.results[stack[culprit].prp_id] = {
                "kind": FAILED, "tip": new_tip, "failed": [runner.gate_name], "detail": detail,
            }  # fmt: skip
            queue.drop_from(culprit + 1, {"kind": AGAIN})
            del queue.entries[: culprit + 1]
        else:
            del queue.entries[:good]
        queue.base = new_tip
        save(git, branch, queue)
    return True


def _move(git: Merging, branch: str, old: str, new: str, merged: Sequence[Entry]) -> bool:
    """Move ``branch`` from ``old`` to ``new`` by compare-and-swap, deleting the merged PRPs'
    branches in the same transaction (the merge turn held by the caller)."""
    # A gate that reset it (the stack's gate shares the refs): put back, so the swap fails.
    git.undo_foreign_tail(branch, held=True)
    commands = f"update refs/heads/{branch} {new} {old}\n"
    for entry in merged:
        if entry.delete_branch:
            commands += f"delete refs/heads/{entry.delete_branch}\n"
    status, _, _ = git.run(
        "update-ref", "-m", f"prp: merge a stack of {len(merged)} at {new[:12]}", "--stdin",
        stdin=commands, codes=None,
    )  # fmt: skip
    return status == 0


def stack_record(outcome: MergeOutcome) -> dict[str, Any] | None:
    """The result JSON's ``merge_stack`` of a PRP merged through the queue: the stack's size,
    the commit the integration gate passed on, and its runs by this PRP's worker."""
    if not isinstance(outcome, StackedOutcome) or not outcome.gate_commit:
        return None
    return {
        "size": outcome.stack,
        "gate_commit": outcome.gate_commit,
        "gate_runs": outcome.gate_runs,
    }


def stack_note(entry: Mapping[str, Any]) -> str | None:
    """What a PRP's summary line says of the stack that merged it (a result JSON entry, which
    may come from anywhere: anything but the expected shape says nothing)."""
    stack = entry.get("merge_stack")
    if not isinstance(stack, dict) or not isinstance(stack.get("gate_commit"), str):
        return None
    return (
        f"merged in a stack of {stack.get('size', '?')}, integration gate run once on "
        f"{stack['gate_commit'][:12]}"
    )
