"""Benchmark: makespan of parallel PRP batches (``pytest -n N``) against their lower bounds.

Builds one throw-away git repository holding synthetic batches whose PRPs do known work: each
PRP creates one file (**Create**), runs ``sleep D`` as its one shell step and checks the file in
its one gate, so a PRP costs D plus pytest-prp's per-PRP overhead. Durations are seeded and
rounded to 0.05 s; ``estimated_hours`` is set to D (the scheduler's longest-chain-first order
then knows the real durations; ``--no-estimates`` drops it, and it counts PRPs instead).

  random-A, random-B  random layered DAGs of 40 and 50 PRPs (--quick: one of 30) in 5-8
                      layers; each PRP needs 1-3 PRPs of the previous layer, sometimes one
                      more from an earlier one; D uniform in 0.2-1.5 s
  uneven              5 stages (--quick: 4), each one long PRP (D = --long) and three short
                      ones (0.2 s); the short PRPs chain from stage to stage, the long ones
                      hang off them and nothing needs them: a stage-by-stage executor waits
                      for every long PRP. Three short ones leave room to be clearly faster
                      at -n 2 as well (LB / stage-by-stage = 0.65 there; with seven it was
                      0.85, so "clearly faster" could not be reached at -n 2)
  trivial             20 independent PRPs with ``sleep 0``, run twice at -n 1 only (the
                      faster run counts): the per-PRP overhead

Every run gets a fresh copy of the repository. Per batch B, first o (below), then for each N
of --workers (default 1, 2, 4, 8), one after the other:

  start-up(N)  ``pytest PRPs/ --prp-batch B -n N -k <matches nothing>``: the interpreter, N
               xdist workers started, each collecting and planning the PRP files, then shut
               down; no PRP runs (exit status 5). Best of two runs.
  run(N)       ``pytest PRPs/ --prp-batch B -n N``: the batch end to end; every PRP must
               succeed.

  makespan      run(N) - start-up(N)
  overhead o    (run of the trivial batch at -n 1, best of two - start-up(1)) / 20, measured
                right before B's runs: what one PRP costs beyond its sleep (worktree, bash,
                commit, merge, report, dispatch). Every baseline is taken next to what it is
                the baseline of: the development VM's speed drifts by up to 2x over minutes
  CPU           user + system time of the pytest run and all its processes (getrusage of
                children); CPU/PRP = (CPU of the run - CPU of start-up(N)) / PRPs
  lower bound   LB = max(CP, W / N): CP the longest path of durations, W their sum
  target        makespan <= 1.10 x LB + o x k, where k = PRPs on the critical path when CP is
                the larger bound, else PRPs / N
  pair bound    of the N + 1 longest PRPs two share a worker: any schedule needs at least
                the N-th plus the (N + 1)-th longest D (+ 2o); above the target, no executor
                can meet it ("unreach", counted apart)
  stage-by-stage  sum over stages of the stage's makespan, the stage's PRPs list-scheduled
                (longest first) on N workers; printed with durations D and with D + o
  simulated     a dependency-aware list schedule (longest remaining chain first, as
                pytest-prp's scheduler) of D + o on N workers: what the policy gives with
                perfect dispatch and no CPU contention
  clearly faster  on the uneven batch, for N >= 2: makespan <= 0.85 x the stage-by-stage
                makespan with the same per-PRP overhead (D + o)

From the heartbeat files (``.ce/orchestration/heartbeats/<batch>/*.json``: started_at,
updated_at when done, worker) each run also gets: the span from the first PRP start to the last
finish, worker utilisation, the mean time a PRP took beyond its sleep, the worker-seconds a
worker sat idle while a PRP was ready ("idle while ready"), and the median turnaround between
one PRP's end and the next start on the same worker when that next PRP was already ready.
A missed run gets "why" lines: makespan = span + (time outside the PRPs - start-up(N)), and
the span's excess over LB set against the per-PRP time, idleness and CPU of that run.

The machine's core count matters: sleeping steps use no CPU, but starting workers and the
per-PRP git and Python work do, so on 2 cores -n 8 pays for it.

Run:  .venv/bin/python benchmarks/bench_parallel.py            (about 4 minutes on 2 cores)
      .venv/bin/python benchmarks/bench_parallel.py --quick    (about 2 minutes)
      .venv/bin/python benchmarks/bench_parallel.py --quick --scale 0.3 --workers 2   (smoke)

Exit status 0 whether the targets are met or not; 1 when the setup or a run fails.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import random
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from _harness import SetupError, clean_env, commit_fixture, run_main, warm_bytecode

SLACK = 1.10  # measured <= SLACK x lower bound + overhead term
CLEARLY = 0.85  # "clearly faster": at most 85% of the stage-by-stage makespan
TRIVIAL_COUNT = 20
SHORT = 0.2


def _env() -> dict[str, str]:
    # xdist's worker count too: -n is what each run asks for.
    return clean_env("PYTEST_XDIST_AUTO_NUM_WORKERS")


# --- synthetic batches -------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    id: str
    deps: tuple[str, ...]
    duration: float
    stage: int


@dataclass
class Batch:
    name: str
    batch_id: str
    nodes: list[Node]

    @property
    def work(self) -> float:
        return sum(n.duration for n in self.nodes)

    @property
    def stages(self) -> int:
        return max(n.stage for n in self.nodes)


def _seconds(value: float) -> float:
    return round(value * 20) / 20  # 0.05 s steps


def random_dag(name: str, batch_id: str, count: int, seed: int, lo: float, hi: float) -> Batch:
    """Layers of PRPs; each needs 1-3 of the previous layer, sometimes one of an earlier one."""
    rng = random.Random(seed)
    layers = rng.randint(5, 8)
    sizes = [1] * layers
    for _ in range(count - layers):
        sizes[rng.randrange(layers)] += 1
    nodes: list[Node] = []
    by_layer: list[list[Node]] = []
    for layer, size in enumerate(sizes):
        current: list[Node] = []
        for k in range(1, size + 1):
            deps: set[str] = set()
            if layer > 0:
                previous = by_layer[layer - 1]
                deps.update(
                    n.id for n in rng.sample(previous, min(len(previous), rng.randint(1, 3)))
                )
                if layer > 1 and rng.random() < 0.3:
                    deps.add(rng.choice(by_layer[rng.randrange(layer - 1)]).id)
            node = Node(
                f"PRP-{batch_id}.{layer + 1}.{k}",
                tuple(sorted(deps)),
                _seconds(rng.uniform(lo, hi)),
                layer + 1,
            )
            current.append(node)
        by_layer.append(current)
        nodes += current
    return Batch(name, batch_id, nodes)


def uneven_dag(
    name: str, batch_id: str, stages: int, shorts: int, long: float, short: float = SHORT
) -> Batch:
    """Per stage one long PRP and ``shorts`` short ones; short k of stage s needs short k of
    stage s - 1, the long one needs short 1 of stage s - 1, nothing needs a long one."""

    def short_id(s: int, k: int) -> str:
        return f"PRP-{batch_id}.{s}.{k + 1}"

    nodes: list[Node] = []
    for stage in range(1, stages + 1):
        before = (short_id(stage - 1, 1),) if stage > 1 else ()
        nodes.append(Node(f"PRP-{batch_id}.{stage}.1", before, long, stage))
        for k in range(1, shorts + 1):
            deps = (short_id(stage - 1, k),) if stage > 1 else ()
            nodes.append(Node(short_id(stage, k), deps, short, stage))
    return Batch(name, batch_id, nodes)


def trivial_batch(name: str, batch_id: str, count: int) -> Batch:
    return Batch(
        name, batch_id, [Node(f"PRP-{batch_id}.1.{k}", (), 0.0, 1) for k in range(1, count + 1)]
    )


# --- bounds and model schedules ----------------------------------------------------------------


def critical_path(batch: Batch, extra: float = 0.0) -> tuple[float, int]:
    """Longest path of durations (each + ``extra``) and the number of PRPs on it."""
    best: dict[str, tuple[float, int]] = {}
    for node in sorted(batch.nodes, key=lambda n: n.stage):  # dependencies come first
        before = max((best[d] for d in node.deps), default=(0.0, 0))
        best[node.id] = (before[0] + node.duration + extra, before[1] + 1)
    return max(best.values())


def list_schedule(durations: Sequence[float], workers: int) -> float:
    """Longest-first list scheduling of independent jobs on ``workers`` machines."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads)


def stage_by_stage(batch: Batch, workers: int, extra: float = 0.0) -> float:
    return sum(
        list_schedule([n.duration + extra for n in batch.nodes if n.stage == s], workers)
        for s in range(1, batch.stages + 1)
    )


def pair_bound(batch: Batch, workers: int, extra: float = 0.0) -> float:
    """A second lower bound on any schedule: of the N + 1 longest PRPs two share a worker, so
    the makespan is at least the N-th plus the (N + 1)-th longest duration (each + ``extra``).
    Where it exceeds the target, no executor can meet the target."""
    longest = sorted((n.duration for n in batch.nodes), reverse=True)
    if len(longest) <= workers:
        return 0.0
    return longest[workers - 1] + longest[workers] + 2 * extra


def simulate(batch: Batch, workers: int, extra: float) -> float:
    """Dependency-aware list scheduling, longest remaining chain first (durations + extra)."""
    by_id = {n.id: n for n in batch.nodes}
    dependents: dict[str, list[str]] = {n.id: [] for n in batch.nodes}
    for n in batch.nodes:
        for d in n.deps:
            dependents[d].append(n.id)
    chain: dict[str, float] = {}
    for n in sorted(batch.nodes, key=lambda n: -n.stage):
        chain[n.id] = n.duration + max((chain[d] for d in dependents[n.id]), default=0.0)
    missing = {n.id: len(n.deps) for n in batch.nodes}
    ready = [(-chain[i], i) for i, m in missing.items() if m == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, pid = heapq.heappop(ready)
            heapq.heappush(running, (now + by_id[pid].duration + extra, pid))
        now, done = heapq.heappop(running)
        for nxt in dependents[done]:
            missing[nxt] -= 1
            if missing[nxt] == 0:
                heapq.heappush(ready, (-chain[nxt], nxt))
    return now


# --- the repository ----------------------------------------------------------------------------


def prp_text(
    node: Node, estimates: bool, step: str | None = None, gate: Sequence[str] = ()
) -> str:
    """A PRP that creates ``out/<name>.txt`` and works ``step`` (default: sleeps its duration);
    its gate checks the file, then runs the ``gate`` lines (bench_merge_queue's share)."""
    name = node.id.removeprefix("PRP-").replace(".", "_")
    lines = [
        "---",
        f"prp_id: {node.id}",
        f"title: Sleep {node.duration:g} s",
        f"dependencies: [{', '.join(node.deps)}]",
    ]
    if estimates:
        lines.append(f"estimated_hours: {node.duration:g}")
    lines += [
        "---",
        "",
        f"# {node.id}: Sleep {node.duration:g} s",
        "",
        "## Implementation Steps",
        "",
        f"### Step 1: create out/{name}.txt",
        "",
        f"**Create**: `out/{name}.txt`",
        "```text",
        node.id,
        "```",
        "",
        "### Step 2: work",
        "",
        "```bash",
        step if step is not None else f"sleep {node.duration:g}",
        "```",
        "",
        "## Validation Gates",
        "",
        "### Gate 1: the file is there",
        "",
        "```bash",
        f"test -f out/{name}.txt",
        *gate,
        "```",
        "",
    ]
    return "\n".join(lines)


def build_template(repo: Path, batches: Sequence[Batch], estimates: bool) -> None:
    (repo / "PRPs").mkdir(parents=True)
    for batch in batches:
        for node in batch.nodes:
            path = repo / "PRPs" / f"{node.id}.md"
            path.write_text(prp_text(node, estimates), encoding="utf-8")
    (repo / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (repo / ".gitignore").write_text(".ce/\n", encoding="utf-8")
    (repo / "README.md").write_text("benchmark fixture\n", encoding="utf-8")
    commit_fixture(repo)


# --- pytest runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    wall: float
    launch: float  # time.time() at launch, to place the heartbeats
    cpu: float  # user + system time of pytest and everything it ran


def _wall(timed: Timed) -> float:
    return timed.wall


def _children_cpu() -> float:
    """CPU time of the waited-for child processes (and theirs): the pytest run's whole cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runner:
    def __init__(self, python: str, template: Path, workdir: Path) -> None:
        self.python = python
        self.template = template
        self.workdir = workdir
        self.count = 0

    def fresh(self) -> Path:
        self.count += 1
        repo = self.workdir / f"run-{self.count}"
        shutil.copytree(self.template, repo, symlinks=True)
        return repo

    def pytest(self, repo: Path, args: Sequence[str], expect: int) -> Timed:
        """Wall time, launch time and CPU time (all processes) of one pytest run in ``repo``."""
        command = [self.python, "-m", "pytest", "PRPs/", "-q", "-p", "no:cacheprovider", *args]
        before = _children_cpu()
        launch = time.time()
        start = time.perf_counter()
        done = subprocess.run(
            command, cwd=repo, capture_output=True, text=True, env=_env(), check=False
        )
        wall = time.perf_counter() - start
        cpu = _children_cpu() - before
        if done.returncode != expect:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            raise SetupError(
                f"{shlex.join(command)} exited {done.returncode} (expected {expect}):\n{tail}"
            )
        return Timed(wall, launch, cpu)

    def startup(self, batch: Batch, workers: int, repeat: int = 2) -> Timed:
        repo = self.fresh()
        try:
            args = [
                "--prp-batch",
                batch.batch_id,
                "-n",
                str(workers),
                "-k",
                "bench_selects_nothing",
            ]
            return min((self.pytest(repo, args, expect=5) for _ in range(repeat)), key=_wall)
        finally:
            shutil.rmtree(repo, ignore_errors=True)

    def batch_run(self, batch: Batch, workers: int) -> Run:
        repo = self.fresh()
        try:
            args = ["--prp-batch", batch.batch_id, "-n", str(workers)]
            timed = self.pytest(repo, args, expect=0)
            check_results(repo, batch)
            spans = read_spans(repo, batch)
            return Run(batch.name, workers, timed.wall, timed.launch, timed.cpu, spans)
        finally:
            shutil.rmtree(repo, ignore_errors=True)


def check_results(repo: Path, batch: Batch) -> None:
    path = repo / ".ce/orchestration/batches" / f"batch-{batch.batch_id}.result.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SetupError(f"{batch.name}: cannot read {path}: {exc}") from None
    entries = {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}
    statuses = {e["status"] for e in entries.values()}
    if len(entries) != len(batch.nodes) or statuses != {"success"}:
        raise SetupError(f"{batch.name}: {len(entries)} results with statuses {statuses}")
    expected = {n.id: n.stage for n in batch.nodes}
    stages = {pid: int(e["stage"]) for pid, e in entries.items()}
    if stages != expected:
        wrong = sorted(p for p in expected if stages.get(p) != expected[p])[:3]
        raise SetupError(f"{batch.name}: pytest-prp's stages differ from ours for {wrong}")


@dataclass(frozen=True)
class Span:
    prp: str
    worker: str
    start: float  # time.time()
    end: float


def _when(value: object) -> float:
    if not isinstance(value, str):
        raise SetupError(f"heartbeat time {value!r} is not a string")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def read_spans(repo: Path, batch: Batch) -> list[Span]:
    folder = repo / ".ce/orchestration/heartbeats" / batch.batch_id
    spans: list[Span] = []
    for file in sorted(folder.glob("*.json")):
        beat = json.loads(file.read_text(encoding="utf-8"))
        if beat.get("phase") != "done":
            raise SetupError(f"{file}: heartbeat not done")
        spans.append(
            Span(
                beat["prp_id"],
                str(beat["worker"]),
                _when(beat["started_at"]),
                _when(beat["updated_at"]),
            )
        )
    if len(spans) != len(batch.nodes):
        raise SetupError(f"{batch.name}: {len(spans)} heartbeats for {len(batch.nodes)} PRPs")
    return spans


# --- analysis ----------------------------------------------------------------------------------


@dataclass
class Run:
    batch: str
    workers: int
    wall: float
    launch: float
    cpu: float
    spans: list[Span]


@dataclass
class Timeline:
    span: float  # first PRP start to last PRP end
    first_start: float  # launch to first PRP start
    after_last: float  # last PRP end to the end of the run
    utilisation: float  # PRP time / (workers x span)
    beyond_sleep: float  # mean (PRP time - D)
    idle_ready: float  # worker-seconds idle while a PRP was ready
    turnaround: float  # median end -> next start on a worker, next already ready
    turnaround_max: float
    workers_used: int


def timeline(run: Run, batch: Batch) -> Timeline:
    by_id = {n.id: n for n in batch.nodes}
    spans = {s.prp: s for s in run.spans}
    first = min(s.start for s in run.spans)
    last = max(s.end for s in run.spans)
    busy = sum(s.end - s.start for s in run.spans)

    def ready_at(pid: str) -> float:
        deps = by_id[pid].deps
        return max((spans[d].end for d in deps), default=first)

    # Idle while ready: between consecutive events, min(idle workers, ready PRPs not started).
    events = sorted({t for s in run.spans for t in (s.start, s.end)} | {first})
    idle_ready = 0.0
    for a, b in zip(events, events[1:], strict=False):
        mid = (a + b) / 2
        running = sum(1 for s in run.spans if s.start <= mid < s.end)
        waiting = sum(1 for s in run.spans if s.start > mid and ready_at(s.prp) <= mid)
        idle_ready += min(run.workers - running, waiting) * (b - a)
    # Turnaround on a worker when the next PRP was ready by the time the previous one ended.
    turns: list[float] = []
    by_worker: dict[str, list[Span]] = {}
    for s in run.spans:
        by_worker.setdefault(s.worker, []).append(s)
    for chain in by_worker.values():
        chain.sort(key=lambda s: s.start)
        for prev, nxt in zip(chain, chain[1:], strict=False):
            if ready_at(nxt.prp) <= prev.end:
                turns.append(nxt.start - prev.end)
    return Timeline(
        span=last - first,
        first_start=first - run.launch,
        after_last=run.launch + run.wall - last,
        utilisation=busy / (run.workers * (last - first)) if last > first else 0.0,
        beyond_sleep=statistics.mean(
            spans[p].end - spans[p].start - by_id[p].duration for p in spans
        ),
        idle_ready=idle_ready,
        turnaround=statistics.median(turns) if turns else float("nan"),
        turnaround_max=max(turns) if turns else float("nan"),
        workers_used=len(by_worker),
    )


@dataclass
class Row:
    workers: int
    startup: float
    wall: float
    makespan: float
    lower: float
    bound: str  # "CP" or "W/N"
    k: float
    target: float
    sbs: float
    sbs_o: float
    sim: float
    pair: float  # the pair bound with overhead (see pair_bound); > target: unreachable
    line: Timeline
    cpu_per_prp: float  # (CPU of the run - CPU of the start-up) / PRPs
    cpu: float


@dataclass
class Results:
    # Per batch, measured just before its runs: the machine's speed drifts over minutes.
    trivials: dict[str, tuple[Timed, Timed]] = field(default_factory=dict)  # run, start-up(1)
    rows: dict[str, list[Row]] = field(default_factory=dict)

    def overhead(self, batch: str) -> float:
        """o measured before ``batch``: (trivial run - start-up(1)) / PRPs."""
        trivial, one = self.trivials[batch]
        return max(0.0, (trivial.wall - one.wall) / TRIVIAL_COUNT)


def make_row(batch: Batch, run: Run, startup: Timed, overhead: float) -> Row:
    n = run.workers
    cp, cp_count = critical_path(batch)
    per_worker = batch.work / n
    if cp >= per_worker:
        lower, bound, k = cp, "CP", float(cp_count)
    else:
        lower, bound, k = per_worker, "W/N", len(batch.nodes) / n
    makespan = run.wall - startup.wall
    return Row(
        workers=n,
        startup=startup.wall,
        wall=run.wall,
        makespan=makespan,
        lower=lower,
        bound=bound,
        k=k,
        target=SLACK * lower + overhead * k,
        sbs=stage_by_stage(batch, n),
        sbs_o=stage_by_stage(batch, n, overhead),
        sim=simulate(batch, n, overhead),
        pair=pair_bound(batch, n, overhead),
        line=timeline(run, batch),
        cpu_per_prp=(run.cpu - startup.cpu) / len(batch.nodes),
        cpu=run.cpu,
    )


# --- report ------------------------------------------------------------------------------------


def describe(batch: Batch) -> str:
    cp, cp_count = critical_path(batch)
    durations = [n.duration for n in batch.nodes if n.duration > 0]
    return (
        f"{batch.name} (batch {batch.batch_id}): {len(batch.nodes)} PRPs in {batch.stages} "
        f"stages, {sum(len(n.deps) for n in batch.nodes)} dependencies, D {min(durations):g}-"
        f"{max(durations):g} s; work W = {batch.work:.2f} s, critical path CP = {cp:.2f} s "
        f"over {cp_count} PRPs"
    )


def table(batch: Batch, rows: list[Row], overhead: float) -> list[str]:
    head = (
        f"  {'-n':>3} {'start-up':>8} {'run':>7} {'makespan':>8} {'LB':>6} {'bound':>5} "
        f"{'target':>7} {'verdict':<7} {'simul.':>6} {'stage':>6} {'stage+o':>7}"
    )
    out = [describe(batch), head]
    for r in rows:
        ok = "met" if r.makespan <= r.target else "unreach" if r.pair > r.target else "MISSED"
        out.append(
            f"  {r.workers:>3} {r.startup:>8.2f} {r.wall:>7.2f} {r.makespan:>8.2f} {r.lower:>6.2f} "
            f"{r.bound:>5} {r.target:>7.2f} {ok:<7} {r.sim:>6.2f} {r.sbs:>6.2f} {r.sbs_o:>7.2f}"
        )
    out.append(
        f"  {'-n':>3} {'span':>7} {'1st start':>9} {'after':>6} {'util':>5} {'PRP-D':>6} "
        f"{'idle&ready':>10} {'turnaround':>16} {'CPU s':>6} {'CPU/PRP':>8}"
    )
    for r in rows:
        t = r.line
        out.append(
            f"  {r.workers:>3} {t.span:>7.2f} {t.first_start:>9.2f} {t.after_last:>6.2f} "
            f"{t.utilisation:>5.0%} {t.beyond_sleep:>6.3f} {t.idle_ready:>9.2f}s "
            f"{t.turnaround * 1000:>6.0f} ms/{t.turnaround_max * 1000:>4.0f} max "
            f"{r.cpu:>6.1f} {r.cpu_per_prp * 1000:>5.0f} ms"
        )
    for r in rows:
        if r.workers == 1:
            implied = (r.makespan - batch.work) / len(batch.nodes)
            out.append(
                f"  at -n 1 each PRP cost {implied * 1000:.0f} ms beyond its sleep ((makespan - W)"
                f" / PRPs; o from the trivial batch just before: {overhead * 1000:.0f} ms)"
            )
    for r in rows:
        if r.makespan > r.target and r.pair > r.target:
            longest = sorted((n.duration for n in batch.nodes), reverse=True)
            out.append(
                f"  -n {r.workers}: the target cannot be met by any executor: of the "
                f"{r.workers + 1} longest PRPs ({longest[r.workers]:g} s and longer) two share a "
                f"worker, so any schedule needs >= {r.pair:.2f} s with o (target {r.target:.2f} "
                f"s); measured {r.makespan:.2f} s = {r.makespan / r.pair:.2f}x that bound"
            )
        elif r.makespan > r.target:
            out += diagnose(batch, r, overhead)
    return out


def diagnose(batch: Batch, r: Row, overhead: float) -> list[str]:
    """Where a missed run's time went: makespan - target = outside + (span - target)."""
    t = r.line
    outside = t.first_start + t.after_last
    cores = os.cpu_count() or 1
    prp_cpu = r.cpu_per_prp * len(batch.nodes)
    return [
        f"  why -n {r.workers} missed by {r.makespan - r.target:.2f} s: makespan = span "
        f"{t.span:.2f} s + ({outside:.2f} s outside the PRPs - start-up {r.startup:.2f} s) = "
        f"{t.span:.2f} {outside - r.startup:+.2f} s",
        f"    outside the PRPs: launch to first PRP start {t.first_start:.2f} s, last end to exit "
        f"{t.after_last:.2f} s",
        f"    span - LB = {t.span - r.lower:.2f} s: a PRP took {t.beyond_sleep * 1000:.0f} ms "
        f"beyond its sleep here vs o = {overhead * 1000:.0f} ms at -n 1 (k x: "
        f"{r.k * t.beyond_sleep:.2f} s vs {r.k * overhead:.2f} s allowed); idle while ready "
        f"{t.idle_ready:.2f} worker-s",
        f"    CPU: {r.cpu_per_prp * 1000:.0f} ms per PRP, {prp_cpu:.1f} CPU-s for the PRPs = "
        f"{prp_cpu / cores:.2f} s of {cores} cores, in a span of {t.span:.2f} s",
    ]


def verdicts(batches: Sequence[Batch], results: Results) -> list[str]:
    out: list[str] = []
    rows = [(name, r) for name, batch_rows in results.rows.items() for r in batch_rows]
    missed = [f"{name} -n {r.workers}" for name, r in rows if r.target < r.makespan]
    unreachable = [f"{name} -n {r.workers}" for name, r in rows if r.target < r.pair]
    reachable = len(rows) - len(unreachable)
    met = sum(1 for _, r in rows if r.makespan <= r.target and r.pair <= r.target)
    out.append(
        f"makespan target (<= {SLACK:.2f} x LB + o x k): {len(rows) - len(missed)} of "
        f"{len(rows)} runs met" + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    if unreachable:
        out.append(
            f"  unreachable by any executor (pair bound > target): {', '.join(unreachable)}; "
            f"of the {reachable} reachable runs {met} met"
        )
    if met < reachable:
        out.append("target missed")
    else:
        out.append(
            "target met" + (" on every run where any executor can meet it" if unreachable else "")
        )
    policy = sum(1 for _, r in rows if r.sim <= r.target)
    out.append(
        f"policy check: the simulated schedule (longest chain first, D + o, instant dispatch, "
        f"no CPU contention) meets the target in {policy} of {len(rows)} runs"
    )
    for batch in batches:
        if batch.name != "uneven":
            continue
        for r in results.rows.get(batch.name, []):
            if r.workers < 2:
                continue
            ratio = r.makespan / r.sbs_o
            clearly = r.makespan <= CLEARLY * r.sbs_o
            out.append(
                f"uneven -n {r.workers}: makespan {r.makespan:.2f} s vs stage-by-stage "
                f"{r.sbs_o:.2f} s with the same overhead ({r.sbs:.2f} s without): {ratio:.2f}x, "
                + ("clearly faster" if clearly else "not clearly faster")
                + f" (clearly: <= {CLEARLY:.2f}x; LB / stage-by-stage = "
                f"{r.lower / r.sbs:.2f}x)"
            )
    return out


# --- main --------------------------------------------------------------------------------------


def make_batches(args: argparse.Namespace) -> list[Batch]:
    lo, hi = 0.2 * args.scale, 1.5 * args.scale
    short = _seconds(SHORT * args.scale)
    if args.quick:
        batches = [
            random_dag("random-A", "401", 30, args.seed, lo, hi),
            uneven_dag("uneven", "403", 4, 3, _seconds(args.long * args.scale), short),
        ]
    else:
        batches = [
            random_dag("random-A", "401", 40, args.seed, lo, hi),
            random_dag("random-B", "402", 50, args.seed + 1, lo, hi),
            uneven_dag("uneven", "403", 5, 3, _seconds(args.long * args.scale), short),
        ]
    return batches


def measure(args: argparse.Namespace, runner: Runner, batches: list[Batch]) -> Results:
    """Per batch: o from the trivial batch, then for each N its start-up and its run, each
    baseline right before what it is the baseline of."""
    results = Results()
    trivial = trivial_batch("trivial", "409", TRIVIAL_COUNT)
    for batch in batches:
        one = runner.startup(batch, 1)
        runs = [runner.batch_run(trivial, 1) for _ in range(2)]
        best = min(runs, key=lambda r: r.wall)
        results.trivials[batch.name] = (Timed(best.wall, best.launch, best.cpu), one)
        overhead = results.overhead(batch.name)
        print(f"  {batch.name}: o = {overhead * 1000:.0f} ms", file=sys.stderr, flush=True)
        rows: list[Row] = []
        for n in args.workers:
            startup = one if n == 1 else runner.startup(batch, n)
            run = runner.batch_run(batch, n)
            rows.append(make_row(batch, run, startup, overhead))
            print(f"  {batch.name} -n {n}: {run.wall:.2f} s", file=sys.stderr, flush=True)
        results.rows[batch.name] = rows
    return results


def report(args: argparse.Namespace, batches: list[Batch], results: Results) -> list[str]:
    lines = [
        "per-PRP overhead o = (trivial batch at -n 1, best of 2 - start-up(1)) / "
        f"{TRIVIAL_COUNT}, measured just before each batch's runs:"
    ]
    for batch in batches:
        (trivial, one), o = results.trivials[batch.name], results.overhead(batch.name)
        cpu = (trivial.cpu - one.cpu) / TRIVIAL_COUNT
        lines.append(
            f"  before {batch.name}: ({trivial.wall:.2f} s - {one.wall:.2f} s) / {TRIVIAL_COUNT} "
            f"= {o * 1000:.0f} ms (of it {cpu * 1000:.0f} ms CPU)"
        )
    lines += [
        "start-up(N): best of 2 runs (-k selecting nothing) just before each run",
        "",
        "columns: run = wall time of the pytest run; makespan = run - start-up; LB = max(CP, W/N);",
        "  target = 1.10 x LB + o x k (k = PRPs on the critical path, or PRPs / N); simul. =",
        "  dependency-aware list schedule of D + o; stage / stage+o = stage-by-stage executor",
        "  with D / with D + o. Timeline (heartbeats): span = first PRP start to last end;",
        "  1st start = launch to first PRP start; after = last end to exit; util = PRP time /",
        "  (N x span); PRP-D = mean PRP time beyond its sleep (s); idle&ready = worker-seconds",
        "  idle while a PRP was ready; turnaround = end to next start on a worker (median/max);",
        "  CPU s = CPU time of the run, all processes; CPU/PRP = (that - start-up's) / PRPs.",
        "",
    ]
    for batch in batches:
        lines += table(batch, results.rows[batch.name], results.overhead(batch.name)) + [""]
    lines += verdicts(batches, results)
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, about 2 min")
    parser.add_argument(
        "--workers", default="1,2,4,8", help="comma list of -n values (default 1,2,4,8)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the random DAGs (default 7)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every duration (default 1.0)"
    )
    parser.add_argument(
        "--long", type=float, default=2.0, help="the long PRPs of the uneven batch (default 2.0 s)"
    )
    parser.add_argument(
        "--no-estimates",
        dest="estimates",
        action="store_false",
        help="leave estimated_hours out of the PRPs (the scheduler then counts PRPs)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with pytest, pytest-xdist and pytest-prp (default: this one)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    try:
        args.workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        parser.error("--workers: a comma list of integers, e.g. 1,2,4,8")
    if not args.workers or min(args.workers) < 1 or args.scale <= 0 or args.long <= 0:
        parser.error("--workers must be >= 1, --scale and --long > 0")
    return args


def check_tools(python: str) -> None:
    if shutil.which("git") is None or shutil.which("bash") is None:
        raise SetupError("git and bash must be on PATH")
    warm_bytecode(python)


def run(args: argparse.Namespace) -> list[str]:
    check_tools(args.python)
    batches = make_batches(args)
    workdir = Path(tempfile.mkdtemp(prefix="prp-bench-par-"))
    try:
        template = workdir / "template"
        template.mkdir()
        build_template(
            template, [*batches, trivial_batch("trivial", "409", TRIVIAL_COUNT)], args.estimates
        )
        runner = Runner(args.python, template, workdir)
        results = measure(args, runner, batches)
        where = f"; kept at {workdir}" if args.keep else ""
        header = [
            f"pytest-prp parallel benchmark: -n {', '.join(map(str, args.workers))}; seed "
            f"{args.seed}, durations x{args.scale:g}, estimated_hours "
            f"{'= D' if args.estimates else 'absent'}" + (", quick" if args.quick else ""),
            f"(Python {platform.python_version()}, {os.cpu_count()} CPUs{where})",
            "",
        ]
        return header + report(args, batches, results)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_parallel", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
