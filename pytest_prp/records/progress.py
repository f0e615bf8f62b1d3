"""Live progress in the controller's terminal, read from the heartbeat files.

The heartbeats are written by whichever process runs a PRP (this one, or an xdist worker), so
reading them here works the same with and without ``-n``. At most one line per running PRP
per heartbeat interval: plain lines, readable in CI logs, never a flood.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from pytest_prp.base.timestamps import parse_time
from pytest_prp.records.heartbeat import progress_line, read_heartbeats


class ProgressPrinter:
    def __init__(self, reporter: Any, results_dir: Path, interval: float) -> None:
        self.reporter = reporter
        self.results_dir = results_dir
        self.interval = interval
        self.since = time.time()  # heartbeats of earlier runs are not news
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prp-progress", daemon=True)
        # While an item runs, pytest captures fd 1; this thread writes to a copy of the
        # terminal's descriptor taken now (outside any item), as the reporter itself does.
        self._width_after_us = -1  # pytest's line width when we last wrote
        self._fd = os.dup(reporter._tw._file.fileno()) if _has_fileno(reporter) else None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def lines(self, now: float) -> list[str]:
        """The progress lines of the PRPs running now (phase not ``done``, beating lately)."""
        out = []
        for beat in read_heartbeats(self.results_dir):
            updated = parse_time(beat.get("updated_at"))
            if beat.get("phase") == "done" or updated is None or updated < self.since:
                continue
            out.append(progress_line(beat, now))
        return sorted(out)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            lines = self.lines(time.time())
            if not lines or self._fd is None:
                continue
            # Start on a line of our own when pytest is in the middle of one.
            width = getattr(self.reporter._tw, "width_of_current_line", 0)
            lead = "\n" if width and width != self._width_after_us else ""
            self._width_after_us = width
            text = lead + "".join(f"[prp] {line}\n" for line in lines)
            try:
                os.write(self._fd, text.encode("utf-8", "replace"))
            except OSError:
                return


def _has_fileno(reporter: Any) -> bool:
    try:
        reporter._tw._file.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
