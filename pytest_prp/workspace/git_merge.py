"""Merging into a branch without checking anything out: ``merge-tree`` builds the merge,
``commit-tree`` writes it, and the branch moves by compare-and-swap (``update-ref <ref> <new>
<old>``), retried on the new tip when anything else moved it.

Merges into one branch take turns under a lock file shared by every pytest-prp process of the
repository (``merge_turn``). The checked merge (``merge_queue``, ``merge_check``) builds on the
same two pieces: ``merge_turn`` and ``compare_and_swap``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pytest_prp.workspace.commit_build import CommitBuilding
from pytest_prp.workspace.git_command import GitError, failure, retry_pause
from pytest_prp.workspace.repository import FULL_SHA
from pytest_prp.workspace.worktree_files import safe_name

_MERGE_ATTEMPTS = 40


@dataclass(frozen=True)
class MergeResult:
    """How a merge ended: ``ok`` with the branch's new tip, or the conflicting paths."""

    ok: bool
    sha: str | None  # new tip of the branch; None on conflict
    conflicts: tuple[str, ...] = ()
    fast_forward: bool = False


class Merging(CommitBuilding):
    """Merges into branches. Stands on ``CommitBuilding``: a commit this process built knows
    its parent, which spares checking that it descends from it."""

    def _begin(self) -> None:
        super()._begin()
        # Where each integration branch's reflog stood when this process first saw the branch
        # (its inode and size): the moves after it are this run's (``undo_foreign_tail``).
        self._log_marks: dict[str, tuple[int, int]] = {}
        # What ``undo_foreign_tail`` undid, one line each, for the run to report.
        self.undone: list[str] = []

    def ensure_branch(self, branch: str, base: str | None = None) -> str:
        sha = super().ensure_branch(branch, base)
        self._log_marks.setdefault(branch, _mark(self._reflog_path(branch)))
        return sha

    def _reflog_path(self, branch: str) -> str:
        return str(self.common_dir / "logs" / "refs" / "heads" / branch)

    def undo_foreign_tail(self, branch: str, held: bool) -> None:
        """Before a checked merge moves ``branch``: when the last moves of it in this run were
        not pytest-prp's (a gate run in a merge check, which shares the repository's refs,
        reset it or committed on it), put it back where they found it, so that the merge does
        not build on a tip that dropped earlier merges. Said in ``undone``. ``held``: the
        caller holds the merge turn."""
        mark = self._log_marks.get(branch)
        if mark is None:
            return
        if held:
            self._undo_foreign_tail(branch, mark)
        else:
            with self.merge_turn(branch):
                self._undo_foreign_tail(branch, mark)

    def _undo_foreign_tail(self, branch: str, mark: tuple[int, int]) -> None:
        try:
            with open(self._reflog_path(branch), "rb") as log:
                stat = os.fstat(log.fileno())
                start = mark[1] if stat.st_ino == mark[0] else 0  # a new log: branch remade
                # Only the end matters (the moves since the last of ours): a run's every
                # merge reads a bounded piece, not all the run's entries.
                near_end = max(start, stat.st_size - _TAIL_BYTES)
                log.seek(near_end)
                added = log.read().decode("utf-8", "replace").splitlines()
                if near_end > start and added:
                    added = added[1:]  # begun mid-line
        except OSError:
            return
        tail: list[tuple[str, str, str]] = []
        for line in reversed(added):
            fields, _, message = line.partition("\t")
            parts = fields.split(" ")
            if message.startswith("prp:") or len(parts) < 2 or not FULL_SHA.fullmatch(parts[0]):
                break
            tail.append((parts[0], parts[1], message))
        if not tail:
            return
        tail.reverse()
        first_old, last_new = tail[0][0], tail[-1][1]
        if set(first_old) == {"0"} or self.branch_sha(branch) != last_new:
            return
        status, _ = self.compare_and_swap(
            f"refs/heads/{branch}", first_old, last_new, "prp: undo a move no checked merge made"
        )
        if status == 0:
            how = "; ".join(dict.fromkeys(m or "(no message)" for _, _, m in tail))
            self.undone.append(
                f"{branch} was moved from {first_old[:12]} to {last_new[:12]} by something "
                f"other than a checked merge ({how}): put back at {first_old[:12]}"
            )

    def merge(
        self,
        branch: str,
        commit: str,
        message: str,
        parent: str | None = None,
        delete_branch: str | None = None,
    ) -> MergeResult:
        """Merge ``commit`` into ``branch`` without checking anything out: fast-forward when
        possible, else a two-parent merge commit. On conflict the branch is left as it was
        and the conflicting paths are returned. Retries when another process moves the tip.

        ``parent``, when the caller knows it is ``commit``'s parent, makes the common case
        (nobody moved the branch since the PRP started) one compare-and-swap.
        ``delete_branch`` is deleted in the same transaction as the successful update (the PRP
        branch, whose work is now on ``branch``): one git process instead of two.

        Merges into one branch take turns (a lock file in the common git dir, held by every
        pytest-prp process of the repository): each merges onto the tip the previous one left,
        instead of racing it and redoing merge-tree and commit-tree after each lost
        compare-and-swap (three attempts per PRP were usual with 8 workers finishing at once).
        The compare-and-swap stays for anything else that moves the branch."""
        if not FULL_SHA.fullmatch(commit):
            commit = self.resolve(commit)
        with self.merge_turn(branch):
            return self._merge(branch, commit, message, parent, delete_branch)

    @contextmanager
    def merge_turn(self, branch: str) -> Iterator[None]:
        """Hold the turn to merge into ``branch``, shared by every process on this repository
        (flock on a file under the common git dir: released when the process dies)."""
        fd = self.open_lock(f"merge-{safe_name(branch)}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _merge(
        self, branch: str, commit: str, message: str, parent: str | None, delete_branch: str | None
    ) -> MergeResult:
        self.undo_foreign_tail(branch, held=True)
        ref = f"refs/heads/{branch}"
        reflog = f"prp: merge {commit[:12]}"
        if parent is not None and FULL_SHA.fullmatch(parent):
            # Skip the compare-and-swap when the branch has visibly moved: it would fail. And
            # check the caller's word that ``commit`` descends from ``parent``: a swap to a
            # commit that does not would drop the tip's history from the branch.
            descends = self.parent_of(commit) == parent or self._descends(commit, parent)
            if self.peek_branch(branch) in (None, parent) and descends:
                if self.compare_and_swap(ref, commit, parent, reflog, delete_branch)[0] == 0:
                    return MergeResult(True, commit, (), True)
        last_error = ""
        for attempt in range(_MERGE_ATTEMPTS):
            tip = self.branch_sha(branch)
            if tip is None:
                raise GitError(f"branch {branch} does not exist")
            if parent is not None and tip != parent:
                # The branch moved since the PRP started from ``parent``: not a fast-forward,
                # and merge-tree finds the merge base itself.
                base = parent if tip == commit else None
            else:
                status, out, _ = self.run("merge-base", tip, commit, codes=(0, 1))
                base = out.strip() if status == 0 else None
            if commit in (tip, base):
                if delete_branch is not None:
                    self.run("update-ref", "-d", f"refs/heads/{delete_branch}", codes=(0, 1))
                return MergeResult(True, tip, (), False)  # already merged
            if base == tip:
                new, fast_forward = commit, True
            else:
                status, out, _ = self.run(
                    "merge-tree",
                    "--write-tree",
                    "--name-only",
                    "-z",
                    "--no-messages",
                    tip,
                    commit,
                    codes=(0, 1),
                )
                fields = out.split("\x00")
                if status == 1:
                    conflicts = tuple(dict.fromkeys(f for f in fields[1:] if f))
                    return MergeResult(False, None, conflicts, False)
                new = self.run(
                    "commit-tree",
                    fields[0].strip(),
                    "-p",
                    tip,
                    "-p",
                    commit,
                    "-m",
                    message,
                    env=self.commit_env(),
                )[1].strip()
                fast_forward = False
            status, err = self.compare_and_swap(ref, new, tip, reflog, delete_branch)
            if status == 0:
                return MergeResult(True, new, (), fast_forward)
            last_error = failure("update-ref", status, err)
            retry_pause(attempt)  # something else moved the tip (or holds git's ref lock): retry
        raise GitError(f"could not merge into {branch}: it kept changing ({last_error})")

    def undo_foreign_moves(
        self, branch: str, moves: list[tuple[str, str, str]], keep: str
    ) -> str | None:
        """Put ``branch`` back where it was before ``moves`` (``ref_watch.foreign_moves``),
        keeping where they left it as the branch ``keep``: the sha it is back at, or None when
        it has moved on since (a merge on top of them: taking it back would drop that merge)."""
        first_old, last_new = moves[0][0], moves[-1][1]
        with self.merge_turn(branch):
            if self.branch_sha(branch) != last_new or set(first_old) == {"0"}:
                return None
            self.run(
                "update-ref",
                "-m",
                "prp: kept what a PRP's steps did",
                f"refs/heads/{keep}",
                last_new,
            )
            status, _ = self.compare_and_swap(
                f"refs/heads/{branch}", first_old, last_new, "prp: undo a PRP's steps' move"
            )
            return first_old if status == 0 else None

    def restore_branch(self, branch: str, sha: str) -> bool:
        """Create ``branch`` at ``sha`` again after something deleted it; False when it exists
        by now (something else made it: left as it is)."""
        with self.merge_turn(branch):
            status, _, _ = self.run(
                "update-ref",
                "-m",
                "prp: restored after a PRP's steps or gates deleted it",
                f"refs/heads/{branch}",
                sha,
                "",
                codes=None,
            )
            return status == 0

    def _descends(self, commit: str, ancestor: str) -> bool:
        status, _, _ = self.run("merge-base", "--is-ancestor", ancestor, commit, codes=(0, 1))
        return status == 0

    def compare_and_swap(
        self, ref: str, new: str, old: str, reflog: str, delete_branch: str | None = None
    ) -> tuple[int, str]:
        """Compare-and-swap ``ref`` from ``old`` to ``new`` (deleting ``delete_branch`` in the
        same transaction); git's exit status (0 done, else nothing changed) and stderr."""
        if delete_branch is None:
            status, _, err = self.run("update-ref", "-m", reflog, ref, new, old, codes=None)
            return status, err
        commands = f"update {ref} {new} {old}\ndelete refs/heads/{delete_branch}\n"
        status, _, err = self.run("update-ref", "-m", reflog, "--stdin", stdin=commands, codes=None)
        return status, err


_TAIL_BYTES = 64 * 1024


def _mark(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (0, 0)
    return (stat.st_ino, stat.st_size)
