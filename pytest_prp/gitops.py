"""Git side effects for running PRPs: worktrees, commits and merges.

Two rules shape everything here:

* The user's checkout is never modified: no checkout, reset, stash or ``add`` in it. PRPs work
  in linked worktrees kept outside the checkout (by default in the user's cache directory, see
  ``default_worktrees_dir``: invisible to ``git status`` and to the user's own tools), and the
  integration branch is updated with plumbing (``merge-tree``/``commit-tree``/``update-ref``)
  without ever being checked out.
* Several processes (pytest-xdist workers) use one repository at once. Each worktree has its
  own index; merges into a branch take turns under a lock file, and ref updates are still
  compare-and-swap (``update-ref <ref> <new> <old>``), retried on the new tip if anything else
  moved it; nothing writes shared files such as ``COMMIT_EDITMSG`` or ``.git/config``.

User hooks never run (``core.hooksPath`` points at a directory that does not exist) and no
command here triggers ``gc --auto``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_prp import leftovers

DEFAULT_NAME = "pytest-prp"
DEFAULT_EMAIL = "pytest-prp@localhost"
MIN_GIT_VERSION = (2, 38)  # merge-tree --write-tree

# Variables that would point our git calls (and the checkout `worktree add` runs) at the
# user's index or work tree instead of the PRP worktree's own: git sets them for hooks.
_HOSTILE_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")
_MERGE_ATTEMPTS = 40
_WORKTREE_ATTEMPTS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_FULL_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_COMPLETE_SUBJECT = re.compile(r"(\S+): Completed?\b", re.IGNORECASE)
_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_LEDGER_FORMAT = "%H%x00%s%x00%(trailers:key=PRP-Id,valueonly,unfold,separator=%x01)%x1e"


class GitError(Exception):
    """A git operation failed; ``str(e)`` is one clear user-facing line."""


@dataclass(frozen=True)
class MergeResult:
    ok: bool
    sha: str | None  # new tip of the branch; None on conflict
    conflicts: tuple[str, ...] = ()
    fast_forward: bool = False


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    created: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class RefState:
    """What a PRP's worktree looks like to git, outside its files: HEAD (the file's content and
    the commit it names), how long its reflog is, and the repository's refs."""

    head: str
    head_sha: str | None
    reflog_size: int
    refs: Mapping[str, str]


class BranchInUse(GitError):
    """A PRP branch is checked out in a worktree that a live process (or the user) uses."""


class UnsupportedChange(GitError):
    """The PRP changed something its commit cannot record (inside a submodule)."""


# --------------------------------------------------------------------------- pure helpers


def trailers_message(subject: str, trailers: Mapping[str, str]) -> str:
    """``subject`` plus a trailer block (``Key: value`` lines) that ``git interpret-trailers``
    and ``%(trailers)`` recognise. Newlines in the subject or values are folded to spaces."""
    lines = [" ".join(subject.split())]
    if trailers:
        lines.append("")
        for key, value in trailers.items():
            if not _TRAILER_KEY.fullmatch(key):
                raise ValueError(f"invalid trailer key: {key!r}")
            lines.append(f"{key}: {' '.join(str(value).split())}")
    return "\n".join(lines) + "\n"


def safe_name(name: str) -> str:
    """A file name for ``name``: characters other than ``[A-Za-z0-9._-]`` become ``_``; when
    anything changed a short hash keeps distinct names distinct (``a/b`` vs ``a_b``)."""
    safe = _UNSAFE.sub("_", name).lstrip(".-")[:100] or "_"
    if safe != name:
        safe = f"{safe}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
    return safe


def parse_ledger(output: str) -> dict[str, str]:
    """PRP id -> sha from ``_LEDGER_FORMAT`` records, newest (first listed) winning."""
    found: dict[str, str] = {}
    for record in output.split("\x1e"):
        fields = record.lstrip("\n").split("\x00")
        if len(fields) < 3:
            continue
        sha, subject, trailer_values = fields[0], fields[1], fields[2]
        ids = [v.strip() for v in trailer_values.split("\x01") if v.strip()]
        match = _COMPLETE_SUBJECT.match(subject)
        if match:
            ids.append(match.group(1))
        for prp_id in ids:
            found.setdefault(prp_id, sha)
    return found


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


def identity_env(environ: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """GIT_AUTHOR_*/GIT_COMMITTER_* values for whatever neither the environment nor git config
    (``user.*``, ``author.*``, ``committer.*``) provides, so our commits never fail with
    "Please tell me who you are". ``config`` keys are lower-case, as ``git config`` prints."""
    env: dict[str, str] = {}
    for role in ("author", "committer"):
        var = f"GIT_{role.upper()}"
        name = environ.get(f"{var}_NAME") or config.get(f"{role}.name") or config.get("user.name")
        email = (
            environ.get(f"{var}_EMAIL")
            or config.get(f"{role}.email")
            or config.get("user.email")
            or environ.get("EMAIL")
        )
        if not name:
            env[f"{var}_NAME"] = DEFAULT_NAME
        if not email:
            env[f"{var}_EMAIL"] = DEFAULT_EMAIL
    return env


def _base_env(common_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for every git call: no hooks, no auto-gc, no optional index writes.
    Appends to GIT_CONFIG_COUNT so settings the user passes that way survive."""
    try:
        first = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
    except ValueError:
        first = 0
    settings = {
        "core.hooksPath": str(common_dir / "prp" / "hooks-disabled"),  # never created
        "gc.auto": "0",
        "maintenance.auto": "false",
    }
    env = {"GIT_CONFIG_COUNT": str(first + len(settings)), "GIT_OPTIONAL_LOCKS": "0"}
    for i, (key, value) in enumerate(settings.items(), start=first):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _run_git(
    executable: str,
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdin: str | None = None,
) -> tuple[int, str, str]:
    """``git <args>`` in ``cwd``: exit status, stdout and stderr, one final newline dropped.
    Messages in English (some are matched here); bytes that are not UTF-8 survive in paths."""
    done = subprocess.run(
        [executable, *args],
        cwd=cwd,
        env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **env},
        input=stdin.encode("utf-8") if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    out = done.stdout.decode("utf-8", "surrogateescape")
    err = done.stderr.decode("utf-8", "surrogateescape")
    return done.returncode, out.removesuffix("\n"), err.removesuffix("\n")


def _version(text: str) -> tuple[int, int] | None:
    """(major, minor) from ``git version 2.39.5`` (vendor suffixes allowed)."""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def _failure(command: str, status: int, stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    detail = (fatal or lines or [f"exit status {status}"])[-1]
    for prefix in ("fatal: ", "error: "):
        detail = detail.removeprefix(prefix)
    return f"git {command} failed: {detail}"


def _worktree_entries(porcelain_z: str) -> list[tuple[Path, str | None]]:
    """(path, branch or None) per worktree from ``git worktree list --porcelain -z``."""
    entries: list[tuple[Path, str | None]] = []
    for field in porcelain_z.split("\x00"):
        if field.startswith("worktree "):
            entries.append((Path(field[len("worktree ") :]), None))
        elif field.startswith("branch refs/heads/") and entries:
            entries[-1] = (entries[-1][0], field[len("branch refs/heads/") :])
    return entries


def default_worktrees_dir(common_dir: Path, environ: Mapping[str, str]) -> Path:
    """Where a repository's PRP worktrees live unless configured: the user's cache directory
    (``$XDG_CACHE_HOME``, else ``~/.cache``), one folder per repository named after it and a
    hash of its git dir.

    Not under ``.git``: Claude Code treats every path below a ``.git`` directory as a sensitive
    file and refuses to edit it, whatever its permission settings say. Not in the checkout
    either: ``git status`` would show it, and the user's own pytest, linters and IDE indexers
    would pick up every PRP's copy of the project."""
    cache = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG rule: a relative value is to be ignored
        cache = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    resolved = common_dir.resolve()
    repo = resolved.parent.name if resolved.name == ".git" else resolved.name
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return Path(cache) / "pytest-prp" / "worktrees" / f"{safe_name(repo)}-{digest}"


def _pause(attempt: int) -> None:
    """Short randomised back-off so racing workers do not retry in lockstep."""
    time.sleep(random.uniform(0.001, 0.004 * min(attempt + 1, 10)))


def _slot_lock(slot: Path) -> str:
    """The lock file of a reused worktree ``+slot-<k>``: ``slot-<k>.lock``."""
    return f"{slot.name.removeprefix('+')}.lock"


def _admin_dir(worktree: Path) -> Path | None:
    """A linked worktree's private git dir (``.git/worktrees/<name>``), from its ``.git``
    file (no process); None when unreadable."""
    try:
        pointer = (worktree / ".git").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not pointer.startswith("gitdir:"):
        return None
    return worktree / pointer.removeprefix("gitdir:").strip()  # absolute or relative


def _read_head(worktree: Path) -> str | None:
    """The content of a linked worktree's HEAD file (``ref: refs/heads/x`` or a sha)."""
    admin = _admin_dir(worktree)
    try:
        return (admin / "HEAD").read_text(encoding="utf-8").strip() if admin else None
    except (OSError, UnicodeDecodeError):
        return None


def _head_branch(worktree: Path) -> str | None:
    """The branch a linked worktree has checked out, read from its files (no process); None
    when detached or unreadable."""
    head = _read_head(worktree) or ""
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else None


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


def _same_path(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


# --------------------------------------------------------------------------- the workspace


class GitWorkspace:
    """One repository, seen from the user's checkout at ``root``."""

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
        self._env = _base_env(common_dir, os.environ)
        self._executable = executable
        self._identity: dict[str, str] | None = None
        self._slot: tuple[int, Path] | None = None  # lock fd and path of the reused worktree
        self._slot_owner: str | None = None  # the PRP running in it, until merged or kept
        self._spent_slots: list[int] = []  # locks of slots kept for inspection
        # worktree -> (commit checked out, copy of the index that checkout wrote)
        self._seeds: dict[Path, tuple[str, Path]] = {}
        self._built: dict[str, str] = {}  # commit -> its parent, for commits made here
        # The refs ref_changes last read, and what it ignored: the next ref_state starts
        # from them (only pytest-prp's own refs move in between) instead of reading again.
        self._refs_read: tuple[Path, tuple[str, ...], Mapping[str, str]] | None = None
        self._run_lock: tuple[int, Path] | None = None  # held while this run lives

    @classmethod
    def open(cls, start: Path, worktrees_dir: Path | None = None) -> GitWorkspace:
        """The repository holding ``start``; PRP worktrees go to ``worktrees_dir`` (default:
        ``default_worktrees_dir``)."""
        start = Path(start)
        present = [name for name in _HOSTILE_ENV if name in os.environ]
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
        status, version_text, _ = _run_git(executable, ["version"], probe, {})
        found = _version(version_text)
        if status != 0 or found is None:
            raise GitError(f"cannot tell the version of {executable}: {version_text.strip()}")
        if found < MIN_GIT_VERSION:
            raise GitError(
                f"pytest-prp needs git 2.38 or newer (found {'.'.join(map(str, found))})"
            )
        status, out, err = _run_git(
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
            raise GitError(_failure("rev-parse", status, err))
        return cls(Path(lines[0]), Path(lines[1]), executable, worktrees_dir)

    # ---------------------------------------------------------------- running git

    def _git(
        self,
        command: str,
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        codes: tuple[int, ...] | None = (0,),
        stdin: str | None = None,
    ) -> tuple[int, str, str]:
        """Run ``git <command> <args>`` (in ``cwd``, default the user's root); raise GitError
        unless the exit status is in ``codes`` (None: accept any)."""
        extra = {**self._env, **env} if env else self._env
        status, out, err = _run_git(
            self._executable, [command, *args], cwd or self.root, extra, stdin
        )
        if codes is not None and status not in codes:
            raise GitError(_failure(command, status, err))
        return status, out, err

    def _out(self, command: str, *args: str, cwd: Path | None = None) -> str:
        return self._git(command, *args, cwd=cwd)[1]

    def _commit_env(self) -> dict[str, str]:
        if self._identity is None:
            status, out, _ = self._git(
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

    def _verify(self, rev: str) -> str | None:
        if rev.startswith("-"):
            return None
        status, out, _ = self._git("rev-parse", "--verify", "-q", f"{rev}^{{commit}}", codes=(0, 1))
        return out.strip() if status == 0 else None

    # ---------------------------------------------------------------- refs

    def head_sha(self) -> str:
        """Commit checked out in the user's worktree."""
        return self.resolve("HEAD")

    def resolve(self, ref: str) -> str:
        """Full sha of the commit ``ref`` names; GitError ``unknown revision: <ref>``."""
        sha = self._verify(ref)
        if sha is None:
            raise GitError(f"unknown revision: {ref}")
        return sha

    def branch_sha(self, branch: str) -> str | None:
        """Tip of ``refs/heads/<branch>``, or None when there is no such branch."""
        return self._peek_branch(branch) or self._verify(f"refs/heads/{branch}")

    def _peek_branch(self, branch: str) -> str | None:
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
        return sha if _FULL_SHA.fullmatch(sha) else None

    def checked_out_in(self, branch: str) -> Path | None:
        """The worktree (the user's or a linked one) that has ``branch`` checked out."""
        for path, checked_out in self._worktrees():
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
        status, _, err = self._git(
            "update-ref", "-m", "prp: create", f"refs/heads/{branch}", start, "", codes=(0, 128)
        )
        if status == 0:
            return start
        sha = self.branch_sha(branch)
        if sha is None:
            raise GitError(f"cannot create branch {branch}: {_failure('update-ref', status, err)}")
        return sha

    def ledger(self, refs: Sequence[str]) -> dict[str, str]:
        """PRP id -> sha of the newest commit reachable from ``refs`` (revisions such as branch
        names or ``HEAD``; ones that do not exist are skipped) that carries a ``PRP-Id:``
        trailer or whose subject reads ``<id>: Complete...``. One ``git rev-list`` call;
        ``--grep`` lets git skip unrelated commits without formatting them."""
        revs = [ref for ref in refs if ref and not ref.startswith("-")]
        if not revs:
            return {}
        out = self._out(
            "rev-list",
            "--no-commit-header",
            "--ignore-missing",
            f"--format={_LEDGER_FORMAT}",
            "--regexp-ignore-case",
            "--grep=^PRP-Id:",
            "--grep=: Complete",
            *revs,
            "--",
        )
        return parse_ledger(out)

    # ---------------------------------------------------------------- worktrees

    def worktree_path(self, name: str) -> Path:
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
        for attempt in range(_WORKTREE_ATTEMPTS):
            status, _, err = self._git(
                "worktree", "add", "-q", *where, str(path), start, codes=None
            )
            if status == 0:
                return
            # Either a stale registration of this path (its directory deleted, or locked by a
            # killed `worktree add`) still holds the branch, or git tripped over the
            # half-written files of a worktree another worker is adding: clear ours, retry.
            self._discard(path)
            _pause(attempt)
        raise GitError(_failure("worktree add", status, err))

    # ---------------------------------------------------------------- the reused worktree

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
                self._git("clean", "-q", "-ffdx", cwd=slot)
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
        self._seed_index(slot, start)
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
                if not _same_path(holder, path):
                    self._free_branch(branch, holder)
        target = ("-B", branch) if branch is not None else ("--detach",)
        self._git("checkout", "-q", "-f", *target, start, cwd=path)

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
        if _same_path(holder.parent, self.worktrees_dir) and holder.name.startswith("+slot-"):
            fd = self._try_lock(_slot_lock(holder))
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
        status, _, _ = self._git("worktree", "move", str(path), str(kept), codes=None)
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
            fd = self._try_lock(_slot_lock(slot))
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

    def _slot_path(self) -> Path:
        """This process's reusable worktree: ``+slot-<k>`` for the first ``k`` whose lock file
        no other process holds (flock, released when a process dies; the name cannot be a
        PRP's, as ``safe_name`` never yields ``+``)."""
        k = 0
        while self._slot is None:
            slot = self.worktrees_dir / f"+slot-{k}"
            fd = self._try_lock(_slot_lock(slot))
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
        fd = self._try_lock(f"run-{leftovers.RUN_ID}.lock")
        if fd is None:
            return
        self._run_lock = (fd, self.common_dir / "prp" / "locks" / f"run-{leftovers.RUN_ID}.lock")
        dead: dict[str, int] = {}
        for path in sorted(self._run_lock[1].parent.glob("run-*.lock")):
            run_id = path.name.removeprefix("run-").removesuffix(".lock")
            other = self._try_lock(path.name) if run_id != leftovers.RUN_ID else None
            if other is not None:
                dead[run_id] = other
        try:
            leftovers.end_runs(set(dead), grace=leftovers.GRACE)
        finally:
            for run_id, other in dead.items():
                (self._run_lock[1].parent / f"run-{run_id}.lock").unlink(missing_ok=True)
                os.close(other)

    def _try_lock(self, name: str) -> int | None:
        """Lock file ``name``, locked by this process (its descriptor), or None when another
        process holds it."""
        fd = self._lock_file(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

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
        branch = _head_branch(slot) or ""
        if branch.startswith("prp/") and self.branch_sha(branch) is not None:
            self._slot_owner = branch.rsplit("/", 1)[-1]  # branches are prp/<batch>/<id>
            self.keep_worktree(slot, self._slot_owner)
        elif previous or leftovers.holding(slot):
            self._set_aside(slot)

    def _set_aside(self, slot: Path) -> None:
        k = 0
        while (aside := self.worktrees_dir / f"+orphaned-{k}").exists():
            k += 1
        status, _, _ = self._git("worktree", "move", str(slot), str(aside), codes=None)
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
                self._git("update-ref", "-d", f"refs/heads/{branch}", codes=(0, 1, 128))
        self._git("worktree", "prune")
        return sorted(found)

    def _slot_in_use(self, path: Path) -> bool:
        """Whether ``path`` is the reused worktree of a live process (its slot lock is held)."""
        if not path.name.startswith("+slot-"):
            return False
        if self._slot is not None and path == self._slot[1]:
            return True
        fd = self._try_lock(_slot_lock(path))
        if fd is None:
            return True
        os.close(fd)  # releases it again
        return False

    def _worktrees(self) -> list[tuple[Path, str | None]]:
        # `worktree list` reads every worktree's files and dies on one another worker is
        # adding at that moment (git writes them non-atomically): retry briefly.
        for attempt in range(_WORKTREE_ATTEMPTS):
            status, out, err = self._git("worktree", "list", "--porcelain", "-z", codes=None)
            if status == 0:
                return _worktree_entries(out)
            _pause(attempt)
        raise GitError(_failure("worktree list", status, err))

    def _prp_worktrees(self) -> dict[Path, str | None]:
        found: dict[Path, str | None] = {}
        for path, branch in self._worktrees():
            if _same_path(path.parent, self.worktrees_dir):
                found[self.worktrees_dir / path.name] = branch
        if self.worktrees_dir.is_dir():
            for child in self.worktrees_dir.iterdir():
                if child.is_dir():
                    found.setdefault(child, None)
        return found

    def _discard(self, path: Path) -> None:
        """Unregister and delete a worktree directory, whatever state it is in (``--force``
        twice also drops a registration whose directory is gone or that is locked)."""
        for attempt in range(_WORKTREE_ATTEMPTS):
            status, _, err = self._git(
                "worktree", "remove", "--force", "--force", str(path), codes=None
            )
            if status == 0 or "is not a working tree" in err:
                break
            _pause(attempt)  # git tripped over a worktree another worker is adding
        else:
            self._git("worktree", "prune")
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)

    # ---------------------------------------------------------------- commits

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
        start = base or self._out("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=worktree)
        start = start.strip()
        tree = self._write_tree(worktree, start)
        raw = self._out("diff-tree", "-r", "-z", "--raw", "--no-renames", start, tree)
        info, gitlinks = parse_raw_diff("", raw)
        self._check_submodules(worktree, start, gitlinks, info.deleted)
        if not (info.created or info.modified or info.deleted) and not allow_empty:
            return None
        env = self._commit_env()
        sha = self._git("commit-tree", tree, "-p", start, "-m", message, env=env)[1].strip()
        self._built[sha] = start
        if move_branch:
            # Old value: the commit it was built on; a compare-and-swap.
            self._git("update-ref", "-m", "prp: commit", "HEAD", sha, start, cwd=worktree)
            self._git("read-tree", sha, cwd=worktree)  # its index agrees with its HEAD again
        return CommitInfo(sha, info.created, info.modified, info.deleted)

    def _write_tree(self, worktree: Path, start: str) -> str:
        """The tree of ``worktree``'s files, staged over ``start`` in a private index: the
        copy of the index our checkout of ``start`` wrote (its stat data spares hashing the
        files nobody touched), else a fresh ``read-tree``."""
        admin = _admin_dir(worktree)
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
                self._git("read-tree", start, cwd=worktree, env=env)
            self._git("add", "-A", cwd=worktree, env=env)
            return self._git("write-tree", cwd=worktree, env=env)[1].strip()

    def _seed_index(self, worktree: Path, start: str) -> None:
        """Keep a copy of the index a checkout of ``start`` just wrote, for ``_write_tree``
        (``copy2``: its mtime must stay the index's, or git's racy-entry check would trust
        stat data of files changed in the same second)."""
        admin = _admin_dir(worktree)
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
            listing = self._out("ls-tree", "-r", "-d", "-z", start)
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
            status, out, _ = self._git(
                "status", "--porcelain", "--ignore-submodules=none", cwd=path, codes=None
            )
            return status != 0 or bool(out.strip())
        return any(path.iterdir())

    # ---------------------------------------------------------------- what happened to refs

    def ref_state(self, worktree: Path, ignore: Sequence[str] = ()) -> RefState:
        """HEAD of ``worktree``, the length of its reflog, and every ref but those in
        ``ignore`` (names, or prefixes ending in ``/``): to compare after a PRP's steps."""
        head = _read_head(worktree) or ""
        if head.startswith("ref: refs/heads/"):
            head_sha = self.branch_sha(head.removeprefix("ref: refs/heads/"))
        elif head.startswith("ref: "):
            head_sha = self._verify(head.removeprefix("ref: "))
        else:
            head_sha = head or None
        admin = _admin_dir(worktree)
        try:
            size = (admin / "logs" / "HEAD").stat().st_size if admin else 0
        except OSError:
            size = 0
        known, self._refs_read = self._refs_read, None
        if known is not None and known[:2] == (worktree, tuple(ignore)):
            return RefState(head, head_sha, size, known[2])  # per-worktree refs included
        out = self._out("for-each-ref", "--format=%(objectname) %(refname)", cwd=worktree)
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            if not any(ref == i or (i.endswith("/") and ref.startswith(i)) for i in ignore):
                refs[ref] = sha
        return RefState(head, head_sha, size, refs)

    def ref_changes(
        self, worktree: Path, before: RefState, ignore: Sequence[str] = ()
    ) -> list[str]:
        """What was done to refs since ``before`` was taken (``describe_ref_changes``)."""
        self._refs_read = None
        after = self.ref_state(worktree, ignore)
        self._refs_read = (worktree, tuple(ignore), after.refs)
        reflog = ""
        admin = _admin_dir(worktree)
        if admin is not None and after.reflog_size > before.reflog_size:
            try:
                with open(admin / "logs" / "HEAD", "rb") as log:
                    log.seek(before.reflog_size)
                    reflog = log.read().decode("utf-8", "replace")
            except OSError:
                pass
        return describe_ref_changes(before, after, reflog)

    def changed_files(self, commit: str) -> CommitInfo:
        """Paths ``commit`` created, modified and deleted relative to its first parent."""
        out = self._out(
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

    def set_branch(self, branch: str, commit: str, worktree: Path | None = None) -> None:
        """Point ``branch`` at ``commit`` (created if missing); ``worktree``, which has it
        checked out, gets the commit's tree as its index (``git status`` clean there)."""
        self._git("update-ref", "-m", "prp: commit", f"refs/heads/{branch}", commit)
        if worktree is not None and _head_branch(worktree) == branch:
            self._git("read-tree", commit, cwd=worktree)

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
        if not _FULL_SHA.fullmatch(commit):
            commit = self.resolve(commit)
        with self.merge_turn(branch):
            return self._merge(branch, commit, message, parent, delete_branch)

    @contextmanager
    def merge_turn(self, branch: str) -> Iterator[None]:
        """Hold the turn to merge into ``branch``, shared by every process on this repository
        (flock on a file under the common git dir: released when the process dies)."""
        fd = self._lock_file(f"merge-{safe_name(branch)}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def open_lock(self, name: str) -> int:
        """An open descriptor of the lock file ``name`` under ``<common dir>/prp/locks``."""
        return self._lock_file(name)

    def _lock_file(self, name: str) -> int:
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

    def _merge(
        self, branch: str, commit: str, message: str, parent: str | None, delete_branch: str | None
    ) -> MergeResult:
        ref = f"refs/heads/{branch}"
        reflog = f"prp: merge {commit[:12]}"
        if parent is not None and _FULL_SHA.fullmatch(parent):
            # Skip the compare-and-swap when the branch has visibly moved: it would fail. And
            # check the caller's word that ``commit`` descends from ``parent``: a swap to a
            # commit that does not would drop the tip's history from the branch.
            descends = self._built.get(commit) == parent or self._descends(commit, parent)
            if self._peek_branch(branch) in (None, parent) and descends:
                if self._swap(ref, commit, parent, reflog, delete_branch)[0] == 0:
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
                status, out, _ = self._git("merge-base", tip, commit, codes=(0, 1))
                base = out.strip() if status == 0 else None
            if commit in (tip, base):
                if delete_branch is not None:
                    self._git("update-ref", "-d", f"refs/heads/{delete_branch}", codes=(0, 1))
                return MergeResult(True, tip, (), False)  # already merged
            if base == tip:
                new, fast_forward = commit, True
            else:
                status, out, _ = self._git(
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
                new = self._git(
                    "commit-tree",
                    fields[0].strip(),
                    "-p",
                    tip,
                    "-p",
                    commit,
                    "-m",
                    message,
                    env=self._commit_env(),
                )[1].strip()
                fast_forward = False
            status, err = self._swap(ref, new, tip, reflog, delete_branch)
            if status == 0:
                return MergeResult(True, new, (), fast_forward)
            last_error = _failure("update-ref", status, err)
            _pause(attempt)  # something else moved the tip (or holds git's ref lock): retry
        raise GitError(f"could not merge into {branch}: it kept changing ({last_error})")

    def _descends(self, commit: str, ancestor: str) -> bool:
        status, _, _ = self._git("merge-base", "--is-ancestor", ancestor, commit, codes=(0, 1))
        return status == 0

    def _swap(
        self, ref: str, new: str, old: str, reflog: str, delete_branch: str | None
    ) -> tuple[int, str]:
        """Compare-and-swap ``ref`` from ``old`` to ``new`` (deleting ``delete_branch`` in the
        same transaction); git's exit status (0 done, else nothing changed) and stderr."""
        if delete_branch is None:
            status, _, err = self._git("update-ref", "-m", reflog, ref, new, old, codes=None)
            return status, err
        commands = f"update {ref} {new} {old}\ndelete refs/heads/{delete_branch}\n"
        status, _, err = self._git(
            "update-ref", "-m", reflog, "--stdin", stdin=commands, codes=None
        )
        return status, err
