"""Benchmark: collecting and planning PRP files versus collecting trivial Python tests.

Builds one throw-away git repository holding
  * PRPs/   N PRP files of real size, copied from the real corpus with distinct ids
            (batches of the corpus batch, ids, batch ids and dependencies rewritten),
  * tests/  N trivial test files (``def test_x(): pass``),
  * empty/  nothing, to measure pytest's start-up alone,
then times ``python -m pytest --collect-only`` on each as a subprocess (best of --repeat runs,
after one untimed warm-up run that also checks the output) and prints a small table.
``--prp-plan=json`` (which parses every PRP body) is timed cold (``-p no:cacheprovider``), cold
pinned to one core (the bodies then parsed in one process, see ``plan_summaries``) and warm
(pytest's cache holding the body summaries of the previous run). In-process, the body
parser is timed on the corpus files both ways: the fast block scanner (what runs) and
markdown-it alone (the parser before it), as the baseline.

Run:  .venv/bin/python benchmarks/bench_collection.py            (2,000 files, 5 rounds)
      .venv/bin/python benchmarks/bench_collection.py --count 100 --repeat 1   (smoke)
      .venv/bin/python benchmarks/bench_collection.py --plan-only --before REV   (target 3,
          this version's cold plan and REV's taking turns in the same rounds)

Targets: net PRP collection + planning per file <= 1.5x net trivial collection per file, a
suite with no PRP files is no slower with the plugin installed (within 5%; judged on the median
over rounds of plugin-on minus plugin-off, the two timed back to back), and the plan view of the
PRPs within 3x of collecting them (wall clock). Exit status 0 whether the targets are met or
not; 1 when the setup fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import SetupError, clean_env, run_main, warm_bytecode

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus"
CORPUS_BATCH_DIR = "ctx-eng-plus-batch-43"
RATIO_TARGET = 1.5
PLAN_TARGET = 3.0  # plan view / plain collection of the same PRPs, wall clock
OVERHEAD_TARGET = 0.05  # plugin on vs off, fraction of the plugin-off time
FIRST_BATCH = 1000  # generated batches are 1000, 1001, ...: ids as long as real ones

_FILE_BATCH = re.compile(r"^PRP-(\d+)(?=[.-])")
_NUM_PARTS = re.compile(r"\d+|\D+")
# Environment variables that would change what pytest loads or does.
_PYTEST_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")


@dataclass(frozen=True)
class Timing:
    label: str
    files: int
    runs: tuple[float, ...]
    cpu: tuple[float, ...] = ()  # CPU seconds (user + system) of each run, same order

    @property
    def best_cpu(self) -> float:
        return min(self.cpu) if self.cpu else 0.0

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def spread(self) -> float:
        return max(self.runs) - min(self.runs)


# --- corpus and generated files ----------------------------------------------------------------


def find_corpus(path: Path) -> Path:
    """The directory of corpus PRPs: ``path`` itself or its ``ctx-eng-plus-batch-43``."""
    for candidate in (path / CORPUS_BATCH_DIR, path):
        if candidate.is_dir() and any(candidate.glob("PRP-*.md")):
            return candidate
    raise SetupError(
        f"corpus not found: {path} (expected PRP-*.md files in it or in {path / CORPUS_BATCH_DIR});"
        " pass --corpus PATH"
    )


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _NUM_PARTS.findall(name))


def corpus_files(corpus: Path) -> tuple[str, list[Path]]:
    """The corpus batch number and its PRP files in natural id order.

    In that order a PRP's dependencies come before it (43.1.1 < 43.2.1 < 43.3.1), so any prefix
    of a batch is a valid graph: ``--count`` may cut the last batch short.
    """
    files = sorted(corpus.glob("PRP-*.md"), key=lambda p: _natural(p.name))
    batches = Counter(m.group(1) for p in files if (m := _FILE_BATCH.match(p.name)))
    if not batches:
        raise SetupError(f"no PRP-<number>... files in {corpus}")
    batch = batches.most_common(1)[0][0]
    chosen = [p for p in files if (m := _FILE_BATCH.match(p.name)) and m.group(1) == batch]
    return batch, chosen


def rewrite_prp(text: str, source_batch: str, batch: int) -> str:
    """The PRP with every id of the source batch in its frontmatter moved to ``batch``.

    Only the frontmatter changes (prp_id, batch_id, dependencies, parent_prp): the body, which
    only --prp-plan parses, keeps its real size and shape.
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return text
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return text
    old_id = re.compile(rf"(?<![\w.])PRP-{source_batch}(?=[.\-\s,\]'\"]|$)")
    batch_line = re.compile(rf"^((?:batch_id|batch)\s*:\s*['\"]?){source_batch}(?=['\"]?\s*$)")
    for i in range(1, end):
        line = old_id.sub(f"PRP-{batch}", lines[i])
        lines[i] = batch_line.sub(rf"\g<1>{batch}", line)
    return "\n".join(lines)


def generate_prps(corpus: Path, dest: Path, count: int) -> int:
    """Write ``count`` PRP files into ``dest``: batches of the corpus batch. Returns bytes."""
    source_batch, files = corpus_files(corpus)
    texts = [(p.name, p.read_text(encoding="utf-8")) for p in files]
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    for n in range(count):
        batch = FIRST_BATCH + n // len(texts)
        name, text = texts[n % len(texts)]
        new_name = _FILE_BATCH.sub(f"PRP-{batch}", name, count=1)
        data = rewrite_prp(text, source_batch, batch).encode("utf-8")
        (dest / new_name).write_bytes(data)
        written += len(data)
    return written


def generate_trivial(dest: Path, count: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (dest / f"test_{n:05d}.py").write_text("def test_x():\n    pass\n", encoding="utf-8")


def _git(repo: Path, *args: str) -> None:
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SetupError(f"git {' '.join(args)} failed: {result.stderr.strip()}")


def build_repo(repo: Path, corpus: Path, count: int) -> int:
    """The benchmark repository, committed once (the plugin may read the git ledger)."""
    written = generate_prps(corpus, repo / "PRPs", count)
    generate_trivial(repo / "tests", count)
    (repo / "empty").mkdir()
    (repo / "empty" / ".keep").write_text("", encoding="utf-8")
    # An ini file of its own: the rootdir is the benchmark repo, whatever lies above it.
    (repo / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(
        repo,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "benchmark fixture",
    )
    return written


# --- timing ------------------------------------------------------------------------------------


def _env(pythonpath: str | None = None) -> dict[str, str]:
    # clean_env drops PYTHONDONTWRITEBYTECODE too: with it every run compiled pytest-prp's
    # modules from source (the plan view's more than collection's), unlike an installation.
    env = clean_env(*_PYTEST_ENV)
    env["PYTHONHASHSEED"] = "0"
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return env


def pytest_command(python: str, target: str, *extra: str, cache: bool = False) -> list[str]:
    no_cache = [] if cache else ["-p", "no:cacheprovider"]
    return [python, "-m", "pytest", "--collect-only", "-q", *no_cache, *extra, target]


def _one_core() -> None:
    """Run on one core only (the first this process may use): the plan view then summarises
    the bodies in one process (``plan_summaries``)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _run(
    command: list[str], repo: Path, pythonpath: str | None = None, one_core: bool = False
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU seconds (the child's user + system, its own children's included: less
    swayed by other jobs on a busy machine than wall clock) of one run, and its result."""
    before = os.times()
    start = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=repo,
        capture_output=True,
        text=True,
        env=_env(pythonpath),
        preexec_fn=_one_core if one_core else None,
    )
    elapsed = time.perf_counter() - start
    after = os.times()
    user = after.children_user - before.children_user
    system = after.children_system - before.children_system
    return elapsed, user + system, result


@dataclass(frozen=True)
class Case:
    label: str
    command: list[str]
    files: int
    expect_items: int  # items pytest must list (0: none, exit status 5 allowed)
    once: bool = False  # slow and informational: its checked run is its only timed run
    pythonpath: str | None = None  # another checkout of pytest_prp to run (``--before``)
    one_core: bool = False  # pinned to one core: the plan's bodies summarised in one process


def check_run(case: Case, repo: Path) -> tuple[float, float]:
    """One run of ``case`` that checks pytest listed what it should; returns its time.

    As the warm-up run it also writes the byte code of the trivial tests, so every timed run
    sees the same warm state (a user's second run, not a fresh clone).
    """
    elapsed, cpu, result = _run(case.command, repo, case.pythonpath, case.one_core)
    ok_codes = (0, 5) if case.expect_items == 0 else (0,)
    if result.returncode not in ok_codes:
        output = (result.stdout + result.stderr).strip()
        tail = "\n".join(output.splitlines()[-15:])
        # Exit 4 (usage error: --prp-all unknown) or no pytest: the wrong interpreter.
        wrong_python = result.returncode == 4 or "No module named pytest" in output
        hint = (
            "\n(is pytest-prp installed in that interpreter? pass --python)" if wrong_python else ""
        )
        raise SetupError(
            f"{case.label}: {' '.join(case.command)} exited {result.returncode}:\n{tail}{hint}"
        )
    found = _count_items(case.label, result.stdout)
    if found != case.expect_items:
        raise SetupError(f"{case.label}: expected {case.expect_items} items, pytest listed {found}")
    return elapsed, cpu


def time_cases(cases: Sequence[Case], repo: Path, repeat: int) -> dict[str, Timing]:
    """Wall time of every case, ``repeat`` rounds, the cases taking turns within a round.

    Taking turns spreads slow spells of a busy machine over all cases instead of one, and
    round k of every case is timed within the same few seconds (paired comparisons). Each
    case first has one checked, untimed warm-up run, except ``once`` cases, timed by that run.
    """
    repeated = [case for case in cases if not case.once]
    for case in repeated:
        check_run(case, repo)
    runs: dict[str, list[float]] = {case.label: [] for case in cases}
    cpu: dict[str, list[float]] = {case.label: [] for case in cases}
    for k in range(repeat):
        # Every other round backwards: a case run right after another over the same files
        # finds the page cache warmer, which must not always favour the same one.
        for case in repeated if k % 2 == 0 else reversed(repeated):
            elapsed, used, _ = _run(case.command, repo, case.pythonpath, case.one_core)
            runs[case.label].append(elapsed)
            cpu[case.label].append(used)
    for case in cases:
        if case.once:
            elapsed, used = check_run(case, repo)
            runs[case.label].append(elapsed)
            cpu[case.label].append(used)
    return {
        c.label: Timing(c.label, c.files, tuple(runs[c.label]), tuple(cpu[c.label])) for c in cases
    }


def _count_items(label: str, stdout: str) -> int:
    if stdout.lstrip().startswith("{"):  # --prp-plan=json: the plan document
        try:
            return len(json.loads(stdout)["prps"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SetupError(f"{label}: output is not a plan document: {exc}") from None
    return sum(1 for line in stdout.splitlines() if "::" in line)


# --- report ------------------------------------------------------------------------------------

STARTUP_ON = "start-up, plugin on (empty dir)"
STARTUP_OFF = "start-up, -p no:prp (empty dir)"
PRPS = "PRP files, --prp-all"
TRIVIAL_ON = "trivial tests, plugin on"
TRIVIAL_OFF = "trivial tests, -p no:prp"
PLAN = "PRP files, --prp-plan=json, cold"
PLAN_WARM = "PRP files, --prp-plan=json, warm"
PLAN_ONE_CORE = "PRP files, --prp-plan=json, cold, 1 core"
BEFORE = " (before)"  # suffix of the rows run with ``--before REV``'s code


def build_cases(
    python: str, count: int, plan_only: bool = False, before: str | None = None
) -> list[Case]:
    """The rows; ``plan_only``: start-up, PRP collection and the cold plan only; ``before``:
    a directory holding another version's ``pytest_prp``, whose PRP collection and cold plan
    take turns with this version's in the same rounds."""

    def command(target: str, *extra: str) -> list[str]:
        return pytest_command(python, target, *extra)

    prps = Case(PRPS, command("PRPs", "--prp-all"), count, count)
    plan = Case(PLAN, command("PRPs", "--prp-all", "--prp-plan=json"), count, count)
    # The same pinned to one core: the bodies summarised in one process, as before the second.
    one_core = [Case(PLAN_ONE_CORE, plan.command, count, count, one_core=True)]
    if len(os.sched_getaffinity(0)) < 2:
        one_core = []  # the plan row is that already
    compared = []
    if before is not None:
        compared = [
            Case(PRPS + BEFORE, prps.command, count, count, pythonpath=before),
            Case(PLAN + BEFORE, plan.command, count, count, pythonpath=before),
        ]
    if plan_only:
        return [Case(STARTUP_ON, command("empty"), 0, 0), prps, plan, *one_core, *compared]
    return [
        Case(STARTUP_ON, command("empty"), 0, 0),
        Case(STARTUP_OFF, command("empty", "-p", "no:prp"), 0, 0),
        prps,
        Case(TRIVIAL_ON, command("tests"), count, count),
        Case(TRIVIAL_OFF, command("tests", "-p", "no:prp"), count, count),
        plan,
        *one_core,
        # With pytest's cache: its warm-up run fills the cache the timed runs read.
        Case(
            PLAN_WARM,
            pytest_command(python, "PRPs", "--prp-all", "--prp-plan=json", cache=True),
            count,
            count,
        ),
        *compared,
    ]


def per_thousand(timing: Timing, startup: Timing) -> float:
    """Seconds per 1,000 files, pytest's start-up (same plugin setting) taken off."""
    if timing.files == 0:
        return 0.0
    return max(timing.best - startup.best, 0.0) / timing.files * 1000


def report(t: dict[str, Timing]) -> list[str]:
    start_on = t[STARTUP_ON]
    start_off = t.get(STARTUP_OFF, start_on)
    base = {TRIVIAL_OFF: start_off, STARTUP_OFF: start_off}
    out = [
        f"{'suite':<45} {'files':>6} {'best s':>8} {'spread s':>9} {'net s/1000':>11} {'cpu s':>7}",
        "-" * 91,
    ]
    for row in t.values():
        net = f"{per_thousand(row, base.get(row.label, start_on)):11.3f}" if row.files else ""
        line = (
            f"{row.label:<45} {row.files:>6} {row.best:>8.3f} {row.spread:>9.3f} {net:>11}"
            f" {row.best_cpu:>7.3f}"
        )
        out.append(line.rstrip())
    out.append(
        "net = best minus the start-up row with the same plugin setting; cpu = the least"
        " user + system seconds of a run (less swayed by other jobs than wall clock)"
    )
    if STARTUP_OFF not in t:  # --plan-only
        return out + plan_report(t, start_on)

    prp_rate = per_thousand(t[PRPS], start_on)
    on_rate = per_thousand(t[TRIVIAL_ON], start_on)
    off_rate = per_thousand(t[TRIVIAL_OFF], start_off)
    ratio = prp_rate / on_rate if on_rate > 0 else float("inf")
    raw_ratio = t[PRPS].best / t[TRIVIAL_ON].best
    verdict = "target met" if ratio <= RATIO_TARGET else "target missed"
    out += [
        "",
        f"PRP collection + planning: {prp_rate:.3f} s per 1,000 PRPs",
        f"trivial test collection:   {on_rate:.3f} s per 1,000 test files",
        f"ratio PRP / trivial: {ratio:.2f}x net, {raw_ratio:.2f}x wall clock "
        f"(target <= {RATIO_TARGET}x net)",
        f"{verdict}: PRP collection is {ratio:.2f}x trivial collection",
    ]

    on, off = t[TRIVIAL_ON], t[TRIVIAL_OFF]
    # Judged on the median over rounds of (on - off) within a round: the two ran one right
    # after the other, while best-of figures of a 1.5 s run on this VM swing by 0.3 s and
    # compare different rounds' luck.
    paired = [a - b for a, b in zip(on.runs, off.runs, strict=True)]
    diff = statistics.median(paired)
    off_median = statistics.median(off.runs)
    allowed = OVERHEAD_TARGET * off_median
    verdict = "target met" if diff <= allowed else "target missed"
    out += [
        "",
        f"suite with no PRP files, plugin on vs off: median of the rounds' differences "
        f"{diff:+.3f} s ({diff / off_median:+.1%} of the median plugin-off run, "
        f"{off_median:.3f} s)",
        f"  rounds: {' '.join(f'{d:+.3f}' for d in paired)}; best vs best "
        f"{on.best - off.best:+.3f} s",
        f"  of which start-up (importing the plugin): {start_on.best - start_off.best:+.3f} s; "
        f"per 1,000 files: {on_rate - off_rate:+.3f} s",
        f"{verdict}: plugin overhead {diff:+.3f} s, allowed {allowed:.3f} s "
        f"({OVERHEAD_TARGET:.0%} of the plugin-off time)",
    ]
    return out + plan_report(t, start_on)


def plan_report(t: dict[str, Timing], start_on: Timing) -> list[str]:
    """Target 3: each plan row against the PRP collection of the same code (wall clock, with
    the CPU-time ratio beside it)."""
    out = [""]
    rows = [
        (PLAN, PRPS, "cold (every body parsed)"),
        (PLAN_ONE_CORE, PRPS, "cold on 1 core (one process)"),
        (PLAN_WARM, PRPS, "warm (pytest's cache)"),
        (PLAN + BEFORE, PRPS + BEFORE, "cold, before"),
    ]
    for label, against, what in rows:
        if label not in t:
            continue
        plan, collect = t[label], t[against]
        ratio = plan.best / collect.best
        cpu = plan.best_cpu / collect.best_cpu if collect.best_cpu else float("inf")
        verdict = "target met" if ratio <= PLAN_TARGET else "target missed"
        out.append(
            f"{verdict}: plan view {what} {plan.best:.3f} s = {ratio:.2f}x PRP collection "
            f"({collect.best:.3f} s), target <= {PLAN_TARGET}x; "
            f"{per_thousand(plan, start_on):.3f} s per 1,000 PRPs net; CPU {cpu:.2f}x "
            f"({plan.best_cpu:.2f} / {collect.best_cpu:.2f} s)"
        )
    return out


def parser_report(corpus: Path, rounds: int) -> list[str]:
    """Body parsing in this process: the fast scanner against markdown-it alone (baseline),
    and the plan view's summary pass (``summarise_body``, which skims outside validation
    sections) against the full parse."""
    from pytest_prp.spec.body import parse_body, summarise_body
    from pytest_prp.spec.frontmatter import split_frontmatter

    bodies = []
    for path in corpus_files(corpus)[1]:
        text = path.read_text(encoding="utf-8")
        split = split_frontmatter(text)
        first = split[2] if split else 1
        bodies.append((path, "".join(text.splitlines(keepends=True)[first - 1 :]), first))

    def best(how: str) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            for path, markdown, first in bodies:
                if how == "summary":
                    summarise_body(markdown, path, first)
                else:
                    parse_body(markdown, path, first, fast=how == "scanner")
            times.append(time.perf_counter() - started)
        return min(times) / len(bodies) * 1000

    baseline, scanner, summary = best("markdown-it"), best("scanner"), best("summary")
    return [
        "",
        f"body parsing, best of {rounds} in-process rounds over the {len(bodies)} corpus PRPs: "
        f"{scanner:.2f} ms per PRP with the block scanner, {baseline:.2f} ms with markdown-it "
        f"alone (baseline): {baseline / scanner:.1f}x faster",
        f"plan view's summary pass (skims outside validation sections): {summary:.2f} ms per "
        f"PRP, {scanner / summary:.1f}x faster than the full parse with the scanner",
    ]


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help=f"corpus of real PRPs (default {DEFAULT_CORPUS})",
    )
    parser.add_argument("--count", type=int, default=2000, help="files per suite (default 2000)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timed rounds (default 5): best kept, and the "
        "plugin on/off difference judged on the median of the rounds",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with pytest and pytest-prp installed (default: this one)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated repository")
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="time only start-up, PRP collection and the cold plan (target 3), and skip the "
        "in-process parser rounds",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also time PRP collection and the cold plan with pytest_prp as of REV (a commit "
        "of this repository), in the same rounds",
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    return args


def _checkout(rev: str, repo: Path) -> str:
    """``pytest_prp`` as of ``rev`` in a directory of the benchmark's (first on PYTHONPATH for
    the rows marked before), byte-compiled as an installation would be."""
    where = repo / "before"
    where.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", rev, "pytest_prp"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SetupError(f"--before {rev}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    compiled = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(where)], capture_output=True, check=False
    )
    if compiled.returncode != 0:
        raise SetupError(f"--before {rev}: byte-compiling failed")
    return str(where)


def run(args: argparse.Namespace) -> list[str]:
    corpus = find_corpus(args.corpus)
    if shutil.which("git") is None:
        raise SetupError("git is not on PATH")
    repo = Path(tempfile.mkdtemp(prefix="prp-bench-"))
    try:
        started = time.perf_counter()
        written = build_repo(repo, corpus, args.count)
        setup_s = time.perf_counter() - started
        before = _checkout(args.before, repo) if args.before else None
        warm_bytecode(args.python)
        cases = build_cases(args.python, args.count, args.plan_only, before)
        timings = time_cases(cases, repo, args.repeat)
        per_batch = len(corpus_files(corpus)[1])
        batches = -(-args.count // per_batch)
        where = f"kept at {repo}" if args.keep else "built"
        header = [
            f"pytest-prp collection benchmark: {args.count} files per suite, best of "
            f"{args.repeat} (Python {platform.python_version()}, {os.cpu_count()} CPUs)",
            f"corpus: {corpus}",
            f"  -> {args.count} PRPs in {batches} batches of {per_batch}, "
            f"{written / args.count / 1024:.1f} KiB per PRP on average",
            f"repository {where} in {setup_s:.1f} s",
            "",
        ]
        if args.before:
            header[-1:-1] = [f"rows marked (before): pytest_prp at {args.before}"]
        if args.plan_only:
            return header + report(timings)
        return header + report(timings) + parser_report(corpus, max(args.repeat, 3))
    finally:
        if not args.keep:
            shutil.rmtree(repo, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("bench_collection: setup failed", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
