"""Benchmark: PRPs on remote xdist workers (``--prp-remote``) against local ``-n 3``.

Three "machines" on 127.0.0.1, each its own clone, HOME and execnet socket server (as in
tests/test_remote.py), and a bare repository as the shared remote. A batch of 12 PRPs in a
diamond-and-fan shape (each creates one file and checks it and its dependencies' files).

  per-PRP overhead  (run - start-up) / 12, where start-up is the same command with
                    ``-k nothing`` (workers started, collection, no PRP): local ``-n 3`` in a
                    clone, then ``--tx`` to the three machines. Best of --repeat rounds each,
                    the configurations taking turns within a round. Target: remote <= 1.3 x
                    local. With ``--before REV`` the remote run of pytest-prp at REV (a
                    checkout of this repository on PYTHONPATH, controller and machines) is
                    measured in the same rounds.
  transport         per PRP, what a remote PRP adds in git, next to the local merge the same
                    PRP costs without a remote, in repositories of 200 and 2,000 files (one
                    file changed per PRP), for three ways: now (packs on the channel: the
                    controller packs what the worker lacks of the tip, the worker unpacks it
                    and moves its copy of the branch; the worker packs its commit, the
                    controller unpacks it; the push to the remote is off the critical path and
                    not counted), the last version (the worker fetches the tip and bundles its
                    commit, the controller unbundles it and pushes the merged tip), and the one
                    before (the worker pushes its commit, the controller fetches it and pushes
                    the tip deleting the pushed ref).

Run: ``python benchmarks/bench_remote.py [--repeat N] [--before REV]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_prp.remote import pack_for, unpack  # noqa: E402
from pytest_prp.remote_worker import advance  # noqa: E402
from pytest_prp.workspace.git_workspace import GitWorkspace  # noqa: E402
from pytest_prp.workspace.merge_check import tip_of  # noqa: E402
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


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> float:
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
        env={**os.environ, **(env or {})},
    )
    took = time.perf_counter() - start
    if done.returncode not in (0, 5):
        out = done.stdout[-2000:] + done.stderr[-2000:]
        raise SystemExit(f"run failed ({done.returncode}) in {cwd}:\n{out}")
    return took


@dataclass
class Setup:
    """One configuration measured: its pytest arguments and environment."""

    label: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    startup: float = float("inf")  # best of the rounds, seconds
    whole: float = float("inf")

    def per_prp(self) -> float:
        return (self.whole - self.startup) / len(SHAPE)


def measure(base: Path, origin: Path, setups: list[Setup], repeat: int) -> None:
    """An untimed warm-up run of each setup (bytecode, page cache), then ``repeat`` rounds
    in which the setups take turns (every other round in reverse order)."""
    for n in range(-1, repeat):
        for k, setup in enumerate(setups if n % 2 == 0 else reversed(setups)):
            here = clone(origin, base / f"setup{k}-{n + 1}")
            # Branches of their own: every setup publishes to the one shared remote.
            branch = f"b-{here.name}"
            up = run(
                here, *setup.args, "-k", "nothing", "--prp-branch", f"s-{here.name}", env=setup.env
            )
            whole = run(here, *setup.args, "--prp-branch", branch, env=setup.env)
            if n >= 0:
                setup.startup = min(setup.startup, up)
                setup.whole = min(setup.whole, whole)


def checkout(rev: str, dest: Path) -> Path:
    """This repository's ``rev``, checked out at ``dest`` (for PYTHONPATH)."""
    git(ROOT, "worktree", "add", "-q", "--detach", str(dest), rev)
    return dest


def transport(base: Path, files: int, how: str, prps: int = 10) -> tuple[float, float]:
    """Seconds per PRP: what the remote round trip adds (``how``: ``pack``, ``bundle`` or
    ``push``), and the local merge it stands next to."""
    origin = origin_repo(base / f"t{files}-{how}", files, prps=False)
    ctl = clone(origin, base / f"t{files}-{how}" / "controller")
    worker = clone(origin, base / f"t{files}-{how}" / "worker")
    cg, wg = GitWorkspace.open(ctl), GitWorkspace.open(worker)
    branch = "prp/batch-bench"
    cg.ensure_branch(branch)
    git(ctl, "push", "-q", "origin", f"{branch}:{branch}")
    wg.ensure_branch(branch)
    remote_s = local_s = 0.0
    for n in range(prps):
        start = time.perf_counter()
        mine = wg.branch_sha(branch)
        if how == "pack":  # now: the tip and what the worker lacks, on the channel
            tip = tip_of(cg, branch)
            advance(wg, branch, tip, mine, pack_for(cg, tip, [mine or ""]))
        else:  # a fetch of the tip the controller pushed
            fetch = ("fetch", "--quiet", "--no-tags", "--no-auto-maintenance")
            wg.run(*fetch, "--refmap=", "origin", f"+refs/heads/{branch}:refs/heads/{branch}")
            tip = tip_of(wg, branch)
        fetched = time.perf_counter()
        # A commit on the tip changing one file (what a PRP hands back): not timed.
        git(worker, "checkout", "-q", "--detach", tip)
        (worker / f"out{n}.txt").write_text(f"work {n}\n")
        git(worker, "add", "-A")
        git(worker, "commit", "-q", "-m", f"PRP {n}")
        commit = git(worker, "rev-parse", "HEAD")
        start += time.perf_counter() - fetched  # the untimed part left out
        ref = f"refs/prp/handed-back/bench/{n}"
        if how == "push":  # two versions ago: pushed, fetched by the controller
            wg.run("push", "--quiet", "--force", "origin", f"{commit}:{ref}")
            cg.run("fetch", "--quiet", "--no-tags", "origin", f"+{ref}:{ref}")
        elif how == "bundle":  # last version: a bundle on the channel
            path = worker / ".git" / "b.bundle"
            wg.run("update-ref", ref, commit)
            wg.run("bundle", "create", "--quiet", str(path), f"^{tip}", ref)
            wg.run("update-ref", "-d", ref)
            (ctl / ".git" / "b.bundle").write_bytes(path.read_bytes())
            cg.run("bundle", "unbundle", str(ctl / ".git" / "b.bundle"))
        else:  # now: a pack on the channel
            unpack(cg, pack_for(wg, commit, [tip]))
        mid = time.perf_counter()
        cg.merge(branch, commit, f"Merge {n}")
        merged = time.perf_counter()
        if how == "pack":
            # Published off the critical path (not counted); the worker's copy follows.
            wg.run("update-ref", f"refs/heads/{branch}", tip_of(cg, branch))
            end = time.perf_counter()
            git(ctl, "push", "-q", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
        else:
            publish = [f"refs/heads/{branch}:refs/heads/{branch}"]
            cg.run("push", "--quiet", "origin", *publish, *([f":{ref}"] if how == "push" else []))
            if how == "push":
                cg.run("update-ref", "-d", ref)
            end = time.perf_counter()
        remote_s += (mid - start) + (end - merged)
        local_s += merged - mid
    return remote_s / prps, local_s / prps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also measure pytest-prp at REV")
    options = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        origin = origin_repo(base / "batch", 200, prps=True)
        setups = [Setup("local -n 3", ["-n", "3"])]
        found: list[Machine] = machines(origin, base / "machines", 3)
        old: list[Machine] = []
        try:
            tx = [a for m in found for a in ("--tx", m.tx)]
            remote = ["--prp-remote", "origin", "--dist", "load"]
            setups.append(Setup("3 loopback machines", [*remote, *tx]))
            if options.before:
                env = {"PYTHONPATH": str(checkout(options.before, base / "before"))}
                old = machines(origin, base / "old-machines", 3, env)
                old_tx = [a for m in old for a in ("--tx", m.tx)]
                setups.append(Setup(f"the same at {options.before}", [*remote, *old_tx], env))
            measure(base, origin, setups, options.repeat)
        finally:
            for machine in found + old:
                machine.stop()
            if options.before:
                git(ROOT, "worktree", "remove", "--force", str(base / "before"))
        load = f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
        print(f"12-PRP diamond-and-fan batch, best of {options.repeat} ({load}):")
        for setup in setups:
            print(
                f"  {setup.label:28s} start-up {setup.startup:5.2f} s  run {setup.whole:5.2f} s  "
                f"per PRP {setup.per_prp() * 1000:5.0f} ms  "
                f"({setup.per_prp() / setups[0].per_prp():.2f}x local; "
                f"whole run {setup.whole / setups[0].whole:.2f}x)"
            )
        ratio = setups[1].per_prp() / setups[0].per_prp()
        verdict = "target met" if ratio <= 1.3 else "target missed"
        print(f"  per-PRP overhead remote / local: {ratio:.2f}x (target <= 1.30x): {verdict}")
        print("transport per PRP (tip to the worker, commit to the controller) vs the local merge:")
        hows = {
            "pack": "packs on the channel",
            "bundle": "fetch + bundle + push",
            "push": "fetch + push + fetch",
        }
        for files in (200, 2000):
            for how, label in hows.items():
                remote_s, local_s = transport(base, files, how)
                print(
                    f"  {files:5d} files  {label:22s} transport {remote_s * 1000:6.0f} ms   "
                    f"local merge {local_s * 1000:5.0f} ms"
                )


if __name__ == "__main__":
    main()
