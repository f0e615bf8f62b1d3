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
the batch itself; per-PRP overhead = (run - start-up) / N, best of --repeat rounds each.
Target: per-PRP overhead at the largest size within **1.5x** of that at the smallest, for each
shape; the figures of all sizes are printed next to each other.

Run:  .venv/bin/python benchmarks/bench_bookkeeping.py                  (N = 50 and 5,000)
      .venv/bin/python benchmarks/bench_bookkeeping.py --sizes 50 500 --repeat 1   (smoke)

Exit status 0 whether the target is met or not; 1 when the setup or a run fails.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 5000], metavar="N")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per figure (best kept)")
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


def measure(python: str, repo: Path, size: int, repeat: int) -> tuple[float, float]:
    """Best start-up and best run time over ``repeat`` rounds (taking turns)."""
    startups, runs = [], []
    for _ in range(repeat):
        startups.append(timed(python, repo, "--collect-only"))
        runs.append(timed(python, repo))
        check_result(repo, size)
    return min(startups), min(runs)


def run(args: argparse.Namespace) -> list[str]:
    warm_bytecode(args.python)
    sizes = sorted(set(args.sizes))
    versus = f"vs N={sizes[0]}"
    lines = [
        f"{'shape':<6} {'N':>6} {'start-up s':>11} {'run s':>8} {'per-PRP ms':>11} {versus:>9}"
    ]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="prp-bench-bookkeeping-") as tmp:
        for shape in args.shapes:
            base: float | None = None
            per_prp = 0.0
            for size in sizes:
                repo = make_batch(Path(tmp), shape, size)
                startup, whole = measure(args.python, repo, size, args.repeat)
                per_prp = max(whole - startup, 0.0) / size * 1000
                base = per_prp if base is None else base
                ratio = per_prp / base if base else float("inf")
                lines.append(
                    f"{shape:<6} {size:>6} {startup:>11.2f} {whole:>8.2f} {per_prp:>11.3f} "
                    f"{ratio:>8.2f}x"
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
