"""Benchmark: what "no process left behind" costs per step.

At the end of every step, agent and gate process, ``pytest_prp.supervise.leftovers.sweep`` looks for
processes carrying the step's cookie or re-parented to us since it started
(``processes.run_process`` calls it after stopping the process group). As a child subreaper,
pytest-prp keeps all a step started in its own process tree and walks only that tree; without
one it would have to read all of ``/proc``, whose cost grows with what the machine runs. Each
load is measured in a fresh Python process that first starts the idle processes (``sleep``,
handed to PID 1 as another user's work would be), then becomes a subreaper by running steps.

Rows, per machine load, each the median over rounds in milliseconds:

  group only   ``run_bash("true")`` with the sweep switched off: the baseline, what a step cost
               before (its own process group stopped and reaped)
  with sweep   ``run_bash("true")`` as shipped
  added        the cost per step: the median of each round's with sweep - group only (the two
               run in turn, so a round's pair shares the machine's mood)
  full scan    ``leftovers.end_runs`` of a dead run: the stat and environment of every process
               read, as done when a run finds that an earlier one died, and what every step
               would pay without a subreaper

Target: the sweep adds at most 2 ms to a step, whatever the load (judged at +1000 idle).

Run:  .venv/bin/python benchmarks/bench_leftovers.py               (40 rounds)
      .venv/bin/python benchmarks/bench_leftovers.py --repeat 3    (smoke)

Exit status 0 whether the target is met or not; 1 when the setup fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _harness import SetupError, run_main

from pytest_prp.supervise import leftovers, processes
from pytest_prp.supervise.limits import Limits

TARGET_MS = 2.0
LOADS = (0, 300, 1000)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="rounds per row (default 40)")
    parser.add_argument("--load", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _ms(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _idle(count: int) -> list[int]:
    """``count`` sleeping processes that are not ours: forked by a helper that exits at once,
    so that PID 1 adopts them (we are no subreaper yet). Their pids."""
    helper = (
        "import os, sys\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.setsid()\n"
        "        null = os.open(os.devnull, os.O_RDWR)\n"
        "        for fd in (0, 1, 2):\n"  # or our capture would wait for them to end
        "            os.dup2(null, fd)\n"
        "        os.execvp('sleep', ['sleep', '600'])\n"
        "    print(pid)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", helper, str(count)], capture_output=True, text=True, check=False
    )
    pids = [int(line) for line in done.stdout.split()]
    if done.returncode != 0 or len(pids) != count:
        _stop(pids)
        raise SetupError(f"cannot start {count} idle processes: {done.stderr.strip()}")
    return pids


def _stop(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _no_sweep(token: str, *, leader: int, since: int | None, grace: float) -> list[int]:
    return []


def measure(load: int, rounds: int) -> dict[str, float]:
    """The rows for one load, in this process (which must not be a subreaper yet)."""
    idle = _idle(load)
    try:
        env = dict(os.environ)
        shipped = leftovers.sweep
        with tempfile.TemporaryDirectory(prefix="bench-leftovers-") as tmp:
            cwd = Path(tmp)

            def step() -> None:
                limits = Limits.starting_now(30)
                result = processes.run_bash("true", cwd=cwd, env=env, limits=limits)
                if not result.ok:
                    raise SetupError(f"a step `true` failed: {result.describe()}")

            step()  # warm: imports, the subreaper, bash in the page cache
            off: list[float] = []
            on: list[float] = []
            for _ in range(rounds):  # alternate, so that both see the same spells of the machine
                leftovers.sweep = _no_sweep
                try:
                    off.append(_ms(step, 1))
                finally:
                    leftovers.sweep = shipped
                on.append(_ms(step, 1))
            full = _ms(lambda: leftovers.end_runs({"no-such-run"}, grace=1), rounds)
            return {
                "processes": float(len(leftovers.snapshot())),
                "off": statistics.median(off),
                "on": statistics.median(on),
                "added": statistics.median(b - a for a, b in zip(off, on, strict=True)),
                "full": full,
            }
    finally:
        _stop(idle)


def run(args: argparse.Namespace) -> list[str]:
    if not Path("/proc/self/stat").exists():
        raise SetupError("no /proc here: the sweep finds nothing and costs nothing")
    rounds = max(args.repeat, 1)
    if args.load is not None:
        return [json.dumps(measure(args.load, rounds))]
    lines = [
        f"{'load':<14}{'processes':>10}{'group only':>12}{'with sweep':>12}{'added':>8}"
        f"{'full scan':>11}   (ms, median of {rounds})"
    ]
    added = 0.0
    for load in LOADS:
        done = subprocess.run(
            [sys.executable, __file__, "--load", str(load), "--repeat", str(rounds)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SetupError(f"the run at load {load} failed: {done.stderr.strip()[-300:]}")
        row = json.loads(done.stdout.splitlines()[0])
        added = row["added"]
        label = "as it is" if load == 0 else f"+{load} idle"
        lines.append(
            f"{label:<14}{row['processes']:>10.0f}{row['off']:>12.2f}{row['on']:>12.2f}"
            f"{added:>8.2f}{row['full']:>11.2f}"
        )
    verdict = "met" if added <= TARGET_MS else "missed"
    lines.append("")
    lines.append(
        f"target: the sweep adds <= {TARGET_MS:g} ms per step at +{LOADS[-1]} idle processes: "
        f"{added:.2f} ms: target {verdict}"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load is not None:  # one load, for the parent run: JSON only
        try:
            print(run(args)[0])
        except SetupError as exc:
            print(f"bench_leftovers: {exc}", file=sys.stderr)
            return 1
        return 0
    return run_main("bench_leftovers", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
