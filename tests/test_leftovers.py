"""No process left behind: what a PRP's steps, agent and gates detach is ended with the PRP
(real pytest runs, real detached processes), and the cookie rules."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from conftest import FAKE_AGENT, git, write_prp
from pytest_prp.supervise import leftovers
from pytest_prp.supervise.leftovers import carries, of_runs, parse_stat
from pytest_prp.supervise.leftovers import pid_alive as alive

# --- the cookie --------------------------------------------------------------------------------


def test_a_token_covers_itself_and_what_is_nested_under_it() -> None:
    assert carries("a1.3", "a1.3")
    assert carries("a1.3/b2.1", "a1.3")  # pytest-prp run inside a step of another
    assert not carries("a1.30", "a1.3") and not carries("a1.3", "a1.3/b2.1")
    assert of_runs("a1.3/b2.1", {"b2"}) and of_runs("a1.3/b2.1", {"a1"})
    assert not of_runs("a1.3/b2.1", {"a", "b2.1", "c3"})


def test_a_new_token_nests_under_the_inherited_one() -> None:
    env, token = leftovers.with_token({"PATH": "/bin"})
    assert env[leftovers.COOKIE] == token and token.startswith(leftovers.RUN_ID + ".")
    inner, nested = leftovers.with_token(env)
    assert nested.startswith(token + "/") and carries(inner[leftovers.COOKIE], token)
    assert leftovers.with_token(env)[1] != nested


def test_stat_lines_are_read_whatever_the_command_name() -> None:
    line = "42 (a (weird) name) S 7 42 40 0 -1 " + " ".join(["0"] * 13) + " 12345 0 0"
    proc = parse_stat(42, line)
    assert proc is not None
    assert (proc.ppid, proc.pgrp, proc.sid, proc.state, proc.start) == (7, 42, 40, "S", 12345)
    assert proc.alive and not parse_stat(42, line.replace(" S ", " Z ", 1)).alive  # type: ignore[union-attr]
    assert parse_stat(1, "1 (x) S 0") is None


# --- whole runs ----------------------------------------------------------------------------------

# fork, setsid, fork (a daemon), writing its pid; "deaf": ignores SIGTERM; "scrub": its
# environment wiped, so no cookie.
DAEMON = textwrap.dedent(
    """
    import os, signal, sys, time
    pid_file, mode = sys.argv[1], sys.argv[2]
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if mode == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    if mode == "scrub":
        os.execve("/bin/sleep", ["sleep", "60"], {})
    time.sleep(60)
    """
)


def detach_all(pids: Path, where: str, deaf: bool = True) -> str:
    """A shell script detaching one process of each kind, each writing its pid to ``pids``
    (``deaf``: also a daemon deaf to SIGTERM, which costs the kill grace, 2 s)."""
    daemon = pids / "daemon.py"
    daemon.write_text(DAEMON)
    at = pids / where
    return (
        f"mkdir -p {at}\n"
        f"nohup sleep 60 > /dev/null 2>&1 & echo $! > {at}/nohup\n"
        f"setsid sleep 60 > /dev/null 2>&1 & echo $! > {at}/setsid\n"
        f"(setsid sleep 60 > /dev/null 2>&1 & echo $! > {at}/subshell)\n"
        f"env -i setsid sleep 60 > /dev/null 2>&1 & echo $! > {at}/env-i\n"
        f"{sys.executable} {daemon} {at}/double-fork plain\n"
        + (f"{sys.executable} {daemon} {at}/deaf deaf\n" if deaf else "")
        + f"{sys.executable} {daemon} {at}/scrubbed scrub\n"
        f"for f in double-fork {'deaf' if deaf else ''} scrubbed; do"
        f" while [ ! -s {at}/$f ]; do sleep 0.01; done; done\n"
    )


def with_mark(mark: str) -> list[int]:
    """Live processes carrying a cookie and ``LEFTOVER_MARK=mark`` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LEFTOVER_MARK={mark}".encode() in env and any(
            e.startswith(leftovers.COOKIE.encode() + b"=") for e in env
        ):
            if alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def survivors(pids: Path) -> dict[str, int]:
    found = {}
    for path in pids.rglob("*"):
        if (
            path.is_file()
            and path.suffix not in (".py", ".sh")
            and path.read_text().strip().isdigit()
        ):
            pid = int(path.read_text())
            if alive(pid):
                found[str(path.relative_to(pids))] = pid
    return found


@pytest.fixture
def pids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pids")


def expect_none_left(pids: Path, mark: str, kinds: int) -> None:
    written = [p for p in pids.rglob("*") if p.is_file() and p.suffix not in (".py", ".sh")]
    assert len(written) == kinds, sorted(str(p) for p in written)
    try:
        # The PRP's own processes are ended and waited for before it reports: nothing to wait.
        assert survivors(pids) == {}
        assert with_mark(mark) == []
    finally:
        for pid in survivors(pids).values():
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("workers", [None, "2"])
def test_nothing_a_prps_steps_and_gates_detach_outlives_the_prp(
    pytester: pytest.Pytester,
    repo: Path,
    pids: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: str | None,
) -> None:
    mark = uuid.uuid4().hex
    monkeypatch.setenv("LEFTOVER_MARK", mark)
    for n in (1, 2):
        write_prp(
            repo,
            f"PRP-61.{n}",
            steps=[detach_all(pids, f"{n}-step", deaf=n == 1) + f"echo {n} > out{n}.txt"],
            gates=[detach_all(pids, f"{n}-gate", deaf=False) + f"test -f out{n}.txt"],
        )
    write_prp(repo, "PRP-61.3", steps=["false"], gates=["true"])  # a failing PRP ends too
    args = ["--prp-batch", "61", "-v"] + (["-n", workers] if workers else [])
    result = pytester.runpytest(*args)
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines_random(["*PRP-61.1*success*", "*PRP-61.2*success*"])
    # The work is whole: the daemons' end did not change any result.
    assert git(repo, "show", "prp/batch-61:out1.txt") == "1"
    assert git(repo, "show", "prp/batch-61:out2.txt") == "2"
    expect_none_left(pids, mark, kinds=4 * 6 + 1)


def test_nothing_an_agent_detaches_outlives_the_prp(
    pytester: pytest.Pytester, repo: Path, pids: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = uuid.uuid4().hex
    monkeypatch.setenv("LEFTOVER_MARK", mark)
    write_prp(repo, "PRP-62.1", creates={"hello.txt": "hi"}, gates=["test -f hello.txt"])
    script = pids / "agent.sh"
    script.write_text(detach_all(pids, "agent") + f'exec {sys.executable} {FAKE_AGENT} "$@"\n')
    result = pytester.runpytest("--prp-batch", "62", "--prp-agent", f"bash {script}", "-v")
    assert result.ret == 0, result.stdout.str()
    assert git(repo, "show", "prp/batch-62:hello.txt") == "hi"
    expect_none_left(pids, mark, kinds=7)


def test_a_timed_out_step_leaves_nothing_either(
    pytester: pytest.Pytester, repo: Path, pids: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = uuid.uuid4().hex
    monkeypatch.setenv("LEFTOVER_MARK", mark)
    write_prp(
        repo, "PRP-63.1", steps=[detach_all(pids, "step", deaf=False) + "sleep 60"], gates=["true"]
    )
    start = time.monotonic()
    result = pytester.runpytest("--prp-batch", "63", "--prp-timeout", "3")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*timed out after 3 s*"])
    assert time.monotonic() - start < 20
    expect_none_left(pids, mark, kinds=6)
