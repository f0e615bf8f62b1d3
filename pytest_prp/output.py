"""Where a process's output goes: the per-PRP log, a bounded tail of lines, and a sign of life.

The output comes through pipes (a pipe, not the log file itself, as the child's stdout and
stderr: ``echo oops > /dev/stderr`` reopens it, and would truncate a file), read by
``PipePump`` with ``selectors`` in the calling thread (never a blocking read, so a background
child holding the pipe open cannot make us hang). A busy pipe is read at most every 2 ms, into
a 1 MiB pipe, so a fast writer is taken in a few large chunks. Each chunk goes to a reader:

- ``LogCopy`` (steps and gates): the bytes are appended to the log as they are, with no
  decoding or per-line work; the sign of life is the last whole line near the log's end, and
  the tail is read back from the log once the stream ends. Supervising a step costs about what
  writing its output to a file costs.
- ``Lines`` (agents, and wherever the output itself, a rewritten tail or no log is wanted): the
  chunk's whole lines are decoded once, logged, and the tail taken from its last lines.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import selectors
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

# Longest line kept in the tail; the log gets whole lines.
TAIL_LINE_CHARS = 1000
# Longest wait for pipe activity before looking at the clock again.
POLL = 0.05
_READ_SIZE = 65536
# A busy process's pipe is read at most this often (once the pipe is big enough to hold what
# it writes meanwhile): far fewer wake-ups and chunks; an exit still wakes us at once.
_COALESCE = 0.002
# Pipe size asked for (Linux F_SETPIPE_SZ; 1 MiB is the default limit for unprivileged users).
_PIPE_SIZE = 1 << 20
# The sign of life is the last whole line within this many bytes of the log's end.
_LATEST_WINDOW = 8192
# The tail is read backwards from the log's end, at most this far: a longer last line shows
# only its end.
_TAIL_SCAN_LIMIT = 4 << 20


class LogSink:
    """Appends to one log file (one per PRP), flushing every write so it survives a SIGKILL.

    Best effort once open, as heartbeats: a full disk cuts the log short but never fails the
    PRP (its verdict comes from the gates' exit codes; the batch then stops at the result
    JSON, which the same disk cannot take either)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "a", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()  # on_line callbacks may log from other threads
        self.write_error: str | None = None  # the first failed write: the log ends there

    def section(self, title: str) -> None:
        """A header such as ``=== step 2/5: Phase 2 ===``."""
        self.line(f"=== {title} ===")

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        """Whole lines at once (``text`` ends with a newline): one write, one flush."""
        with self._lock:
            if self._file.closed or self.write_error is not None:
                return
            try:
                self._file.write(text)
                self._file.flush()
            except OSError as exc:
                self.failed(exc)

    def failed(self, exc: OSError) -> None:
        """A write failed: nothing more is written (a later line would hide the gap)."""
        if self.write_error is None:
            self.write_error = f"{self.path}: {exc.strerror or exc}"

    def lines(self, text: str) -> None:
        """Each line of a multi-line text."""
        for one in text.splitlines() or [""]:
            self.line(one)

    def close(self) -> None:
        with self._lock:
            try:
                self._file.close()
            except OSError as exc:  # the last buffered bytes did not fit
                self.failed(exc)

    def __enter__(self) -> LogSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Reader(Protocol):
    """What a pipe's bytes are handed to, a read at a time, then told of the end."""

    def take(self, fd: int, limit: int) -> int | None:
        """Move what the pipe holds without reading it into Python: bytes moved (0 at the end
        of the stream), or None to have it read and fed instead."""
        ...

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


class Lines:
    """Cuts one stream's bytes into chunks of whole lines and hands each to the collector.

    A read rarely ends at a line end: the bytes after the last newline wait for the next read,
    so the log and the tail only ever see whole lines (and a section header written between
    two processes starts on a line of its own).
    """

    def __init__(self, collect: Callable[[str], None], keep: list[bytes] | None) -> None:
        self._collect = collect
        self._partial = bytearray()  # the unfinished last line
        self._keep = keep  # the raw bytes, for capture_stdout

    def take(self, fd: int, limit: int) -> None:
        return None  # lines are decoded: read and fed

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
        self._collect(decode_lines(whole))

    def finish(self) -> None:
        """The last line, if the stream ended without a newline."""
        if self._partial:
            raw, self._partial = self._partial, bytearray()
            self._collect(decode_lines(raw + b"\n"))


_CR_AT_LINE_END = re.compile(r"\r+(?=\n)")


def decode_lines(raw: bytes | bytearray) -> str:
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


class Collector:
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
            try:
                self._on_line(latest if latest is not None else body[body.rfind("\n") + 1 :])
            except BaseException:
                self._on_line = None  # not called again while its error stops the process
                raise

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


class PipePump:
    """Moves bytes between us and the child's pipes without ever blocking on them; wakes up as
    soon as the child exits (Linux pidfd) rather than polling for it."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin_data: bytes | None) -> None:
        self._proc = proc
        self.last_output = time.monotonic()  # when the child last wrote anything
        self._exit_fd: int | None = None
        self.watching_exit = False  # whether step() returns as soon as the child exits
        self._selector = selectors.DefaultSelector()
        self._readers: dict[int, Reader] = {}
        self._stdin_data = stdin_data or b""
        self._stdin_offset = 0
        self._read_size: dict[int, int] = {}
        self._writing = False

    def watch_exit(self) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return
        try:
            fd: int = pidfd_open(self._proc.pid)
        except OSError:  # an old kernel, or a sandbox that forbids it: poll instead
            return
        self._exit_fd = fd
        self.watching_exit = True
        self._selector.register(fd, selectors.EVENT_READ)

    def has_exited(self) -> bool:
        """Whether the child has exited; while a pidfd watches for it, no system call."""
        return not self.watching_exit and has_exited(self._proc.pid)

    def add_reader(self, pipe: IO[bytes] | None, lines: Reader) -> None:
        if pipe is None:
            return
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        self._readers[fd] = lines
        self._read_size[fd] = enlarge_pipe(fd)
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
        self._writing = True

    @property
    def reading(self) -> bool:
        return bool(self._readers)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for pipe activity and handle it."""
        if not self._selector.get_map():
            time.sleep(max(timeout, 0.0))
            return
        got = False
        for key, _ in self._selector.select(max(timeout, 0.0)):
            fd = key.fd
            if fd in self._readers:
                got = self._read(fd) or got
            elif fd == self._exit_fd:
                self._stop_watching_exit()  # it stays readable: one wake-up is enough
            else:
                self._write(fd)
        if got and self.watching_exit and not self._writing and self._roomy():
            self._settle(min(_COALESCE, timeout))

    def _roomy(self) -> bool:
        """Whether every pipe we read holds what a fast writer prints while we settle."""
        return all(self._read_size[fd] >= _PIPE_SIZE for fd in self._readers)

    def _settle(self, seconds: float) -> None:
        """Let output pile up for a moment before the next read; the exit still wakes us."""
        assert self._exit_fd is not None
        if _readable(self._exit_fd, seconds):
            self._stop_watching_exit()

    def _stop_watching_exit(self) -> None:
        if self._exit_fd is not None:
            self._selector.unregister(self._exit_fd)
            os.close(self._exit_fd)
            self._exit_fd = None
        self.watching_exit = False

    def _read(self, fd: int) -> bool:
        """Take in what is there; whether there was anything."""
        reader = self._readers[fd]
        data: bytes | None = None
        try:
            moved = reader.take(fd, self._read_size[fd])
            if moved is None:
                data = os.read(fd, self._read_size[fd])
        except BlockingIOError:
            return False
        except OSError:  # the pipe broke: its end
            moved, data = None, b""
        if data is not None:
            if data:
                reader.feed(data)
            moved = len(data)
        if moved:
            self.last_output = time.monotonic()
            return True
        del self._readers[fd]
        self._selector.unregister(fd)
        reader.finish()
        return False

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
            self._writing = False

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
            self.step(min(remaining, POLL))

    def close(self) -> None:
        self._stop_watching_exit()
        for lines in self._readers.values():
            lines.finish()
        self._readers.clear()
        self._selector.close()
        close_pipes(self._proc)


def enlarge_pipe(fd: int) -> int:
    """Ask for a pipe of ``_PIPE_SIZE`` bytes (Linux only); the size to read it with."""
    setsize: int | None = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None:
        return _READ_SIZE
    try:
        size: int = fcntl.fcntl(fd, setsize, _PIPE_SIZE)
    except OSError:  # over the user's pipe quota: keep the pipe as it is
        return _READ_SIZE
    return max(size, _READ_SIZE)


def close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def has_exited(pid: int) -> bool:
    """True once the child has exited; it is not reaped, so its pid (= the group id) stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _readable(fd: int, seconds: float) -> bool:
    """Whether ``fd`` becomes readable within ``seconds`` (poll: no limit on the fd number,
    unlike select)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(seconds, 0.0) * 1000))


class LogCopy:
    """A pipe reader that copies the child's bytes into the log file as they come: no decoding,
    no per-line work. The sign of life is the last whole line near the log's end; the tail is
    read back from the log once the stream ends.

    The child writes into a pipe, not into the log file itself: ``echo oops > /dev/stderr``
    reopens its stderr, and would truncate a file."""

    def __init__(
        self, log: LogSink, collector: Collector, on_line: Callable[[str], None] | None
    ) -> None:
        self._log = log
        # Not O_APPEND: splice() refuses such files. Nothing else writes the log meanwhile, and
        # every write names its offset.
        self._fd = os.open(log.path, os.O_WRONLY | os.O_CLOEXEC)
        self._splice = hasattr(os, "splice")
        try:
            self._rfd = os.open(log.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self._fd)
            raise
        self._start = os.fstat(self._rfd).st_size  # where this child's output starts
        self._size = self._start
        self._told = self._start  # the end of the last line on_line was told
        self._collector = collector  # tail and last line, filled by finish()
        self._on_line = on_line
        self._open = True

    def take(self, fd: int, limit: int) -> int | None:
        """Move what the pipe holds into the log inside the kernel (splice: no copy through
        Python). None where splice is not available or refused."""
        if not self._splice or self._log.write_error is not None:
            return None
        try:
            moved = os.splice(fd, self._fd, limit, offset_dst=self._size)
        except BlockingIOError:
            raise  # nothing there after all: the pump waits again
        except OSError:  # not Linux, or a file system that does not take it: read and write
            self._splice = False
            return None
        if moved:
            self._size += moved
            self._tell()
        return moved

    def feed(self, data: bytes) -> None:
        if self._log.write_error is not None:
            return  # the log is cut short: the pipe is still drained, so the child goes on
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self._fd, view, self._size)
                self._size += written
                view = view[written:]
        except OSError as exc:
            self._log.failed(exc)
        self._tell()

    def _tell(self) -> None:
        if self._on_line is None:
            return
        window = min(self._size - self._start, _LATEST_WINDOW)
        raw = os.pread(self._rfd, window, self._size - window)
        end = raw.rfind(b"\n") + 1
        told = self._size - len(raw) + end  # the end of the last whole line
        if end and told > self._told:  # an unfinished line is told once it ends (or at EOF)
            self._told = told
            try:
                self._on_line(_latest(decode_lines(raw[:end])))
            except BaseException:
                self._on_line = None  # not called again while its error stops the process
                raise

    def finish(self) -> None:
        """The stream ended: read the tail (ending an unfinished last line in the log)."""
        if not self._open:
            return
        self._open = False
        try:
            raw = self._tail_bytes(self._size)
        finally:
            os.close(self._fd)
            os.close(self._rfd)
        if not raw:
            return
        if not raw.endswith(b"\n"):
            self._log.write("\n")  # what follows in the log starts on a line of its own
            raw += b"\n"
        text = decode_lines(raw)
        self._collector.collect(text)
        if self._on_line is not None and self._size > self._told:
            self._told = self._size
            self._on_line(_latest(text))

    def _tail_bytes(self, size: int) -> bytes:
        """The child's last lines as written: enough of the log's end to hold them."""
        want = (self._collector.tail.maxlen or 0) + 1
        pos = size
        chunks: list[bytes] = []
        newlines = 0
        while pos > self._start and size - pos < _TAIL_SCAN_LIMIT:
            take = min(_READ_SIZE, pos - self._start)
            pos -= take
            chunk = os.pread(self._rfd, take, pos)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
            if newlines > want:
                break
        raw = b"".join(reversed(chunks))
        if pos > self._start:  # cut short: drop the first line, which may be a part of one
            first = raw.find(b"\n") + 1
            if 0 < first < len(raw):
                raw = raw[first:]
        return raw


def _latest(text: str) -> str:
    """The latest line of ``text`` (whole lines) that is not blank, else its last line."""
    body = text[:-1]
    latest = _last_non_blank(body)
    return latest if latest is not None else body[body.rfind("\n") + 1 :]
