"""PRPs on remote xdist workers: three "machines" on 127.0.0.1, each its own clone, HOME and
execnet socket server; code moves through a shared git remote, the controller merges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    WITHOUT_PYTEST_HTML,
    git,
    init_repo,
    processes_with,
    wait_gone,
    write_prp,
)
from tests.loopback import SSHD, Machine, SshMachine, clone, machines

BATCH = "60"
# Diamond and fan: a root, a fan of four, two diamonds joining them, a fan of four, a join.
SHAPE: dict[str, list[str]] = {
    "PRP-60.1.1": [],
    **{f"PRP-60.2.{n}": ["PRP-60.1.1"] for n in range(1, 5)},
    "PRP-60.3.1": ["PRP-60.2.1", "PRP-60.2.2"],
    "PRP-60.3.2": ["PRP-60.2.3", "PRP-60.2.4"],
    **{f"PRP-60.4.{n}": ["PRP-60.3.1"] for n in (1, 2)},
    **{f"PRP-60.4.{n}": ["PRP-60.3.2"] for n in (3, 4)},
    "PRP-60.5.1": ["PRP-60.4.1", "PRP-60.4.2"],
}
FAILING = "PRP-60.3.2"  # its two dependents end blocked


def make_batch(root: Path, steps: dict[str, list[str]] | None = None) -> None:
    for pid, needs in SHAPE.items():
        name = pid.replace("PRP-", "").replace(".", "_")
        # Each PRP reads what its dependencies wrote: a stale tip fails its gate.
        checks = [f"test -f out/{d.replace('PRP-', '').replace('.', '_')}.txt" for d in needs]
        gate = "false" if pid == FAILING else " && ".join([f"test -f out/{name}.txt", *checks])
        write_prp(
            root,
            pid,
            deps=needs,
            creates={f"out/{name}.txt": pid},
            steps=(steps or {}).get(pid, []),
            gates=[gate],
        )


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """The team's shared remote: a bare repository holding the project and its PRPs."""
    source = init_repo(tmp_path / "source")
    make_batch(source)
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "PRPs")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    return bare


@pytest.fixture
def controller(origin: Path, tmp_path: Path) -> Path:
    return clone(origin, tmp_path / "controller")


@pytest.fixture
def three(origin: Path, tmp_path: Path) -> Iterator[list[Machine]]:
    found = machines(origin, tmp_path / "machines", 3)
    yield found
    for machine in found:
        machine.stop()


def pytest_run(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTEST_ADDOPTS": WITHOUT_PYTEST_HTML}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def remote_run(
    controller: Path, found: list[Machine], *args: str
) -> subprocess.CompletedProcess[str]:
    tx = [arg for m in found for arg in ("--tx", m.tx)]
    return pytest_run(
        controller, "--prp-batch", BATCH, "--prp-remote", "origin", "--dist", "load", *tx, *args
    )


def result(root: Path) -> dict[str, Any]:
    path = root / ".ce/orchestration/batches" / f"batch-{BATCH}.result.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def entries_of(root: Path) -> dict[str, dict[str, Any]]:
    doc = result(root)
    return {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}


def statuses(root: Path) -> dict[str, str]:
    doc = result(root)
    return {pid: e["status"] for stage in doc["stages"].values() for pid, e in stage.items()}


def merged(root: Path, branch: str) -> list[str]:
    out = git(root, "log", "--format=%(trailers:key=PRP-Id,valueonly)", branch)
    return sorted(out.split())


def test_batch_on_three_machines_equals_local_n3(
    controller: Path, three: list[Machine], origin: Path
) -> None:
    remote = remote_run(controller, three, "-v")
    assert remote.returncode == 1, remote.stdout + remote.stderr
    remote_statuses = statuses(controller)
    branch = f"prp/batch-{BATCH}"
    remote_merged = merged(controller, branch)
    # Every passing PRP merged exactly once, by the controller, and published on the remote.
    passing = sorted(p for p, s in remote_statuses.items() if s == "success")
    assert remote_merged == passing
    assert git(origin, "rev-parse", branch) == git(controller, "rev-parse", branch)
    assert git(origin, "for-each-ref", "refs/prp/") == ""  # commits come back on the reports
    assert git(controller, "for-each-ref", "refs/prp/") == ""  # all merged: none kept aside
    # The machines ran them (the host in the record) and never merged on their own clones.
    workers = {e["worker"] for s in result(controller)["stages"].values() for e in s.values()}
    assert all("@" in w for w in workers)
    assert len({w.split("@")[1] for w in workers}) >= 2, workers
    # The merge queue's rule holds: each merge moved the branch to the PRP's own commit (a
    # fast-forward: its gates passed on that tree) or to a merge its worker checked.
    done = [e for e in entries_of(controller).values() if e["status"] == "success"]
    for entry in done:
        git(controller, "merge-base", "--is-ancestor", entry["merged_commit"], branch)
        assert "merge_unchecked" not in entry
        if entry["merged_commit"] != entry["commits"][0]:
            assert entry["merge_checks"] >= 1, entry
    assert "without a check" not in remote.stdout
    for machine in three:  # a machine's branch is a tip the controller published, no more
        tip = git(machine.clone, "rev-parse", branch)
        git(origin, "merge-base", "--is-ancestor", tip, branch)
        assert git(machine.clone, "for-each-ref", "refs/prp/") == ""  # sent, not kept
    # The same batch, locally with -n 3, in a fresh clone: the same statuses.
    local = clone(origin, controller.parent / "local")
    here = pytest_run(local, "PRPs", "--prp-batch", BATCH, "-n", "3")
    assert here.returncode == 1, here.stdout
    assert statuses(local) == remote_statuses
    assert remote_statuses[FAILING] == "failed_gates"
    assert remote_statuses["PRP-60.4.3"] == remote_statuses["PRP-60.4.4"] == "blocked"
    assert remote_statuses["PRP-60.5.1"] == "success"
    assert merged(local, branch) == remote_merged


def test_worker_with_other_prp_files_is_refused(controller: Path, three: list[Machine]) -> None:
    other = three[1].clone
    path = other / "PRPs" / "PRP-60.1.1.md"
    path.write_text(path.read_text().replace("Work for", "Changed work for"))
    git(other, "commit", "-qam", "edited on that machine")
    commit = git(other, "rev-parse", "HEAD")[:12]
    done = remote_run(controller, [three[1]])
    out = done.stdout + done.stderr
    assert done.returncode == 1
    assert "differ from the controller's: PRPs/PRP-60.1.1.md" in out
    assert f"commit {commit}" in out and str(other) in out
    assert merged(controller, f"prp/batch-{BATCH}") == []


def test_a_machine_that_dies_fails_only_its_prp_and_the_rerun_finishes(
    origin: Path, tmp_path: Path
) -> None:
    # PRP-60.2.3 kills the machine running it (its worker process: the socket server), once.
    marker = tmp_path / "died-once"
    source = clone(origin, tmp_path / "edit")
    make_batch(
        source, {"PRP-60.2.3": [f"test -f {marker} || {{ touch {marker}; kill -9 $PPID; }}"]}
    )
    git(source, "commit", "-qam", "a PRP that kills its machine")
    git(source, "push", "-q", "origin", "HEAD:main")
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 3)
    try:
        first = remote_run(controller, found, "-v")
        out = first.stdout + first.stderr
        assert first.returncode == 1, out
        dead = [m for m in found if not m.alive()]
        assert len(dead) == 1, out
        done = statuses(controller)
        assert done["PRP-60.2.3"] == "failed", out
        error = entries_of(controller)["PRP-60.2.3"]["errors"][-1]
        assert f"@127.0.0.1:{dead[0].port} died while running it" in error, error
        assert "PRP-60.2.3" in git(dead[0].clone, "worktree", "list"), "its work is kept there"
        # The rest went on on the other machines: everything not under PRP-60.2.3 passed.
        assert done["PRP-60.2.1"] == done["PRP-60.3.1"] == "success", out
        # The machine comes back; the same command resumes and finishes the batch.
        dead[0].start()
        again = remote_run(controller, found)
        assert statuses(controller)["PRP-60.2.3"] == "success", again.stdout
        assert statuses(controller)["PRP-60.3.2"] == "failed_gates"
        assert "PRP-60.2.3" in merged(controller, f"prp/batch-{BATCH}")
    finally:
        for machine in found:
            machine.stop()


def test_remote_worker_without_a_shared_remote_is_refused(
    controller: Path, three: list[Machine]
) -> None:
    tx = ["--tx", three[0].tx, "--dist", "load"]
    done = pytest_run(controller, "--prp-batch", BATCH, *tx)
    assert done.returncode == 1
    assert "is a remote worker (another clone): give --prp-remote NAME" in done.stdout
    assert git(controller, "branch", "--list", "prp/*") == ""  # nothing merged anywhere


def test_ctrl_c_on_the_controller_ends_remote_prps(origin: Path, tmp_path: Path) -> None:
    token = f"prp-remote-sleep-{os.getpid()}"
    source = clone(origin, tmp_path / "edit")
    make_batch(source, {"PRP-60.1.1": [f"python3 -c 'import time; time.sleep(60)' {token}"]})
    git(source, "commit", "-qam", "a long first PRP")
    git(source, "push", "-q", "origin", "HEAD:main")
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 2)
    env = {**os.environ, "PYTEST_ADDOPTS": WITHOUT_PYTEST_HTML}
    tx = [arg for m in found for arg in ("--tx", m.tx)]
    args = ["--prp-batch", BATCH, "--prp-remote", "origin", "--dist", "load", *tx]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=controller,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not processes_with(token) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if not processes_with(token):
            proc.kill()
            raise AssertionError("the long step never started:\n" + proc.communicate()[0])
        # prp-status on the controller shows the remote PRP running, on which machine.
        status = subprocess.run(
            [sys.executable, "-m", "pytest_prp", "status", "--batch", BATCH, "--json"],
            cwd=controller,
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        shown = {p["prp_id"]: p for p in json.loads(status.stdout)["prps"]}
        assert shown["PRP-60.1.1"]["status"] == "running", shown["PRP-60.1.1"]
        ports = {f"@127.0.0.1:{m.port}" for m in found}
        assert any(port in str(shown["PRP-60.1.1"]["worker"]) for port in ports), shown
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert wait_gone(token, 15) == [], out
        assert proc.returncode != 0
    finally:
        for machine in found:
            machine.stop()


@pytest.mark.skipif(not SSHD.exists(), reason="needs Debian's openssh-server (sshd)")
def test_batch_over_ssh_and_socket(controller: Path, origin: Path, tmp_path: Path) -> None:
    ssh = SshMachine("ssh1", tmp_path / "ssh1")
    ssh.root.mkdir()
    clone(origin, ssh.clone)
    ssh.start()
    sockets = machines(origin, tmp_path / "machines", 1)
    try:
        tx = ["--tx", ssh.tx, "--tx", sockets[0].tx]
        args = ["--prp-batch", BATCH, "--prp-remote", "origin", "--dist", "load", *tx]
        done = pytest_run(controller, *args)
        assert done.returncode == 1, done.stdout + done.stderr
        found = statuses(controller)
        assert found[FAILING] == "failed_gates" and found["PRP-60.5.1"] == "success"
        passing = sorted(p for p, s in found.items() if s == "success")
        assert merged(controller, f"prp/batch-{BATCH}") == passing
        workers = {e["worker"] for s in result(controller)["stages"].values() for e in s.values()}
        assert any(str(ssh.clone) in w for w in workers), workers
        # Each PRP's log, over ssh as over the socket, is in the controller's results directory.
        logs = controller / ".ce/orchestration/logs" / BATCH
        ran = [e for e in entries_of(controller).values() if e["status"] != "blocked"]
        assert all(e["log"] == str(logs / f"{e['prp_id']}.log") for e in ran), ran
        assert all((logs / f"{e['prp_id']}.log").is_file() for e in ran)
    finally:
        ssh.stop()
        sockets[0].stop()


def test_progress_and_log_of_a_remote_prp_reach_the_controller(
    origin: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    wait = f"for i in $(seq 600); do test -f {go} && break; sleep 0.1; done"
    source = clone(origin, tmp_path / "edit")
    make_batch(source, {"PRP-60.1.1": ["echo relayed-one", f"echo relayed-two; {wait}"]})
    git(source, "commit", "-qam", "a first PRP that waits for the test")
    git(source, "push", "-q", "origin", "HEAD:main")
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 1)
    env = {**os.environ, "PYTEST_ADDOPTS": WITHOUT_PYTEST_HTML}
    env.pop("PYTEST_XDIST_WORKER", None)
    tx = ["--tx", found[0].tx, "--dist", "load", "--prp-heartbeat", "0.2"]
    args = ["--prp-batch", BATCH, "--prp-remote", "origin", "-k", "PRP-60.1.1", *tx]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=controller,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # prp-status on the controller: the step the machine is at, its output, the machine.
        shown: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            status = subprocess.run(
                [sys.executable, "-m", "pytest_prp", "status", "--batch", BATCH, "--json"],
                cwd=controller,
                capture_output=True,
                text=True,
                check=False,
            )
            if status.returncode == 0:
                shown = {p["prp_id"]: p for p in json.loads(status.stdout)["prps"]}
                prp = shown.get("PRP-60.1.1", {})
                if prp.get("last_output") == "relayed-two":
                    break
            time.sleep(0.2)
        prp = shown.get("PRP-60.1.1", {})
        assert prp.get("status") == "running", shown
        assert str(prp.get("where")).startswith("step 3/3"), prp
        assert prp.get("last_output") == "relayed-two", prp
        assert str(found[0].clone) in str(prp.get("worker")), prp  # the machine, by host
        go.touch()
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for machine in found:
            machine.stop()
    # Its log, as the machine wrote it, is in the controller's results directory.
    entry = entries_of(controller)["PRP-60.1.1"]
    log = controller / ".ce/orchestration/logs" / BATCH / "PRP-60.1.1.log"
    assert entry["log"] == str(log)
    text = log.read_text()
    assert "relayed-one" in text and "relayed-two" in text, text
    assert (
        text == (found[0].clone / ".ce/orchestration/logs" / BATCH / "PRP-60.1.1.log").read_text()
    )
    assert str(found[0].clone) in entry["worker"]


def test_every_machine_dead_ends_the_batch_with_each_prp_reported(
    origin: Path, tmp_path: Path
) -> None:
    # Every stage-2 PRP kills the machine running it: after two, no machine is left.
    source = clone(origin, tmp_path / "edit")
    kill = "kill -9 $PPID"
    make_batch(source, {f"PRP-60.2.{n}": [kill] for n in range(1, 5)})
    git(source, "commit", "-qam", "PRPs that kill their machine")
    git(source, "push", "-q", "origin", "HEAD:main")
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 2)
    try:
        done = remote_run(controller, found)
    finally:
        for machine in found:
            machine.stop()
    out = done.stdout + done.stderr
    assert "INTERNALERROR" not in out and "no active workers" not in out, out
    lines = [line for line in out.splitlines() if "prp: no machine left" in line]
    assert len(lines) == 1, out
    found_statuses = statuses(controller)
    assert set(found_statuses) == set(SHAPE), found_statuses  # every PRP, none missing
    assert found_statuses["PRP-60.1.1"] == "success"
    died = [p for p, s in found_statuses.items() if s == "failed"]
    assert len(died) == 2 and all(p.startswith("PRP-60.2.") for p in died), found_statuses
    entries = entries_of(controller)
    for pid, needs in SHAPE.items():
        if pid == "PRP-60.1.1" or pid in died:
            continue
        entry = entries[pid]
        broken = [d for d in needs if found_statuses[d] in ("failed", "blocked")]
        if broken:  # a dependency died (or is blocked itself): blocked, naming it
            assert entry["status"] == "blocked", (pid, entry)
            assert entry["blocked_by"] == broken, (pid, entry)
        else:  # it could have run: not started, and why
            assert entry["status"] == "not_started", (pid, entry, found_statuses)
            assert "no machine left" in entry["errors"][0], (pid, entry)
    assert f"{len(SHAPE) - 3} PRP(s) did not run" in lines[0]
    assert merged(controller, f"prp/batch-{BATCH}") == ["PRP-60.1.1"]


def siblings(tmp_path: Path, prps: dict[str, dict[str, Any]], files: dict[str, str]) -> Path:
    """A shared remote with ``files`` and sibling PRPs that wait for each other before they
    finish their steps: on two machines they run at the same time, from the same base."""
    source = init_repo(tmp_path / "source")
    for rel, text in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text(text)
    started = " && ".join(f"test -f {tmp_path / pid}" for pid in prps)
    for pid, fields in prps.items():
        wait = (
            f"touch {tmp_path / pid}; for i in $(seq 600); do {started} && break; sleep 0.1; done"
        )
        write_prp(source, pid, steps=[wait], **fields)
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "PRPs")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(origin))
    return origin


def two_machines_run(origin: Path, tmp_path: Path, *args: str) -> tuple[Path, str]:
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 2)
    try:
        done = remote_run(controller, found, *args)
    finally:
        for machine in found:
            machine.stop()
    return controller, done.stdout + done.stderr


# One renames what the other calls: each passes alone, together they break (issue 14's case).
RENAME = {
    "creates": {"api.txt": "new"},
    "gates": ['for f in callers/*.txt; do test -e "$f" || continue; test "$(cat $f)" = new; done'],
}
CALLER = {
    "creates": {"callers/b.txt": "old"},
    "gates": ['test "$(cat callers/b.txt)" = "$(cat api.txt)"'],
}


def test_remote_prps_that_break_each_other_leave_the_branch_green(tmp_path: Path) -> None:
    origin = siblings(tmp_path, {"PRP-60.1.1": RENAME, "PRP-60.1.2": CALLER}, {"api.txt": "old\n"})
    controller, out = two_machines_run(origin, tmp_path, "--prp-merge-attempts", "0")
    entries = entries_of(controller)
    assert sorted(e["status"] for e in entries.values()) == ["failed_integration", "success"], out
    first = next(e for e in entries.values() if e["status"] == "success")
    second = next(e for e in entries.values() if e["status"] == "failed_integration")
    # The second was checked on the merged tree, on its machine, and names the first.
    assert second["merge_checks"] == 1, second
    assert second["collides_with"] == [first["prp_id"]], second
    failure = second["merge_failures"][0]
    assert failure["kind"] == "semantic" and failure["collides_with"] == [first["prp_id"]]
    assert "merged_commit" not in second or not second["merged_commit"]
    assert f"collides with {first['prp_id']}" in out
    # The branch holds the first only, and is green: every caller matches the API.
    branch = f"prp/batch-{BATCH}"
    assert merged(controller, branch) == [first["prp_id"]]
    assert git(origin, "rev-parse", branch) == git(controller, "rev-parse", branch)
    api = git(controller, "show", f"{branch}:api.txt")
    callers = git(controller, "ls-tree", "--name-only", f"{branch}", "callers/").split()
    assert all(git(controller, "show", f"{branch}:{c}") == api for c in callers)


def test_remote_prps_that_merge_cleanly_are_checked_and_both_merged(tmp_path: Path) -> None:
    prps = {
        pid: {"creates": {f"{pid}.txt": pid}, "gates": [f"test -f {pid}.txt"]}
        for pid in ("PRP-60.1.1", "PRP-60.1.2")
    }
    origin = siblings(tmp_path, prps, {})
    controller, out = two_machines_run(origin, tmp_path)
    entries = entries_of(controller)
    assert {e["status"] for e in entries.values()} == {"success"}, out
    branch = f"prp/batch-{BATCH}"
    assert merged(controller, branch) == sorted(prps)
    # The one merged second was not a fast-forward: its merge was checked before it merged.
    later = max(entries.values(), key=lambda e: e["merge_checks"])
    assert later["merge_checks"] >= 1, entries
    assert later["merged_commit"] != later["commits"][0]
    assert git(controller, "rev-parse", branch) == later["merged_commit"]
    assert "merged after check" in out, out


def test_a_textual_conflict_of_remote_prps_is_redone_on_the_tip(tmp_path: Path) -> None:
    # Both write one file: the second merge conflicts, is redone on its machine on the new tip.
    prps = {
        pid: {"creates": {"same.txt": pid}, "gates": ["true"]}
        for pid in ("PRP-60.1.1", "PRP-60.1.2")
    }
    origin = siblings(tmp_path, prps, {})
    controller, out = two_machines_run(origin, tmp_path)
    entries = entries_of(controller)
    assert {e["status"] for e in entries.values()} == {"success"}, out
    assert sorted(e.get("redos", 0) for e in entries.values()) == [0, 1], entries
    assert merged(controller, f"prp/batch-{BATCH}") == sorted(prps)


def test_a_conflicting_remote_commit_fails_and_is_kept_on_its_machine(tmp_path: Path) -> None:
    prps = {
        pid: {"creates": {"same.txt": pid}, "gates": ["true"]}
        for pid in ("PRP-60.1.1", "PRP-60.1.2")
    }
    origin = siblings(tmp_path, prps, {})
    controller, out = two_machines_run(origin, tmp_path, "--prp-merge-attempts", "0")
    entries = entries_of(controller)
    assert sorted(e["status"] for e in entries.values()) == ["failed_merge", "success"], out
    won = next(e for e in entries.values() if e["status"] == "success")
    lost = next(e for e in entries.values() if e["status"] == "failed_merge")
    assert lost["collides_with"] == [won["prp_id"]]
    assert lost["merge_failures"][0]["paths"] == ["same.txt"]
    assert merged(controller, f"prp/batch-{BATCH}") == [won["prp_id"]]
    # Its commit is kept where it ran: its branch and worktree in that machine's clone.
    machine = tmp_path / "machines" / ("m1" if "m1/repo" in lost["worker"] else "m2") / "repo"
    assert str(machine) in lost["worker"], lost["worker"]
    own = f"prp/{BATCH}/{lost['prp_id']}"
    assert git(machine, "rev-parse", own) == lost["commits"][0]
    assert lost["prp_id"] in git(machine, "worktree", "list")


def test_local_and_remote_workers_in_one_batch(
    controller: Path, origin: Path, tmp_path: Path
) -> None:
    found = machines(origin, tmp_path / "machines", 1)
    try:
        # -n 1 next to --tx: one local worker and the machine (xdist alone drops the --tx).
        done = remote_run(controller, found, "-n", "1")
    finally:
        found[0].stop()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    found_statuses = statuses(controller)
    assert found_statuses[FAILING] == "failed_gates" and found_statuses["PRP-60.5.1"] == "success"
    passing = sorted(p for p, s in found_statuses.items() if s == "success")
    branch = f"prp/batch-{BATCH}"
    assert merged(controller, branch) == passing
    assert git(origin, "rev-parse", branch) == git(controller, "rev-parse", branch)
    workers = {e["worker"] for e in entries_of(controller).values() if e["status"] != "blocked"}
    assert any("@" in w for w in workers) and any("@" not in w for w in workers), workers


def test_n_auto_next_to_tx_is_refused(controller: Path) -> None:
    tx = ["--tx", "socket=127.0.0.1:1", "--prp-remote", "origin"]
    done = pytest_run(controller, "--prp-batch", BATCH, "-n", "auto", *tx)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "prp: -n auto with --tx: give the local workers as --tx specs too" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_each_run_on_a_socket_server_is_a_run_of_its_own(origin: Path, tmp_path: Path) -> None:
    # A socket server runs every run's worker in its one process: each run still names its
    # processes with a run id of its own (what the end of a run's leftovers goes by).
    tokens = tmp_path / "tokens"
    source = clone(origin, tmp_path / "edit")
    step = f'echo "$PRP_RUN_TOKEN" >> {tokens}'
    make_batch(source, {"PRP-60.1.1": [step], "PRP-60.2.1": [step]})
    git(source, "commit", "-qam", "PRPs that say their run")
    git(source, "push", "-q", "origin", "HEAD:main")
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 1)
    try:
        for prp in ("PRP-60.1.1", "PRP-60.2.1"):
            done = remote_run(controller, found, "-k", prp)
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        found[0].stop()
    runs = [token.rsplit("/", 1)[-1].split(".")[0] for token in tokens.read_text().split()]
    assert len(runs) == 2 and runs[0] != runs[1], runs


def test_a_clone_whose_branch_the_controller_lacks_fetches_it_and_old_refs_go(
    controller: Path, origin: Path, tmp_path: Path
) -> None:
    found = machines(origin, tmp_path / "machines", 1)
    clone_ = found[0].clone
    # Hand-back refs an earlier version's runs left, on this batch's branch and another's.
    for where in (clone_, controller):
        for ref in ("refs/prp/handed-back/r1/PRP-60.1.1", "refs/prp/handed-back/r2/PRP-9.1.1"):
            git(where, "update-ref", ref, "HEAD")
    # The machine's copy of the integration branch is a commit the controller never saw:
    # the controller cannot tell what it lacks, so it publishes the tip and the worker fetches.
    git(clone_, "checkout", "-q", "-b", f"prp/batch-{BATCH}")
    git(clone_, "commit", "-q", "--allow-empty", "-m", "only on that machine")
    git(clone_, "checkout", "-q", "main")
    try:
        done = remote_run(controller, found, "-k", "PRP-60.1.1 or PRP-60.2.1")
    finally:
        found[0].stop()
    assert done.returncode == 0, done.stdout + done.stderr
    branch = f"prp/batch-{BATCH}"
    assert merged(controller, branch) == ["PRP-60.1.1", "PRP-60.2.1"]
    assert "only on that machine" not in git(controller, "log", "--format=%s", branch)
    assert git(clone_, "rev-parse", branch) == git(controller, "rev-parse", branch)
    assert git(clone_, "for-each-ref", "refs/prp/") == ""
    assert git(controller, "for-each-ref", "refs/prp/") == ""
    assert all("handed_back" not in e for e in entries_of(controller).values())


def test_a_shared_remote_lost_mid_run_costs_no_prp_and_is_said(
    origin: Path, tmp_path: Path
) -> None:
    # Workers get the tip from the controller, not from the remote: the batch goes on, and the
    # end of the run says the branch could not be published (it is in the controller's clone).
    gone = tmp_path / "origin-moved.git"
    source = clone(origin, tmp_path / "edit")
    make_batch(source, {"PRP-60.1.1": [f"mv {origin} {gone}"]})
    git(source, "commit", "-qam", "a PRP that takes the remote away")
    git(source, "push", "-q", "origin", "HEAD:main")
    controller = clone(origin, tmp_path / "controller")
    found = machines(origin, tmp_path / "machines", 2)
    try:
        done = remote_run(controller, found)
    finally:
        for machine in found:
            machine.stop()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    found_statuses = statuses(controller)
    assert found_statuses[FAILING] == "failed_gates", out
    assert found_statuses["PRP-60.5.1"] == "success", out
    branch = f"prp/batch-{BATCH}"
    passing = sorted(p for p, s in found_statuses.items() if s == "success")
    assert len(passing) == 9 and merged(controller, branch) == passing
    tip = git(controller, "rev-parse", branch)
    assert f"prp: {branch} is not published to origin" in out, out
    assert f"it is in this clone at {tip[:12]}" in out, out


def test_two_workers_sharing_one_clone(controller: Path, origin: Path, tmp_path: Path) -> None:
    # Two socket servers on one clone (as ``--tx 2*ssh=host`` makes): each moves the clone's
    # copy of the branch to the tips it is told, by compare-and-swap, never back to an older one.
    first = machines(origin, tmp_path / "machines", 1)[0]
    second = Machine("m2", tmp_path / "machines" / "m2")
    second.root.mkdir()
    second.clone.symlink_to(first.clone)
    second.start()
    try:
        done = remote_run(controller, [first, second])
    finally:
        first.stop()
        second.stop()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    found_statuses = statuses(controller)
    assert found_statuses[FAILING] == "failed_gates" and found_statuses["PRP-60.5.1"] == "success"
    passing = sorted(p for p, s in found_statuses.items() if s == "success")
    branch = f"prp/batch-{BATCH}"
    assert merged(controller, branch) == passing
    workers = {e["worker"].split("@")[0] for e in entries_of(controller).values()}
    assert len(workers) == 2, workers
    # The clone's copy of the branch only ever moved forward, to tips the controller held.
    moves = git(first.clone, "reflog", "--format=%H %gs", f"refs/heads/{branch}").splitlines()
    shas = [line.split()[0] for line in reversed(moves)]
    for older, newer in zip(shas, shas[1:], strict=False):
        git(controller, "merge-base", "--is-ancestor", older, newer)
