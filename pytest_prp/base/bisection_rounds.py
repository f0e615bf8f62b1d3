"""Bisection in rounds: ``bisection.first_failing`` when several checks can run at once.

Pure (no git, no processes): the caller asks for a round of items to check, runs those checks
(in parallel, in any order), hands their verdicts back, and asks again until ``done``. With
``width`` checks per round, the range left shrinks ``width + 1``-fold each round instead of
twofold: fewer rounds (the wall time of a bisection when the checks run side by side), for more
checks in all. With ``width`` 1 it tries exactly the items ``first_failing`` tries.

Which items a round holds depends only on the verdicts so far, never on the order the checks
ended in: the same verdicts give the same answer and the same number of checks.
"""

from __future__ import annotations

from collections.abc import Mapping


class RoundBisection:
    """The first failing one of ``count`` items, given that the check passed just before the
    first one and fails on the last one (not run again), ``width`` checks a round.

    Assumes one change of verdict, as ``first_failing`` does. ``found`` is an item just after
    one whose check was seen to pass (or the first item): never an item without a passing
    check before it, except the first."""

    def __init__(self, count: int, width: int) -> None:
        self.low, self.high = 0, count - 1  # the answer lies in [low, high]; high fails
        self.width = max(1, width)
        self.count = count

    @property
    def done(self) -> bool:
        return self.low >= self.high

    @property
    def found(self) -> int | None:
        """The index of the first failing item, once ``done`` (None when there are none)."""
        return self.low if self.count > 0 and self.done else None

    def round(self) -> list[int]:
        """The items to check next, in order: up to ``width`` that cut what is left of the
        range into equal parts (all of it when it is that small); empty once ``done``."""
        unknown = self.high - self.low
        if unknown <= 0:
            return []
        k = min(self.width, unknown)
        return [self.low + (i * unknown) // (k + 1) for i in range(1, k + 1)]

    def learn(self, verdicts: Mapping[int, bool]) -> None:
        """The verdicts of a round's items (passed or not): the answer lies after the last
        passing one before the first failing one, up to that failing one."""
        for index in sorted(verdicts):
            if verdicts[index]:
                self.low = max(self.low, index + 1)
            else:
                self.high = min(self.high, index)
                break
