"""One repository, seen from the user's checkout: running git in it, its refs and branches, and
the lock files its pytest-prp processes share.

The base of ``GitWorkspace``: what the worktree slots, the commit building, the merging and the
ledger all stand on. ``run`` is the one way to start git here (the environment of
``git_command``); branch tips are read from loose ref files when they can be (no process);
branches are created and moved with ``update-ref``, never checked out.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pytest_prp.workspace.git_command import (
    HOSTILE_ENV,
    MIN_GIT_VERSION,
    GitError,
    base_env,
    failure,
    git_version,
    identity_env,
    retry_pause,
    run_git,
    run_git_bytes,
)
from pytest_prp.workspace.worktree_files import default_worktrees_dir, head_branch, worktree_entries

FULL_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
WORKTREE_ATTEMPTS = 10  # git trips over a worktree another worker is adding: retry that often

_R = TypeVar("_R", bound="Repository")


class Repository:
    """The repository holding the user's checkout at ``root`` (``common_dir``: its git dir)."""

    def __init__(
        self,
        root: Path,
        common_dir: Path,
        executable: str = "git",
        worktrees_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.common_dir = common_dir
        self.worktrees_dir = worktrees_dir or default_worktrees_dir(common_dir, os.environ)
        self._env = base_env(common_dir, os.environ)
        self._executable = executable
        self._identity: dict[str, str] | None = None
        self._begin()

    def _begin(self) -> None:
        """Where each part of ``GitWorkspace`` (``commit_build``, ``ref_watch``, ...) sets up
        its own state: it extends this, instead of repeating the constructor's signature."""

    @classmethod
    def open(cls: type[_R], start: Path, worktrees_dir: Path | None = None) -> _R:
        """The repository holding ``start``; PRP worktrees go to ``worktrees_dir`` (default:
        ``default_worktrees_dir``)."""
        start = Path(start)
        present = [name for name in HOSTILE_ENV if name in os.environ]
        if present:
            raise GitError(
                f"{', '.join(present)} set in the environment (running inside a git hook?); "
                "pytest-prp would write to the wrong index or work tree: unset it and retry"
            )
        probe = start if start.is_dir() else start.parent
        if not probe.is_dir():
            raise GitError(f"not inside a git repository: {start}")
        # An absolute path: a bare "git" would be searched along PATH by every exec (a failed
        # exec per directory before git's).
        executable = shutil.which("git")
        if executable is None:
            raise GitError("git is not installed or not on PATH")
        status, version_text, _ = run_git(executable, ["version"], probe, {})
        found = git_version(version_text)
        if status != 0 or found is None:
            raise GitError(f"cannot tell the version of {executable}: {version_text.strip()}")
        if found < MIN_GIT_VERSION:
            raise GitError(
                f"pytest-prp needs git 2.38 or newer (found {'.'.join(map(str, found))})"
            )
        status, out, err = run_git(
            executable,
            [
                "rev-parse",
                "--path-format=absolute",
                "--show-toplevel",
                "--git-common-dir",
                "--verify",
                "-q",
                "HEAD^{commit}",
            ],
            probe,
            {},
        )
        lines = out.splitlines()
        if status != 0 or len(lines) < 3:
            if len(lines) >= 2:
                raise GitError(f"the repository at {lines[0]} has no commits yet")
            if "must be run in a work tree" in err:
                raise GitError(f"not inside a git checkout (bare repository or .git dir): {start}")
            if "not a git repository" in err:
                raise GitError(f"not inside a git repository: {start}")
            raise GitError(failure("rev-parse", status, err))
        return cls(Path(lines[0]), Path(lines[1]), executable, worktrees_dir)

    def run(
        self,
        command: str,
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        codes: tuple[int, ...] | None = (0,),
        stdin: str | None = None,
    ) -> tuple[int, str, str]:
        """Run ``git <command> <args>`` (in ``cwd``, default the user's root; ``env`` added to
        the environment every call gets, ``stdin`` fed to it): the exit status, stdout and
        stderr. GitError, one line, unless the exit status is in ``codes`` (None: any).

        The one way to start git in this repository, for the modules that build on it
        (``merge_check``, ``remote``) as for its own methods."""
        extra = {**self._env, **env} if env else self._env
        status, out, err = run_git(
            self._executable, [command, *args], cwd or self.root, extra, stdin
        )
        if codes is not None and status not in codes:
            raise GitError(failure(command, status, err))
        return status, out, err

    def pipe(self, command: str, *args: str, data: bytes = b"") -> bytes:
        """``git <command> <args>`` fed ``data``: its stdout as bytes (a pack, say); GitError
        as ``run``."""
        status, out, err = run_git_bytes(
            self._executable, [command, *args], self.root, self._env, data
        )
        if status != 0:
            raise GitError(failure(command, status, err))
        return out

    def output(self, command: str, *args: str, cwd: Path | None = None) -> str:
        """The output of ``git <command> <args>``, which must succeed."""
        return self.run(command, *args, cwd=cwd)[1]

    def commit_env(self) -> dict[str, str]:
        """The environment for ``commit-tree``: an author and committer where the user's
        environment and git config name none (``identity_env``); read once."""
        if self._identity is None:
            status, out, _ = self.run(
                "config",
                "--get-regexp",
                r"^(user|author|committer)\.(name|email)$",
                codes=(0, 1),
            )
            config: dict[str, str] = {}
            for line in out.splitlines() if status == 0 else []:
                key, _, value = line.partition(" ")
                config[key.lower()] = value  # later (more specific) config wins, as in git
            self._identity = identity_env(os.environ, config)
        return self._identity

    def verify(self, rev: str) -> str | None:
        """Full sha of the commit ``rev`` names, or None (never read as an option)."""
        if rev.startswith("-"):
            return None
        status, out, _ = self.run("rev-parse", "--verify", "-q", f"{rev}^{{commit}}", codes=(0, 1))
        return out.strip() if status == 0 else None

    def head_sha(self) -> str:
        """Commit checked out in the user's worktree."""
        return self.resolve("HEAD")

    def resolve(self, ref: str) -> str:
        """Full sha of the commit ``ref`` names; GitError ``unknown revision: <ref>``."""
        sha = self.verify(ref)
        if sha is None:
            raise GitError(f"unknown revision: {ref}")
        return sha

    def branch_sha(self, branch: str) -> str | None:
        """Tip of ``refs/heads/<branch>``, or None when there is no such branch."""
        return self.peek_branch(branch) or self.verify(f"refs/heads/{branch}")

    def peek_branch(self, branch: str) -> str | None:
        """The sha in the branch's loose ref file, read without starting git (what git itself
        reads; git replaces the file atomically). None when it is not there: a packed ref, the
        reftable format, a symbolic ref: then ask git."""
        if ".." in branch or branch.startswith("/"):
            return None
        try:
            text = (self.common_dir / "refs" / "heads" / branch).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return None
        sha = text.strip()
        return sha if FULL_SHA.fullmatch(sha) else None

    def checked_out_in(self, branch: str) -> Path | None:
        """The worktree (the user's or a linked one) that has ``branch`` checked out."""
        for path, checked_out in self.worktrees():
            if checked_out == branch:
                return path
        return None

    def ensure_branch(self, branch: str, base: str | None = None) -> str:
        """Create ``branch`` at ``base`` (default HEAD) unless it exists; return its tip.
        Never checks it out; refuses a branch that is checked out anywhere, because moving
        it would change that worktree's files under its user."""
        where = self.checked_out_in(branch)
        if where is not None:
            raise GitError(
                f"integration branch {branch} is checked out in {where}; pytest-prp only "
                "updates branches nobody has checked out: switch that worktree to another "
                "branch or choose another integration branch"
            )
        sha = self.branch_sha(branch)
        if sha is not None:
            return sha
        start = self.resolve(base or "HEAD")
        # Empty old value: create only if absent, so concurrent workers agree on one tip.
        status, _, err = self.run(
            "update-ref", "-m", "prp: create", f"refs/heads/{branch}", start, "", codes=(0, 128)
        )
        if status == 0:
            return start
        sha = self.branch_sha(branch)
        if sha is None:
            raise GitError(f"cannot create branch {branch}: {failure('update-ref', status, err)}")
        return sha

    def set_branch(self, branch: str, commit: str, worktree: Path | None = None) -> None:
        """Point ``branch`` at ``commit`` (created if missing); ``worktree``, which has it
        checked out, gets the commit's tree as its index (``git status`` clean there)."""
        self.run("update-ref", "-m", "prp: commit", f"refs/heads/{branch}", commit)
        if worktree is not None and head_branch(worktree) == branch:
            self.run("read-tree", commit, cwd=worktree)

    def worktrees(self) -> list[tuple[Path, str | None]]:
        """(path, checked-out branch or None) of every worktree of the repository."""
        # `worktree list` reads every worktree's files and dies on one another worker is
        # adding at that moment (git writes them non-atomically): retry briefly.
        for attempt in range(WORKTREE_ATTEMPTS):
            status, out, err = self.run("worktree", "list", "--porcelain", "-z", codes=None)
            if status == 0:
                return worktree_entries(out)
            retry_pause(attempt)
        raise GitError(failure("worktree list", status, err))

    def open_lock(self, name: str) -> int:
        """An open descriptor of ``<common dir>/prp/locks/<name>`` (created if missing)."""
        path = self.common_dir / "prp" / "locks" / name
        try:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise GitError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None

    def try_lock(self, name: str) -> int | None:
        """Lock file ``name``, locked by this process (its descriptor), or None when another
        process holds it."""
        fd = self.open_lock(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd
