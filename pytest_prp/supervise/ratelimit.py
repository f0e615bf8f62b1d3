"""API rate limits and overload: recognised from the agent CLI's own output, then waited out.

An overloaded API (HTTP 529), a rate limit (429) or a used-up subscription is not the agent's
failure: the PRP waits (until the reset time when the CLI names one, else with exponential
backoff) and runs the agent again without using up an attempt. All waits of a PRP together
are bounded (``--prp-rate-limit-wait``); past the bound the PRP is ``rate_limited`` and the
run starts no new PRP.

What is recognised, only in a run that failed (a rate limit the CLI retried past is no news):

* Claude Code's ``result`` event with ``api_error_status`` 429 or 529, or whose text says the
  limit is reached: ``Claude AI usage limit reached|1755615600`` (a unix time),
  ``You've hit your limit · resets 3pm (Europe/Berlin)``, ``API Error: Rate limit reached``,
  ``API Error: Repeated 529 Overloaded errors``; its ``rate_limit_event`` with
  ``rate_limit_info.status`` ``rejected`` (``resetsAt``: a unix time);
* Codex's ``--json`` events ``turn.failed`` (``error.message``) and ``error`` (``message``)
  saying ``429 Too Many Requests``, ``usage limit`` (``try again at Apr 28th, 2026 10:03 PM``)
  or ``rate limit``;
* the same words on the last plain-text lines of an agent that printed no such event.

Under xdist every worker pauses together: the pause (its "until" time) is written to a file
in the results directory that every worker reads before starting an agent or a PRP.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pytest_prp.base.jsonfile import write_json_atomically
from pytest_prp.base.stream_json import parse_event

DEFAULT_WAIT = 3600.0  # --prp-rate-limit-wait
BACKOFF_FIRST = 30.0  # the first wait when the CLI names no reset time ...
BACKOFF_CAP = 600.0  # ... doubling up to this
RESET_MARGIN = 1.0  # after a named reset time: the API's clock may be a little behind
_STATUSES = (429, 529)
_PLAIN_LINES = 5  # plain-text lines read from the end of the output

_LIMIT_TEXT = re.compile(
    r"\busage[ _]limit|hit your (?:[\w-]+ )?limit"
    r"|\brate[ _]limit(?:[ _](?:error|reached|exceeded)|ed)\b|\boverloaded(?:_error)?\b"
    r"|too many requests|\b(?:status|error)\W{0,3}(?:429|529)\b"
    r"|api error\W{0,3}(?:429|529)\b",
    re.IGNORECASE,
)
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_UNIX_AFTER_PIPE = re.compile(r"limit reached\|(\d{9,13})", re.IGNORECASE)
_RESETS_AT = re.compile(r"\"?resets?_?at\"?\s*[:=]\s*(\d{9,13})", re.IGNORECASE)
_RESETS_IN = re.compile(r"\"?resets?_in_seconds\"?\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_TRY_IN = re.compile(
    r"try again in\s+(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|mins?|minutes?|h|hours?)\b",
    re.IGNORECASE,
)
# "resets 3pm (Europe/Berlin)", "reset at 5pm (Europe/Warsaw)", "resets Feb 7, 11am (Asia/Seoul)",
# "Limits will reset at 9:30 AM", Codex's "try again at Apr 28th, 2026 10:03 PM".
_CLOCK = re.compile(
    r"(?:resets?|try again)(?:\s+at)?\s+"
    r"(?:(?P<month>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+"
    r"(?:(?P<year>\d{4}),?\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)"
    r"(?:\s*\((?P<zone>[A-Za-z_]+(?:/[A-Za-z_+-]+)*)\))?",
    re.IGNORECASE,
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class RateLimit:
    """What the CLI said: one line for the user, and the reset time when it named one."""

    reason: str
    until: float | None = None  # a time.time() value


# --- recognising -------------------------------------------------------------------------


def detect(stdout: str, tail: Iterable[str] = (), now: float | None = None) -> RateLimit | None:
    """The rate limit a failed agent run ran into, or None when it failed for another reason.

    ``stdout``: the whole output (stream-json, Codex ``--json`` or plain text); ``tail``: the
    last lines of stdout and stderr as the user sees them, for plain-text CLIs.
    """
    now = time.time() if now is None else now
    said: RateLimit | None = None
    reset: float | None = None  # from a rate_limit_event
    events = 0
    for line in stdout.splitlines():
        event = parse_event(line)
        if event is None:
            continue
        kind = event.get("type")
        if kind == "rate_limit_event":
            reset = _rejected_reset(event.get("rate_limit_info")) or reset
            continue
        text = _error_text(event)
        if kind in ("result", "turn.failed", "turn.completed"):  # what the run came to
            said = None
        if text is None:
            continue
        events += 1
        said = _from_text(text, now, _status(event.get("api_error_status"))) or said
    if said is None and reset is not None:
        said = RateLimit("the API rejected the request (rate limit)", reset)
    if said is None and events == 0:
        plain = [ln for ln in (*stdout.splitlines(), *tail) if _is_plain(ln)]
        for line in reversed(plain[-_PLAIN_LINES:]):
            said = _from_text(line, now, None)
            if said is not None:
                break
    if said is not None and said.until is None and reset is not None:
        said = RateLimit(said.reason, reset)
    return said


def _status(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _error_text(event: dict[str, Any]) -> str | None:
    """The error an event reports: a failed Claude ``result``, Codex ``turn.failed``/``error``."""
    kind = event.get("type")
    if kind == "result":
        failed = event.get("is_error") is True or str(event.get("subtype", "")).startswith("error")
        if not failed and _status(event.get("api_error_status")) is None:
            return None
        parts = [event.get("result"), *(event.get("errors") or [])]
        return " ".join(str(p) for p in parts if p) or ""
    if kind == "turn.failed":
        error = event.get("error")
        return str(error.get("message", "")) if isinstance(error, dict) else str(error or "")
    if kind == "error":
        return str(event.get("message") or event.get("error") or "")
    return None


def _is_plain(line: str) -> bool:
    """Plain output, not an event nor an event as the tail renders it (``[assistant] ...``)."""
    text = line.strip()
    return bool(text) and not text.startswith(("{", "[", "->"))


def _from_text(text: str, now: float, status: int | None) -> RateLimit | None:
    if status not in _STATUSES and not _LIMIT_TEXT.search(text):
        return None
    reason = " ".join(text.split())[:200] or "API error"
    if status in _STATUSES and str(status) not in reason:
        reason += f" (HTTP {status})"
    return RateLimit(reason, reset_time(text, now))


def _rejected_reset(info: object) -> float | None:
    if not isinstance(info, dict) or info.get("status") != "rejected":
        return None
    value = info.get("resetsAt")
    return _unix(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _unix(value: float) -> float:
    """Seconds since the epoch; a value in milliseconds is recognised by its size."""
    return value / 1000.0 if value > 1e11 else float(value)


def reset_time(text: str, now: float) -> float | None:
    """The reset time a message names, as a time.time() value, or None.

    A clock time without a date is its next occurrence; without a zone, local time.
    """
    match = _UNIX_AFTER_PIPE.search(text) or _RESETS_AT.search(text)
    if match:
        return _unix(float(match.group(1)))
    match = _RESETS_IN.search(text)
    if match:
        return now + float(match.group(1))
    match = _TRY_IN.search(text)
    if match:
        unit = match.group(2).lower()
        return now + float(match.group(1)) * _UNITS["ms" if unit == "ms" else unit[0]]
    match = _CLOCK.search(text)
    return _clock_time(match, now) if match else None


def _clock_time(match: re.Match[str], now: float) -> float | None:
    zone = _zone(match.group("zone"))
    hour = int(match.group("hour")) % 12 + (12 if match.group("ampm")[0].lower() == "p" else 0)
    minute = int(match.group("minute") or 0)
    if hour > 23 or minute > 59:
        return None
    current = datetime.fromtimestamp(now, zone)
    try:
        if match.group("month"):
            month = match.group("month").lower()[:3]
            if month not in _MONTHS:
                return None
            year = int(match.group("year") or current.year)
            day = int(match.group("day"))
            moment = datetime(year, _MONTHS.index(month) + 1, day, hour, minute, tzinfo=zone)
            if not match.group("year") and moment < current - timedelta(days=1):
                moment = moment.replace(year=year + 1)  # "resets Jan 2" said on Dec 30
        else:
            moment = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if moment <= current:
                moment += timedelta(days=1)
    except ValueError:
        return None
    return moment.timestamp()


def _zone(name: str | None) -> tzinfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


# --- waiting -----------------------------------------------------------------------------


def backoff(failures: int, bound: float) -> float:
    """The wait after the ``failures``-th rate limit without a reset time: doubling from
    ``BACKOFF_FIRST`` (an eighth of a smaller bound) up to ``BACKOFF_CAP``."""
    first = min(BACKOFF_FIRST, bound / 8)
    return float(min(BACKOFF_CAP, first * 2 ** max(failures - 1, 0)))


def next_wait(limit: RateLimit, failures: int, now: float, bound: float) -> float:
    """Seconds to wait before running the agent again after the ``failures``-th limit."""
    if limit.until is not None and limit.until > now:
        return limit.until - now + RESET_MARGIN
    return backoff(failures, bound)


def clock(moment: float) -> str:
    """``HH:MM:SS`` in local time, as "waiting for rate limit until ..." shows it."""
    return datetime.fromtimestamp(moment).strftime("%H:%M:%S")


def waiting_text(until: float) -> str:
    return f"waiting for rate limit until {clock(until)}"


@dataclass(frozen=True)
class Pause:
    until: float  # no agent starts before this time.time() value
    reason: str
    prp_id: str
    exhausted: bool  # a PRP of this run waited past the bound: no new PRP starts


class SharedPause:
    """The pause all processes of one run honour: ``<results_dir>/rate-limit.json``.

    Written under a lock (the latest "until" and the exhausted flag are kept whoever writes
    last); a file of another run (its ``run_id``) is no pause for this one, so a batch resumed
    later tries the API again at once.
    """

    def __init__(self, results_dir: Path, run_id: str) -> None:
        self.path = results_dir / "rate-limit.json"
        self.run_id = run_id

    def read(self) -> Pause | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("run_id") != self.run_id:
            return None
        until = data.get("until_ts")
        if not isinstance(until, (int, float)) or isinstance(until, bool):
            return None
        return Pause(
            float(until),
            str(data.get("reason") or ""),
            str(data.get("prp_id") or ""),
            data.get("exhausted") is True,
        )

    def extend(self, until: float, reason: str, prp_id: str, exhausted: bool = False) -> Pause:
        """Pause every process until ``until`` at least; the pause now in force."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(".rate-limit.lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            old = self.read()
            if old is not None and old.until >= until:
                until, reason, prp_id = old.until, old.reason, old.prp_id
            pause = Pause(until, reason, prp_id, exhausted or (old is not None and old.exhausted))
            write_json_atomically(
                self.path,
                {
                    "run_id": self.run_id,
                    "until": datetime.fromtimestamp(pause.until).astimezone().isoformat(),
                    "until_ts": pause.until,
                    "reason": pause.reason,
                    "prp_id": pause.prp_id,
                    "pid": os.getpid(),
                    "worker": os.environ.get("PYTEST_XDIST_WORKER") or "main",
                    "exhausted": pause.exhausted,
                },
            )
        return pause

    def exhausted(self) -> bool:
        pause = self.read()
        return pause is not None and pause.exhausted


class GiveUp(Exception):
    """Waiting longer would pass the bound: the PRP is ``rate_limited``."""


class RateLimitWaiter:
    """One PRP's waits: before each agent run (the shared pause) and after a rate limit.

    ``on_wait(until, reason)`` is told as a wait starts, ``on_wait(None, "")`` as it ends
    (the heartbeat and the log show it). ``sleep`` and ``now`` are the real clock outside
    tests of the policy.
    """

    def __init__(
        self,
        pause: SharedPause,
        *,
        prp_id: str,
        bound: float,
        on_wait: Callable[[float | None, str], None] = lambda until, reason: None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pause = pause
        self.prp_id = prp_id
        self.bound = bound
        self.on_wait = on_wait
        self.now = now
        self.sleep = sleep
        self.waited = 0.0  # seconds, all waits of this PRP
        self.limits = 0  # rate limits this PRP's agent ran into

    @property
    def left(self) -> float:
        return max(self.bound - self.waited, 0.0)

    def before_run(self) -> None:
        """Wait for a pause another PRP started; GiveUp past the bound or when the run has
        given up on the API already."""
        pause = self.pause.read()
        if pause is None:
            return
        if pause.exhausted:
            raise GiveUp(f"the API stayed rate limited ({pause.prp_id}: {pause.reason})")
        if pause.until > self.now():
            self._wait(pause.until, pause.reason)

    def after_limit(self, limit: RateLimit) -> None:
        """The agent ran into ``limit``: pause every process and wait; GiveUp past the bound."""
        self.limits += 1
        now = self.now()
        wait = next_wait(limit, self.limits, now, self.bound)
        if wait > self.left or wait <= 0:  # a bound of 0: no waiting at all
            self.pause.extend(now, limit.reason, self.prp_id, exhausted=True)
            waited = f"waited {self.waited:.1f} s, " if self.waited else ""
            named = f" (it resets at {clock(limit.until)})" if limit.until else ""
            raise GiveUp(
                f"{limit.reason}{named}; {waited}waiting {wait:.1f} s more would pass "
                f"--prp-rate-limit-wait {self.bound:g}"
            )
        pause = self.pause.extend(now + wait, limit.reason, self.prp_id)
        self._wait(pause.until, limit.reason)

    def _wait(self, until: float, reason: str) -> None:
        start = self.now()
        if until - start > self.left:
            raise self._give_up(reason, until)
        self.on_wait(until, reason)
        try:
            while True:
                # Another process may lengthen the pause, or give up: read it again each second.
                pause = self.pause.read()
                if pause is not None and pause.exhausted:
                    raise GiveUp(f"the API stayed rate limited ({pause.prp_id}: {pause.reason})")
                if pause is not None and pause.until > until:
                    if pause.until - start > self.left:
                        raise self._give_up(pause.reason, pause.until)
                    until = pause.until
                    self.on_wait(until, pause.reason)
                remaining = until - self.now()
                if remaining <= 0:
                    break
                self.sleep(min(remaining, 1.0))
        finally:
            self.waited += max(self.now() - start, 0.0)
            self.on_wait(None, "")

    def _give_up(self, reason: str, until: float) -> GiveUp:
        """A pause this PRP cannot wait out: the run gives up on the API (no new PRP)."""
        self.pause.extend(self.now(), reason, self.prp_id, exhausted=True)
        return GiveUp(
            f"{reason}; the pause until {clock(until)} would pass "
            f"--prp-rate-limit-wait {self.bound:g}"
        )
