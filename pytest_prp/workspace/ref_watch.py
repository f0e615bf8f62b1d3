"""What a PRP did to refs while it ran: HEAD switched or moved, reflog entries, refs created,
moved or deleted. Its commit ignores all of it (``commit_build``); the record names it.

``ref_state`` is taken before the steps, ``ref_changes`` after: the lines the PRP's result
carries (``describe_ref_changes``, pure).

The integration branch is the one ref a PRP's steps must not move, and the one other processes
legitimately move meanwhile (their merges). What moved it is told by its reflog: pytest-prp
writes every move of it with a ``prp:`` message, so an entry added during the steps without one
(``commit:``, ``branch: Reset``, ``merge``...) is the steps' own (``foreign_moves``). Where git
keeps no reflog for it (``core.logAllRefUpdates=false``, the reftable backend) this finds
nothing.

Deleting the branch (``git branch -D``) deletes its reflog too: ``ref_state`` keeps a hard link
to the watched reflogs, so what was on the branch when it went is still known
(``deleted_tip``) and the branch can be put back with every merge it held.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_prp.supervise.leftovers import pid_alive
from pytest_prp.workspace.repository import Repository
from pytest_prp.workspace.worktree_files import admin_dir, read_head


@dataclass(frozen=True)
class RefState:
    """What a PRP's worktree looks like to git, outside its files: HEAD (the file's content and
    the commit it names), how long its reflog is, and the repository's refs."""

    head: str
    head_sha: str | None
    reflog_size: int
    refs: Mapping[str, str]
    # Sizes of the watched branches' reflogs (``ref_state(watch=...)``), to read what is added.
    branch_logs: Mapping[str, int] = field(default_factory=dict)
    # Hard links to those reflogs, which outlive a deletion of the branch (``deleted_tip``).
    log_links: Mapping[str, Path] = field(default_factory=dict)


def describe_ref_changes(before: RefState, after: RefState, reflog: str) -> list[str]:
    """What happened to refs while a PRP ran, one line each: HEAD switched, detached or moved,
    the worktree's new reflog entries (``reflog``: the lines appended to ``logs/HEAD``), and
    refs created, moved or deleted."""

    def name(head: str) -> str:
        return head.removeprefix("ref: ").removeprefix("refs/heads/")

    lines: list[str] = []
    if after.head != before.head:
        where = "detached at " + after.head[:12]
        if after.head.startswith("ref: "):
            where = f"on branch {name(after.head)}"
        lines.append(f"HEAD {where} (was {name(before.head)})")
    elif after.head_sha != before.head_sha:
        old, new = (before.head_sha or "none")[:12], (after.head_sha or "none")[:12]
        lines.append(f"{name(after.head)} moved from {old} to {new}")
    for entry in reflog.splitlines():
        _, tab, message = entry.partition("\t")
        if tab and message.strip():
            lines.append(f"git: {message.strip()}")
    for ref in sorted(set(before.refs) | set(after.refs)):
        old_sha, new_sha = before.refs.get(ref), after.refs.get(ref)
        if old_sha is None and new_sha is not None:
            lines.append(f"{ref} created at {new_sha[:12]}")
        elif new_sha is None:
            lines.append(f"{ref} deleted (was {str(old_sha)[:12]})")
        elif old_sha != new_sha:
            lines.append(f"{ref} moved from {str(old_sha)[:12]} to {new_sha[:12]}")
    return lines


class RefWatching(Repository):
    """Snapshots of a worktree's HEAD, reflog and the repository's refs, and their difference."""

    def _begin(self) -> None:
        super()._begin()
        # The refs ref_changes last read, and what it ignored: the next ref_state starts
        # from them (only pytest-prp's own refs move in between) instead of reading again.
        self._refs_read: tuple[Path, tuple[str, ...], Mapping[str, str]] | None = None

    def ref_state(
        self, worktree: Path, ignore: Sequence[str] = (), watch: Sequence[str] = ()
    ) -> RefState:
        """HEAD of ``worktree``, the length of its reflog, every ref but those in ``ignore``
        (names, or prefixes ending in ``/``), and the length of the reflogs of the branches in
        ``watch``: to compare after a PRP's steps."""
        logs = {branch: _size(self._branch_log(branch)) for branch in watch}
        links = {branch: self._link_log(branch) for branch in watch}
        head = read_head(worktree) or ""
        if head.startswith("ref: refs/heads/"):
            head_sha = self.branch_sha(head.removeprefix("ref: refs/heads/"))
        elif head.startswith("ref: "):
            head_sha = self.verify(head.removeprefix("ref: "))
        else:
            head_sha = head or None
        admin = admin_dir(worktree)
        try:
            size = (admin / "logs" / "HEAD").stat().st_size if admin else 0
        except OSError:
            size = 0
        known, self._refs_read = self._refs_read, None
        if known is not None and known[:2] == (worktree, tuple(ignore)):
            # per-worktree refs included
            return RefState(head, head_sha, size, known[2], logs, _present(links))
        out = self.output("for-each-ref", "--format=%(objectname) %(refname)", cwd=worktree)
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            if not any(ref == i or (i.endswith("/") and ref.startswith(i)) for i in ignore):
                refs[ref] = sha
        return RefState(head, head_sha, size, refs, logs, _present(links))

    def _branch_log(self, branch: str) -> Path:
        return self.common_dir / "logs" / "refs" / "heads" / branch

    def _link_log(self, branch: str) -> Path | None:
        folder = self.common_dir / "prp" / "reflogs"
        n = next(_LINKS)
        link = folder / f"{os.getpid()}-{n}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if n == 0:
                _sweep(folder)
            os.link(self._branch_log(branch), link)
        except OSError:
            return None  # no reflog (or no hard links here): a deletion is then seen only
        return link

    def release_logs(self, before: RefState) -> None:
        """Remove the reflog links ``before`` holds (its PRP is done with them)."""
        for link in before.log_links.values():
            try:
                link.unlink()
            except OSError:
                pass

    def deleted_tip(self, before: RefState, branch: str) -> str | None:
        """When ``branch`` (watched by ``before``) is gone: the sha to put it back at, read from
        the link to its reflog: where it was when deleted, or, when moves pytest-prp did not
        make came last, where it was before them; None while it exists or when its reflog was
        not kept."""
        link = before.log_links.get(branch)
        if link is None or self.branch_sha(branch) is not None:
            return None
        try:
            added = link.read_bytes()
        except OSError:
            return None
        last = added.decode("utf-8", "replace").splitlines()[-1:]
        pair = last[0].split("\t")[0].split(" ") if last else []
        if len(pair) < 2:
            return None
        tip = pair[1]
        # The steps' own moves at the end (none of ours on top): back to before the first.
        start = before.branch_logs.get(branch, 0)
        for line in reversed(added[start:].decode("utf-8", "replace").splitlines()):
            fields, _, message = line.partition("\t")
            pair = fields.split(" ")
            if message.startswith("prp:") or len(pair) < 2:
                break
            tip = pair[0]
        return None if set(tip) == {"0"} else tip

    def foreign_moves(self, before: RefState, branch: str) -> list[tuple[str, str, str]]:
        """The moves of ``branch`` since ``before`` that pytest-prp did not make: (old sha, new
        sha, reflog message), oldest first. ``branch`` must be in ``before``'s ``watch``."""
        start = before.branch_logs.get(branch)
        if start is None:
            return []
        try:
            with open(self._branch_log(branch), "rb") as log:
                log.seek(start)
                return _foreign(log.read())
        except OSError:
            return []

    def ref_changes(
        self, worktree: Path, before: RefState, ignore: Sequence[str] = ()
    ) -> list[str]:
        """What was done to refs since ``before`` was taken (``describe_ref_changes``)."""
        self._refs_read = None
        after = self.ref_state(worktree, ignore)
        self._refs_read = (worktree, tuple(ignore), after.refs)
        reflog = ""
        admin = admin_dir(worktree)
        if admin is not None and after.reflog_size > before.reflog_size:
            try:
                with open(admin / "logs" / "HEAD", "rb") as log:
                    log.seek(before.reflog_size)
                    reflog = log.read().decode("utf-8", "replace")
            except OSError:
                pass
        return describe_ref_changes(before, after, reflog)


_LINKS = itertools.count()


def _sweep(folder: Path) -> None:
    """Remove the links left by processes that are gone (killed before their PRP's end)."""
    for entry in folder.iterdir():
        pid = entry.name.partition("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                entry.unlink()
            except OSError:
                pass


def _present(links: Mapping[str, Path | None]) -> dict[str, Path]:
    return {branch: link for branch, link in links.items() if link is not None}


def _foreign(added: bytes) -> list[tuple[str, str, str]]:
    """The reflog entries in ``added`` not written by pytest-prp: (old, new, message)."""
    moves = []
    for line in added.decode("utf-8", "replace").splitlines():
        fields, _, message = line.partition("\t")
        parts = fields.split(" ")
        if len(parts) >= 2 and not message.startswith("prp:"):
            moves.append((parts[0], parts[1], message))
    return moves


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
