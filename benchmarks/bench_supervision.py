"""Benchmark: the cost of supervising a step that prints 100,000 lines.

Supervision is what pytest-prp wraps around every step, agent and gate process
(``supervise/processes.py``): its own process group, the output kept in the per-PRP log (steps
and gates write it themselves; agents through a pipe) and a bounded tail, the heartbeat's
``on_line`` callback, and idle detection.

For each variant of the step (a bash script printing 100,000 lines), in every round:

  alone, > /dev/null   ``bash -e -o pipefail -c SCRIPT > /dev/null``
  alone, > file        the same with output to a file: the baseline, since a step's output
                       must be kept somewhere
  pump only            ``processes.run_bash`` with no log, no callback, no idle limit
  run_bash supervised  ``processes.run_bash`` with a ``LogSink``, a real ``Heartbeat``'s
                       ``output`` as ``on_line`` and an idle limit of 600 s (the layer alone)
  pytest step          the step inside a one-PRP batch run by pytest (literal executor): only
                       the step's own duration, taken by a hook wrapper of
                       ``pytest_prp_run_steps`` (a ``conftest.py`` in the throw-away
                       repository) around the default executor; the log's
                       ``--- exit 0 (N s) ---`` line is printed beside it as a cross-check.
                       The wrapper first does what the first PRP of a run pays once, whatever
                       its step prints: parsing the PRP's body (it imports markdown-it, about
                       45 ms) and importing the executors (about 9 ms); that warm-up is shown
                       on a row of its own and not counted
  chunked pump         reference only: a minimal Python supervisor that copies the pipe to a
                       file in 64 KB chunks with no per-line work (what Python can do at best)

Variants: ``fast`` (``seq 1 100000 | sed 's/^/line /'``), ``python`` (one ``write`` of 100,000
lines) and ``paced`` (Python writing 1,000 lines every 20 ms: 100,000 lines over about 2 s).

Target (spec): a PRP whose step prints 100,000 lines finishes within 10% of the time the same
step takes on its own: pytest step / alone-to-file <= 1.10, judged per variant on the median
over rounds of each round's pytest step / the same round's baseline (a 12 ms step swings by
half its time between slow and fast spells of the machine; a round's two figures share one).

Run:  .venv/bin/python benchmarks/bench_supervision.py               (15 rounds)
      .venv/bin/python benchmarks/bench_supervision.py --repeat 1    (smoke)
      .venv/bin/python benchmarks/bench_supervision.py --profile     (adds a cProfile)

Exit status 0 whether the target is met or not; 1 when the setup or a run fails.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _harness import Capture, SetupError, clean_env, commit_fixture, run_main, warm_bytecode

RATIO_TARGET = 1.10
LINES = 100_000
BATCH = "200"
PRP_ID = f"PRP-{BATCH}.1.1"
TIMES_ENV = "PRP_BENCH_STEP_TIMES"
_LOGGED_EXIT = re.compile(r"^--- exit 0 \(([0-9.]+) s\) ---$", re.MULTILINE)

# Times the default executor from outside: the wrapper sees exactly the steps hook's call.
CONFTEST = '''\
"""Benchmark probe: how long the PRP's steps took, written to $PRP_BENCH_STEP_TIMES."""

import importlib
import json
import os
import time

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_prp_run_steps(context):
    # Done once per run on first use, whatever the step prints: parsing the PRP's body (it
    # imports markdown-it) and importing the executors. Done first, timed apart.
    start = time.perf_counter()
    importlib.import_module("pytest_prp.spec.body_cache").body_of(context.prp)
    importlib.import_module("pytest_prp.execute.executors")
    importlib.import_module("pytest_prp.spec.agents")
    warm = time.perf_counter()
    outcome = yield
    elapsed = time.perf_counter() - warm
    target = os.environ.get("PRP_BENCH_STEP_TIMES")
    if target:
        entry = {"prp_id": context.prp.id, "hook_seconds": elapsed,
                 "warm_up_seconds": warm - start,
                 "steps_seconds": getattr(outcome, "duration", None),
                 "ok": getattr(outcome, "ok", None)}
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\\n")
    return outcome
'''


# --- the step variants -------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    script: str
    description: str


def variants(python: str) -> list[Variant]:
    py = shlex.quote(python)
    paced = (
        "import sys, time\n"
        "out = sys.stdout\n"
        "start = time.monotonic()\n"
        "for batch in range(100):\n"
        "    time.sleep(max(0.0, start + batch * 0.02 - time.monotonic()))\n"
        "    out.write(''.join(f'line {batch * 1000 + i}\\n' for i in range(1, 1001)))\n"
        "    out.flush()\n"
    )
    fast_py = (
        f"import sys; sys.stdout.write(''.join(f'line {{i}}\\n' for i in range(1, {LINES + 1})))"
    )
    return [
        Variant("fast", f"seq 1 {LINES} | sed 's/^/line /'", "seq | sed, as fast as it goes"),
        Variant("python", f"{py} -c {shlex.quote(fast_py)}", "python, one write of all lines"),
        Variant("paced", f"{py} -c {shlex.quote(paced)}", "python, 1,000 lines every 20 ms"),
    ]


# --- the measurements --------------------------------------------------------------------------


def bash_argv(script: str) -> list[str]:
    return ["bash", "-e", "-o", "pipefail", "-c", script]


def time_alone(script: str, out: Path | None, cwd: Path) -> float:
    """The step on its own, output to /dev/null (``out`` None) or to a file."""
    handle = open(out, "wb") if out is not None else open(os.devnull, "wb")
    try:
        start = time.perf_counter()
        done = subprocess.run(
            bash_argv(script),
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
        elapsed = time.perf_counter() - start
    finally:
        handle.close()
    if done.returncode != 0:
        raise SetupError(f"the step exited {done.returncode} on its own: {script}")
    if out is not None:
        check_lines(out)
    return elapsed


def check_lines(path: Path) -> None:
    with open(path, "rb") as handle:
        count = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    if count < LINES:
        raise SetupError(f"{path} holds {count} lines, expected at least {LINES}")


def time_chunked(script: str, out: Path, cwd: Path) -> float:
    """Reference: the least a Python supervisor can do (own session, pipe copied in chunks)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        bash_argv(script),
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    with open(out, "wb") as sink:
        fd = proc.stdout.fileno()
        while data := os.read(fd, 65536):
            sink.write(data)
    proc.stdout.close()
    code = proc.wait()
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SetupError(f"chunked pump: the step exited {code}")
    check_lines(out)
    return elapsed


def time_run_bash(script: str, scratch: Path, supervised: bool) -> float:
    """``processes.run_bash`` as the executors call it, or bare (no log, callback, idle)."""
    from pytest_prp.records.heartbeat import Heartbeat
    from pytest_prp.supervise.limits import Limits
    from pytest_prp.supervise.output import LogSink
    from pytest_prp.supervise.processes import run_bash

    work = scratch / "workdir"
    work.mkdir(parents=True, exist_ok=True)
    log_path = scratch / "step.log"
    log_path.unlink(missing_ok=True)
    if not supervised:
        start = time.perf_counter()
        result = run_bash(script, cwd=work, env=clean_env(), limits=Limits.starting_now(600))
        elapsed = time.perf_counter() - start
    else:
        beat = Heartbeat(scratch / "heartbeat.json", prp_id=PRP_ID, batch=BATCH, interval=30.0)
        beat.start()
        try:
            with LogSink(log_path) as log:
                start = time.perf_counter()
                result = run_bash(
                    script,
                    cwd=work,
                    env=clean_env(),
                    limits=Limits.starting_now(
                        600, idle=600, activity_dir=work, log=log, on_line=beat.output
                    ),
                )
                elapsed = time.perf_counter() - start
        finally:
            beat.finish("success")
        check_lines(log_path)
    if not result.ok:
        raise SetupError(f"run_bash: the step ended with {result.describe()}")
    return elapsed


# --- the pytest run ----------------------------------------------------------------------------


def prp_text(script: str) -> str:
    return "\n".join(
        [
            "---",
            f"prp_id: {PRP_ID}",
            "title: A step that prints 100,000 lines",
            "dependencies: []",
            "---",
            "",
            f"# {PRP_ID}: A step that prints 100,000 lines",
            "",
            "## Implementation Steps",
            "",
            "### Step 1: print",
            "",
            "```bash",
            script,
            "```",
            "",
            "## Validation Gates",
            "",
            "### Gate 1: always passes",
            "",
            "```bash",
            "true",
            "```",
            "",
        ]
    )


def build_repo(repo: Path, script: str) -> None:
    (repo / "PRPs").mkdir(parents=True)
    (repo / "PRPs" / f"{PRP_ID}.md").write_text(prp_text(script), encoding="utf-8")
    (repo / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (repo / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (repo / ".gitignore").write_text("__pycache__/\n.ce/\n", encoding="utf-8")
    commit_fixture(repo)


@dataclass
class PytestStep:
    step: float  # the steps hook's own duration (hook wrapper), after the warm-up
    warm_up: float  # just before: first parse of the PRP body, first import of the executors
    executor: float  # StepsOutcome.duration, as the executor measured itself
    logged: float  # "--- exit 0 (N s) ---" of the step, 0.1 s resolution
    item: float  # elapsed_seconds of the PRP in the result JSON
    wall: float  # the whole pytest run


def time_pytest(python: str, repo: Path, round_no: int) -> PytestStep:
    """One batch run on a fresh integration branch (nothing is complete on it)."""
    times = repo.parent / f"{repo.name}-times-{round_no}.jsonl"
    command = [
        python,
        *("-m", "pytest", "PRPs/", "--prp-batch", BATCH, "-q", "-p", "no:cacheprovider"),
        *("--prp-branch", f"bench/round-{round_no}"),
    ]
    env = {**clean_env(), TIMES_ENV: str(times)}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise SetupError(f"{shlex.join(command)} exited {done.returncode}:\n{tail}")
    try:
        entry = json.loads(times.read_text(encoding="utf-8").splitlines()[-1])
    except (OSError, ValueError, IndexError) as exc:
        raise SetupError(f"the conftest probe wrote nothing to {times}: {exc}") from None
    if not entry.get("ok"):
        raise SetupError("pytest run: the step failed")
    results = repo / ".ce" / "orchestration"
    doc = json.loads((results / "batches" / f"batch-{BATCH}.result.json").read_text())
    item = doc["stages"]["1"][PRP_ID]
    if item["status"] != "success":
        raise SetupError(f"pytest run: {PRP_ID} is {item['status']}, expected success")
    log = (results / "logs" / BATCH / f"{PRP_ID}.log").read_text(encoding="utf-8")
    exits = _LOGGED_EXIT.findall(log)  # each run appends: step, gate; the step is [-2]
    if log.count("\nline 100000\n") < 1 or len(exits) < 2:
        raise SetupError("pytest run: the per-PRP log does not hold the step's output")
    return PytestStep(
        step=float(entry["hook_seconds"]),
        warm_up=float(entry["warm_up_seconds"]),
        executor=float(entry["steps_seconds"] or 0.0),
        logged=float(exits[-2]),
        item=float(item["elapsed_seconds"]),
        wall=wall,
    )


# --- rounds and report -------------------------------------------------------------------------


@dataclass
class Figures:
    devnull: list[float] = field(default_factory=list)
    to_file: list[float] = field(default_factory=list)
    chunked: list[float] = field(default_factory=list)
    pump: list[float] = field(default_factory=list)
    supervised: list[float] = field(default_factory=list)
    pytest: list[PytestStep] = field(default_factory=list)


def measure(args: argparse.Namespace, workdir: Path, variant: Variant) -> Figures:
    figures = Figures()
    repo = workdir / f"repo-{variant.name}"
    repo.mkdir()
    build_repo(repo, variant.script)
    scratch = workdir / f"scratch-{variant.name}"
    scratch.mkdir()
    out = scratch / "out.txt"
    parts: list[Callable[[int], None]] = [
        lambda k: figures.devnull.append(time_alone(variant.script, None, scratch)),
        lambda k: figures.to_file.append(time_alone(variant.script, out, scratch)),
        lambda k: figures.chunked.append(time_chunked(variant.script, out, scratch)),
        lambda k: figures.pump.append(time_run_bash(variant.script, scratch, False)),
        lambda k: figures.supervised.append(time_run_bash(variant.script, scratch, True)),
        lambda k: figures.pytest.append(time_pytest(args.python, repo, k)),
    ]
    time_alone(variant.script, out, scratch)  # warm-up: page cache, interpreter files
    for k in range(args.repeat):
        # Rotate the order every round, so a slow spell does not always hit the same row.
        shift = k % len(parts)
        for part in parts[shift:] + parts[:shift]:
            part(k)
    return figures


def _row(label: str, runs: Sequence[float], base: float) -> str:
    best = min(runs)
    shown = " ".join(f"{r * 1000:.0f}" for r in runs)
    return f"  {label:<44} {best * 1000:>9.1f} {best / base:>7.2f}x   {shown}"


def paired_ratio(runs: Sequence[float], baseline: Sequence[float]) -> float:
    """The median over rounds of run / baseline of the same round.

    A 12 ms step swings by half its time between rounds on a busy machine, in runs of slow and
    fast spells; a round's two figures share its spell, so their ratio is far steadier than a
    ratio of two best-of figures picked from different rounds.
    """
    return statistics.median(r / b for r, b in zip(runs, baseline, strict=True))


def report(variant: Variant, f: Figures) -> tuple[list[str], bool]:
    base = min(f.to_file)
    best = min(f.pytest, key=lambda p: p.step)
    best_ratio = best.step / base
    ratio = paired_ratio([p.step for p in f.pytest], f.to_file)
    met = ratio <= RATIO_TARGET
    sup_ratio = paired_ratio(f.supervised, f.to_file)
    lines = [
        f"{variant.name}: {variant.description}, {LINES:,} lines",
        f"  {'measurement':<44} {'best ms':>9} {'/ file':>8}   runs (ms)",
        _row("alone, > /dev/null", f.devnull, base),
        _row("alone, > file (baseline)", f.to_file, base),
        _row("reference: chunked Python pump to a file", f.chunked, base),
        _row("run_bash, pump only (no log/callback/idle)", f.pump, base),
        _row("run_bash + LogSink + heartbeat + idle 600 s", f.supervised, base),
        _row("pytest: the step inside a one-PRP batch", [p.step for p in f.pytest], base),
        _row(
            "  the same + first-use warm-up (not counted)",
            [p.step + p.warm_up for p in f.pytest],
            base,
        ),
        f"  (fastest pytest run: executor's own timing {best.executor * 1000:.0f} ms, log says "
        f"{best.logged:.1f} s; the PRP item took {best.item:.2f} s, the pytest run "
        f"{best.wall:.2f} s)",
        f"  supervision layer alone: {sup_ratio:.2f}x; in pytest: {ratio:.2f}x (median of "
        f"the rounds' step / baseline; best / best {best_ratio:.2f}x) "
        f"(target <= {RATIO_TARGET:.2f}x): {'target met' if met else 'target missed'}",
        f"  per line: {(best.step - base) / LINES * 1e6:.2f} us of supervision "
        f"({(best.step - base) * 1000:.0f} ms over {LINES:,} lines)",
    ]
    return lines, met


def profile_supervised(script: str, workdir: Path, top: int) -> list[str]:
    """cProfile of one supervised run_bash: where the per-line time goes."""
    scratch = workdir / "profile"
    scratch.mkdir()
    profiler = cProfile.Profile()
    profiler.enable()
    time_run_bash(script, scratch, True)
    profiler.disable()
    stream = Capture()
    stats = pstats.Stats(profiler, stream=stream)  # type: ignore[arg-type]
    stats.sort_stats("tottime").print_stats(top)
    text = stream.text.split("   ncalls", 1)
    body = ("   ncalls" + text[1].rstrip()) if len(text) == 2 else stream.text.rstrip()
    return [
        "",
        f"cProfile of run_bash supervising the fast step (top {top} by own time; profiling "
        "inflates per-call costs, compare the rows with each other):",
        body,
    ]


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    parser.add_argument(
        "--variants",
        default="fast,python,paced",
        help="comma list of step variants: fast, python, paced (default: all)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with pytest and pytest-prp installed (default: this one)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile run_bash")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    known = {v.name for v in variants(args.python)}
    args.variant_names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variant_names) - known)
    if unknown or not args.variant_names:
        parser.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}")
    return args


def check_tools(python: str) -> None:
    for tool in ("bash", "git", "seq", "sed"):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} is not on PATH")
    try:
        import pytest_prp.supervise.processes  # noqa: F401
    except ImportError as exc:
        raise SetupError(f"pytest_prp is not importable ({exc}); use .venv/bin/python") from None
    warm_bytecode(python)


def run(args: argparse.Namespace) -> list[str]:
    check_tools(args.python)
    workdir = Path(tempfile.mkdtemp(prefix="prp-bench-sup-"))
    try:
        where = f"; kept at {workdir}" if args.keep else ""
        lines = [
            f"pytest-prp supervision benchmark: a step printing {LINES:,} lines, "
            f"{args.repeat} rounds",
            f"(Python {platform.python_version()}, {os.cpu_count()} CPUs{where})",
            "",
        ]
        chosen = [v for v in variants(args.python) if v.name in args.variant_names]
        verdicts: list[tuple[str, bool]] = []
        for variant in chosen:
            part, met = report(variant, measure(args, workdir, variant))
            lines += part + [""]
            verdicts.append((variant.name, met))
        missed = [name for name, met in verdicts if not met]
        summary = ", ".join(f"{name} {'met' if met else 'missed'}" for name, met in verdicts)
        lines.append(f"per variant: {summary}")
        lines.append("target met" if not missed else f"target missed ({', '.join(missed)})")
        if args.profile:
            fast = next(v for v in variants(args.python) if v.name == "fast")
            lines += profile_supervised(fast.script, workdir, 14)
        return lines
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_supervision", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
