"""Building a PRP's commit: exactly the files its worktree holds, on the commit it started from,
written with plumbing in a private index.

Whatever the agent did to the worktree's HEAD, branches or index changes nothing but the files:
the tree is staged in an index of our own (``add -A`` over the start commit), written
(``write-tree``) and committed (``commit-tree``); no hooks run. A change git cannot record in
this repository (inside a submodule) is refused with ``UnsupportedChange``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.repository import Repository
from pytest_prp.workspace.worktree_files import admin_dir


@dataclass(frozen=True)
class CommitInfo:
    """A commit and the paths it created, modified and deleted (relative to its parent)."""

    sha: str
    created: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


class UnsupportedChange(GitError):
    """The PRP changed something its commit cannot record (inside a submodule)."""


def parse_name_status(sha: str, fields: Sequence[str]) -> CommitInfo:
    """A CommitInfo from ``--name-status -z --no-renames`` fields (status, path, ...)."""
    created: list[str] = []
    modified: list[str] = []
    deleted: list[str] = []
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        {"A": created, "D": deleted}.get(status[:1], modified).append(path)
    return CommitInfo(sha, tuple(created), tuple(modified), tuple(deleted))


def parse_raw_diff(sha: str, output: str) -> tuple[CommitInfo, tuple[str, ...]]:
    """A CommitInfo from ``diff-tree --raw -z --no-renames`` output, and the paths whose new
    side is a gitlink (a submodule added or moved to another commit)."""
    fields = output.rstrip("\x00").split("\x00") if output else []
    statuses: list[str] = []
    gitlinks: list[str] = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.lstrip(":").split()
        if len(parts) < 5:
            continue
        statuses += [parts[4], path]
        if parts[1] == "160000":
            gitlinks.append(path)
    return parse_name_status(sha, statuses), tuple(gitlinks)


class CommitBuilding(Repository):
    """Commits of PRPs, and what a commit changed."""

    def _begin(self) -> None:
        super()._begin()
        # worktree -> (commit checked out, copy of the index that checkout wrote)
        self._seeds: dict[Path, tuple[str, Path]] = {}
        self._built: dict[str, str] = {}  # commit -> its parent, for commits made here

    def parent_of(self, commit: str) -> str | None:
        """The commit ``commit`` was built on, when this process built it (else None): spares
        the merge a ``merge-base`` call."""
        return self._built.get(commit)

    def commit_all(
        self,
        worktree: Path,
        message: str,
        allow_empty: bool = False,
        move_branch: bool = True,
        base: str | None = None,
    ) -> CommitInfo | None:
        """Commit exactly the files left in ``worktree`` (``add -A``: untracked files included,
        ignored ones not) on top of ``base`` (default: the worktree's HEAD). When nothing
        changed: None, or with ``allow_empty`` an empty commit (so the PRP still leaves its
        trailers in history). No hooks.

        Built with plumbing in an index of our own, never the worktree's: whatever was done to
        the worktree's HEAD, branches or index (an agent's reset, commit, checkout, ``rm
        --cached``, ``update-index --assume-unchanged``) changes nothing but the files.
        Changes inside a submodule cannot be recorded: UnsupportedChange names them.

        ``move_branch=False`` only writes the commit: the caller moves refs itself (``merge``
        with ``delete_branch`` does it in one transaction, ``set_branch`` otherwise)."""
        start = base or self.output("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=worktree)
        start = start.strip()
        tree = self._write_tree(worktree, start)
        raw = self.output("diff-tree", "-r", "-z", "--raw", "--no-renames", start, tree)
        info, gitlinks = parse_raw_diff("", raw)
        self._check_submodules(worktree, start, gitlinks, info.deleted)
        if not (info.created or info.modified or info.deleted) and not allow_empty:
            return None
        env = self.commit_env()
        # The message on stdin, as ``-m`` would store it (one final newline): an argument
        # holds at most 128 KiB on Linux, and a PRP's title has no such limit.
        text = message if message.endswith("\n") else message + "\n"
        sha = self.run("commit-tree", tree, "-p", start, env=env, stdin=text)[1].strip()
        self._built[sha] = start
        if move_branch:
            # Old value: the commit it was built on; a compare-and-swap.
            self.run("update-ref", "-m", "prp: commit", "HEAD", sha, start, cwd=worktree)
            self.run("read-tree", sha, cwd=worktree)  # its index agrees with its HEAD again
        return CommitInfo(sha, info.created, info.modified, info.deleted)

    def _write_tree(self, worktree: Path, start: str) -> str:
        """The tree of ``worktree``'s files, staged over ``start`` in a private index: the
        copy of the index our checkout of ``start`` wrote (its stat data spares hashing the
        files nobody touched), else a fresh ``read-tree``."""
        admin = admin_dir(worktree)
        seed = self._seeds.pop(worktree, None)
        if admin is None or not admin.is_dir():
            raise GitError(f"{worktree} is no longer a git worktree (its .git file is gone)")
        # Next to the worktree's own index (same file system: the seed moves in, no copy).
        with tempfile.TemporaryDirectory(prefix="prp-index-", dir=admin) as scratch:
            index = Path(scratch) / "index"
            # Named, not discovered: git never looks further up than the worktree.
            env = {"GIT_DIR": str(admin), "GIT_WORK_TREE": str(worktree)}
            env["GIT_INDEX_FILE"] = str(index)
            try:
                if seed is None or seed[0] != start:
                    raise FileNotFoundError
                os.replace(seed[1], index)
            except OSError:
                self.run("read-tree", start, cwd=worktree, env=env)
            self.run("add", "-A", cwd=worktree, env=env)
            return self.run("write-tree", cwd=worktree, env=env)[1].strip()

    def seed_index(self, worktree: Path, start: str) -> None:
        """Keep a copy of the index a checkout of ``start`` just wrote, for ``_write_tree``
        (``copy2``: its mtime must stay the index's, or git's racy-entry check would trust
        stat data of files changed in the same second)."""
        admin = admin_dir(worktree)
        if admin is None:
            return
        seed = admin / "prp-base-index"
        try:
            shutil.copy2(admin / "index", seed)
        except OSError:
            return
        self._seeds[worktree] = (start, seed)

    def _check_submodules(
        self, worktree: Path, start: str, gitlinks: Sequence[str], deleted: Sequence[str]
    ) -> None:
        """UnsupportedChange when the PRP changed a submodule's content (files written into
        it, edits in an initialised one, a commit in it) or added one: the commit can only
        record a submodule's commit, which would live in this worktree alone."""
        touched = list(gitlinks)
        if (worktree / ".gitmodules").exists() or ".gitmodules" in deleted:
            listing = self.output("ls-tree", "-r", "-d", "-z", start)
            for entry in listing.split("\x00"):
                meta, _, path = entry.partition("\t")
                if meta.startswith("160000 ") and path not in touched:
                    if self._submodule_touched(worktree / path):
                        touched.append(path)
        if touched:
            raise UnsupportedChange(
                f"changes inside submodules are not supported: {', '.join(touched)} "
                "(commit them in the submodule's own repository)"
            )

    def _submodule_touched(self, path: Path) -> bool:
        """Whether anything is in submodule directory ``path`` beyond what was checked out:
        our worktrees leave submodules uninitialised (empty); an initialised one must be
        clean. A removed one is a deletion the commit records."""
        if path.is_symlink() or not path.is_dir():
            return False
        if (path / ".git").exists():
            status, out, _ = self.run(
                "status", "--porcelain", "--ignore-submodules=none", cwd=path, codes=None
            )
            return status != 0 or bool(out.strip())
        return any(path.iterdir())

    def changed_files(self, commit: str) -> CommitInfo:
        """Paths ``commit`` created, modified and deleted relative to its first parent."""
        out = self.output(
            "diff-tree",
            "-r",
            "-z",
            "--always",
            "--root",
            "--no-renames",
            "--name-status",
            "--diff-merges=first-parent",
            commit,
            "--",
        )
        fields = out.rstrip("\x00").split("\x00")
        return parse_name_status(fields[0], fields[1:])
