"""The controller's publisher: pushes of the integration branch off the critical path."""

from __future__ import annotations

import threading
import time

from pytest_prp.remote_controller import Publisher
from pytest_prp.workspace.git_command import GitError


def test_tips_asked_for_during_the_pause_go_in_one_push() -> None:
    pushed: list[str] = []
    publisher = Publisher(pushed.append, every=0.3)
    publisher.wait(publisher.publish("a"))  # the first goes at once: no push before it
    for tip in ("b", "c", "d"):
        number = publisher.publish(tip)
    start = time.monotonic()
    assert publisher.wait(number) is None  # waited for: pushed without the rest of the pause
    assert time.monotonic() - start < 0.25
    assert pushed == ["a", "d"]
    assert publisher.wait(publisher.publish("d", now=True)) is None  # there already
    assert pushed == ["a", "d"]


def test_a_push_that_fails_is_said_until_one_succeeds() -> None:
    broken = threading.Event()
    broken.set()

    def push(tip: str) -> None:
        if broken.is_set():
            raise GitError("git push failed: could not read from remote repository")

    publisher = Publisher(push, every=0.0)
    assert "could not read" in str(publisher.wait(publisher.publish("a", now=True)))
    broken.clear()
    assert publisher.wait(publisher.publish("b", now=True)) is None
    assert publisher.pushes == 2


def test_closed_it_pushes_what_was_asked_for_and_its_thread_ends() -> None:
    pushed: list[str] = []
    before = set(threading.enumerate())
    publisher = Publisher(pushed.append, every=0.2)
    publisher.publish("a")
    number = publisher.publish("b")
    publisher.close()
    assert publisher.wait(number) is None
    assert pushed[-1] == "b"
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before:
        assert time.monotonic() < deadline, "the publisher's thread is still there"
        time.sleep(0.01)


def test_a_push_made_before_it_started_counts_for_the_pause() -> None:
    pushed: list[str] = []
    publisher = Publisher(pushed.append, every=5.0, pushed_at=time.monotonic())
    number = publisher.publish("a")
    time.sleep(0.2)
    assert pushed == []  # within the pause since the start's push
    start = time.monotonic()
    assert publisher.wait(number) is None  # the end of the run: at once, not after the pause
    assert time.monotonic() - start < 2.5
    assert pushed == ["a"]
    publisher.close()
