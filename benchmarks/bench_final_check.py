"""Benchmark: the final check (``--prp-final-check``) on 1 slot vs spread over N slots.

A batch of bench_parallel's random layered DAG (30 PRPs by default) is run once for real
(``pytest --prp-batch 81 -n 2``, steps that take no time): its integration branch holds one merge
commit per PRP, as a run under -n leaves it. Then the final check runs on that branch, in this
process, as ``final_check_run`` runs it (the same gate runner: bash, the PRP_* environment, the
log, ``Limits``; the same worktrees): first on 1 slot (the baseline, what a serial run gets),
then on each N of ``--slots``, taking turns for ``--repeat`` rounds (every other round in
reverse order); the best wall time of each is kept, and every round of N slots must report
the same (culprit, gate and bisection counts) or the benchmark fails.

Realistic gates: each PRP's gate sleeps its duration (0.3-1.2 s, seeded) in the final check
only (``BENCH_FINAL`` is set in this process, which the gates inherit; the batch's own run
skips the sleep). One sibling breaks another's gate: the first PRP's gate checks
``settings.txt`` says ``mode=safe``, a later PRP that does not depend on it writes
``mode=fast`` (an unrelated one: not superseded), so every row also bisects one failure.

  speedup  1-slot time / N-slot time
  ideal    1-slot time / N (no bisection round waits for another, nothing but gates)
  target   speedup >= 0.7 x N (sleep gates need no CPU: the slots, not the cores, bound it)

  python benchmarks/bench_final_check.py [--count 30] [--slots 2 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from _harness import SetupError, clean_env, commit_fixture, run_main, warm_bytecode
from bench_parallel import Batch, random_dag
from bench_parallel import prp_text as parallel_prp_text

if TYPE_CHECKING:
    from pytest_prp.workspace.final_check import FinalCheckOutcome, MergedPrp

BATCH = "81"
TARGET = 0.7  # of N: the speedup N slots must reach


def descendants(batch: Batch, root: str) -> set[str]:
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in batch.nodes:
            if node.id not in found and (root in node.deps or found & set(node.deps)):
                found.add(node.id)
                changed = True
    return found


def build(repo: Path, batch: Batch) -> tuple[str, str]:
    """The batch's PRP files and a committed ``settings.txt``; the watcher's and the breaker's
    ids."""
    watcher = batch.nodes[0].id
    unrelated = [n for n in batch.nodes[1:] if n.id not in descendants(batch, watcher)]
    if not unrelated:
        raise SetupError("every PRP depends on the first one: no sibling to break its gate")
    breaker = unrelated[len(unrelated) // 2].id
    final = 'if [ -n "${BENCH_FINAL:-}" ]; then'
    (repo / "PRPs").mkdir(parents=True)
    for node in batch.nodes:
        gate = [f"{final} sleep {node.duration:.2f}; fi"]
        if node.id == watcher:
            gate.append(f"{final} grep -qx mode=safe settings.txt; fi")
        step = "echo mode=fast > settings.txt" if node.id == breaker else "true"
        text = parallel_prp_text(node, estimates=False, step=step, gate=gate)
        (repo / "PRPs" / f"{node.id}.md").write_text(text, encoding="utf-8")
    (repo / "settings.txt").write_text("mode=safe\n", encoding="utf-8")
    (repo / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (repo / ".gitignore").write_text(".ce/\n", encoding="utf-8")
    commit_fixture(repo)
    return watcher, breaker


def run_batch(python: str, repo: Path) -> dict[str, Any]:
    command = [python, "-m", "pytest", "PRPs/", "-q", "-p", "no:cacheprovider"]
    command += ["--prp-batch", BATCH, "-n", "2"]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=clean_env())
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-20:])
        raise SetupError(f"the batch run exited {done.returncode}:\n{tail}")
    path = repo / ".ce/orchestration/batches" / f"batch-{BATCH}.result.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def merged_prps(repo: Path, doc: dict[str, Any]) -> tuple[list[MergedPrp], dict[str, list[str]]]:
    """What ``FinalCheck.merged`` finds: each merged PRP's shell gates, read from its file."""
    from pytest_prp.spec.body_cache import body_of
    from pytest_prp.spec.frontmatter import load_prp
    from pytest_prp.spec.model import GATE_SHELL
    from pytest_prp.workspace.final_check import MergedPrp

    merged: list[MergedPrp] = []
    graph: dict[str, list[str]] = {}
    for stage in doc["stages"].values():
        for prp_id, entry in stage.items():
            graph[prp_id] = list(entry.get("dependencies") or [])
            prp = load_prp(repo / "PRPs" / f"{prp_id}.md").prp
            if prp is None or entry.get("status") != "success":
                raise SetupError(f"{prp_id} did not merge: {entry.get('status')}")
            gates = tuple(g for g in body_of(prp).executable_gates if g.kind == GATE_SHELL)
            merged.append(MergedPrp(prp_id, str(entry["merged_commit"]), gates))
    return merged, graph


def check_once(
    repo: Path, doc: dict[str, Any], merged: list[MergedPrp], graph: dict[str, list[str]], n: int
) -> tuple[float, FinalCheckOutcome]:
    from pytest_prp.final_check_run import _gate_runner
    from pytest_prp.plan.settings import Settings
    from pytest_prp.supervise.output import LogSink
    from pytest_prp.workspace.final_check import run_final_check
    from pytest_prp.workspace.repository import Repository

    settings = cast(Settings, SimpleNamespace(gate_timeout=600.0))
    records = {prp_id: {"batch": BATCH} for prp_id in graph}
    git = Repository.open(repo)
    with LogSink(repo / ".ce" / f"final-check-{n}.log") as log:
        run_gate = _gate_runner(settings, records, log, n > 1)
        start = time.perf_counter()
        outcome = run_final_check(git, doc["integration_branch"], merged, graph, run_gate, n)
        wall = time.perf_counter() - start
    if outcome.error is not None:
        raise SetupError(f"the final check on {n} slots could not run: {outcome.error}")
    return wall, outcome


def _same(outcome: FinalCheckOutcome) -> dict[str, object]:
    """The report but its time: what must not change from one round to the next."""
    return {k: v for k, v in outcome.as_json().items() if k != "seconds"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30, help="PRPs in the batch")
    parser.add_argument("--slots", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best time is kept")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[str]:
    warm_bytecode(args.python)
    os.environ.pop("PYTEST_ADDOPTS", None)
    batch = random_dag(f"random-{args.count}", BATCH, args.count, args.seed, 0.3, 1.2)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-final-check-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        watcher, breaker = build(repo, batch)
        doc = run_batch(args.python, repo)
        merged, graph = merged_prps(repo, doc)
        os.environ["BENCH_FINAL"] = "1"
        slots = [1, *args.slots]
        best: dict[int, tuple[float, FinalCheckOutcome]] = {}
        for round_ in range(args.repeat):
            for n in slots if round_ % 2 == 0 else list(reversed(slots)):
                wall, outcome = check_once(repo, doc, merged, graph, n)
                [failure] = outcome.failures
                if (failure.prp_id, failure.broken_by) != (watcher, breaker):
                    raise SetupError(f"{n} slots: unexpected culprit {failure.as_json()}")
                if n in best and _same(best[n][1]) != _same(outcome):
                    raise SetupError(f"{n} slots: two rounds reported differently")
                if n not in best or wall < best[n][0]:
                    best[n] = (wall, outcome)
    load_after = os.getloadavg()
    gate_s = sum(node.duration for node in batch.nodes)
    serial = best[1][0]
    lines = [
        f"batch {batch.name}: {len(batch.nodes)} PRPs, gate sleeps {gate_s:.1f} s in all, "
        f"{len(batch.nodes) - 1} merges after the first; {watcher}'s gate broken by {breaker}",
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"({os.cpu_count()} cores); best of {args.repeat}",
        "",
        f"{'slots':>5} {'wall s':>7} {'gates':>6} {'bisect':>6} {'speedup':>8} {'ideal s':>8}"
        f"  verdict",
    ]
    for n in slots:
        wall, outcome = best[n]
        speedup = serial / wall
        verdict = "baseline" if n == 1 else ("ok" if speedup >= TARGET * n else "MISSED")
        lines.append(
            f"{n:>5} {wall:>7.2f} {outcome.gates_run:>6} {outcome.bisect_runs:>6} "
            f"{speedup:>7.2f}x {serial / n:>8.2f}  {verdict}"
        )
    missed = [n for n in args.slots if serial / best[n][0] < TARGET * n]
    lines.append("")
    lines.append(
        f"target missed (speedup >= {TARGET} x N) for {missed}"
        if missed
        else f"target met (speedup >= {TARGET} x N)"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_final_check", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
