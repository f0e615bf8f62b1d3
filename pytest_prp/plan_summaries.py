"""The plan view's body summaries made on two processes when there are many to make.

A cold plan of thousands of PRPs spends most of its time summarising bodies
(``body_cache.summary_of``), one PRP after another. With at least ``MIN_PRPS`` PRPs to
summarise, two cores to run on, Linux and no other thread in the process, a forked child
summarises every other one while this process does the rest; the child sends its summaries
back pickled (through a pipe, when it is done) and exits. The summaries are the same objects
``summary_of`` makes: the plan reads as it does on one process. A PRP the child could not
summarise (an unreadable file, or a child that failed) is summarised here afterwards, so its
error shows as it always does.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from collections.abc import Sequence

from pytest_prp.spec.body_cache import summary_of
from pytest_prp.spec.model import BodySummary, Prp

MIN_PRPS = 64  # below this the fork costs more than half the summaries save


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def summarise(prps: Sequence[Prp]) -> int:
    """Fill in the summaries of ``prps`` that have none yet (those the cache held are kept),
    every other one in a forked child when it pays; returns how many the child made."""
    todo = [prp for prp in prps if prp._summary is None and prp._body is None]
    # Linux only: on macOS a forked child of a process that used some system libraries may
    # crash (why multiprocessing spawns there), and Windows has no fork.
    if len(todo) < MIN_PRPS or not sys.platform.startswith("linux") or cores() < 2:
        return 0
    if threading.active_count() > 1:
        return 0  # a fork copies no other thread: a lock one of them holds would never open
    theirs, ours = todo[1::2], todo[0::2]
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: summarise, send, exit without running anything of the parent's
        status = 1
        try:
            os.close(reader)
            made = _made(theirs)
            with os.fdopen(writer, "wb") as pipe:
                pickle.dump(made, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    data = b""
    read = False
    try:
        _made(ours)
        with os.fdopen(reader, "rb") as pipe:
            reader = -1  # closed by the with block
            data = pipe.read()
        read = True
    finally:
        if reader >= 0:
            os.close(reader)
        if not read:  # Ctrl-C or an error here: the child's work is not wanted, nor waited for
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still the child's
        _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return 0
    made = pickle.loads(data)
    for index, summary in made.items():
        if isinstance(summary, BodySummary) and theirs[index]._summary is None:
            theirs[index]._summary = summary
    return len(made)


def _made(prps: Sequence[Prp]) -> dict[int, BodySummary]:
    """The summaries of ``prps`` by position; a PRP whose file cannot be read is left out."""
    made: dict[int, BodySummary] = {}
    for index, prp in enumerate(prps):
        try:
            made[index] = summary_of(prp)
        except (OSError, UnicodeDecodeError):
            continue
    return made
