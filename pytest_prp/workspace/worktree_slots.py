"""Worktree slots: the one checkout each process reuses from PRP to PRP, and what happens to the
slots of processes that are gone.

A process takes the first ``+slot-<k>`` under the worktrees folder whose lock file nobody holds
(flock: the kernel frees it when the process dies) and writes its run id into it. Each PRP gets
a clean checkout of its start in that slot (``prp_worktree``); a failed PRP keeps its work as
its own worktree (``keep_worktree``); a merged one frees the slot (``done_with_worktree``).

A slot a dead run left behind is never reset under whatever it may still run: that run's
processes are ended, and its work is kept under its PRP's name or set aside as
``+orphaned-<k>`` (``_rescue``, ``sweep_slots``). A PRP branch checked out in a live process's
slot, or by the user, is never reset (``BranchInUse``). ``clean`` (``--prp-clean``) removes
every PRP worktree but those a live run is using.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pytest_prp.base.naming import prp_of_branch
from pytest_prp.supervise import leftovers
from pytest_prp.workspace import final_check_slots
from pytest_prp.workspace.commit_build import CommitBuilding
from pytest_prp.workspace.git_command import GitError, failure, retry_pause
from pytest_prp.workspace.repository import WORKTREE_ATTEMPTS
from pytest_prp.workspace.worktree_files import head_branch, safe_name, same_path


class BranchInUse(GitError):
    """A PRP branch is checked out in a worktree that a live process (or the user) uses."""


def _slot_lock(slot: Path) -> str:
    """The lock file of a reused worktree ``+slot-<k>``: ``slot-<k>.lock``."""
    return f"{slot.name.removeprefix('+')}.lock"


def _record_user(fd: int, run_id: str) -> str:
    """Write ``run_id`` (empty: left cleanly) into a slot's lock file; what it held before."""
    previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
    os.ftruncate(fd, 0)
    if run_id:
        os.pwrite(fd, run_id.encode(), 0)
    return previous


def _renamed(source: Path, target: Path) -> bool:
    try:
        source.rename(target)
    except OSError:
        return False
    return True


class WorktreeSlots(CommitBuilding):
    """The PRP worktrees of one process: its slot, the worktrees kept for inspection, and the
    slots of dead runs. Stands on ``CommitBuilding``: a checkout in the slot leaves a copy of
    its index for the PRP's commit (``seed_index``)."""

    def _begin(self) -> None:
        super()._begin()
        self._slot: tuple[int, Path] | None = None  # lock fd and path of the reused worktree
        self._slot_owner: str | None = None  # the PRP running in it, until merged or kept
        self._spent_slots: list[int] = []  # locks of slots kept for inspection
        self._run_lock: tuple[int, Path] | None = None  # held while this run lives

    def worktree_path(self, name: str) -> Path:
        """Where ``name``'s own worktree (a kept one, or ``create_worktree``'s) lives."""
        return self.worktrees_dir / safe_name(name)

    def create_worktree(self, name: str, branch: str, start: str) -> Path:
        """A fresh worktree for ``name`` with ``branch`` (re)created at ``start`` and checked
        out in it. Leftovers of a killed run (directory, registration, branch) are replaced."""
        path = self.worktree_path(name)
        if path.exists():
            self._discard(path)
        self._add_worktree(path, branch, start)
        return path

    def _add_worktree(self, path: Path, branch: str | None, start: str) -> None:
        where = ("--no-track", "-B", branch) if branch is not None else ("--detach",)
        status, err = 0, ""
        for attempt in range(WORKTREE_ATTEMPTS):
            status, _, err = self.run("worktree", "add", "-q", *where, str(path), start, codes=None)
            if status == 0:
                return
            # Either a stale registration of this path (its directory deleted, or locked by a
            # killed `worktree add`) still holds the branch, or git tripped over the
            # half-written files of a worktree another worker is adding: clear ours, retry.
            self._discard(path)
            retry_pause(attempt)
        raise GitError(failure("worktree add", status, err))

    def prp_worktree(self, name: str, branch: str | None, start: str) -> Path:
        """A clean checkout of ``start`` to run ``name`` in, on ``branch`` (created or reset at
        ``start``; detached when None): the one worktree this process reuses from PRP to PRP.

        Resetting the used worktree (``clean -ffdx``, then ``checkout -f``) is two git processes
        and rewrites only files that differ; a new worktree per PRP was five processes and a
        checkout of every file. ``name``'s worktree kept by an earlier run is removed first."""
        slot = self._slot_path()  # first: it may keep a dead process's work under its name
        kept = self.worktree_path(name)
        if kept.exists():
            self._discard(kept)
        self._slot_owner = None
        if (slot / ".git").is_file():
            try:
                self.run("clean", "-q", "-ffdx", cwd=slot)
                self._check_out(slot, branch, start)
            except BranchInUse:
                raise
            except GitError:
                self._discard(slot)  # damaged or deleted by hand: start it over
        elif slot.exists() or slot.is_symlink():
            self._discard(slot)
        if not (slot / ".git").is_file():
            # Detached first, then `_check_out`, which frees the branch from a worktree that a
            # killed process left it checked out in (`worktree add -B` would just refuse).
            self._add_worktree(slot, None, start)
            if branch is not None:
                self._check_out(slot, branch, start)
        self.seed_index(slot, start)
        self._slot_owner = name
        return slot

    def _check_out(self, path: Path, branch: str | None, start: str) -> None:
        """``start`` into ``path``'s tree and index, on ``branch`` (created or reset there).

        A branch checked out in another worktree is never reset under it (that worktree's
        HEAD would move): when a dead process's reused worktree holds it (its slot lock is
        free), that stale try of the same PRP is removed; when a live process or the user
        holds it, BranchInUse."""
        if branch is not None:
            # Checked here: git before 2.43 resets such a branch with `checkout -B` silently.
            for holder in self._holders(branch):
                if not same_path(holder, path):
                    self._free_branch(branch, holder)
        target = ("-B", branch) if branch is not None else ("--detach",)
        self.run("checkout", "-q", "-f", *target, start, cwd=path)

    def _holders(self, branch: str) -> list[Path]:
        """The worktrees whose HEAD names ``branch``, read from their admin files (no
        process): ``<common dir>/worktrees/*/HEAD``, and the main one."""
        wanted = f"ref: refs/heads/{branch}"
        found: list[Path] = []
        admins = [self.common_dir]
        try:
            admins += list((self.common_dir / "worktrees").iterdir())
        except OSError:
            pass
        for admin in admins:
            try:
                if (admin / "HEAD").read_text(encoding="utf-8").strip() != wanted:
                    continue
                if admin == self.common_dir:
                    found.append(self.root)
                else:
                    pointer = (admin / "gitdir").read_text(encoding="utf-8").strip()
                    found.append(Path(pointer).parent)  # it names the worktree's .git file
            except (OSError, UnicodeDecodeError):
                continue
        return found

    def _free_branch(self, branch: str, holder: Path) -> None:
        """Remove ``holder``, a worktree with ``branch`` checked out, if it is the reused
        worktree of a process that is gone; else BranchInUse naming it."""
        fd = None
        if same_path(holder.parent, self.worktrees_dir) and holder.name.startswith("+slot-"):
            fd = self.try_lock(_slot_lock(holder))
            if fd is None:
                raise BranchInUse(
                    f"{branch} is in use by another running process (its worktree {holder}): "
                    "the same PRP cannot run twice at once"
                )
        if fd is None:
            raise BranchInUse(
                f"{branch} is checked out in {holder}: pytest-prp never resets a branch "
                "someone has checked out; switch that worktree to another branch"
            )
        try:
            self._discard(self.worktrees_dir / holder.name)
        finally:
            os.close(fd)

    def keep_worktree(self, path: Path, name: str) -> Path:
        """Keep the work of ``name`` done in ``path`` for inspection, as ``name``'s own
        worktree (the path reports name); the next PRP of this process gets a new one."""
        if self._slot is None or path != self._slot[1] or self._slot_owner != name:
            return path
        kept = self.worktree_path(name)
        if kept.exists():
            self._discard(kept)
        self._slot_owner = None
        status, _, _ = self.run("worktree", "move", str(path), str(kept), codes=None)
        if status == 0:
            return kept
        # Could not move it: leave it where it is, and take another slot for the next PRP
        # (this one stays locked until the process ends, so nobody resets the kept work).
        self._spent_slots.append(self._slot[0])
        self._slot = None
        return path

    def done_with_worktree(self, path: Path) -> None:
        """The PRP that ran in ``path`` is merged: its worktree is free for the next one."""
        if self._slot is not None and path == self._slot[1]:
            self._slot_owner = None
        else:
            self._discard(path)

    def release_worktree(self) -> None:
        """At the end of the process: remove the reused worktree, or, when a PRP was cut short
        in it (Ctrl-C), keep it as that PRP's worktree; give up its slot. Best effort: a
        worktree git could not remove is reused, or rescued, by the next run. What this run
        started is ended first (each step ends its own; this also catches what a second
        Ctrl-C cut short): then its slots are marked as left cleanly."""
        if self._slot is None and not self._spent_slots and self._run_lock is None:
            return
        leftovers.end_runs({leftovers.RUN_ID}, grace=leftovers.GRACE)
        if self._slot is not None:
            fd, slot = self._slot
            try:
                if self._slot_owner is not None:
                    self.keep_worktree(slot, self._slot_owner)
                if self._slot is not None:
                    self._discard(slot)
            except GitError:
                pass
            if self._slot is not None:
                self._spent_slots.append(fd)
                self._slot = None
        for fd in self._spent_slots:
            _record_user(fd, "")
            os.close(fd)
        self._spent_slots = []
        if self._run_lock is not None:
            fd, path = self._run_lock
            path.unlink(missing_ok=True)
            os.close(fd)
            self._run_lock = None
        self.sweep_slots()

    def sweep_slots(self) -> None:
        """Deal with the reused worktrees of processes that are gone (a crashed xdist worker,
        a killed run), which nobody may take again: the dead run's processes are ended, and
        each worktree is kept under the name of the PRP it was running or set aside, as
        ``_rescue`` does when a slot is taken, else removed. Slots that live processes hold
        stay. At the end of a process (after its own slot is given up), and in the xdist
        controller at the end of the run. Best effort."""
        if self._slot is not None:
            return
        try:
            slots = sorted(p for p in self.worktrees_dir.iterdir() if p.name.startswith("+slot-"))
        except OSError:
            return
        for slot in slots:
            fd = self.try_lock(_slot_lock(slot))
            if fd is None:
                continue
            previous = _record_user(fd, leftovers.RUN_ID)
            self._slot = (fd, slot)
            try:
                self._rescue(slot, previous)
                if self._slot is not None and (slot.exists() or slot.is_symlink()):
                    self._discard(slot)
            except GitError:
                pass
            if self._slot is not None:
                self._slot = None
                _record_user(fd, "")
                os.close(fd)
            self._slot_owner = None
        for fd in self._spent_slots:
            os.close(fd)  # slots that could not be set aside keep this run's id: never reused
        self._spent_slots = []
        final_check_slots.sweep_stale(self)  # the final check's worktrees of a killed run

    def _slot_path(self) -> Path:
        """This process's reusable worktree: ``+slot-<k>`` for the first ``k`` whose lock file
        no other process holds (flock, released when a process dies; the name cannot be a
        PRP's, as ``safe_name`` never yields ``+``)."""
        k = 0
        while self._slot is None:
            slot = self.worktrees_dir / f"+slot-{k}"
            fd = self.try_lock(_slot_lock(slot))
            if fd is not None:
                previous = _record_user(fd, leftovers.RUN_ID)
                self._slot = (fd, slot)
                self._rescue(slot, previous)  # may give the slot up: then try the next one
            k += 1
        if self._run_lock is None:
            self._end_dead_runs()
        return self._slot[1]

    def _end_dead_runs(self) -> None:
        """Hold this run's lock (``run-<run id>.lock``) while it lives, and end what runs of
        this repository that died (their lock is free but still there) left running."""
        fd = self.try_lock(f"run-{leftovers.RUN_ID}.lock")
        if fd is None:
            return
        self._run_lock = (fd, self.common_dir / "prp" / "locks" / f"run-{leftovers.RUN_ID}.lock")
        dead: dict[str, int] = {}
        for path in sorted(self._run_lock[1].parent.glob("run-*.lock")):
            run_id = path.name.removeprefix("run-").removesuffix(".lock")
            other = self.try_lock(path.name) if run_id != leftovers.RUN_ID else None
            if other is not None:
                dead[run_id] = other
        try:
            leftovers.end_runs(set(dead), grace=leftovers.GRACE)
        finally:
            for run_id, other in dead.items():
                (self._run_lock[1].parent / f"run-{run_id}.lock").unlink(missing_ok=True)
                os.close(other)

    def _rescue(self, slot: Path, previous: str) -> None:
        """Never reuse a worktree whose last user may still have processes in it.

        ``previous`` is the run that held the slot and did not give it up cleanly (SIGKILL, a
        crashed xdist worker): its processes are ended first (they carry its run id). Such a
        worktree, or one a process still holds (its working directory is in it), is set aside:
        under its PRP's name when it still has that PRP's branch checked out (a merged PRP's
        branch is gone), as a failure would have kept it; else as ``+orphaned-<k>``. The slot
        then starts afresh."""
        if previous and previous != leftovers.RUN_ID:
            leftovers.end_runs({previous}, grace=leftovers.GRACE)
        if not (slot.exists() or slot.is_symlink()):
            return
        branch = head_branch(slot) or ""
        owner = prp_of_branch(branch)
        if owner is not None and self.branch_sha(branch) is not None:
            self._slot_owner = owner
            self.keep_worktree(slot, self._slot_owner)
        elif previous or leftovers.holding(slot):
            self._set_aside(slot)

    def _set_aside(self, slot: Path) -> None:
        k = 0
        while (aside := self.worktrees_dir / f"+orphaned-{k}").exists():
            k += 1
        status, _, _ = self.run("worktree", "move", str(slot), str(aside), codes=None)
        if status != 0 and not _renamed(slot, aside):
            # Neither git nor a rename could move it: keep the slot locked, unused.
            assert self._slot is not None
            self._spent_slots.append(self._slot[0])
            self._slot = None

    def list_prp_worktrees(self) -> list[Path]:
        """PRP worktrees: registered ones under ``worktrees_dir`` and leftover directories."""
        return sorted(self._prp_worktrees())

    def removable_worktrees(self) -> dict[Path, str | None]:
        """What ``clean`` removes: every PRP worktree (and its branch) but those a live
        process is using (another batch running in this repository)."""
        return {
            path: branch
            for path, branch in self._prp_worktrees().items()
            if not self._slot_in_use(path)
        }

    def clean(self) -> list[Path]:
        """Remove every PRP worktree and its branch (``--prp-clean``); returns their paths.
        Worktrees that a live process is using stay."""
        found = self.removable_worktrees()
        for path, branch in found.items():
            self._discard(path)
            if branch is not None:
                self.run("update-ref", "-d", f"refs/heads/{branch}", codes=(0, 1, 128))
        self.run("worktree", "prune")
        return sorted(found)

    def _slot_in_use(self, path: Path) -> bool:
        """Whether ``path`` is the reused worktree of a live process (its slot lock is held)."""
        if not path.name.startswith("+slot-"):
            return False
        if self._slot is not None and path == self._slot[1]:
            return True
        fd = self.try_lock(_slot_lock(path))
        if fd is None:
            return True
        os.close(fd)  # releases it again
        return False

    def _prp_worktrees(self) -> dict[Path, str | None]:
        found: dict[Path, str | None] = {}
        for path, branch in self.worktrees():
            if same_path(path.parent, self.worktrees_dir):
                found[self.worktrees_dir / path.name] = branch
        if self.worktrees_dir.is_dir():
            for child in self.worktrees_dir.iterdir():
                if child.is_dir():
                    found.setdefault(child, None)
        return found

    def _discard(self, path: Path) -> None:
        """Unregister and delete a worktree directory, whatever state it is in (``--force``
        twice also drops a registration whose directory is gone or that is locked)."""
        for attempt in range(WORKTREE_ATTEMPTS):
            status, _, err = self.run(
                "worktree", "remove", "--force", "--force", str(path), codes=None
            )
            if status == 0 or "is not a working tree" in err:
                break
            retry_pause(attempt)  # git tripped over a worktree another worker is adding
        else:
            self.run("worktree", "prune")
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
