"""Benchmark: what checking merges costs (issue 14): merge checks off, own, siblings, batched.

The batches of bench_parallel (random-A, a random layered DAG; uneven, long PRPs hanging off
chains of short ones), with each PRP's duration D split into a step ``sleep 0.75 D`` and a gate
``sleep 0.25 D``: gates take a quarter of each PRP, a realistic share. Every PRP creates a file
of its own, so no merge conflicts: what is measured is the cost of checking. Each row (a batch
at -n N) runs the batch once per mode (``--modes``, default off,own,sib):

  off     the batch whose gates skip their sleep on a merged tree (a merge commit checked
          out, detached). Everything else of a check (merge-tree, checkout, the gate's
          process) still happens, so "off" is the cost without the re-run gates' own time
  own     the batch as it runs by default: a merge that is not a fast-forward runs the PRP's
          gates again on the merged tree (in its worktree, without the merge lock)
  sib     ``--prp-merge-check siblings``: that check also runs the gates of the PRPs merged
          since the PRP's base (its siblings) on the merged tree
  batched ``--prp-merge-batch`` (needs ``--integration-gate``): merges that queue up run the
          integration gate once on the tip of their stack (``--merge-batch`` adds this mode)

With ``--integration-gate S`` the repository also has an integration gate
(``prp_integration_gate``) that sleeps S seconds: one more gate of every PRP (on its own tree)
and of every merge check (once per stack when batched).

  bound   off + (the gate sleeps on merged trees of that mode's run, the integration gate's
          included) / N: the re-run gate time spread over the N workers
  target  every mode <= 1.15 x its bound
  ceiling own - (re-checks' gate sleeps + (int - clust) x S) / N: an estimate of the most that
          batching the merges that queue up could win. A re-check is a PRP's own gate run on
          a merged tree after its first one (the tip moved during its check); a stack checked
          once still runs each PRP's gates on a tree holding it, so only the re-checks and the
          integration gate's runs beyond one per cluster (runs overlapping in time: merges
          that queued up together, which one stack could hold) are there to save. "batching
          pays?" says whether that ceiling is 5% or more of "own"

Each gate run appends one line to a log outside the repository: the PRP whose check ran it
($PRP_ID), the PRP whose gate it is (or INTEGRATION), own or merged tree, its sleep, its start
and end. Gate runs, those on merged trees, the sibling gates and the integration gate's runs
among them, and its clusters come from there. Every run gets a fresh copy of the repository.

  python benchmarks/bench_merge_queue.py [--workers 2 4] [--quick] [--batches random-A uneven]
      [--modes off,own,sib,batched] [--integration-gate S] [--merge-batch]
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
INTEGRATION = "INTEGRATION"  # the integration gate's owner in the log
MODES = ("off", "own", "sib", "batched")
# A merge check runs on a detached HEAD; the PRP's own gates on its branch.
ON_MERGED = "! git symbolic-ref -q HEAD >/dev/null"


def logged_gate(owner: str, seconds: float, log: Path, off: bool) -> list[str]:
    """Shell lines of a gate that sleeps ``seconds`` (not on a merged tree when ``off``) and
    logs who ran it, whose it is, where, and when."""
    sleep = f"{ON_MERGED} || sleep {seconds:.3f}" if off else f"sleep {seconds:.3f}"
    return [
        f"if {ON_MERGED}; then m=merged; else m=own; fi",
        "s=$(date +%s.%N)",
        sleep,
        f'echo "${{PRP_ID:--}} {owner} $m {seconds:.3f} $s $(date +%s.%N)" >> {log}',
    ]


def prp_text(node: Node, log: Path, off: bool) -> str:
    """bench_parallel's PRP, its time split between the step and the gate (GATE_SHARE)."""
    step, gate = node.duration * (1 - GATE_SHARE), node.duration * GATE_SHARE
    lines = logged_gate(node.id, gate, log, off)
    return parallel_prp_text(node, estimates=True, step=f"sleep {step:.3f}", gate=lines)


def build(repo: Path, batch: Batch, log: Path, off: bool, gate_s: float) -> None:
    (repo / "PRPs").mkdir(parents=True)
    for node in batch.nodes:
        (repo / "PRPs" / f"{node.id}.md").write_text(prp_text(node, log, off), encoding="utf-8")
    ini = "[pytest]\n"
    if gate_s:
        command = "; ".join(logged_gate(INTEGRATION, gate_s, log, off))
        ini += f"prp_integration_gate = {command}\n"
    (repo / "pytest.ini").write_text(ini, encoding="utf-8")
    (repo / ".gitignore").write_text(".ce/\n", encoding="utf-8")
    commit_fixture(repo)


@dataclass(frozen=True)
class Run:
    wall: float
    gates: int  # the PRPs' gate runs
    merged: int  # of them on merged trees
    merged_s: float  # their gate sleeps
    siblings: int  # of the runs on merged trees, another PRP's gate (--prp-merge-check)
    rechecks: int  # a PRP's own gate on a merged tree after its first run there
    rechecks_s: float
    int_merged: int  # the integration gate's runs on merged trees
    int_clusters: int  # of them, groups overlapping in time


@dataclass(frozen=True)
class GateRun:
    """One line of the log."""

    by: str  # the PRP whose check ran it
    owner: str  # the PRP whose gate it is, or INTEGRATION
    merged: bool
    seconds: float
    start: float
    end: float


def read_log(log: Path) -> list[GateRun]:
    runs = []
    for line in log.read_text().splitlines():
        by, owner, where, seconds, start, end = line.split()
        runs.append(GateRun(by, owner, where == "merged", float(seconds), float(start), float(end)))
    return runs


def clusters(spans: Sequence[tuple[float, float]]) -> int:
    """How many groups ``spans`` (start, end) form, a span joining a group when it starts
    before the group's last end: merges that queued up while another's check ran."""
    count, end = 0, float("-inf")
    for start, stop in sorted(spans):
        if start >= end:
            count += 1
        end = max(end, stop) if start < end else stop
    return count


def summarize(wall: float, runs: Sequence[GateRun]) -> Run:
    own_gates = [r for r in runs if r.owner != INTEGRATION]
    merged = [r for r in own_gates if r.merged]
    spans = [(r.start, r.end) for r in runs if r.owner == INTEGRATION and r.merged]
    checked: set[str] = set()
    rechecks = []
    for r in merged:
        if r.by != r.owner:
            continue
        if r.by in checked:
            rechecks.append(r.seconds)
        checked.add(r.by)
    return Run(
        wall,
        len(own_gates),
        len(merged),
        sum(r.seconds for r in merged),
        sum(1 for r in merged if r.by != r.owner),
        len(rechecks),
        sum(rechecks),
        len(spans),
        clusters(spans),
    )


def one_run(python: str, work: Path, batch: Batch, workers: int, mode: str, gate_s: float) -> Run:
    tag = f"{batch.name}-{workers}-{mode}"
    repo, log = work / tag, work / f"{tag}.log"
    build(repo, batch, log, mode == "off", gate_s)
    command = [python, "-m", "pytest", "PRPs/", "-q", "-p", "no:cacheprovider"]
    command += ["--prp-batch", batch.batch_id, "-n", str(workers)]
    if mode == "sib":
        command += ["--prp-merge-check", "siblings"]
    if mode == "batched":
        command.append("--prp-merge-batch")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=clean_env())
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-20:])
        raise SetupError(f"{tag}: pytest exited {done.returncode}:\n{tail}")
    runs = read_log(log)
    shutil.rmtree(repo, ignore_errors=True)
    return summarize(wall, runs)


def modes_of(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {','.join(MODES)}")
    return modes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--quick", action="store_true", help="smaller batches")
    parser.add_argument(
        "--batches", nargs="+", choices=["random-A", "uneven"], default=["random-A", "uneven"]
    )
    parser.add_argument(
        "--modes", type=modes_of, default=["off", "own", "sib"],
        help=f"comma-separated, of {','.join(MODES)} (default off,own,sib)",
    )  # fmt: skip
    parser.add_argument(
        "--integration-gate", type=float, default=0.0, metavar="S",
        help="an integration gate sleeping S seconds",
    )  # fmt: skip
    parser.add_argument("--merge-batch", action="store_true", help="add the mode batched")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    if args.merge_batch and "batched" not in args.modes:
        args.modes = [*args.modes, "batched"]
    if "batched" in args.modes and not args.integration_gate:
        parser.error("batched needs --integration-gate S (batching runs that gate once a stack)")
    return args


HEAD = (
    f"{'batch':<9} {'-n':>3} {'mode':<7} {'wall s':>7} {'gates':>5} {'merged':>6} "
    f"{'merged s':>8} {'sib':>4} {'rechk':>5} {'rechk s':>7} {'int':>4} {'clust':>5} "
    f"{'bound s':>7} {'/bound':>6}"
)


def row(name: str, workers: int, mode: str, r: Run, bound: float | None) -> str:
    line = (
        f"{name:<9} {workers:>3} {mode:<7} {r.wall:>7.2f} {r.gates:>5} {r.merged:>6} "
        f"{r.merged_s:>8.2f} {r.siblings:>4} {r.rechecks:>5} {r.rechecks_s:>7.2f} "
        f"{r.int_merged:>4} {r.int_clusters:>5}"
    )
    if bound is not None:
        line += f" {bound:>7.2f} {r.wall / bound:>6.2f}"
    return line


def verdict(runs: dict[str, Run], bounds: dict[str, float], workers: int, gate_s: float) -> str:
    """The row's verdict: the target against each bound, what batching could win (from own),
    and the modes' makespans next to own's."""
    parts = []
    ratios = {m: runs[m].wall / b for m, b in bounds.items()}
    if ratios:
        worst = max(ratios.values())
        parts.append("ok" if worst <= TARGET else f"MISSED (target {TARGET})")
    own = runs.get("own")
    if own is not None:
        saved = own.rechecks_s + (own.int_merged - own.int_clusters) * gate_s
        ceiling = own.wall - saved / workers
        win = 1 - ceiling / own.wall
        parts.append(
            f"batching pays? {'yes' if win >= PAYS else 'no'} "
            f"(ceiling {ceiling:.2f} s, at most {win:.0%})"
        )
        parts += [f"{m}/own {runs[m].wall / own.wall:.2f}" for m in ("sib", "batched") if m in runs]
    return "; ".join(parts)


def run(args: argparse.Namespace) -> list[str]:
    warm_bytecode(args.python)
    batches = [
        random_dag("random-A", "91", 30 if args.quick else 40, 1, 0.4, 1.6),
        uneven_dag("uneven", "92", 4 if args.quick else 5, 3, 3.0, 0.4),
    ]
    gate_s = args.integration_gate
    lines = [HEAD]
    with tempfile.TemporaryDirectory(prefix="bench-merge-queue-") as tmp:
        for batch in batches:
            if batch.name not in args.batches:
                continue
            for workers in args.workers:
                runs = {
                    mode: one_run(args.python, Path(tmp), batch, workers, mode, gate_s)
                    for mode in args.modes
                }
                off = runs.get("off")
                bounds = {
                    mode: off.wall + (r.merged_s + r.int_merged * gate_s) / workers
                    for mode, r in runs.items()
                    if off is not None and mode != "off"
                }
                for mode, r in runs.items():
                    lines.append(row(batch.name, workers, mode, r, bounds.get(mode)))
                said = verdict(runs, bounds, workers, gate_s)
                lines.append(f"{batch.name:<9} {workers:>3} verdict: {said}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_merge_queue", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
