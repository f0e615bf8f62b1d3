"""Rate limits and overload: recognising them in real CLI output, and the wait policy."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pytest_prp.supervise.ratelimit import (
    BACKOFF_CAP,
    RESET_MARGIN,
    GiveUp,
    RateLimitWaiter,
    SharedPause,
    backoff,
    next_wait,
)
from pytest_prp.supervise.ratelimit_signs import RateLimit, detect, reset_time

# 2026-03-10 12:00:00 UTC
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc).timestamp()


def line(event: dict[str, object]) -> str:
    return json.dumps(event)


def result(text: str, status: int | None = None, is_error: bool = True) -> str:
    event: dict[str, object] = {"type": "result", "subtype": "success", "is_error": is_error}
    event["result"] = text
    if status is not None:
        event["api_error_status"] = status
    return line(event)


INIT = line({"type": "system", "subtype": "init", "session_id": "s"})


def at(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


# --- Claude Code -------------------------------------------------------------------------


def test_overload_after_claudes_own_retries() -> None:
    out = "\n".join([INIT, result("API Error: Repeated 529 Overloaded errors", 529)])
    limit = detect(out, now=NOW)
    assert limit == RateLimit("API Error: Repeated 529 Overloaded errors", None)


def test_429_with_a_status_only() -> None:
    limit = detect(result("", 429), now=NOW)
    assert limit is not None and "429" in limit.reason and limit.until is None


def test_usage_limit_with_a_unix_time() -> None:
    limit = detect(result("Claude AI usage limit reached|1773147600"), now=NOW)
    assert limit is not None and limit.until == 1773147600


def test_rate_limit_event_names_the_reset() -> None:
    info = {"status": "rejected", "resetsAt": NOW + 600, "rateLimitType": "five_hour"}
    out = "\n".join(
        [
            INIT,
            line({"type": "rate_limit_event", "rate_limit_info": info}),
            result("API Error: Rate limit reached", 429),
        ]
    )
    limit = detect(out, now=NOW)
    assert limit is not None and limit.until == NOW + 600


BERLIN, WARSAW, SEOUL = "Europe/Berlin", "Europe/Warsaw", "Asia/Seoul"
RESET_TEXTS = [
    # The newer wording; a clock time without a date is its next occurrence.
    ("You've hit your limit · resets 3pm (Europe/Berlin)", at("2026-03-10T15:00", BERLIN)),
    (
        "You’ve hit your session limit · resets 4:20am (Europe/Warsaw)",
        at("2026-03-11T04:20", WARSAW),
    ),
    (
        "Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).",
        at("2026-03-10T17:00", WARSAW),
    ),
    ("You've hit your limit · resets Feb 7, 11am (Asia/Seoul)", at("2027-02-07T11:00", SEOUL)),
    ("You've hit your limit · resets Mar 12, 9am (UTC)", at("2026-03-12T09:00")),
]


@pytest.mark.parametrize(("text", "expected"), RESET_TEXTS)
def test_usage_limit_reset_times(text: str, expected: float) -> None:
    limit = detect(result(text), now=NOW)
    assert limit is not None and limit.until == expected


def test_plain_text_claude() -> None:
    limit = detect("You've hit your limit · resets 1pm (Europe/Lisbon)\n", now=NOW)
    assert limit is not None and limit.until == at("2026-03-10T13:00", "Europe/Lisbon")


# --- Codex -------------------------------------------------------------------------------


def test_codex_turn_failed_429() -> None:
    message = "exceeded retry limit, last status: 429 Too Many Requests, request id: abc"
    out = "\n".join(
        [
            line({"type": "thread.started", "thread_id": "t"}),
            line({"type": "turn.started"}),
            line({"type": "error", "message": "Reconnecting... 1/5"}),
            line({"type": "turn.failed", "error": {"message": message}}),
        ]
    )
    limit = detect(out, now=NOW)
    assert limit is not None and "429" in limit.reason and limit.until is None


def test_codex_usage_limit_names_a_date() -> None:
    message = (
        "You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase "
        "more credits or try again at Mar 28th, 2026 10:03 PM."
    )
    limit = detect(line({"type": "error", "message": message}), now=NOW)
    assert limit is not None
    local = datetime(2026, 3, 28, 22, 3).astimezone()  # no zone named: local time
    assert limit.until == local.timestamp()


def test_codex_usage_limit_reached_json() -> None:
    body = {"type": "usage_limit_reached", "resets_at": 1773180000, "resets_in_seconds": 3}
    message = json.dumps({"type": "error", "error": body, "status_code": 429})
    limit = detect(line({"type": "turn.failed", "error": {"message": message}}), now=NOW)
    assert limit is not None and limit.until == 1773180000


def test_try_again_in() -> None:
    assert reset_time("Rate limit reached. Please try again in 20s.", NOW) == NOW + 20
    assert reset_time("try again in 1.5 minutes", NOW) == NOW + 90


# --- not a rate limit --------------------------------------------------------------------


@pytest.mark.parametrize(
    "out",
    [
        result("API Error: 500 Internal server error", 500),
        result("fake agent failed as asked"),
        # The agent wrote about rate limits; its run failed for another reason.
        "\n".join(
            [
                line(
                    {
                        "type": "assistant",
                        "message": {"content": [{"type": "text", "text": "Added a rate limit"}]},
                    }
                ),
                result("error: tests fail"),
            ]
        ),
        # A rate limit Claude retried past: the final result is what counts.
        "\n".join([result("API Error: Rate limit reached", 429), result("done", is_error=False)]),
        "Traceback (most recent call last):\nValueError: bad\n",
        line({"type": "turn.failed", "error": {"message": "model not found"}}),
        # Codex reconnected after a rate limit, then failed for another reason.
        "\n".join(
            [
                line({"type": "error", "message": "Reconnecting... 1/5 (429 Too Many Requests)"}),
                line({"type": "turn.failed", "error": {"message": "model not found"}}),
            ]
        ),
    ],
)
def test_other_failures_are_not_rate_limits(out: str) -> None:
    assert detect(out, ["[assistant] I added rate limiting"], now=NOW) is None


def test_stderr_of_a_plain_cli_counts() -> None:
    assert detect("", ["working", "Error: 429 Too Many Requests"], now=NOW) is not None


# --- waiting -----------------------------------------------------------------------------


def test_backoff_doubles_from_a_share_of_the_bound() -> None:
    assert [backoff(n, 3600) for n in (1, 2, 3, 6, 10)] == [30, 60, 120, 600, BACKOFF_CAP]
    assert [backoff(n, 2) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]


def test_next_wait_until_the_named_reset() -> None:
    assert next_wait(RateLimit("x", NOW + 100), 1, NOW, 3600) == 100 + RESET_MARGIN
    assert next_wait(RateLimit("x", NOW - 100), 1, NOW, 3600) == 30  # passed: back off


class Clock:
    def __init__(self) -> None:
        self.time = NOW
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds


def waiter(tmp_path: Path, clock: Clock, bound: float, prp_id: str = "PRP-1") -> RateLimitWaiter:
    return RateLimitWaiter(
        SharedPause(tmp_path, "run-1"), prp_id=prp_id, bound=bound, now=clock.now, sleep=clock.sleep
    )


def test_waits_add_up_to_the_bound_then_give_up(tmp_path: Path) -> None:
    clock = Clock()
    seen: list[float | None] = []
    one = waiter(tmp_path, clock, bound=2)
    one.on_wait = lambda until, reason: seen.append(until)
    overload = RateLimit("API Error: Repeated 529 Overloaded errors")
    for _ in range(3):
        one.after_limit(overload)
    assert one.waited == pytest.approx(1.75)
    assert seen == [NOW + 0.25, None, NOW + 0.75, None, NOW + 1.75, None]
    with pytest.raises(GiveUp, match="would pass --prp-rate-limit-wait 2"):
        one.after_limit(overload)
    assert SharedPause(tmp_path, "run-1").exhausted()
    assert not SharedPause(tmp_path, "run-2").exhausted()  # a later run tries again


def test_a_reset_beyond_the_bound_gives_up_at_once(tmp_path: Path) -> None:
    clock = Clock()
    one = waiter(tmp_path, clock, bound=60)
    with pytest.raises(GiveUp, match="resets at"):
        one.after_limit(RateLimit("usage limit", NOW + 3600))
    assert clock.slept == []


def test_every_process_honours_the_pause(tmp_path: Path) -> None:
    clock = Clock()
    one, two = waiter(tmp_path, clock, 60, "PRP-1"), waiter(tmp_path, clock, 60, "PRP-2")
    one.after_limit(RateLimit("overload", NOW + 10))
    assert clock.time == NOW + 10 + RESET_MARGIN
    two.before_run()  # the pause is over
    assert two.waited == 0
    clock.time = NOW  # as if PRP-2's process looked while PRP-1 waited
    two.before_run()
    assert two.waited == pytest.approx(10 + RESET_MARGIN)
    pause = SharedPause(tmp_path, "run-1").read()
    assert pause is not None and pause.prp_id == "PRP-1" and not pause.exhausted


def test_a_shorter_pause_never_shortens_a_longer_one(tmp_path: Path) -> None:
    shared = SharedPause(tmp_path, "run-1")
    shared.extend(NOW + 100, "long", "PRP-1")
    pause = shared.extend(NOW + 5, "short", "PRP-2", exhausted=True)
    assert (pause.until, pause.reason, pause.exhausted) == (NOW + 100, "long", True)


def test_a_bound_of_zero_never_waits(tmp_path: Path) -> None:
    clock = Clock()
    with pytest.raises(GiveUp):
        waiter(tmp_path, clock, bound=0).after_limit(RateLimit("overload"))
    assert clock.slept == []


def test_a_pause_longer_than_what_is_left_gives_up_for_the_run(tmp_path: Path) -> None:
    clock = Clock()
    SharedPause(tmp_path, "run-1").extend(NOW + 120, "overload", "PRP-1")
    with pytest.raises(GiveUp, match="would pass --prp-rate-limit-wait 60"):
        waiter(tmp_path, clock, 60, "PRP-2").before_run()
    assert clock.slept == [] and SharedPause(tmp_path, "run-1").exhausted()
    with pytest.raises(GiveUp, match=r"the API stayed rate limited \(PRP-1: overload\)"):
        waiter(tmp_path, clock, 600, "PRP-3").before_run()


def test_a_waiting_prp_stops_when_another_gives_up(tmp_path: Path) -> None:
    clock = Clock()
    shared = SharedPause(tmp_path, "run-1")
    shared.extend(NOW + 30, "overload", "PRP-1")
    one = waiter(tmp_path, clock, 600, "PRP-2")

    def sleep_while_another_gives_up(seconds: float) -> None:
        clock.sleep(seconds)
        shared.extend(clock.time, "gone", "PRP-1", exhausted=True)

    one.sleep = sleep_while_another_gives_up
    with pytest.raises(GiveUp, match="stayed rate limited"):
        one.before_run()
    assert one.waited == 1.0
