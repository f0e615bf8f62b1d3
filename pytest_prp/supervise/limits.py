"""What a PRP's processes run under: one wall clock, one idle limit, one log, one sign of life.

Made once per PRP (``runner``, from ``--prp-timeout`` and ``--prp-idle-timeout``) and carried
down unchanged to every step, agent and gate process: the deadline is the PRP's, so whatever
its steps used is gone for its gates. ``stated`` is the limit as the user set it: a process
stopped by the deadline is said to have timed out after ``stated`` (``timed out after 3600
s``), not after the seconds that happened to be left of it. A process with a limit of its own
(a gate's ``--prp-gate-timeout``) runs under ``within``: the earlier of the two ends it, and the
message names the one that did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_prp.supervise.output import LogSink


@dataclass(frozen=True)
class Limits:
    deadline: float  # time.monotonic() by which the process must have ended
    stated: float  # the limit as the user set it: what a timeout message names
    # No output and no file changed in ``activity_dir`` (``.git`` aside) for this long ends a
    # process; None or 0: no idle limit.
    idle: float | None = None
    activity_dir: Path | None = None
    log: LogSink | None = None  # where the output goes (None: nowhere but the tail)
    on_line: Callable[[str], None] | None = None  # the latest output: the sign of life
    # The option that set ``stated``, named in the message when it is not the process's own
    # limit (a gate cut short by the PRP's clock: ``timed out after 30 s (--prp-timeout)``).
    source: str | None = None
    # Set from another thread to stop the process at once (``processes.Cancelled``): a thread
    # running a process cannot be sent KeyboardInterrupt (the final check's gates in slots).
    cancel: threading.Event | None = None

    @classmethod
    def starting_now(
        cls,
        seconds: float,
        *,
        idle: float | None = None,
        activity_dir: Path | None = None,
        log: LogSink | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> Limits:
        """``seconds`` from now, as the user set them."""
        return cls(time.monotonic() + seconds, seconds, idle, activity_dir, log, on_line)

    def remaining(self) -> float:
        """Seconds left until the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - time.monotonic())

    def extended(self, seconds: float) -> Limits:
        """The deadline ``seconds`` later (time spent waiting on a rate limit is not the PRP's)."""
        return replace(self, deadline=self.deadline + seconds) if seconds else self

    def within(self, seconds: float, source: str) -> Limits:
        """A limit of the process's own, ``seconds`` from now, inside these: whichever ends
        first. When these do, a timeout names them, as set by ``source``."""
        own = time.monotonic() + seconds
        if own < self.deadline:
            return replace(self, deadline=own, stated=seconds, source=None)
        return replace(self, source=source)

    def without_idle(self) -> Limits:
        return replace(self, idle=None) if self.idle is not None else self
