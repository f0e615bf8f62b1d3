"""No process left behind: find and end what a PRP's processes left running.

Killing a step's process group misses whatever left the group: ``setsid``, ``nohup cmd &``
from an agent's shell tool, a double-forked daemon. Two known designs, used together (Linux):

- An environment cookie (as Jenkins' ProcessTreeKiller does with ``BUILD_ID``): every process
  pytest-prp starts gets ``PRP_RUN_TOKEN=<token>``, which its descendants inherit; at the end
  of the step every process whose ``/proc/<pid>/environ`` carries the token is ended. A token
  is ``<run id>.<n>``, the run id naming this pytest process; a process started under another
  token (pytest-prp running inside a PRP step) gets ``<outer token>/<run id>.<n>``, so the
  outer step's sweep covers it too.
- A child subreaper (``PR_SET_CHILD_SUBREAPER``, as tini and systemd do): orphans of our
  processes are re-parented to this process instead of PID 1. This finds what wiped its
  environment (``env -i``), lets us reap the orphans that exit (no zombies), and keeps all a
  step started in our own process tree: the end of a step walks that tree, not all of
  ``/proc``, so its cost does not grow with what else the machine runs.

Ending is SIGTERM (with SIGCONT, for stopped ones), a grace period, then SIGKILL. A process
is signalled through a pidfd taken after checking its start time, so a recycled pid is never
hit. Outside Linux (no ``/proc``) all of this finds nothing: the process group kill remains.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import os
import select
import signal
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

COOKIE = "PRP_RUN_TOKEN"
# Names this pytest process's processes in their tokens (and in its slot lock file, so that the
# next run can end what a killed run left running).
RUN_ID = uuid.uuid4().hex[:16]
_counter = itertools.count(1)
_PROC = Path("/proc")
_COOKIE_BYTES = COOKIE.encode() + b"="
# Time between SIGTERM and SIGKILL for what a dead run left (a step's own: its kill grace).
GRACE = 2.0
# How long SIGKILLed processes get to disappear (it only takes the kernel a moment).
SETTLE = 1.0


def start_run() -> None:
    """A new run id (and token count) for this process: for a process that runs pytest more
    than once (an execnet socket server's worker), so that each run names its own processes."""
    global RUN_ID, _counter
    RUN_ID = uuid.uuid4().hex[:16]
    _counter = itertools.count(1)


def new_token(inherited: str | None) -> str:
    """A token for one process we start, under the ``inherited`` one when there is one."""
    own = f"{RUN_ID}.{next(_counter)}"
    return f"{inherited}/{own}" if inherited else own


def with_token(env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """``env`` with a new token in the cookie, and the token."""
    token = new_token(env.get(COOKIE) or None)
    return {**env, COOKIE: token}, token


def carries(value: str, token: str) -> bool:
    """Whether a cookie ``value`` was set under ``token`` (itself, or nested under it)."""
    return value == token or value.startswith(token + "/")


def of_runs(value: str, run_ids: Collection[str]) -> bool:
    """Whether a cookie ``value`` names one of ``run_ids`` anywhere in its nesting."""
    return any(part.split(".", 1)[0] in run_ids for part in value.split("/"))


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int  # its process group
    sid: int
    state: str
    start: int  # clock ticks after boot: with the pid, names one process for good

    @property
    def alive(self) -> bool:
        """Running: neither a zombie (finished, not reaped yet) nor dead."""
        return self.state not in ("Z", "X")


def parse_stat(pid: int, text: str) -> Proc | None:
    """``/proc/<pid>/stat``: "pid (comm) state ppid pgrp session ... starttime ..."; the
    command may hold spaces and parentheses. The one reader of that format."""
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    try:
        return Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0], int(fields[19]))
    except ValueError:
        return None


def read_process(pid: int) -> Proc | None:
    """What ``/proc`` says of ``pid`` now; OSError when it cannot be read (FileNotFoundError:
    gone, or no ``/proc``), None when its stat reads as something else."""
    with open(f"/proc/{pid}/stat") as file:
        return parse_stat(pid, file.read())


def process(pid: int) -> Proc | None:
    """What ``/proc`` says of ``pid`` now (None: gone, or no ``/proc``)."""
    try:
        return read_process(pid)
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not: it has finished, only not been reaped).
    Without ``/proc`` (not Linux) only ``kill(pid, 0)`` can tell, zombies included."""
    if pid <= 0:
        return False
    try:
        proc = read_process(pid)
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return proc is None or proc.alive


def have_proc() -> bool:
    """Whether this system shows its processes in ``/proc`` (Linux)."""
    return os.path.exists("/proc/self/stat")


def processes() -> Iterator[Proc]:
    """Every process we can see (none without ``/proc``), one at a time: a caller looking for
    one stops at it."""
    try:
        names = os.listdir(_PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            proc = process(int(name))
            if proc is not None:
                yield proc


def snapshot() -> dict[int, Proc]:
    """Every process we can see, by pid (empty without ``/proc``)."""
    return {proc.pid: proc for proc in processes()}


def cookie(pid: int) -> str | None:
    """The cookie in ``pid``'s environment, None when absent or unreadable (another user's
    process, a zombie, one that has gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            data = file.read()
    except OSError:
        return None
    at = data.find(b"\0" + _COOKIE_BYTES)
    if at >= 0:
        at += 1
    elif data.startswith(_COOKIE_BYTES):
        at = 0
    else:
        return None
    end = data.find(b"\0", at)
    return data[at + len(_COOKIE_BYTES) : end if end >= 0 else len(data)].decode(errors="replace")


def _children(pid: int) -> list[int]:
    """``pid``'s children, from each of its threads' ``children`` file."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as file:
                found.extend(int(child) for child in file.read().split())
        except (OSError, ValueError):
            continue
    return found


def our_tree() -> dict[int, Proc] | None:
    """Our descendants, by pid; None where we are no subreaper or the kernel does not list
    children. As a subreaper we keep every process started under us in our tree (an orphan is
    re-parented to us, never to PID 1): walking it costs what it holds, not what the machine
    runs."""
    me = os.getpid()
    if not become_subreaper() or not os.path.exists(f"/proc/{me}/task/{me}/children"):
        return None
    found: dict[int, Proc] = {}
    stack = _children(me)
    while stack:
        pid = stack.pop()
        if pid not in found and (proc := process(pid)) is not None:
            found[pid] = proc
            stack.extend(_children(pid))
    return found


def _descendants(roots: Iterable[int], procs: Mapping[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


def _live(procs: Mapping[int, Proc], pids: Iterable[int]) -> list[Proc]:
    return [procs[pid] for pid in pids if pid in procs and procs[pid].alive]


@functools.lru_cache(maxsize=1)
def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (once); False where impossible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


# Processes started by ``run_process`` and not reaped yet (in any thread): never taken for an
# orphan, never reaped here (their ``Popen`` waits for them).
LEADERS: set[int] = set()
# Held while ``run_process`` starts a process, until its pid is in LEADERS, and while a sweep
# tells orphans from the rest: a process just forked in another thread (the final check runs
# gates side by side) carries our environment, without its cookie, until it has exec'd, and
# would look like an orphan that wiped its environment.
STARTING = threading.Lock()


def sweep(token: str, *, leader: int, since: int | None, grace: float) -> list[int]:
    """End every process carrying ``token`` and, given ``since`` (the start time of ``leader``,
    the process started with it), every process re-parented to us since then that carries no
    cookie (an orphan of its tree that wiped its environment). Returns the pids ended (with
    their descendants); reaps the ended ones that were our children, and the zombies of such
    orphans that exited on their own."""
    me, my_session = os.getpid(), os.getsid(0)

    def adopted(proc: Proc) -> bool:
        return (
            since is not None
            and proc.ppid == me
            and proc.start >= since
            and proc.sid != my_session  # not one of our own git processes
            and proc.pid != leader
            and proc.pid not in LEADERS
        )

    def ours(procs: Mapping[int, Proc]) -> set[int]:
        found: set[int] = set()
        with STARTING:
            for proc in procs.values():
                if not proc.alive or (since is not None and proc.start < since):
                    continue  # older than the leader: cannot carry its token nor be its orphan
                value = cookie(proc.pid)
                if (value is not None and carries(value, token)) or (
                    value is None and adopted(proc)
                ):
                    found.add(proc.pid)
        return found

    ended, procs = _end_matching(ours, grace, look=_tree_or_all)
    zombies = [p.pid for p in procs.values() if p.state == "Z" and adopted(p)]
    _reap([*ended, *zombies])
    return ended


def end_runs(run_ids: Collection[str], grace: float) -> list[int]:
    """End every process carrying a token of one of ``run_ids`` (runs that died, or ours: the
    processes of our own run are all in our tree when we are a subreaper)."""
    if not run_ids:
        return []

    def of_them(procs: Mapping[int, Proc]) -> set[int]:
        found = set()
        for proc in procs.values():
            value = cookie(proc.pid) if proc.alive else None
            if value is not None and of_runs(value, run_ids):
                found.add(proc.pid)
        return found

    look = _tree_or_all if set(run_ids) == {RUN_ID} else snapshot
    ended, _ = _end_matching(of_them, grace, look=look)
    _reap(ended)
    return ended


def end_strays(grace: float) -> list[int]:
    """End what still runs under us with a cookie other than our own: at the end of an xdist
    controller, what its workers started and had not ended yet (a worker still ending its PRP
    when the controller stops waiting for it, or killed while it did). As a subreaper the
    controller holds the orphans of its workers too, so the run ends with nothing left."""
    own = os.environ.get(COOKIE)

    def strays(procs: Mapping[int, Proc]) -> set[int]:
        found = set()
        for proc in procs.values():
            value = cookie(proc.pid) if proc.alive else None
            if value is not None and value != own:
                found.add(proc.pid)
        return found

    if our_tree() is None:
        return []  # no subreaper, no children listed: the workers' own ending is all there is
    ended, _ = _end_matching(strays, grace, look=lambda: our_tree() or {})
    _reap(ended)
    return ended


def holding(path: Path) -> list[int]:
    """Processes whose working directory (or root) is ``path`` or under it, as far as we can
    see (other users' processes are hidden from us)."""
    target = os.path.realpath(path)
    found = []
    for proc in snapshot().values():
        for link in ("cwd", "root"):
            try:
                where = os.readlink(f"/proc/{proc.pid}/{link}")
            except OSError:
                continue
            if where == target or where.startswith(target + os.sep):
                found.append(proc.pid)
                break
    return found


def _tree_or_all() -> dict[int, Proc]:
    tree = our_tree()
    return snapshot() if tree is None else tree


def _end_matching(
    match: Callable[[Mapping[int, Proc]], set[int]],
    grace: float,
    look: Callable[[], dict[int, Proc]],
) -> tuple[list[int], dict[int, Proc]]:
    """End what ``match`` finds among the processes ``look`` returns; the pids ended, and the
    last look at the processes (taken after they were ended)."""
    ended: list[int] = []
    procs: dict[int, Proc] = {}
    # A process may fork while we look: look again until nothing new is found.
    for _ in range(5):
        procs = look()
        targets = _live(procs, _descendants(match(procs), procs))
        if not targets:
            break
        _end(targets, grace)
        ended.extend(proc.pid for proc in targets)
    return ended, procs


def _same(proc: Proc) -> bool:
    """Whether ``proc`` still runs: its pid names the same process (start time), not a zombie."""
    current = process(proc.pid)
    return current is not None and current.start == proc.start and current.alive


class _Targets:
    """Processes to signal and wait for: through a pidfd taken after checking the start time,
    so that a recycled pid is never hit; by pid, checked before each signal, where the kernel
    gives no pidfd."""

    def __init__(self, targets: Iterable[Proc]) -> None:
        self.fds: dict[int, int] = {}
        self.plain: list[Proc] = []
        for proc in targets:
            try:
                fd = os.pidfd_open(proc.pid)
            except ProcessLookupError:
                continue
            except (OSError, AttributeError):  # no pidfd here (old kernel, sandbox, not Linux)
                self.plain.append(proc)
                continue
            if _same(proc):
                self.fds[proc.pid] = fd
            else:
                os.close(fd)

    def send(self, sig: signal.Signals) -> None:
        for fd in self.fds.values():
            try:
                signal.pidfd_send_signal(fd, sig)
            except OSError:
                pass
        for proc in self.plain:
            if _same(proc):
                try:
                    os.kill(proc.pid, sig)
                except OSError:
                    pass

    def wait(self, seconds: float) -> None:
        """Until all have exited or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        while True:
            self.plain = [proc for proc in self.plain if _same(proc)]
            left = deadline - time.monotonic()
            if not (self.fds or self.plain) or left <= 0:
                return
            poller = select.poll()
            for fd in self.fds.values():
                poller.register(fd, select.POLLIN)
            wait = min(left, 0.01) if self.plain else left
            for fd, _ in poller.poll(wait * 1000):
                pid = next(pid for pid, own in self.fds.items() if own == fd)
                os.close(self.fds.pop(pid))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def _end(targets: list[Proc], grace: float) -> None:
    ending = _Targets(targets)
    try:
        ending.send(signal.SIGTERM)
        ending.send(signal.SIGCONT)  # a stopped process acts on SIGTERM only once resumed
        ending.wait(grace)
        ending.send(signal.SIGKILL)
        ending.wait(SETTLE)
    finally:
        ending.close()


def _reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our children. Only these: reaping
    any other child could take the exit status a ``Popen`` is waiting for."""
    for pid in pids:
        if pid in LEADERS:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child (or reaped already)
