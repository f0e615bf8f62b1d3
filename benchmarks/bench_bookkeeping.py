"""Benchmark: per-PRP cost of a batch's bookkeeping (result JSON, records) as the batch grows.

For each shape and each size N, one throw-away git repository holds a batch of N PRPs whose
first PRP fails its gate (``false``), so every other PRP is blocked: the run does no git work
per PRP and what is left is pytest's and pytest-prp's bookkeeping of each PRP (its setup
check, reports, the result record, the JSON rewritten after it, the summary).

  chain   PRP k depends on PRP k-1: N stages (the shape that was cubic: a cost per stage
          recomputed at every rewrite of the JSON);
  wide    every PRP depends on the first: 2 stages, N-1 PRPs in the second.

Per size: ``start-up`` is ``python -m pytest PRPs/ --prp-batch 1 --collect-only`` (pytest's
start-up, collecting and planning N PRPs: a cost of its own, not charged per PRP) and ``run``
the batch itself, taking turns; per-PRP overhead = the median over rounds of (run - start-up)
of one round, / N (--repeat rounds, at least 2,000 / N up to 15 for small batches, whose
figure is the difference of two short runs).
Target: per-PRP overhead at the largest size within **1.5x** of that at the smallest, for each
shape; the figures of all sizes are printed next to each other. The per-PRP figure of a small
batch includes the run's fixed costs (opening the repository, the integration branch, the
final JSON) spread over few PRPs, so the table also prints the marginal cost, what one more
PRP costs between one size and the next: constant when the bookkeeping is O(1) per PRP.

Run:  .venv/bin/python benchmarks/bench_bookkeeping.py                  (N = 50, 500, 5,000)
      .venv/bin/python benchmarks/bench_bookkeeping.py --sizes 50 500 --repeat 1   (smoke)

Exit status 0 whether the target is met or not; 1 when the setup or a run fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _harness import SetupError, clean_env, commit_fixture, run_main, warm_bytecode

TARGET = 1.5
SHAPES = ("chain", "wide")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 5000], metavar="N")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per figure (at least)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--python", default=sys.executable, help="interpreter with pytest-prp")
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.repeat < 1:
        parser.error("sizes must be at least 2 and --repeat at least 1")
    return args


def prp_text(n: int, deps: list[int]) -> str:
    dep_list = ", ".join(f"PRP-1.{d}" for d in deps)
    gate = "false" if n == 1 else "true"
    return (
        f"---\nprp_id: PRP-1.{n}\nbatch_id: 1\ntitle: Step {n}\n"
        f"dependencies: [{dep_list}]\n---\n\n# PRP-1.{n}\n\n"
        f"## Validation Gates\n\n### Gate 1: check\n\n```bash\n{gate}\n```\n"
    )


def make_batch(root: Path, shape: str, size: int) -> Path:
    repo = root / f"{shape}-{size}"
    prps = repo / "PRPs"
    prps.mkdir(parents=True)
    (repo / "README.md").write_text("benchmark\n")
    for n in range(1, size + 1):
        deps = [] if n == 1 else [n - 1] if shape == "chain" else [1]
        (prps / f"PRP-1.{n}.md").write_text(prp_text(n, deps))
    commit_fixture(repo)
    return repo


def timed(python: str, repo: Path, *extra: str) -> float:
    """One pytest run in ``repo``; its wall-clock time. SetupError when it went wrong."""
    cmd = [python, "-m", "pytest", "PRPs", "--prp-batch", "1", "-q", "-p", "no:cacheprovider"]
    started = time.perf_counter()
    done = subprocess.run(
        [*cmd, *extra], cwd=repo, capture_output=True, text=True, env=clean_env(), check=False
    )
    took = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: the first PRP fails, as it should
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise SetupError(f"pytest exited {done.returncode} in {repo}: {' | '.join(tail)}")
    return took


def check_result(repo: Path, size: int) -> None:
    """The run did what the benchmark assumes: one failure, everything else blocked."""
    path = repo / ".ce/orchestration/batches/batch-1.result.json"
    try:
        summary = json.loads(path.read_text())["summary"]
    except (OSError, ValueError, KeyError) as exc:
        raise SetupError(f"no result JSON in {repo}: {exc}") from None
    if summary["failed"] != 1 or summary["blocked"] != size - 1:
        raise SetupError(f"unexpected result in {repo}: {summary}")


def rounds_for(size: int, repeat: int) -> int:
    """Small batches get more rounds: their figure is the difference of two short runs, and
    a tenth of a second of noise is 2 ms per PRP at N=50."""
    return max(repeat, min(15, 2000 // size))


def measure(python: str, repo: Path, size: int, rounds: int) -> tuple[float, float, float]:
    """Median start-up, median run, and the median over rounds of (run - start-up) of the same
    round (the two take turns, so both see the same spell of the machine)."""
    startups, runs = [], []
    for _ in range(rounds):
        startups.append(timed(python, repo, "--collect-only"))
        runs.append(timed(python, repo))
        check_result(repo, size)
    paired = statistics.median(r - s for r, s in zip(runs, startups, strict=True))
    return statistics.median(startups), statistics.median(runs), paired


def run(args: argparse.Namespace) -> list[str]:
    warm_bytecode(args.python)
    sizes = sorted(set(args.sizes))
    versus = f"vs N={sizes[0]}"
    lines = [
        f"{'shape':<6} {'N':>6} {'rounds':>6} {'start-up s':>11} {'run s':>8} "
        f"{'per-PRP ms':>11} {versus:>9} {'marginal ms':>12}"
    ]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="prp-bench-bookkeeping-") as tmp:
        for shape in args.shapes:
            base: float | None = None
            per_prp = 0.0
            previous: tuple[int, float] | None = None
            for size in sizes:
                repo = make_batch(Path(tmp), shape, size)
                rounds = rounds_for(size, args.repeat)
                startup, whole, paired = measure(args.python, repo, size, rounds)
                per_prp = max(paired, 0.0) / size * 1000
                base = per_prp if base is None else base
                ratio = per_prp / base if base else float("inf")
                # What one more PRP costs between the previous size and this one: without the
                # run's fixed costs, which flatter the per-PRP figure of small batches.
                marginal = ""
                if previous is not None:
                    marginal = f"{(paired - previous[1]) / (size - previous[0]) * 1000:.3f}"
                previous = (size, paired)
                lines.append(
                    f"{shape:<6} {size:>6} {rounds:>6} {startup:>11.2f} {whole:>8.2f} "
                    f"{per_prp:>11.3f} {ratio:>8.2f}x {marginal:>12}"
                )
            ratio = per_prp / base if base else float("inf")
            verdicts.append((shape, ratio))
    lines.append("")
    for shape, ratio in verdicts:
        met = "target met" if ratio <= TARGET else "target missed"
        lines.append(
            f"{shape}: per-PRP overhead at N={sizes[-1]} is {ratio:.2f}x that at "
            f"N={sizes[0]} (target <= {TARGET}x): {met}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_bookkeeping", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
