"""One run per integration branch at a time.

Two runs of one batch would run every PRP twice, in worktrees on the same PRP branches, and
race to merge. So a run holds a lock for its integration branch from start to end, and a second
run refuses at start with one line naming the first. The lock is a flock on
``<git common dir>/prp/locks/run-<branch>.lock``, taken by the process that owns the run (the
only one, or the xdist controller) and released by the kernel if that process dies; the file
names its holder.

Under xdist the controller takes it before the workers start, when the branch is known from
the options alone (``--prp-branch``, or one ``--prp-batch``). Otherwise (``--prp-all``,
``--prp-id``) only the workers know the branch; a worker takes the lock if it is free, for the
whole run (the record carries the run's ``testrunuid``), and never refuses: a worker's error
would only show as a crashed worker. Two such runs of one batch then both go ahead, and what
keeps their work safe is the rest: a PRP branch in use is never reset, a merge never drops the
branch's tip.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass

from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.repository import Repository
from pytest_prp.workspace.worktree_files import safe_name

_READ_SECONDS = 2.0  # how long a new holder may take to write its name into the file


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    run_id: str
    command: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}: {self.command}"


def parse_holder(text: str) -> Holder | None:
    """The holder recorded in a lock file, or None when it is empty or not (yet) whole."""
    try:
        data = json.loads(text)
        return Holder(
            int(data["pid"]),
            str(data["host"]),
            str(data["run_id"]),
            str(data["command"]),
            str(data["started"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def refusal(branch: str, holder: Holder | None) -> str:
    """The one line a second run ends with."""
    who = holder.describe() if holder else "its process could not be named"
    return (
        f"another run is using the integration branch {branch} ({who}); "
        "let it finish or stop it, then run this again"
    )


def _alive(holder: Holder) -> bool:
    if holder.host != socket.gethostname():
        return True  # cannot tell: believe the record
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> Holder | None:
    """The live holder named in the lock file; waits briefly while the file is empty or still
    names a dead earlier holder (the new one has the lock but has not written yet)."""
    deadline = time.monotonic() + _READ_SECONDS
    holder = None
    while True:
        holder = parse_holder(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        if (holder is not None and _alive(holder)) or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


def claim(
    git: Repository, branch: str, run_id: str, command: str, refuse: bool = True
) -> int | None:
    """Take the run lock of ``branch`` for run ``run_id``: the descriptor to keep open while
    the run lasts (``release`` it at the end), or None when this run holds it already (in the
    xdist controller). GitError naming the holder when another run holds it, unless not
    ``refuse`` (then None)."""
    fd = git.open_lock(f"run-{safe_name(branch)}.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not refuse:
            os.close(fd)
            return None
        try:
            holder = _read_holder(fd)
        finally:
            os.close(fd)
        if holder is not None and holder.run_id == run_id:
            return None
        raise GitError(refusal(branch, holder)) from None
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    return fd


def release(fd: int) -> None:
    """End of the run: the file no longer names this process, and the lock is free."""
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    os.close(fd)
