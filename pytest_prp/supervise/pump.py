"""Moving bytes between us and a child's pipes without ever blocking on them.

The child's stdout and stderr are pipes (never the log file itself: ``echo oops > /dev/stderr``
reopens it, and would truncate a file), read with ``selectors`` in the calling thread: never a
blocking read, so a background child holding a pipe open cannot make us hang. A busy pipe is
read at most every 2 ms, into a 1 MiB pipe, so a fast writer is taken in a few large chunks;
each chunk goes to a reader (``output``: the log copy, or lines). The child's exit
wakes us at once where the kernel gives a pidfd (Linux).
"""

from __future__ import annotations

import fcntl
import os
import select
import selectors
import subprocess
import time
from typing import IO

from pytest_prp.supervise.output import Reader

# Longest wait for pipe activity before looking at the clock again.
POLL = 0.05
_READ_SIZE = 65536
# A busy process's pipe is read at most this often (once the pipe is big enough to hold what
# it writes meanwhile): far fewer wake-ups and chunks; an exit still wakes us at once.
_COALESCE = 0.002
# Pipe size asked for (Linux F_SETPIPE_SZ; 1 MiB is the default limit for unprivileged users).
_PIPE_SIZE = 1 << 20


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
