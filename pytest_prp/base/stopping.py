"""Ending a batch early, after the PRPs in progress, as an interrupted run (exit 2)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from typing import Any

import pytest


def stop_batch(session: pytest.Session, reason: str) -> None:
    """The PRPs in progress end as they would (merged, or failed and kept); no new PRP starts;
    pytest ends the run with ``Interrupted: <reason>``. The same command resumes the batch."""
    if not session.shouldstop:
        session.shouldstop = reason  # pytest's own loop checks it after every item
    # With -n the controller's loop is xdist's, which has its own flag (as for --maxfail).
    dsession = session.config.pluginmanager.get_plugin("dsession")
    if dsession is not None and not getattr(dsession, "shouldstop", False):
        dsession.shouldstop = reason


class QuietFinish:
    """Ctrl-C or SIGTERM while the run is finishing (results written, xdist ending its workers,
    worktrees released) is noted, not raised: raised there it only cut the ending short with a
    traceback through xdist and execnet, after every PRP had ended. A second one is raised:
    the user insists."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._previous: dict[int, Any] = {}

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        if self.caught is not None:
            raise KeyboardInterrupt(f"signal {signum}")
        self.caught = signum

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # around everything that ends the run
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None]:
        self.start()
        result = yield
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if self.caught is not None and reporter is not None:
            reporter.write_line(
                "prp: interrupted while the run was ending; it ended first, nothing was cut short"
            )
        return result

    def stop(self) -> None:
        """The previous handlers again (at the very end of the process's cleanup)."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
