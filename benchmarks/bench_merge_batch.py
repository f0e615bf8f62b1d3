"""Benchmark: what checking merges costs (issue 14), merge checks on vs off.

The batches of bench_parallel (random-A, a random layered DAG; uneven, long PRPs hanging off
chains of short ones), with each PRP's duration D split into a step ``sleep 0.75 D`` and a gate
``sleep 0.25 D``: gates take a quarter of each PRP, a realistic share. Every PRP creates a file
of its own, so no merge conflicts: what is measured is the cost of checking.

  on    the batch as it runs: a merge that is not a fast-forward runs the PRP's gate again on
        the merged tree (in its worktree, without the merge lock)
  off   the same batch whose gate skips its sleep on a merged tree (a merge commit checked
        out, detached). Everything else of a check (merge-tree, checkout, the gate's
        process) still happens, so "off" is the cost without the re-run gates' own time
  bound off + (sum of the re-run gates' sleeps in the "on" run) / N: the re-run gate time
        spread over the N workers
  target on <= 1.15 x bound
  ceiling on - (the re-checks' gate sleeps) / N: the most that batching the merges that
        queue up could win. A re-check is a gate run on a merged tree after the PRP's first
        one (the tip moved during its check); a stack checked once still runs each PRP's
        gates on a tree holding it, so only the re-checks (and, with an integration gate,
        its duplicate runs) are there to save. "batching pays?" says whether that ceiling is
        5% or more of "on"

With ``--integration-gate S`` the repository also has an integration gate
(``prp_integration_gate``) that sleeps S seconds: it runs as one more gate of every PRP (on its
own tree) and in every merge check. Batching could run it once per stack of merges that queue
up instead of once per merging PRP, so the report adds:

  int   the integration gate's runs on merged trees ("on" run), and how many clusters they form
        (runs overlapping in time: merges that queued up together, which one stack could hold)
  int ceiling  on - (int runs - clusters) x S / N - (re-checks' own gate sleeps) / N: the most
        batching could win with that gate (an upper bound: a stack may hold fewer, and its
        bisect probes on a failure cost more)

With ``--merge-batch`` a third run per row, "batched", runs the batch with
``--prp-merge-batch``: what batching actually wins, next to the ceiling.

Each gate run appends a line to a log outside the repository: the number of gate runs, and of
them on merged trees, come from there. Every run gets a fresh copy of the repository.

  python benchmarks/bench_merge_queue.py [--workers 2 4] [--quick] [--integration-gate S]
      [--merge-batch]
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
INTEGRATION = "INTEGRATION"  # the integration gate's lines in the log


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
        f'echo "{node.id} $m {gate:.3f}" >> {log}',
    ]
    return parallel_prp_text(node, estimates=True, step=f"sleep {step:.3f}", gate=lines)


def integration_gate(log: Path, seconds: float, off: bool) -> str:
    """The integration gate's command: sleeps ``seconds`` (not on a merged tree when ``off``)
    and logs where it ran, with its start and end times (the clusters of the report)."""
    merged = "! git symbolic-ref -q HEAD >/dev/null"
    sleep = f"{merged} || sleep {seconds:.3f}" if off else f"sleep {seconds:.3f}"
    return (
        f"if {merged}; then m=merged; else m=own; fi; s=$(date +%s.%N); {sleep}; "
        f'echo "{INTEGRATION} $m {seconds:.3f} $s $(date +%s.%N)" >> {log}'
    )


def build(repo: Path, batch: Batch, log: Path, off: bool, gate_s: float) -> None:
    (repo / "PRPs").mkdir(parents=True)
    for node in batch.nodes:
        (repo / "PRPs" / f"{node.id}.md").write_text(prp_text(node, log, off), encoding="utf-8")
    ini = "[pytest]\n"
    if gate_s:
        ini += f"prp_integration_gate = {integration_gate(log, gate_s, off)}\n"
    (repo / "pytest.ini").write_text(ini, encoding="utf-8")
    (repo / ".gitignore").write_text(".ce/\n", encoding="utf-8")
    commit_fixture(repo)


@dataclass(frozen=True)
class Run:
    wall: float
    gates: int  # gate runs
    merged: int  # of them on merged trees
    merged_s: float  # their gate sleeps
    rechecks: int  # of those, after the PRP's first run on a merged tree
    rechecks_s: float
    int_merged: int = 0  # integration gate runs on merged trees
    int_clusters: int = 0  # of them, groups overlapping in time


def clusters(spans: Sequence[tuple[float, float]]) -> int:
    """How many groups ``spans`` (start, end) form, a span joining a group when it starts
    before the group's last end: merges that queued up while another's check ran."""
    count, end = 0, float("-inf")
    for start, stop in sorted(spans):
        if start >= end:
            count += 1
        end = max(end, stop) if start < end else stop
    return count


def one_run(
    python: str, work: Path, batch: Batch, workers: int, mode: str, gate_s: float
) -> Run:
    tag = f"{batch.name}-{workers}-{mode}"
    repo, log = work / tag, work / f"{tag}.log"
    build(repo, batch, log, mode == "off", gate_s)
    command = [python, "-m", "pytest", "PRPs/", "-q", "-p", "no:cacheprovider"]
    command += ["--prp-batch", batch.batch_id, "-n", str(workers)]
    if mode == "batched":
        command.append("--prp-merge-batch")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=clean_env())
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-20:])
        raise SetupError(f"{tag}: pytest exited {done.returncode}:\n{tail}")
    every = [line.split() for line in log.read_text().splitlines()]
    lines = [f for f in every if f[0] != INTEGRATION]
    spans = [(float(f[3]), float(f[4])) for f in every if f[0] == INTEGRATION and f[1] == "merged"]
    merged = [(f[0], float(f[2])) for f in lines if f[1] == "merged"]
    checked: set[str] = set()
    rechecks = []
    for prp_id, seconds in merged:
        if prp_id in checked:
            rechecks.append(seconds)
        checked.add(prp_id)
    shutil.rmtree(repo, ignore_errors=True)
    return Run(
        wall,
        len(lines),
        len(merged),
        sum(s for _, s in merged),
        len(rechecks),
        sum(rechecks),
        len(spans),
        clusters(spans),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--quick", action="store_true", help="smaller batches")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--integration-gate", type=float, default=0.0, metavar="S",
        help="an integration gate sleeping S seconds",
    )  # fmt: skip
    parser.add_argument("--merge-batch", action="store_true", help="a run with --prp-merge-batch")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[str]:
    warm_bytecode(args.python)
    batches = [
        random_dag("random-A", "91", 30 if args.quick else 40, 1, 0.4, 1.6),
        uneven_dag("uneven", "92", 4 if args.quick else 5, 3, 3.0, 0.4),
    ]
    gate_s = args.integration_gate
    head = (
        f"{'batch':<9} {'-n':>3} {'off s':>7} {'on s':>7} {'gates':>6} {'merged':>6} "
        f"{'re-run s':>8} {'bound s':>8} {'on/bound':>8} {'rechk':>5} {'rechk s':>7} "
        f"{'ceiling s':>9}"
    )
    if gate_s:
        head += f" {'int':>4} {'clust':>5}"
    if args.merge_batch:
        head += f" {'batched s':>9} {'b int':>5}"
    lines = [head + "  verdict; batching pays?"]
    with tempfile.TemporaryDirectory(prefix="bench-merge-queue-") as tmp:
        for batch in batches:
            for workers in args.workers:
                off = one_run(args.python, Path(tmp), batch, workers, "off", gate_s)
                on = one_run(args.python, Path(tmp), batch, workers, "on", gate_s)
                int_s = on.int_merged * gate_s
                bound = off.wall + (on.merged_s + int_s) / workers
                ratio = on.wall / bound
                verdict = "ok" if ratio <= TARGET else f"MISSED (target {TARGET})"
                saved = on.rechecks_s + (on.int_merged - on.int_clusters) * gate_s
                ceiling = on.wall - saved / workers
                win = 1 - ceiling / on.wall
                pays = f"{'yes' if win >= PAYS else 'no'} (at most {win:.0%})"
                line = (
                    f"{batch.name:<9} {workers:>3} {off.wall:>7.2f} {on.wall:>7.2f} "
                    f"{on.gates:>6} {on.merged:>6} {on.merged_s + int_s:>8.2f} {bound:>8.2f} "
                    f"{ratio:>8.2f} {on.rechecks:>5} {on.rechecks_s:>7.2f} {ceiling:>9.2f}"
                )
                if gate_s:
                    line += f" {on.int_merged:>4} {on.int_clusters:>5}"
                if args.merge_batch:
                    batched = one_run(args.python, Path(tmp), batch, workers, "batched", gate_s)
                    line += f" {batched.wall:>9.2f} {batched.int_merged:>5}"
                    pays += f", batched/on {batched.wall / on.wall:.2f}"
                lines.append(f"{line}  {verdict}; {pays}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_merge_queue", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
