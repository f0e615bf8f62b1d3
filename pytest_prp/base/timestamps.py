"""Times in the records: ``time.time()`` values as ISO 8601 in UTC, and back.

Heartbeats, the result JSON, ``prp-status`` and the HTML report compare times written by
different processes; they all write and read them here, to the millisecond.
"""

from __future__ import annotations

from datetime import datetime, timezone


def iso(timestamp: float | None) -> str | None:
    """A ``time.time()`` value as ISO 8601 in UTC, to the millisecond."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def parse_time(value: object) -> float | None:
    """An ISO 8601 time (``Z`` allowed; no zone means UTC) as a ``time.time()`` value."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
