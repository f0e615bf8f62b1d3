"""Where the final check runs its gates: ``slots`` threads of the process that writes the results,
each with a detached worktree of its own (gates may write to the tree), taking the next piece of
work (``Unit``: some gates of one PRP, in order, on one commit) as it is free.

Why threads of the controller: by the time the final check starts (sessionfinish) the xdist
workers are gone; a gate is a process of its own (``supervise.processes``), so the threads only
wait on it. As many slots as the run had local workers: the machine's share the run was given.

Nothing outlives the check: ``stop`` (set when the check ends, normally or by Ctrl-C/SIGTERM in
the main thread) ends every running gate at once (``Limits.cancel``), the threads are joined,
the worktrees removed. Against SIGKILL: the worktrees are named after the run
(``+final-check-<run id>-<k>``) and the run's lock (``run-<run id>.lock``, as ``worktree_slots``
holds it) is held while they exist, so the next run ends the dead run's gates by their cookie
(``worktree_slots._end_dead_runs``) and removes its worktrees (``sweep_stale``). The integration
branch is never touched: every worktree is detached.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pytest_prp.spec.model import Gate
from pytest_prp.supervise import leftovers
from pytest_prp.supervise.processes import Cancelled
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.repository import Repository

PREFIX = "+final-check-"

# Run one gate of a PRP in a worktree holding a commit (prp_id, gate, worktree, commit, stop;
# ``stop`` set: end the gate at once, ``supervise.processes.Cancelled``): passed, and the last
# lines of its output.
RunGate = Callable[[str, Gate, Path, str, threading.Event], tuple[bool, list[str]]]

# How often a waiting thread looks up (the main thread's signal handlers run between waits).
_WAIT = 0.1


@dataclass(frozen=True)
class Unit:
    """Gates of one PRP to run in order on ``commit``, in one fresh checkout; ``key`` is the
    caller's, to tell what the verdicts answer."""

    key: tuple[int, ...]
    prp_id: str
    gates: tuple[Gate, ...]
    commit: str


Verdicts = list[tuple[bool, list[str]]]  # per gate run: passed, last lines


class _Checkout:
    """A detached worktree of its own, reset to each commit tried (nothing a gate left there
    reaches the next run), removed at the end."""

    def __init__(self, git: Repository, path: Path, commit: str) -> None:
        self.git, self.path = git, path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            remove_worktree(git, path)
        git.run("worktree", "add", "-q", "--detach", str(path), commit)

    def reset(self, commit: str) -> None:
        self.git.run("checkout", "-q", "-f", "--detach", commit, cwd=self.path)
        self.git.run("clean", "-ffdxq", cwd=self.path)


def remove_worktree(git: Repository, path: Path) -> None:
    git.run("worktree", "remove", "--force", "--force", str(path), codes=None)
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale(git: Repository) -> None:
    """Remove the final check worktrees of runs that died (SIGKILL) without removing them,
    after ending what those runs left running. A run's worktrees exist only while it holds
    its run lock: a lock we can take is a dead run's. Best effort."""
    by_run: dict[str, list[Path]] = {}
    try:
        for path in git.worktrees_dir.iterdir():
            if path.name.startswith(PREFIX):
                run_id = path.name.removeprefix(PREFIX).rsplit("-", 1)[0]
                if run_id != leftovers.RUN_ID:
                    by_run.setdefault(run_id, []).append(path)
    except OSError:
        return
    for run_id, paths in sorted(by_run.items()):
        try:
            fd = git.try_lock(f"run-{run_id}.lock")
        except GitError:
            continue
        if fd is None:
            continue  # a live run's check
        try:
            leftovers.end_runs({run_id}, grace=leftovers.GRACE)
            for path in paths:
                remove_worktree(git, path)
        finally:
            (git.common_dir / "prp" / "locks" / f"run-{run_id}.lock").unlink(missing_ok=True)
            os.close(fd)
    if by_run:
        git.run("worktree", "prune", codes=None)


class SlotPool:
    """``slots`` threads running ``Unit``s with ``run_gate``: ``submit`` (urgent ones first,
    else in the order given), ``next_done`` for each. A context manager: leaving it (normally
    or not) stops what still runs and removes every worktree."""

    def __init__(self, git: Repository, slots: int, run_gate: RunGate) -> None:
        self.git = git
        self.slots = max(1, slots)
        self.run_gate = run_gate
        self.stop = threading.Event()
        self._todo: queue.PriorityQueue[tuple[int, int, Unit]] = queue.PriorityQueue()
        self._done: queue.Queue[tuple[Unit, Verdicts | None, BaseException | None]] = queue.Queue()
        self._order = itertools.count()
        self._adding = threading.Lock()  # one `git worktree add` at a time
        self._threads: list[threading.Thread] = []
        self._checkouts: list[Path] = []
        self._run_lock: int | None = None

    def __enter__(self) -> SlotPool:
        sweep_stale(self.git)
        # Held while our worktrees exist (None: this process holds it already, its own slot's).
        self._run_lock = self.git.try_lock(f"run-{leftovers.RUN_ID}.lock")
        for k in range(1, self.slots + 1):
            where = self.git.worktrees_dir / f"{PREFIX}{leftovers.RUN_ID}-{k}"
            thread = threading.Thread(target=self._work, args=(where,), name=f"final-check-{k}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()  # each ends its gate within a few seconds (its kill grace)
        for path in self._checkouts:
            remove_worktree(self.git, path)
        self.git.run("worktree", "prune", codes=None)
        if self._run_lock is not None:
            path = self.git.common_dir / "prp" / "locks" / f"run-{leftovers.RUN_ID}.lock"
            path.unlink(missing_ok=True)
            os.close(self._run_lock)
            self._run_lock = None

    def submit(self, unit: Unit, *, urgent: bool = False) -> None:
        self._todo.put((0 if urgent else 1, next(self._order), unit))

    def next_done(self) -> tuple[Unit, Verdicts]:
        """The next unit to end and its verdicts (the error a slot met is raised here)."""
        while True:
            try:
                unit, verdicts, error = self._done.get(timeout=_WAIT)
            except queue.Empty:
                continue
            if error is not None:
                raise error
            assert verdicts is not None
            return unit, verdicts

    def _work(self, where: Path) -> None:
        checkout: _Checkout | None = None
        while not self.stop.is_set():
            try:
                _, _, unit = self._todo.get(timeout=_WAIT)
            except queue.Empty:
                continue
            if self.stop.is_set():
                break
            try:
                if checkout is None:
                    with self._adding:
                        self._checkouts.append(where)
                        checkout = _Checkout(self.git, where, unit.commit)
                else:
                    checkout.reset(unit.commit)
                verdicts: Verdicts = []
                for gate in unit.gates:
                    verdicts.append(self.run_gate(unit.prp_id, gate, where, unit.commit, self.stop))
            except Cancelled:
                break  # the check is ending: nobody waits for this unit
            except BaseException as exc:  # handed to the main thread, which ends the check
                self._done.put((unit, None, exc))
                break
            self._done.put((unit, verdicts, None))
