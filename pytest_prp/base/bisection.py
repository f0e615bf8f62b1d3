"""Bisection over an ordered history: the first item at which a check stops passing.

Pure (no git, no processes): the caller gives the items (commits, oldest first) and a
``passes`` callback (check an item out, run a gate). Used by the final check to find the merge
that broke a gate; a merge queue that checks a stack of merges at once can find its culprit
the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def first_failing(items: Sequence[T], passes: Callable[[T], bool]) -> int | None:
    """The index of the first item of ``items`` on which ``passes`` is False, given that the
    check passed just before ``items[0]`` and fails on ``items[-1]`` (that one is not run
    again); None when ``items`` is empty. At most ceil(log2(len(items))) checks.

    Assumes one change of verdict (passing, then failing): a check that flips back and forth
    (a flaky gate, a break that a later item repairs) gets one of the items where it turns
    from passing to failing, not necessarily the first."""
    if not items:
        return None
    low, high = 0, len(items) - 1  # the answer lies in [low, high]; items[high] fails
    while low < high:
        middle = (low + high) // 2
        if passes(items[middle]):
            low = middle + 1
        else:
            high = middle
    return low
