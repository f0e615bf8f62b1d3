"""Heartbeat files: where each running PRP is, for ``prp-status`` and live progress lines.

One JSON file per PRP, ``<results_dir>/heartbeats/<batch>/<id>.json``, rewritten atomically
(temporary file, then ``os.replace``) every ``interval`` seconds by a daemon thread and at once
on every phase change, so a reader in another terminal never sees half a file. A heartbeat
whose ``updated_at`` stops advancing, or whose ``pid`` is gone, belongs to a stalled run.

Fields: prp_id, batch, pid, host, worker (xdist worker id or "main"), run_id, interval, phase
("starting", "steps", "gates", "merge", "done"), current (step or gate name), index, total,
attempt, started_at, last_output_at, last_output, elapsed_seconds, cost_usd, estimated_hours,
rate_limit_until (while the PRP waits for an API rate limit, else null), status (null while
running, the final status when done), updated_at. Times are ISO 8601, UTC.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pytest_prp.base.ids import natural_key
from pytest_prp.base.jsonfile import read_json, write_json_atomically
from pytest_prp.base.naming import batch_folder
from pytest_prp.base.safepath import inside
from pytest_prp.base.stream_json import render_line

# Re-exported for runner and remote, which read them here (their owners may switch to base).
from pytest_prp.base.timestamps import iso as iso
from pytest_prp.base.timestamps import parse_time as parse_time
from pytest_prp.records.record import INTERRUPTED

PHASES = ("starting", "steps", "gates", "merge", "done")
DEFAULT_INTERVAL = 30.0
# The last output line kept in the file; progress lines cut it shorter.
OUTPUT_CHARS = 200
# A phase change is written this long after it happens: a step's process starts in that
# moment, and a write competing with it for the interpreter delays it (about 1 ms each time).
PHASE_WRITE_DELAY = 0.05


def heartbeat_dir(results_dir: Path, batch: str | None = None) -> Path:
    """``<results_dir>/heartbeats``, or the directory of one batch (``none``: no batch)."""
    root = results_dir / "heartbeats"
    return root if batch is None else inside(root, batch_folder(batch))


def heartbeat_path(results_dir: Path, batch: str | None, prp_id: str) -> Path:
    """``<results_dir>/heartbeats/<batch>/<id>.json``; a PRP without batch goes to ``none``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", prp_id)
    return inside(heartbeat_dir(results_dir, batch_folder(batch)), f"{name}.json")


def worker_id() -> str:
    """The xdist worker running this process (``gw0``, ...), or ``main``."""
    return os.environ.get("PYTEST_XDIST_WORKER") or "main"


class Heartbeat:
    """Keeps one PRP's heartbeat file current while it runs.

    ``output`` is called with the latest line of each chunk of output and only records it;
    the writer thread turns the latest line into ``last_output`` (stream-json rendered as
    ``render_line`` does).
    Writing is best effort: a full disk or a removed results directory never fails the PRP.
    """

    def __init__(
        self,
        path: Path,
        *,
        prp_id: str,
        batch: str | None,
        worker: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        estimated_hours: float | None = None,
        run_id: str | None = None,
    ) -> None:
        self.path = path
        self.prp_id = prp_id
        self.batch = batch
        self.worker = worker or worker_id()
        self.interval = interval
        self.estimated_hours = estimated_hours
        self.run_id = run_id
        self.started_at = time.time()
        self._started = time.monotonic()
        self.phase_name = "starting"
        self.worktree: str | None = None  # kept for inspection, told at the end
        self.current: str | None = None
        self.index: int | None = None
        self.total: int | None = None
        self.attempt: int | None = None
        self.cost_usd: float | None = None
        self.status: str | None = None
        self.rate_limit_until: float | None = None
        self.write_error: str | None = None  # the last failed write, for diagnosis
        self._raw_output: str | None = None
        self._raw_output_at: float | None = None
        self._rendered_from: str | None = None
        self._last_output: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a phase change: write now, not at the next beat
        self._thread: threading.Thread | None = None
        self._finished = False

    # --- what the runner tells it ------------------------------------------------------

    def start(self) -> Heartbeat:
        """Write the first beat and start beating every ``interval`` seconds."""
        self.write()
        if self._thread is None and not self._finished:
            self._thread = threading.Thread(
                target=self._beat, name=f"heartbeat {self.prp_id}", daemon=True
            )
            self._thread.start()
        return self

    def phase(
        self,
        name: str,
        *,
        current: str | None = None,
        index: int | None = None,
        total: int | None = None,
        attempt: int | None = None,
    ) -> None:
        """Enter a phase (``steps``, ``gates``, ``merge``); written at once by the writer
        thread (not by the caller: a step must not wait for a file write to start)."""
        self.phase_name = name
        self.current = current
        self.index = index
        self.total = total
        if attempt is not None:
            self.attempt = attempt
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
        else:
            self.write()

    def output(self, line: str) -> None:
        """A line of output: a sign of life. Cheap: it only records."""
        self._raw_output_at = time.time()
        if line.strip():
            self._raw_output = line

    def waiting(self, until: float | None) -> None:
        """Waiting for an API rate limit until ``until`` (a time.time() value); None: no
        longer. Written at once, as a phase change."""
        self.rate_limit_until = until
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
        else:
            self.write()

    def cost(self, usd: float | None) -> None:
        """The PRP's cost so far."""
        self.cost_usd = usd

    def finish(self, status: str, worktree: Path | None = None) -> None:
        """Write the final beat (phase ``done``, ``status``, the worktree kept if any) and
        stop the thread."""
        if self._finished:
            return
        self.worktree = str(worktree) if worktree is not None else None
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.phase_name = "done"
        self.status = status
        self.write()
        self._finished = True

    # --- the file ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What the file says now."""
        raw = self._raw_output
        if raw is not None and raw is not self._rendered_from:
            self._rendered_from = raw
            shown = render_line(raw)
            if shown is not None and shown.strip():
                text = shown.strip()
                self._last_output = text[:OUTPUT_CHARS]
        return {
            "prp_id": self.prp_id,
            "batch": self.batch,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "worker": self.worker,
            "run_id": self.run_id,
            "interval": self.interval,
            "phase": self.phase_name,
            "current": self.current,
            "index": self.index,
            "total": self.total,
            "attempt": self.attempt,
            "started_at": iso(self.started_at),
            "last_output_at": iso(self._raw_output_at),
            "last_output": self._last_output,
            "elapsed_seconds": round(time.monotonic() - self._started, 3),
            "cost_usd": self.cost_usd,
            "estimated_hours": self.estimated_hours,
            "rate_limit_until": iso(self.rate_limit_until),
            "status": self.status,
            "worktree": self.worktree,
            "updated_at": iso(time.time()),
        }

    def write(self) -> None:
        if self._finished:
            return
        with self._lock:  # one writer at a time, so the newest state is written last
            try:
                write_json_atomically(self.path, self.snapshot())
                self.write_error = None
            except OSError as exc:
                self.write_error = f"{self.path}: {exc.strerror or exc}"

    def _beat(self) -> None:
        while True:
            if self._wake.wait(self.interval):
                self._stop.wait(PHASE_WRITE_DELAY)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.write()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Without an explicit ``finish``: ``interrupted``, ``error`` or ``done``."""
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self.finish(INTERRUPTED)
        elif exc_type is not None:
            self.finish("error")
        else:
            self.finish("done")


def read_heartbeats(results_dir: Path, batch: str | None = None) -> list[dict[str, Any]]:
    """Every heartbeat (of one batch, if given), sorted by PRP id.

    Files that are missing, half-written by an older writer, not JSON objects or without a
    ``prp_id`` are skipped: a status view must work while runs come and go.
    """
    root = heartbeat_dir(results_dir)
    folders = [heartbeat_dir(results_dir, batch)] if batch is not None else _subdirs(root)
    beats: list[dict[str, Any]] = []
    for folder in folders:
        try:
            files = sorted(folder.glob("*.json"))
        except OSError:
            continue
        for file in files:
            try:
                data = read_json(file)
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("prp_id"), str):
                beats.append(data)
    beats.sort(key=lambda beat: natural_key(beat["prp_id"]))
    return beats


def _subdirs(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []


# --- live progress -----------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``4s``, ``3m12s``, ``2h05m``."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


_KIND = {"steps": "step", "gates": "gate"}


def describe_position(beat: dict[str, Any]) -> str:
    """``step 2/5 "Phase 2"``, ``gate 1/3 "tests"``, ``steps``, ``merge``, ``done (success)``,
    ``waiting for rate limit until 14:03:00``."""
    phase = str(beat.get("phase") or "starting")
    if phase == "done":
        return f"done ({beat['status']})" if beat.get("status") else "done"
    until = parse_time(beat.get("rate_limit_until"))
    if until is not None:
        from pytest_prp.supervise.ratelimit import waiting_text

        return waiting_text(until)
    current, index, total = beat.get("current"), beat.get("index"), beat.get("total")
    kind = _KIND.get(phase, phase)
    if current and index is not None and total:
        text = f'{kind} {index}/{total} "{current}"'
    elif current:
        text = f'{kind} "{current}"'
    else:
        text = phase
    attempt = beat.get("attempt")
    if isinstance(attempt, int) and attempt > 1:
        text += f" (attempt {attempt})"
    return text


def progress_line(beat: dict[str, Any], now: float) -> str:
    """One line for the terminal, e.g.
    ``PRP-47.2.1 step 2/5 "Phase 2: Topological Sort" 3m12s, last output 4s ago``.

    ``now`` is a ``time.time()`` value; the cost follows when known.
    """
    started = parse_time(beat.get("started_at"))
    if started is not None:
        elapsed = now - started
    else:
        elapsed = float(beat.get("elapsed_seconds") or 0.0)
    text = f"{beat.get('prp_id', '?')} {describe_position(beat)} {format_duration(elapsed)}"
    if beat.get("phase") != "done":
        last = parse_time(beat.get("last_output_at"))
        if last is None:
            text += ", no output yet"
        else:
            text += f", last output {format_duration(now - last)} ago"
    cost = beat.get("cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        text += f", ${cost:.4f}"
    return text
