"""Run one external process safely: its own process group, a time limit, a log and a tail.

Every process starts in a new session, so it and everything it starts (``server &``) share one
process group. When the main process ends, times out, or the caller is interrupted, the whole
group is stopped (SIGTERM, a short grace, then SIGKILL) and the main process is reaped: no
orphan keeps running and no zombie is left behind.

Output is read with ``selectors`` in the calling thread, never with a blocking read, so a
background child that keeps the output pipe open cannot make us hang. It is handled a chunk at a
time (whatever one read returns, up to 64 KiB), not line by line: one decode, one log write and
one flush per chunk, so a step printing 100,000 lines as fast as it can costs little more than
the same step writing to a file.

Two limits end a process: the wall clock (``timeout``) and, optionally, idleness
(``idle_timeout``): no output and no file changed in ``activity_dir`` for that long. Any
exception in the caller's thread while the process runs (KeyboardInterrupt from Ctrl-C or from a
SIGTERM handler, SystemExit, an error in ``on_line``) stops the group before it propagates.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

DEFAULT_TAIL_LINES = 40
# Time a process group gets between SIGTERM and SIGKILL.
KILL_GRACE = 2.0
# How long SIGKILLed processes get to disappear (it only takes the kernel a moment).
KILL_SETTLE = 1.0
# How long to wait for the pipes to close once the group is stopped. Only a process that left
# the group (``setsid``) can keep them open this long; we then stop listening to it.
DRAIN_GRACE = 0.5
# Longest line kept in the tail; the log gets whole lines.
TAIL_LINE_CHARS = 1000
_POLL = 0.05
# How often to look whether the process has exited once its pipes are closed, where the kernel
# cannot tell us (no pidfd).
_EXIT_POLL = 0.005
_READ_SIZE = 65536


def format_seconds(seconds: float) -> str:
    """``600`` -> ``"600 s"``, ``0.5`` -> ``"0.5 s"``, ``1.91067`` -> ``"1.9 s"``."""
    return f"{round(seconds, 1 if seconds >= 1 else 2):g} s"


def timeout_message(timeout: float) -> str:
    return f"timed out after {format_seconds(timeout)}"


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


@dataclass
class ProcessResult:
    returncode: int | None  # None when killed by one of our limits
    timed_out: bool  # stopped by a limit: the wall clock or (idle_timed_out) idleness
    duration: float
    tail: list[str]  # last lines of combined stdout+stderr
    stdout: str | None  # whole stdout, only with capture_stdout=True
    timeout: float | None = None  # the limit the process ran under
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
            return timeout_message(self.timeout or self.duration)
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


class LogSink:
    """Appends to one log file (one per PRP), flushing every write so it survives a SIGKILL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "a", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()  # on_line callbacks may log from other threads

    def section(self, title: str) -> None:
        """A header such as ``=== step 2/5: Phase 2 ===``."""
        self.line(f"=== {title} ===")

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        """Whole lines at once (``text`` ends with a newline): one write, one flush."""
        with self._lock:
            if self._file.closed:
                return
            self._file.write(text)
            self._file.flush()

    def lines(self, text: str) -> None:
        """Each line of a multi-line text."""
        for one in text.splitlines() or [""]:
            self.line(one)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> LogSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Lines:
    """Cuts one stream's bytes into chunks of whole lines and hands each to the collector.

    A read rarely ends at a line end: the bytes after the last newline wait for the next read,
    so the log and the tail only ever see whole lines (and a section header written between
    two processes starts on a line of its own).
    """

    def __init__(self, collect: Callable[[str], None], keep: list[bytes] | None) -> None:
        self._collect = collect
        self._partial = bytearray()  # the unfinished last line
        self._keep = keep  # the raw bytes, for capture_stdout

    def feed(self, data: bytes) -> None:
        if self._keep is not None:
            self._keep.append(data)
        end = data.rfind(b"\n") + 1
        if not end:
            self._partial += data  # a bytearray: a long line grows in amortized linear time
            return
        if self._partial:
            self._partial += data[:end]
            whole: bytes | bytearray = self._partial
            self._partial = bytearray(data[end:])
        else:
            whole = data if end == len(data) else data[:end]
            if end < len(data):
                self._partial = bytearray(data[end:])
        self._collect(_decode_lines(whole))

    def finish(self) -> None:
        """The last line, if the stream ended without a newline."""
        if self._partial:
            raw, self._partial = self._partial, bytearray()
            self._collect(_decode_lines(raw + b"\n"))


_CR_AT_LINE_END = re.compile(r"\r+(?=\n)")


def _decode_lines(raw: bytes | bytearray) -> str:
    """Whole lines as text, with the carriage returns of CRLF line ends taken off.

    Decoding a chunk at once is the same as decoding its lines one by one: a newline byte is
    never part of a multi-byte UTF-8 character.
    """
    text = raw.decode("utf-8", errors="replace")
    return _CR_AT_LINE_END.sub("", text) if "\r" in text else text


def _cut(shown: str) -> str:
    """A tail line, cut to ``TAIL_LINE_CHARS``."""
    extra = len(shown) - TAIL_LINE_CHARS
    if extra <= 0:
        return shown
    return f"{shown[:TAIL_LINE_CHARS]}... [{extra} more characters in the log]"


def _last_non_blank(body: str) -> str | None:
    """The last line of ``body`` (lines joined by newlines) holding more than white space."""
    kept = body.rstrip()
    if not kept:
        return None
    end = body.find("\n", len(kept))
    return body[kept.rfind("\n") + 1 : end if end >= 0 else len(body)]


class _Collector:
    """Where output goes, a chunk of whole lines at a time: the log, the tail, the callback."""

    def __init__(
        self,
        log: LogSink | None,
        tail_lines: int,
        on_line: Callable[[str], None] | None,
        tail_transform: Callable[[str], str | None] | None,
    ) -> None:
        self.tail: deque[str] = deque(maxlen=max(tail_lines, 0))
        self.last_line: str | None = None
        self._log = log
        self._on_line = on_line
        self._transform = tail_transform

    def collect(self, text: str) -> None:
        """``text``: one or more whole lines, each ending with a newline."""
        if self._log is not None:
            self._log.write(text)
        body = text[:-1]
        latest = _last_non_blank(body)
        if self._transform is None:
            self._tail_of(body)
            if latest is not None:
                self.last_line = latest
        else:
            self._transformed_tail_of(body, self._transform)
        if self._on_line is not None:
            self._on_line(latest if latest is not None else body[body.rfind("\n") + 1 :])

    def _tail_of(self, body: str) -> None:
        keep = self.tail.maxlen
        if not keep:
            return
        lines = body.rsplit("\n", keep)  # only the last ``keep`` lines are split off
        if len(lines) > keep:
            del lines[0]
        if max(map(len, lines)) > TAIL_LINE_CHARS:
            lines = [_cut(line) for line in lines]
        self.tail.extend(lines)

    def _transformed_tail_of(self, body: str, transform: Callable[[str], str | None]) -> None:
        """The transform may drop lines: walk back from the end until the tail is full and
        the last non-blank shown line is known, rather than transform every line."""
        keep = self.tail.maxlen or 0
        shown_lines: list[str] = []
        need_last = True
        end = len(body)
        while end >= 0 and (need_last or len(shown_lines) < keep):
            start = body.rfind("\n", 0, end) + 1
            shown = transform(body[start:end])
            if shown is not None:
                if len(shown_lines) < keep:
                    shown_lines.append(shown)
                if need_last and shown.strip():
                    self.last_line = shown
                    need_last = False
            end = start - 1
        self.tail.extend(_cut(shown) for shown in reversed(shown_lines))


class _Pump:
    """Moves bytes between us and the child's pipes without ever blocking on them."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin_data: bytes | None) -> None:
        self._selector = selectors.DefaultSelector()
        self._readers: dict[int, _Lines] = {}
        self._stdin_data = stdin_data or b""
        self._stdin_offset = 0
        self._proc = proc
        self.last_output = time.monotonic()  # when the child last wrote anything
        self._exit_fd: int | None = None
        self.watching_exit = False  # whether step() returns as soon as the child exits

    def watch_exit(self) -> None:
        """Wake up as soon as the child exits (Linux pidfd), rather than polling for it."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return
        try:
            fd: int = pidfd_open(self._proc.pid)
        except OSError:  # an old kernel, or a sandbox that forbids it: poll instead
            return
        self._exit_fd = fd
        self._selector.register(fd, selectors.EVENT_READ)
        self.watching_exit = True

    def add_reader(self, pipe: IO[bytes] | None, lines: _Lines) -> None:
        if pipe is None:
            return
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        self._readers[fd] = lines
        self._selector.register(fd, selectors.EVENT_READ)

    def add_writer(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        fd = pipe.fileno()
        if not self._stdin_data:
            self._close_stdin()
            return
        os.set_blocking(fd, False)
        self._selector.register(fd, selectors.EVENT_WRITE)

    @property
    def reading(self) -> bool:
        return bool(self._readers)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for pipe activity and handle it."""
        if not self._selector.get_map():
            time.sleep(max(timeout, 0.0))
            return
        for key, _ in self._selector.select(max(timeout, 0.0)):
            fd = key.fd
            if fd in self._readers:
                self._read(fd)
            elif fd == self._exit_fd:
                self._stop_watching_exit()  # it stays readable: one wake-up is enough
            else:
                self._write(fd)

    def has_exited(self) -> bool:
        """Whether the child has exited; while a pidfd watches for it, no system call."""
        return not self.watching_exit and _has_exited(self._proc.pid)

    def _stop_watching_exit(self) -> None:
        if self._exit_fd is not None:
            self._selector.unregister(self._exit_fd)
            os.close(self._exit_fd)
            self._exit_fd = None
        self.watching_exit = False

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.last_output = time.monotonic()
            self._readers[fd].feed(data)
            return
        lines = self._readers.pop(fd)
        self._selector.unregister(fd)
        lines.finish()

    def _write(self, fd: int) -> None:
        chunk = self._stdin_data[self._stdin_offset : self._stdin_offset + _READ_SIZE]
        try:
            self._stdin_offset += os.write(fd, chunk)
        except BlockingIOError:
            return
        except OSError:  # BrokenPipeError: the child does not read its stdin; that is fine
            self._stdin_offset = len(self._stdin_data)
        if self._stdin_offset >= len(self._stdin_data):
            self._selector.unregister(fd)
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def drain(self, seconds: float) -> None:
        """Read what is left until every pipe is closed or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        while self.reading:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.step(min(remaining, _POLL))

    def close(self) -> None:
        self._stop_watching_exit()
        for lines in self._readers.values():
            lines.finish()
        self._readers.clear()
        self._selector.close()
        _close_pipes(self._proc)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def _wait(pump: _Pump | None, seconds: float) -> None:
    """Let time pass, reading the pipes meanwhile (if we got as far as listening to them)."""
    if pump is None:
        time.sleep(seconds)
    else:
        pump.step(seconds)


def _has_exited(pid: int) -> bool:
    """True once the child has exited; it is not reaped, so its pid (= the group id) stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


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
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _stop_group(proc: subprocess.Popen[bytes], pump: _Pump | None, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` seconds, SIGKILL what is left, reap the leader."""
    pgid = proc.pid
    try:
        _signal_group(pgid, signal.SIGTERM)
        _signal_group(pgid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once resumed
        deadline = time.monotonic() + grace
        # Keep reading while they die so no one blocks on a full pipe.
        while not _has_exited(proc.pid) and time.monotonic() < deadline:
            _wait(pump, min(_POLL, max(deadline - time.monotonic(), 0.0)))
        if _has_exited(proc.pid):
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
    timeout: float,
    log: LogSink | None,
    stdin_text: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    on_line: Callable[[str], None] | None = None,
    capture_stdout: bool = False,
    tail_transform: Callable[[str], str | None] | None = None,
    kill_grace: float = KILL_GRACE,
    idle_timeout: float | None = None,
    activity_dir: Path | None = None,
) -> ProcessResult:
    """Run ``argv`` in ``cwd`` with exactly the environment ``env``; stop its group at the end.

    Output is handled a chunk of whole lines at a time (what one read returns). Every line goes
    to ``log`` (one write and flush per chunk). The tail gets the last ``tail_lines`` lines,
    through ``tail_transform``, which may rewrite or drop a line and is only called on as many
    of a chunk's latest lines as the tail needs. ``on_line`` is called at least once per chunk
    of output with its latest line (the latest one that is not blank, if any): a sign of life,
    not a way to see every line (``capture_stdout`` keeps the whole stdout).

    A process that cannot be started gives exit status 127 and the reason in the tail.
    ``timeout`` limits the wall-clock time; ``idle_timeout`` (None or 0: no limit) ends a
    process that printed nothing and changed no file in ``activity_dir`` (``.git`` aside) for
    that long. Any exception while it runs (KeyboardInterrupt, SystemExit, an error from
    ``on_line``) stops the group and is re-raised.
    """
    start = time.monotonic()
    if idle_timeout is not None and idle_timeout <= 0:
        idle_timeout = None  # 0 (or less) means no idle limit
    collector = _Collector(log, tail_lines, on_line, tail_transform)
    held = _HeldSignals()
    held.hold()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture_stdout else subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        held.release()
        collector.collect(f"cannot start {argv[0]} in {cwd}: {exc.strerror or exc}\n")
        return ProcessResult(
            returncode=127,
            timed_out=False,
            duration=time.monotonic() - start,
            tail=list(collector.tail),
            stdout="" if capture_stdout else None,
            timeout=timeout,
            idle_timeout=idle_timeout,
            last_line=collector.last_line,
        )
    except BaseException:
        held.release()
        raise

    captured: list[bytes] | None = [] if capture_stdout else None
    watch = None if idle_timeout is None else _IdleWatch(idle_timeout, activity_dir, start)
    timed_out = idle_timed_out = False
    deadline = start + timeout
    pump: _Pump | None = None
    try:
        try:
            # From here on the group is stopped whatever happens, so signals may come in.
            held.release()
            pump = _Pump(proc, stdin_text.encode("utf-8") if stdin_text is not None else None)
            pump.add_reader(proc.stdout, _Lines(collector.collect, captured))
            pump.add_reader(proc.stderr, _Lines(collector.collect, None))
            pump.add_writer(proc.stdin)
            pump.watch_exit()
            while not pump.has_exited():
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
                pump.step(min(remaining, _POLL if awake else _EXIT_POLL))
        finally:
            _stop_group(proc, pump, kill_grace)
        assert pump is not None
        pump.drain(DRAIN_GRACE)
    finally:
        if pump is not None:
            pump.close()
        else:
            _close_pipes(proc)

    duration = time.monotonic() - start
    stdout = None if captured is None else b"".join(captured).decode("utf-8", errors="replace")
    result = ProcessResult(
        returncode=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration=duration,
        tail=list(collector.tail),
        stdout=stdout,
        timeout=timeout,
        idle_timed_out=idle_timed_out,
        idle_timeout=idle_timeout,
        last_line=collector.last_line,
    )
    if log is not None:
        log.line(f"--- {result.describe()} ({duration:.1f} s) ---")
    return result


def bash_argv(script: str) -> list[str]:
    """bash with errexit and pipefail: a failing command or pipeline stage fails the script."""
    return ["bash", "-e", "-o", "pipefail", "-c", script]


def run_bash(
    script: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    log: LogSink | None,
    stdin_text: str | None = None,
    tail_lines: int = DEFAULT_TAIL_LINES,
    on_line: Callable[[str], None] | None = None,
    capture_stdout: bool = False,
    tail_transform: Callable[[str], str | None] | None = None,
    kill_grace: float = KILL_GRACE,
    idle_timeout: float | None = None,
    activity_dir: Path | None = None,
) -> ProcessResult:
    """``run_process`` of ``script`` under ``bash -e -o pipefail -c``."""
    return run_process(
        bash_argv(script),
        cwd=cwd,
        env=env,
        timeout=timeout,
        log=log,
        stdin_text=stdin_text,
        tail_lines=tail_lines,
        on_line=on_line,
        capture_stdout=capture_stdout,
        tail_transform=tail_transform,
        kill_grace=kill_grace,
        idle_timeout=idle_timeout,
        activity_dir=activity_dir,
    )
