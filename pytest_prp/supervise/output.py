"""Where a process's output goes: the per-PRP log, a bounded tail of lines, and a sign of life.

The output comes through pipes, which ``pump`` reads a chunk at a time and hands
to a reader:

- ``LogCopy`` (steps and gates): the bytes are appended to the log as they are, with no
  decoding or per-line work; the sign of life is the last whole line near the log's end, and
  the tail is read back from the log once the stream ends. Supervising a step costs about what
  writing its output to a file costs.
- ``Lines`` (agents, and wherever the output itself, a rewritten tail or no log is wanted): the
  chunk's whole lines are decoded once, logged, and the tail taken from its last lines.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

# Longest line kept in the tail; the log gets whole lines.
TAIL_LINE_CHARS = 1000
# The log's end is read back in pieces of this size for the tail.
_READ_SIZE = 65536
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
