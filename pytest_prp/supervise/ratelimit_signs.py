"""API rate limits and overload, recognised in the agent CLI's own output (pure: no waiting).

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

``detect`` gives a ``RateLimit``: a line for the user and the reset time when the CLI named
one; ``ratelimit`` waits it out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pytest_prp.base.stream_json import parse_event

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
