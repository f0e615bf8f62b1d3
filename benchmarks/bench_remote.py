"""Benchmark: PRPs on remote xdist workers (``--prp-remote``) against local ``-n 3``.

Three "machines" on 127.0.0.1, each its own clone, HOME and execnet socket server (as in
tests/test_remote.py), and a bare repository as the shared remote. A batch of 12 PRPs in a
diamond-and-fan shape (each creates one file and checks it and its dependencies' files).

  per-PRP overhead  (run - start-up) / 12, where start-up is the same command with
                    ``-k nothing`` (workers started, collection, no PRP): local ``-n 3`` in a
                    clone, then ``--tx`` to the three machines. Best of --repeat runs each.
                    Target: remote <= 1.3 x local.
  transport         per PRP, what a remote PRP adds in git: the worker fetches the tip, pushes
                    its commit, the controller fetches it and publishes the merged tip; next
                    to the local merge the same PRP costs without a remote. In repositories of
                    200 and 2,000 files (one file changed per PRP).

Run: ``python benchmarks/bench_remote.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_prp.git_workspace import GitWorkspace  # noqa: E402
from tests.loopback import Machine, clone, machines  # noqa: E402
from tests.test_remote import BATCH, SHAPE  # noqa: E402


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def origin_repo(base: Path, files: int, prps: bool) -> Path:
    from tests.conftest import init_repo, write_prp

    source = init_repo(base / "source")
    for n in range(files):
        path = source / "src" / f"d{n % 20}" / f"f{n}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {n}\n" * 20)
    if prps:
        for pid, needs in SHAPE.items():
            name = pid.replace("PRP-", "").replace(".", "_")
            write_prp(
                source,
                pid,
                deps=needs,
                creates={f"out/{name}.txt": pid},
                gates=[f"test -f out/{name}.txt"],
            )
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "project")
    bare = base / "origin.git"
    git(base, "clone", "-q", "--bare", str(source), str(bare))
    return bare


def run(cwd: Path, *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--prp-batch",
            BATCH,
            "-p",
            "no:html",
            "-p",
            "no:metadata",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    if done.returncode not in (0, 5):
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stdout[-2000:]}")
    return took


def per_prp(
    base: Path, origin: Path, label: str, extra: list[str], repeat: int
) -> tuple[float, float]:
    """The best start-up and the best whole run (seconds), each of ``repeat``."""
    startup = whole = float("inf")
    for n in range(repeat):
        here = clone(origin, base / f"{label}-{n}")
        startup = min(startup, run(here, *extra, "-k", "nothing", "--prp-branch", f"s{n}"))
        whole = min(whole, run(here, *extra, "--prp-branch", f"b-{label}-{n}"))
    return startup, whole


def transport(base: Path, files: int, prps: int = 10) -> tuple[float, float]:
    """Seconds per PRP: the remote round trip, and a local merge (the baseline)."""
    origin = origin_repo(base / f"t{files}", files, prps=False)
    ctl = clone(origin, base / f"t{files}" / "controller")
    worker = clone(origin, base / f"t{files}" / "worker")
    cg, wg = GitWorkspace.open(ctl), GitWorkspace.open(worker)
    branch = "prp/batch-bench"
    cg.ensure_branch(branch)
    git(ctl, "push", "-q", "origin", f"{branch}:{branch}")
    remote_s = local_s = 0.0
    for n in range(prps):
        start = time.perf_counter()
        wg.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--refmap=",
            "origin",
            f"+refs/heads/{branch}:refs/heads/{branch}",
        )
        tip = wg.branch_sha(branch)
        assert tip is not None
        fetched = time.perf_counter()
        # A commit on the tip changing one file (what a PRP hands back): not timed.
        git(worker, "checkout", "-q", "--detach", tip)
        (worker / f"out{n}.txt").write_text(f"work {n}\n")
        git(worker, "add", "-A")
        git(worker, "commit", "-q", "-m", f"PRP {n}")
        commit = git(worker, "rev-parse", "HEAD")
        start -= time.perf_counter() - fetched
        ref = f"refs/prp/handed-back/bench/{n}"
        wg.run("push", "--quiet", "--force", "origin", f"{commit}:{ref}")
        cg.run("fetch", "--quiet", "--no-tags", "origin", f"+{ref}:{ref}")
        mid = time.perf_counter()
        cg.merge(branch, commit, f"Merge {n}")
        merged = time.perf_counter()
        cg.run("push", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}", f":{ref}")
        end = time.perf_counter()
        remote_s += (mid - start) + (end - merged)
        local_s += merged - mid
    return remote_s / prps, local_s / prps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        origin = origin_repo(base / "batch", 200, prps=True)
        local = per_prp(base, origin, "local", ["-n", "3"], options.repeat)
        found: list[Machine] = machines(origin, base / "machines", 3)
        try:
            tx = [a for m in found for a in ("--tx", m.tx)]
            remote = per_prp(
                base,
                origin,
                "remote",
                ["--prp-remote", "origin", "--dist", "load", *tx],
                options.repeat,
            )
        finally:
            for machine in found:
                machine.stop()
        prps = len(SHAPE)
        print(f"12-PRP diamond-and-fan batch, best of {options.repeat} (start-up / whole run):")
        per = {}
        for name, (up, whole) in (("local -n 3", local), ("3 loopback machines", remote)):
            per[name] = (whole - up) / prps
            print(
                f"  {name:20s} start-up {up:5.2f} s  run {whole:5.2f} s  "
                f"per PRP {per[name] * 1000:5.0f} ms"
            )
        ratio = per["3 loopback machines"] / per["local -n 3"]
        print(f"  per-PRP overhead remote / local: {ratio:.2f}x (target <= 1.30x)")
        print(
            "transport per PRP (fetch tip, push commit, controller fetch + publish) "
            "vs the local merge:"
        )
        for files in (200, 2000):
            remote_s, local_s = transport(base, files)
            print(
                f"  {files:5d} files   transport {remote_s * 1000:6.0f} ms   "
                f"local merge {local_s * 1000:5.0f} ms"
            )


if __name__ == "__main__":
    main()
