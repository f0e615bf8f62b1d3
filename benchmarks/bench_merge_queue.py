"""Benchmark: what checking merges costs (issue 14), merge checks off, own, and siblings.

The batches of bench_parallel (random-A, a random layered DAG; uneven, long PRPs hanging off
chains of short ones), with each PRP's duration D split into a step ``sleep 0.75 D`` and a gate
``sleep 0.25 D``: gates take a quarter of each PRP, a realistic share. Every PRP creates a file
of its own, so no merge conflicts: what is measured is the cost of checking.

  own   the batch as it runs by default: a merge that is not a fast-forward runs the PRP's
        gate again on the merged tree (in its worktree, without the merge lock)
  sib   ``--prp-merge-check siblings``: that check also runs the gates of the PRPs merged
        since the PRP's base (its siblings) on the merged tree
  off   the same batch whose gate skips its sleep on a merged tree (a merge commit checked
        out, detached). Everything else of a check (merge-tree, checkout, the gate's
        process) still happens, so "off" is the cost without the re-run gates' own time
  bound off + (sum of the gate sleeps on merged trees in that run) / N: the re-run gate
        time spread over the N workers (for own and for sib, each from its own run)
  target each <= 1.15 x its bound
  ceiling own - (the re-checks' gate sleeps) / N: the most that batching the merges that
        queue up could win. A re-check is a gate run on a merged tree after the PRP's first
        one (the tip moved during its check); a stack checked once still runs each PRP's
        gates on a tree holding it, so only the re-checks (and, with an integration gate,
        its duplicate runs) are there to save. "batching pays?" says whether that ceiling is
        5% or more of "own"

Each gate run appends a line to a log outside the repository (the PRP whose check ran it, the
PRP whose gate it is, own or merged tree, its sleep): gate runs, those on merged trees, and the
sibling gates among them come from there. Every run gets a fresh copy of the repository.

  python benchmarks/bench_merge_queue.py [--workers 2 4] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import SetupError, clean_env, commit_fixture, run_main, warm_bytecode
from bench_parallel import Batch, Node, random_dag, uneven_dag
from bench_parallel import prp_text as parallel_prp_text

TARGET = 1.15
GATE_SHARE = 0.25
# Below this share of the makespan, what batching could win is within the run-to-run noise.
PAYS = 0.05


def prp_text(node: Node, log: Path, off: bool) -> str:
    """bench_parallel's PRP, its time split between the step and the gate (GATE_SHARE); the
    gate logs whether it ran on the PRP's own tree or on a merged one (a merge check)."""
    step, gate = node.duration * (1 - GATE_SHARE), node.duration * GATE_SHARE
    # A merge check runs on a detached HEAD; the PRP's own gates on its branch.
    merged = "! git symbolic-ref -q HEAD >/dev/null"
    sleep = f"{merged} || sleep {gate:.3f}" if off else f"sleep {gate:.3f}"
    lines = [
        f"if {merged}; then m=merged; else m=own; fi",
        sleep,
        f'echo "$PRP_ID {node.id} $m {gate:.3f}" >> {log}',
    ]
    return parallel_prp_text(node, estimates=True, step=f"sleep {step:.3f}", gate=lines)


def build(repo: Path, batch: Batch, log: Path, off: bool) -> None:
    (repo / "PRPs").mkdir(parents=True)
    for node in batch.nodes:
        (repo / "PRPs" / f"{node.id}.md").write_text(prp_text(node, log, off), encoding="utf-8")
    (repo / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (repo / ".gitignore").write_text(".ce/\n", encoding="utf-8")
    commit_fixture(repo)


@dataclass(frozen=True)
class Run:
    wall: float
    gates: int  # gate runs
    merged: int  # of them on merged trees
    merged_s: float  # their gate sleeps
    rechecks: int  # of those, a PRP's own gate after its first run on a merged tree
    rechecks_s: float
    siblings: int  # of the runs on merged trees, another PRP's gate (--prp-merge-check)


def one_run(python: str, work: Path, batch: Batch, workers: int, mode: str) -> Run:
    tag = f"{batch.name}-{workers}-{mode}"
    repo, log = work / tag, work / f"{tag}.log"
    build(repo, batch, log, mode == "off")
    command = [python, "-m", "pytest", "PRPs/", "-q", "-p", "no:cacheprovider"]
    command += ["--prp-batch", batch.batch_id, "-n", str(workers)]
    if mode == "sib":
        command += ["--prp-merge-check", "siblings"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=clean_env())
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-20:])
        raise SetupError(f"{tag}: pytest exited {done.returncode}:\n{tail}")
    lines = [line.split() for line in log.read_text().splitlines()]
    merged = [(f[0], f[1], float(f[3])) for f in lines if f[2] == "merged"]
    checked: set[str] = set()
    rechecks = []
    for prp_id, owner, seconds in merged:
        if prp_id != owner:
            continue
        if prp_id in checked:
            rechecks.append(seconds)
        checked.add(prp_id)
    shutil.rmtree(repo, ignore_errors=True)
    return Run(
        wall,
        len(lines),
        len(merged),
        sum(s for _, _, s in merged),
        len(rechecks),
        sum(rechecks),
        sum(1 for prp_id, owner, _ in merged if prp_id != owner),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--quick", action="store_true", help="smaller batches")
    parser.add_argument("--python", default=sys.executable)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[str]:
    warm_bytecode(args.python)
    batches = [
        random_dag("random-A", "91", 30 if args.quick else 40, 1, 0.4, 1.6),
        uneven_dag("uneven", "92", 4 if args.quick else 5, 3, 3.0, 0.4),
    ]
    lines = [
        f"{'batch':<9} {'-n':>3} {'off s':>7} {'own s':>7} {'sib s':>7} {'gates':>11} "
        f"{'merged':>9} {'sib runs':>8} {'bound s':>13} {'/bound':>11} {'sib/own':>7} "
        f"{'rechk':>5} {'ceiling s':>9}  verdict; batching pays?"
    ]
    with tempfile.TemporaryDirectory(prefix="bench-merge-queue-") as tmp:
        for batch in batches:
            for workers in args.workers:
                off = one_run(args.python, Path(tmp), batch, workers, "off")
                own = one_run(args.python, Path(tmp), batch, workers, "own")
                sib = one_run(args.python, Path(tmp), batch, workers, "sib")
                bounds = [off.wall + r.merged_s / workers for r in (own, sib)]
                ratios = [r.wall / b for r, b in zip((own, sib), bounds, strict=True)]
                verdict = "ok" if max(ratios) <= TARGET else f"MISSED (target {TARGET})"
                ceiling = own.wall - own.rechecks_s / workers
                win = 1 - ceiling / own.wall
                pays = f"{'yes' if win >= PAYS else 'no'} (at most {win:.0%})"
                lines.append(
                    f"{batch.name:<9} {workers:>3} {off.wall:>7.2f} {own.wall:>7.2f} "
                    f"{sib.wall:>7.2f} {own.gates:>5}/{sib.gates:<5} "
                    f"{own.merged:>4}/{sib.merged:<4} {sib.siblings:>8} "
                    f"{bounds[0]:>6.2f}/{bounds[1]:<6.2f} {ratios[0]:>5.2f}/{ratios[1]:<5.2f} "
                    f"{sib.wall / own.wall:>7.2f} {own.rechecks:>5} {ceiling:>9.2f}  "
                    f"{verdict}; {pays}"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_merge_queue", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
