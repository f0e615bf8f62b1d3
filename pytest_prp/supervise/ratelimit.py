"""API rate limits and overload, waited out: a PRP waits instead of failing.

An overloaded API (HTTP 529), a rate limit (429) or a used-up subscription is not the agent's
failure: once ``ratelimit_signs`` recognised one in a failed run, the PRP waits (until the
reset time when the CLI names one, else with exponential backoff) and runs the agent again
without using up an attempt. All waits of a PRP together are bounded (``--prp-rate-limit-wait``);
past the bound the PRP is ``rate_limited`` and the run starts no new PRP.

Under xdist every worker pauses together: the pause (its "until" time) is written to a file
in the results directory that every worker reads before starting an agent or a PRP.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pytest_prp.base.jsonfile import write_json_atomically
from pytest_prp.supervise.ratelimit_signs import RateLimit

DEFAULT_WAIT = 3600.0  # --prp-rate-limit-wait
BACKOFF_FIRST = 30.0  # the first wait when the CLI names no reset time ...
BACKOFF_CAP = 600.0  # ... doubling up to this
RESET_MARGIN = 1.0  # after a named reset time: the API's clock may be a little behind


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
