"""Run one external process safely: its own process group, a time limit, a log and a tail.

Every process starts in a new session, so it and everything it starts (``server &``) share one
process group. When the main process ends, times out, or the caller is interrupted, the whole
group is stopped (SIGTERM, a short grace, then SIGKILL) and the main process is reaped; then
whatever left the group (``setsid``, ``nohup``, a double fork) is found by its environment cookie
or as an orphan re-parented to us, and ended too (``leftovers``): no orphan keeps
running and no zombie is left behind.

Output goes to the log and a tail of lines (``output``): copied into the log as bytes,
or decoded line by line where the caller needs the output itself.

Two limits end a process (``limits.Limits``, which also says where its output goes):
the wall clock and, optionally, idleness: no output and no file changed in the activity
directory for that long. Any
exception in the caller's thread while the process runs (KeyboardInterrupt from Ctrl-C or from a
SIGTERM handler, SystemExit, an error in ``on_line``) stops the group before it propagates; so
does ``limits.cancel``, set from another thread (``Cancelled``).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_prp.supervise import leftovers
from pytest_prp.supervise.limits import Limits
from pytest_prp.supervise.output import Collector, Lines, LogCopy
from pytest_prp.supervise.pump import POLL, PipePump, close_pipes, has_exited

DEFAULT_TAIL_LINES = 40
# Time a process group gets between SIGTERM and SIGKILL.
KILL_GRACE = 2.0
# How long SIGKILLed processes get to disappear (it only takes the kernel a moment).
KILL_SETTLE = 1.0
# How long to wait for the pipes to close once the group is stopped. Only a process that left
# the group (``setsid``) can keep them open this long; we then stop listening to it.
DRAIN_GRACE = 0.5
# How often to look whether the process has exited once its pipes are closed, where the kernel
# cannot tell us (no pidfd).
_EXIT_POLL = 0.005


def format_seconds(seconds: float) -> str:
    """``600`` -> ``"600 s"``, ``0.5`` -> ``"0.5 s"``, ``1.91067`` -> ``"1.9 s"``."""
    return f"{round(seconds, 1 if seconds >= 1 else 2):g} s"


def timeout_message(timeout: float, source: str | None = None) -> str:
    """``timed out after 600 s``; with the option that set the limit, when it was not the
    process's own: ``timed out after 30 s (--prp-timeout)``."""
    said = f"timed out after {format_seconds(timeout)}"
    return f"{said} ({source})" if source else said


LAST_LINE_CHARS = 80


def shorten_line(line: str, limit: int = LAST_LINE_CHARS) -> str:
    """One line cut to about ``limit`` characters, for one-line messages."""
    text = line.strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def idle_message(seconds: float, last_line: str | None) -> str:
    """``idle for 600 s (last output: "Running tests...")`` or ``idle for 600 s (no output)``."""
    if last_line is None or not last_line.strip():
        return f"idle for {format_seconds(seconds)} (no output)"
    return f'idle for {format_seconds(seconds)} (last output: "{shorten_line(last_line)}")'


class Cancelled(Exception):
    """``limits.cancel`` was set: the process was stopped (or never started), no verdict."""


@dataclass
class ProcessResult:
    returncode: int | None  # None when killed by one of our limits
    timed_out: bool  # stopped by a limit: the wall clock or (idle_timed_out) idleness
    duration: float
    tail: list[str]  # last lines of combined stdout+stderr
    stdout: str | None  # whole stdout, only with capture_stdout=True
    timeout: float | None = None  # the limit it ran under, as the user set it (Limits.stated)
    timeout_source: str | None = None  # the option that set it, when not its own (Limits.source)
    idle_timed_out: bool = False  # stopped for printing nothing and changing no file
    idle_timeout: float | None = None  # the idle limit it ran under, if any
    last_line: str | None = None  # the last non-blank output line (as the tail shows it)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        """``exit 1``, ``timed out after 600 s``, ``idle for 600 s (last output: "...")`` or
        ``killed by signal 9 (SIGKILL)``."""
        if self.idle_timed_out:
            return idle_message(self.idle_timeout or self.duration, self.last_line)
        if self.timed_out:
            return timeout_message(self.timeout or self.duration, self.timeout_source)
        if self.returncode is None:
            return "no exit status"
        if self.returncode < 0:
            return f"killed by signal {-self.returncode} ({_signal_name(-self.returncode)})"
        return f"exit {self.returncode}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _wait(pump: PipePump | None, seconds: float) -> None:
    """Let time pass, reading the pipes meanwhile (if we got as far as listening to them)."""
    if pump is None:
        time.sleep(seconds)
    else:
        pump.step(seconds)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group.

    ``killpg(pgid, 0)`` also counts zombies, and where PID 1 does not reap orphans (some
    containers) those never go away, so on Linux we look at /proc instead.
    """
    try:
        os.killpg(pgid, 0)  # cheap: an empty group needs no scan of /proc
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not leftovers.have_proc():
        return True
    return any(proc.pgrp == pgid and proc.alive for proc in leftovers.processes())


def _stop_group(
    proc: subprocess.Popen[bytes],
    pump: PipePump | None,
    grace: float,
    token: str,
    since: int | None,
) -> None:
    """SIGTERM the group, give it ``grace`` seconds, SIGKILL what is left, reap the leader;
    then end what left the group: carrying ``token``, or orphaned since ``since``."""
    pgid = proc.pid
    try:
        _signal_group(pgid, signal.SIGTERM)
        _signal_group(pgid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once resumed
        deadline = time.monotonic() + grace
        # Keep reading while they die so no one blocks on a full pipe.
        while not has_exited(proc.pid) and time.monotonic() < deadline:
            _wait(pump, min(POLL, max(deadline - time.monotonic(), 0.0)))
        if has_exited(proc.pid):
            proc.wait()
        while _group_alive(pgid) and time.monotonic() < deadline:
            _wait(pump, 0.01)
    finally:
        # Also reached on a second Ctrl-C during the grace period.
        if proc.poll() is None or _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
            # SIGKILL takes effect asynchronously: wait until the group is really gone, so
            # that "no process is left" holds when we return.
            deadline = time.monotonic() + KILL_SETTLE
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.005)
        proc.wait()
        leftovers.LEADERS.discard(pgid)
        leftovers.sweep(token, leader=pgid, since=since, grace=grace)


def newest_change(root: Path, not_after: float) -> float | None:
    """The latest mtime (wall clock) under ``root``, itself included and ``.git`` left out.

    Directories count (a file created or deleted changes its directory). Times later than
    ``not_after`` are skipped: a file dated in the future must not look like activity forever.
    Files that vanish during the walk are ignored.
    """
    newest: float | None = None

    def consider(mtime: float) -> None:
        nonlocal newest
        if mtime <= not_after and (newest is None or mtime > newest):
            newest = mtime

    try:
        consider(root.stat().st_mtime)
    except OSError:
        return None
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.name == ".git":
                        continue
                    try:
                        consider(entry.stat(follow_symlinks=False).st_mtime)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return newest


class _IdleWatch:
    """Tells when a process has printed nothing and changed no file for ``limit`` seconds.

    Output is free to notice (the pump records it); the tree is walked only once output has
    been silent for a whole window, so a big worktree is not scanned every poll.
    """

    def __init__(self, limit: float, activity_dir: Path | None, start: float) -> None:
        self.limit = limit
        self.activity_dir = activity_dir
        self.last = start  # monotonic time of the last sign of life

    def idle(self, now: float, last_output: float) -> bool:
        self.last = max(self.last, last_output)
        if now - self.last < self.limit:
            return False
        if self.activity_dir is not None:
            wall = time.time()
            newest = newest_change(self.activity_dir, not_after=wall + 1.0)
            if newest is not None:
                # mtimes are wall-clock times: carry the latest one over to the monotonic clock.
                self.last = max(self.last, now - max(wall - newest, 0.0))
        return now - self.last >= self.limit


_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _HeldSignals:
    """Holds Ctrl-C and SIGTERM back while a child starts, then delivers them.

    An interrupt inside ``Popen`` would lose the child's pid, and with it the way to stop its
    group. Python handlers can only be swapped in the main thread, which is also the only one
    that runs them; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}
        self._pending: list[tuple[int, FrameType | None]] = []

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _HELD_SIGNALS:
            current = signal.getsignal(sig)
            # None: a handler not installed from Python, which we could not put back.
            if current is None or current == signal.SIG_IGN:
                continue
            try:
                signal.signal(sig, self._remember)
            except (ValueError, OSError):
                continue
            self._saved[sig] = current

    def _remember(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append((signum, frame))

    def release(self) -> None:
        """Put the handlers back, then act on what arrived meanwhile (this may raise)."""
        saved, self._saved = self._saved, {}
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        pending, self._pending = self._pending, []
        for signum, frame in pending:
            handler = saved[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: Limits,
    stdin_text: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    capture_stdout: bool = False,
    tail_transform: Callable[[str], str | None] | None = None,
    kill_grace: float = KILL_GRACE,
) -> ProcessResult:
    """Run ``argv`` in ``cwd`` with exactly the environment ``env``; stop its group at the end.

    Output is handled a chunk of whole lines at a time (what one read returns). Every line goes
    to ``limits.log`` (one write and flush per chunk). The tail gets the last ``tail_lines``
    lines, through ``tail_transform``, which may rewrite or drop a line and is only called on
    as many of a chunk's latest lines as the tail needs. ``limits.on_line`` is called at least
    once per chunk of output with its latest line (the latest one that is not blank, if any):
    a sign of life, not a way to see every line (``capture_stdout`` keeps the whole stdout).

    A process that cannot be started gives exit status 127 and the reason in the tail.
    ``limits.deadline`` ends it; so does ``limits.idle`` (None or 0: no idle limit), once it
    printed nothing and changed no file in ``limits.activity_dir`` (``.git`` aside) for that
    long. Any exception while it runs (KeyboardInterrupt, SystemExit, an error from
    ``on_line``) stops the group and is re-raised; ``limits.cancel`` set stops it and raises
    ``Cancelled`` (within ``POLL`` seconds).
    """
    cancel = limits.cancel
    if cancel is not None and cancel.is_set():
        raise Cancelled(argv[0])
    start = time.monotonic()
    log, on_line = limits.log, limits.on_line
    idle_timeout = limits.idle if limits.idle is not None and limits.idle > 0 else None
    # Copied into the log as bytes unless the output itself is wanted, rewritten or unlogged.
    copy: LogCopy | None = None
    if log is not None and not capture_stdout and tail_transform is None:
        collector = Collector(None, tail_lines, None, None)
        try:
            copy = LogCopy(log, collector, on_line)
        except OSError:  # the log file is gone: the log sink copes with that on its own
            copy = None
    if copy is None:
        collector = Collector(log, tail_lines, on_line, tail_transform)
    leftovers.become_subreaper()  # orphans of what we start come back to us
    env, token = leftovers.with_token(env)
    held = _HeldSignals()
    held.hold()
    try:
        # Until its pid is in LEADERS, a sweep in another thread must not look (``STARTING``).
        with leftovers.STARTING:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if capture_stdout else subprocess.STDOUT,
                start_new_session=True,
            )
            leftovers.LEADERS.add(proc.pid)
    except OSError as exc:
        held.release()
        problem = f"cannot start {argv[0]} in {cwd}: {exc.strerror or exc}\n"
        if copy is not None:
            copy.feed(problem.encode())
            copy.finish()
        else:
            collector.collect(problem)
        return ProcessResult(
            returncode=127,
            timed_out=False,
            duration=time.monotonic() - start,
            tail=list(collector.tail),
            stdout="" if capture_stdout else None,
            timeout=limits.stated,
            timeout_source=limits.source,
            idle_timeout=idle_timeout,
            last_line=collector.last_line,
        )
    except BaseException:
        held.release()
        if copy is not None:
            copy.finish()
        raise

    # Its start time: whatever is older cannot be its orphan (and the pid is not reaped yet).
    leader = leftovers.process(proc.pid)
    captured: list[bytes] | None = [] if capture_stdout else None
    watch = None if idle_timeout is None else _IdleWatch(idle_timeout, limits.activity_dir, start)
    timed_out = idle_timed_out = False
    deadline = limits.deadline
    pump: PipePump | None = None
    try:
        try:
            # From here on the group is stopped whatever happens, so signals may come in.
            held.release()
            pump = PipePump(proc, stdin_text.encode() if stdin_text is not None else None)
            pump.add_reader(proc.stdout, copy or Lines(collector.collect, captured))
            pump.add_reader(proc.stderr, Lines(collector.collect, None))
            pump.add_writer(proc.stdin)
            pump.watch_exit()
            while not pump.has_exited():
                if cancel is not None and cancel.is_set():
                    raise Cancelled(argv[0])  # the finally below stops the group
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    timed_out = True
                    break
                if watch is not None and watch.idle(now, pump.last_output):
                    timed_out = idle_timed_out = True
                    break
                # Closed pipes mostly mean the process is exiting: without a pidfd to tell us,
                # look again soon.
                awake = pump.reading or pump.watching_exit
                pump.step(min(remaining, POLL if awake else _EXIT_POLL))
        finally:
            _stop_group(proc, pump, kill_grace, token, leader.start if leader else None)
        assert pump is not None
        pump.drain(DRAIN_GRACE)
    finally:
        if pump is not None:
            pump.close()  # also finishes the readers still open (the log copy's tail)
        else:
            close_pipes(proc)
        if copy is not None:
            copy.finish()  # a no-op once done; here for a pump that failed half-way set up

    duration = time.monotonic() - start
    stdout = None if captured is None else b"".join(captured).decode("utf-8", errors="replace")
    result = ProcessResult(
        returncode=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration=duration,
        tail=list(collector.tail),
        stdout=stdout,
        timeout=limits.stated,
        timeout_source=limits.source,
        idle_timed_out=idle_timed_out,
        idle_timeout=idle_timeout,
        last_line=collector.last_line,
    )
    if log is not None:
        log.line(f"--- {result.describe()} ({duration:.1f} s) ---")
    return result


def bash_argv(script: str, path: str | None = None) -> list[str]:
    """bash with errexit and pipefail: a failing command or pipeline stage fails the script.
    ``path``: the PATH the script runs with, where bash is looked up (once per PATH)."""
    return [_bash(path), "-e", "-o", "pipefail", "-c", script]


@functools.lru_cache(maxsize=8)
def _bash(path: str | None) -> str:
    # An absolute path spares the exec a failed try in every PATH directory before bash's.
    return shutil.which("bash", path=path) or "bash"


def run_bash(
    script: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    limits: Limits,
    stdin_text: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    capture_stdout: bool = False,
    tail_transform: Callable[[str], str | None] | None = None,
    kill_grace: float = KILL_GRACE,
) -> ProcessResult:
    """``run_process`` of ``script`` under ``bash -e -o pipefail -c``."""
    return run_process(
        bash_argv(script, env.get("PATH")),
        cwd=cwd,
        env=env,
        limits=limits,
        stdin_text=stdin_text,
        tail_lines=tail_lines,
        capture_stdout=capture_stdout,
        tail_transform=tail_transform,
        kill_grace=kill_grace,
    )
