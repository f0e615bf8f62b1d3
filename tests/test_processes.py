"""run_process / run_bash with real processes: output, exit status, timeouts, idleness, process
groups, and cleanup on Ctrl-C and SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_prp.supervise import leftovers
from pytest_prp.supervise.leftovers import pid_alive
from pytest_prp.supervise.limits import Limits
from pytest_prp.supervise.output import LogSink
from pytest_prp.supervise.processes import (
    ProcessResult,
    _HeldSignals,
    idle_message,
    newest_change,
    run_bash,
    run_process,
)

ENV = dict(os.environ)


def zombie_children() -> set[int]:
    """Our own children left unreaped."""
    zombies = set()
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            proc = leftovers.process(int(pid))
            if proc is not None and proc.state == "Z":
                zombies.add(proc.pid)
    return zombies


def with_limits(options: dict[str, Any]) -> dict[str, Any]:
    """``timeout``, ``log``, ``on_line``, ``idle_timeout`` and ``activity_dir`` as the one
    ``Limits`` the process runs under; the other options as they are."""
    limits = Limits.starting_now(
        options.pop("timeout", 20),
        log=options.pop("log", None),
        on_line=options.pop("on_line", None),
        idle=options.pop("idle_timeout", None),
        activity_dir=options.pop("activity_dir", None),
    )
    return {"cwd": options.pop("cwd"), "env": ENV, **options, "limits": limits}


def bash(script: str, tmp_path: Path, **kwargs: Any) -> ProcessResult:
    return run_bash(script, **with_limits({"cwd": tmp_path, **kwargs}))


def python(code: str, tmp_path: Path, **kwargs: Any) -> ProcessResult:
    """``code`` run by this Python, stdout unbuffered: each ``write`` reaches the pipe at once."""
    return run_process(
        [sys.executable, "-u", "-c", code], **with_limits({"cwd": tmp_path, **kwargs})
    )


@pytest.fixture(params=["lines", "log copy"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogSink | None]:
    """Both ways output is taken: decoded line by line (no log here), or copied into the log
    as bytes, its tail read back from the log."""
    if request.param == "lines":
        yield None
        return
    with LogSink(tmp_path.parent / f"{tmp_path.name}.log") as sink:
        yield sink


def in_pieces(*pieces: str) -> str:
    """Python code writing ``pieces`` to stdout 0.15 s apart: each one a read of its own."""
    return textwrap.dedent(
        f"""
        import sys, time
        for piece in {list(pieces)!r}:
            sys.stdout.buffer.write(piece.encode("latin-1"))
            time.sleep(0.15)
        """
    )


def test_success_gives_exit_0_and_the_output(tmp_path: Path, log: LogSink | None) -> None:
    result = bash("echo hello; echo oops >&2; echo bye", tmp_path, log=log)
    assert result.ok and result.returncode == 0 and not result.timed_out
    assert result.tail == ["hello", "oops", "bye"]
    assert result.stdout is None
    assert result.describe() == "exit 0"


def test_runs_in_cwd_with_the_given_env(tmp_path: Path) -> None:
    result = bash('pwd; echo "$MY_VAR"', tmp_path, env={**ENV, "MY_VAR": "from env"})
    assert result.tail == [str(tmp_path), "from env"]


def test_errexit_stops_at_the_first_failing_command(tmp_path: Path, log: LogSink | None) -> None:
    result = bash("echo before; false; echo after", tmp_path, log=log)
    assert result.returncode == 1 and not result.ok
    assert result.tail == ["before"]
    assert result.describe() == "exit 1"


def test_pipefail_fails_a_pipeline_with_a_failing_stage(tmp_path: Path) -> None:
    assert bash("false | cat", tmp_path).returncode == 1
    assert bash("exit 7", tmp_path).returncode == 7


def test_tail_keeps_the_last_lines_and_the_log_gets_all(tmp_path: Path) -> None:
    with LogSink(tmp_path / "logs" / "PRP-1.log") as log:
        log.section("step 1/1: Count")
        result = bash("seq 1 100; exit 3", tmp_path, log=log, tail_lines=5)
    assert result.tail == ["96", "97", "98", "99", "100"]
    lines = (tmp_path / "logs" / "PRP-1.log").read_text().splitlines()
    assert lines[0] == "=== step 1/1: Count ==="
    assert lines[1:101] == [str(n) for n in range(1, 101)]
    assert lines[101].startswith("--- exit 3 (")


def test_log_sink_appends_and_is_readable_while_open(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_text("earlier run\n")
    log = LogSink(path)
    log.section("gate 1: File Creation")
    bash("echo one", tmp_path, log=log)
    # Flushed line by line: readable before close (and after a SIGKILL of pytest).
    assert path.read_text().splitlines()[:3] == [
        "earlier run",
        "=== gate 1: File Creation ===",
        "one",
    ]
    log.close()


def test_partial_last_line_and_bad_bytes_are_kept(tmp_path: Path, log: LogSink | None) -> None:
    result = bash(r"printf 'caf\xff\nno newline'", tmp_path, log=log)
    assert result.tail == ["caf\ufffd", "no newline"]
    if log is not None:  # copied as written, and a line end for what follows
        assert log.path.read_bytes().startswith(b"caf\xff\nno newline\n--- exit 0 (")


def test_long_lines_are_cut_in_the_tail_only(tmp_path: Path) -> None:
    with LogSink(tmp_path / "x.log") as log:
        result = bash("printf 'x%.0s' $(seq 5000); echo", tmp_path, log=log)
    assert len(result.tail[0]) < 1100 and "more characters in the log" in result.tail[0]
    assert "x" * 5000 in (tmp_path / "x.log").read_text()


def test_on_line_gets_the_latest_line_of_each_chunk_of_output(
    tmp_path: Path, log: LogSink | None
) -> None:
    # Output apart in time comes in separate reads: each gets its call.
    seen: list[str] = []
    bash("for i in 1 2 3; do echo line $i; sleep 0.2; done", tmp_path, log=log, on_line=seen.append)
    assert seen == ["line 1", "line 2", "line 3"]
    # One write is one chunk: one call, with its latest line that is not blank.
    seen.clear()
    python(
        "import sys; sys.stdout.write('a\\nb\\n\\n \\n')", tmp_path, log=log, on_line=seen.append
    )
    assert seen == ["b"]
    seen.clear()
    bash("echo; echo", tmp_path, log=log, on_line=seen.append)
    assert seen and set(seen) == {""}


def test_stdin_reaches_the_process(tmp_path: Path) -> None:
    result = bash("cat", tmp_path, stdin_text="the prompt\nline 2")
    assert result.tail == ["the prompt", "line 2"]
    big = "y" * 1_000_000
    assert bash("wc -c", tmp_path, stdin_text=big).tail == ["1000000"]


def test_a_process_that_ignores_a_large_stdin_does_not_hang(tmp_path: Path) -> None:
    result = bash("echo done", tmp_path, stdin_text="z" * 2_000_000, timeout=10)
    assert result.ok and result.tail == ["done"] and result.duration < 5


def test_capture_stdout_keeps_stdout_apart(tmp_path: Path) -> None:
    result = bash("echo out1; echo err >&2; echo out2", tmp_path, capture_stdout=True)
    assert result.stdout == "out1\nout2\n"
    assert sorted(result.tail) == ["err", "out1", "out2"]


def test_tail_transform_rewrites_and_drops_lines(tmp_path: Path) -> None:
    def shout(line: str) -> str | None:
        return None if line == "skip" else line.upper()

    result = bash("echo a; echo skip; echo b", tmp_path, tail_transform=shout)
    assert result.tail == ["A", "B"]


# --- output comes a chunk at a time: lines cut across reads, line ends, long lines ---------


def test_a_line_cut_across_reads_is_one_line(tmp_path: Path) -> None:
    seen: list[str] = []
    with LogSink(tmp_path / "x.log") as log:
        log.section("step 1/2: split")
        result = python(
            in_pieces("hel", "lo\nwor", "ld\n", "no new", "line"),
            tmp_path,
            log=log,
            on_line=seen.append,
        )
        log.section("step 2/2: next")
    assert result.ok and result.tail == ["hello", "world", "no newline"]
    assert result.last_line == "no newline"
    # Each line shows up whole (pieces a slow reader gets at once make fewer calls).
    assert seen[-1] == "no newline" and set(seen) <= {"hello", "world", "no newline"}
    lines = (tmp_path / "x.log").read_text().splitlines()
    assert lines[:4] == ["=== step 1/2: split ===", "hello", "world", "no newline"]
    assert lines[4].startswith("--- exit 0 (") and lines[5] == "=== step 2/2: next ==="


def test_crlf_line_ends_lose_their_carriage_return_in_the_tail(tmp_path: Path) -> None:
    code = in_pieces("one\r\ntwo\r", "\nthree\r\r\nbar\r50%\r\n", "end\r")
    with LogSink(tmp_path / "x.log") as log:
        result = python(code, tmp_path, log=log)
    assert result.tail == ["one", "two", "three", "bar\r50%", "end"]
    # Copied into the log: its bytes as they came, the last line ended for it.
    text = (tmp_path / "x.log").read_bytes().decode("utf-8")
    assert text.startswith("one\r\ntwo\r\nthree\r\r\nbar\r50%\r\nend\r\n--- exit 0 (")
    # Decoded line by line (the output wanted too), the log gets the lines as the tail shows them.
    with LogSink(tmp_path / "y.log") as log:
        result = python(code, tmp_path, log=log, capture_stdout=True)
    assert result.tail == ["one", "two", "three", "bar\r50%", "end"]
    text = (tmp_path / "y.log").read_bytes().decode("utf-8")
    assert text.startswith("one\ntwo\nthree\nbar\r50%\nend\n--- exit 0 (")


@pytest.mark.parametrize("capture", [True, False], ids=["lines", "log copy"])
def test_a_megabyte_line_is_whole_in_the_log_and_cut_in_the_tail(
    tmp_path: Path, capture: bool
) -> None:
    code = (
        "import sys, time\n"
        "for _ in range(16):\n"
        "    sys.stdout.write('x' * 62500); time.sleep(0.01)\n"
        "sys.stdout.write('\\nafter\\n' + 'y' * 1_000_000)\n"
    )
    with LogSink(tmp_path / "x.log") as log:
        result = python(code, tmp_path, log=log, capture_stdout=capture)
    assert result.ok
    assert result.tail == [
        "x" * 1000 + "... [999000 more characters in the log]",
        "after",
        "y" * 1000 + "... [999000 more characters in the log]",
    ]
    assert result.last_line == "y" * 1_000_000
    assert (tmp_path / "x.log").read_text().splitlines()[:3] == [
        "x" * 1_000_000,
        "after",
        "y" * 1_000_000,
    ]
    if capture:
        assert result.stdout == "x" * 1_000_000 + "\nafter\n" + "y" * 1_000_000


def test_a_last_line_longer_than_the_tail_scan_shows_its_end(tmp_path: Path) -> None:
    # Copied into the log: its tail is read back from the end, at most 4 MiB.
    with LogSink(tmp_path / "x.log") as log:
        result = bash("echo first; head -c 5000000 /dev/zero | tr '\\0' z; echo", tmp_path, log=log)
    assert result.ok and len(result.tail) == 1
    assert result.tail[0].startswith("z" * 1000 + "... [")
    assert (tmp_path / "x.log").read_text().splitlines()[:2] == ["first", "z" * 5_000_000]


@pytest.mark.parametrize("capture", [True, False], ids=["lines", "log copy"])
def test_100000_lines_all_reach_the_log_and_the_tail_is_the_last_40(
    tmp_path: Path, capture: bool
) -> None:
    seen: list[str] = []
    with LogSink(tmp_path / "x.log") as log:
        log.section("step 1/1: print")
        result = bash(
            "seq 1 100000 | sed 's/^/line /'",
            tmp_path,
            log=log,
            on_line=seen.append,
            capture_stdout=capture,
        )
    assert result.ok and result.duration < 5
    assert result.tail == [f"line {n}" for n in range(99961, 100001)]
    assert result.last_line == "line 100000"
    lines = (tmp_path / "x.log").read_text().splitlines()
    assert lines[0] == "=== step 1/1: print ==="
    assert lines[1:100001] == [f"line {n}" for n in range(1, 100001)]
    assert lines[100001].startswith("--- exit 0 (") and len(lines) == 100002
    if capture:
        assert result.stdout == "".join(f"line {n}\n" for n in range(1, 100001))
    # A sign of life per chunk, in order, ending with the last line.
    numbers = [int(line.split()[1]) for line in seen]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 100000


def test_a_transformed_tail_of_many_lines_keeps_the_last_shown_ones(tmp_path: Path) -> None:
    def evens(line: str) -> str | None:
        return f"even {line}" if int(line) % 2 == 0 else None

    result = bash("seq 1 100001", tmp_path, tail_transform=evens, tail_lines=3)
    assert result.tail == ["even 99996", "even 99998", "even 100000"]
    assert result.last_line == "even 100000"


def test_background_child_is_killed_when_the_script_ends(
    tmp_path: Path, log: LogSink | None
) -> None:
    # The background sleep inherits stdout: a naive reader would wait 100 s for EOF.
    zombies = zombie_children()
    start = time.monotonic()
    result = bash("sleep 100 & echo $! > bg.pid; echo started", tmp_path, log=log)
    assert result.ok and result.tail == ["started"]
    assert time.monotonic() - start < 5
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert zombie_children() <= zombies


def test_without_pidfd_the_exit_is_polled_for_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: LogSink | None
) -> None:
    # Where the kernel gives no pidfd (macOS, Linux before 5.3, some sandboxes).
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    start = time.monotonic()
    result = bash("sleep 100 & echo $! > bg.pid; echo started; exit 4", tmp_path, log=log)
    assert result.returncode == 4 and result.tail == ["started"]
    assert time.monotonic() - start < 5
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert bash("seq 1 3", tmp_path, log=log).tail == ["1", "2", "3"]


def test_background_child_of_a_failing_script_is_killed(tmp_path: Path) -> None:
    result = bash("sleep 100 > /dev/null 2>&1 & echo $! > bg.pid; exit 2", tmp_path)
    assert result.returncode == 2
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))


def test_a_child_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 100 & echo $! > bg.pid"
    result = bash(script, tmp_path, kill_grace=0.3)
    assert result.ok
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert 0.3 <= result.duration < 5


def test_timeout_kills_the_whole_group_quickly(tmp_path: Path) -> None:
    zombies = zombie_children()
    with LogSink(tmp_path / "t.log") as log:
        result = bash(
            "echo going; sleep 100 & echo $! > bg.pid; sleep 100", tmp_path, timeout=0.5, log=log
        )
    assert result.timed_out and result.returncode is None and not result.ok
    assert 0.5 <= result.duration < 3
    assert result.tail == ["going"]
    assert result.describe() == "timed out after 0.5 s"
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert "--- timed out after 0.5 s (" in (tmp_path / "t.log").read_text()
    assert zombie_children() <= zombies


def test_timeout_message_reads_like_the_limit(tmp_path: Path) -> None:
    result = ProcessResult(None, True, 600.2, [], None, timeout=600)
    assert result.describe() == "timed out after 600 s"


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="SIGINT does not raise KeyboardInterrupt here",
)
def test_keyboard_interrupt_kills_the_group_and_is_reraised(
    tmp_path: Path, log: LogSink | None
) -> None:
    zombies = zombie_children()
    # A real SIGINT, as Ctrl-C sends it to pytest (our children are in their own session).
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        bash("sleep 100 & echo $! > bg.pid; sleep 100", tmp_path, log=log)
    assert time.monotonic() - start < 5
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert zombie_children() <= zombies


def test_an_error_in_on_line_kills_the_group_and_propagates(
    tmp_path: Path, log: LogSink | None
) -> None:
    calls: list[str] = []

    def boom(line: str) -> None:
        calls.append(line)
        raise RuntimeError(f"callback failed on {line}")

    with pytest.raises(RuntimeError, match="callback failed on started") as raised:
        bash(
            # Says goodbye when stopped: output after the failed callback.
            "trap 'echo bye; exit 1' TERM; sleep 100 & echo $! > bg.pid; echo started; wait",
            tmp_path,
            log=log,
            on_line=boom,
        )
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    # Its one error propagates, not a second one raised while the group was being stopped.
    assert calls == ["started"] and raised.value.__context__ is None


def test_killed_by_a_signal_is_described(tmp_path: Path) -> None:
    result = run_process(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        cwd=tmp_path,
        env=ENV,
        limits=Limits.starting_now(10),
    )
    assert result.returncode == -9
    assert result.describe() == "killed by signal 9 (SIGKILL)"


def test_a_process_that_cannot_start_gives_127_and_the_reason(tmp_path: Path) -> None:
    with LogSink(tmp_path / "x.log") as log:
        result = bash("true", tmp_path / "missing", log=log)
    assert result.returncode == 127
    bash_path = shutil.which("bash")  # looked up once along the PATH it runs with
    assert result.tail[0].startswith(f"cannot start {bash_path} in {tmp_path / 'missing'}")
    assert f"cannot start {bash_path}" in (tmp_path / "x.log").read_text()


def test_a_stopped_background_child_is_killed_too(tmp_path: Path, log: LogSink | None) -> None:
    result = bash("sleep 100 & echo $! > bg.pid; kill -STOP $!", tmp_path, log=log, kill_grace=5)
    assert result.ok and result.duration < 3  # SIGCONT lets it act on SIGTERM at once
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))


def test_a_process_escaping_the_group_cannot_hold_us(tmp_path: Path, log: LogSink | None) -> None:
    # setsid leaves our process group, keeping stdout open: it is found by its cookie and
    # ended, instead of holding the pipe (or running on).
    result = bash("setsid sleep 30 & echo $! > esc.pid; echo end", tmp_path, log=log)
    pid = int((tmp_path / "esc.pid").read_text())
    try:
        assert result.ok and result.tail == ["end"] and result.duration < 3
        assert not pid_alive(pid)
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# A daemon in Python: fork, setsid, fork again (the classic double fork), optionally with an
# empty environment (no cookie) and deaf to SIGTERM; it writes its pid to argv[1], then sleeps.
DAEMON = textwrap.dedent(
    """
    import os, signal, sys, time
    pid_file, mode = sys.argv[1], sys.argv[2]
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if "deaf" in mode:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "scrub" in mode:
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)"], {})
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(60)
    """
)

LEAVERS = {
    "nohup": "nohup sleep 60 > /dev/null 2>&1 & echo $! > {pid}",
    "setsid": "setsid sleep 60 > /dev/null 2>&1 & echo $! > {pid}",
    "subshell": "(setsid sleep 60 > /dev/null 2>&1 & echo $! > {pid}) ",
    "double fork": '{python} -c "$DAEMON" {pid} plain',
    "double fork, deaf to SIGTERM": '{python} -c "$DAEMON" {pid} deaf',
    "env -i and setsid": "env -i setsid sleep 60 > /dev/null 2>&1 & echo $! > {pid}",
    "env -i, setsid, deaf": (
        "env -i setsid sh -c 'trap \"\" TERM; echo $$ > {pid}; exec sleep 60' "
        "> /dev/null 2>&1 & true"
    ),
}


def pid_from(path: Path) -> int:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.01)
    return int(path.read_text())


@pytest.mark.parametrize("how", sorted(LEAVERS))
@pytest.mark.parametrize("ending", ["exit 0", "exit 3", "timeout"])
def test_no_process_outlives_its_step_however_it_left(
    tmp_path: Path, how: str, ending: str
) -> None:
    zombies = zombie_children()
    pid_file = tmp_path / "leaver.pid"
    script = LEAVERS[how].format(python=sys.executable, pid=pid_file)
    script += f"; while [ ! -s {pid_file} ]; do sleep 0.01; done"
    script += "; sleep 60" if ending == "timeout" else f"; {ending}"
    env = {**ENV, "DAEMON": DAEMON}
    result = bash(
        script, tmp_path, env=env, timeout=2 if ending == "timeout" else 20, kill_grace=0.3
    )
    pid = pid_from(pid_file)
    try:
        assert not pid_alive(pid), f"{how}: pid {pid} outlived the step"
        assert zombie_children() <= zombies
        if ending == "timeout":
            assert result.timed_out and result.describe() == "timed out after 2 s"
        else:
            assert result.returncode == int(ending.split()[1]) and not result.timed_out
        assert result.duration < 6
        if "deaf" in how:
            assert result.duration >= 0.3  # SIGTERM was ignored: SIGKILL after the grace
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- idle limit ------------------------------------------------------------------------------


def test_a_silent_process_is_stopped_as_idle_with_its_last_output(tmp_path: Path) -> None:
    zombies = zombie_children()
    with LogSink(tmp_path / "idle.log") as log:
        result = bash(
            "echo 'Running the migrations'; sleep 100 & echo $! > bg.pid; sleep 100",
            tmp_path,
            idle_timeout=0.5,
            log=log,
        )
    assert result.idle_timed_out and result.timed_out and not result.ok
    assert result.returncode is None
    assert 0.5 <= result.duration < 3
    assert result.describe() == 'idle for 0.5 s (last output: "Running the migrations")'
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert zombie_children() <= zombies
    assert (
        '--- idle for 0.5 s (last output: "Running the migrations") ('
        in (tmp_path / "idle.log").read_text()
    )


def test_a_process_that_never_printed_is_idle_with_no_output(
    tmp_path: Path, log: LogSink | None
) -> None:
    result = bash("sleep 100", tmp_path, log=log, idle_timeout=0.3)
    assert result.describe() == "idle for 0.3 s (no output)"


def test_a_process_printing_all_the_time_is_never_idle_but_hits_the_wall_clock(
    tmp_path: Path,
    log: LogSink | None,
) -> None:
    result = bash(
        "while true; do echo tick; sleep 0.1; done",
        tmp_path,
        log=log,
        timeout=1.5,
        idle_timeout=0.5,
    )
    assert result.timed_out and not result.idle_timed_out
    assert result.describe() == "timed out after 1.5 s"
    assert 1.5 <= result.duration < 4 and result.last_line == "tick"


def test_changing_files_in_the_worktree_counts_as_activity(
    tmp_path: Path, log: LogSink | None
) -> None:
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    # Silent for 1.5 s, three times the idle limit, but writing a file all along.
    script = "for i in $(seq 15); do echo $i > src/progress.txt; sleep 0.1; done; echo finished"
    result = bash(script, work, idle_timeout=0.5, activity_dir=work)
    assert result.ok and result.tail == ["finished"]
    assert result.duration >= 1.5


def test_changes_inside_git_are_not_activity(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    script = "while true; do date > .git/index.lock; sleep 0.1; done"
    result = bash(script, work, idle_timeout=0.5, activity_dir=work)
    assert result.idle_timed_out and result.duration < 3


def test_without_an_activity_dir_file_changes_do_not_count(tmp_path: Path) -> None:
    script = "while true; do date > progress.txt; sleep 0.1; done"
    result = bash(script, tmp_path, idle_timeout=0.5)
    assert result.idle_timed_out


def test_idle_message_cuts_a_long_last_line() -> None:
    message = idle_message(600, "  " + "x" * 200 + "  ")
    assert message.startswith('idle for 600 s (last output: "xxxx')
    assert message.endswith('...")')
    assert len(message) < 120
    assert idle_message(600, None) == "idle for 600 s (no output)"
    assert idle_message(0.5, "short") == 'idle for 0.5 s (last output: "short")'


def test_newest_change_sees_deep_files_and_deletions_but_not_git(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    deep = tmp_path / "a" / "b" / "deep.txt"
    deep.write_text("x")
    for path in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", deep):
        os.utime(path, (1000, 1000))
    now = time.time()
    assert newest_change(tmp_path, not_after=now) == 1000
    os.utime(deep, (2000, 2000))
    assert newest_change(tmp_path, not_after=now) == 2000
    (tmp_path / ".git" / "HEAD").write_text("ref")
    os.utime(tmp_path / ".git", (3000, 3000))
    assert newest_change(tmp_path, not_after=now) == 2000  # .git is not looked at
    deep.unlink()  # a deletion changes the directory
    assert newest_change(tmp_path, not_after=now + 1) == pytest.approx(time.time(), abs=5)
    os.utime(tmp_path / "a" / "b", (now + 3600, now + 3600))  # dated in the future: skipped
    assert newest_change(tmp_path, not_after=now + 1) != now + 3600
    assert newest_change(tmp_path / "missing", not_after=now) is None


# --- Ctrl-C and SIGTERM, with real signals -----------------------------------------------------

CHILD = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from pytest_prp.supervise.limits import Limits
from pytest_prp.supervise.processes import run_bash
{setup}
run_bash(
    "setsid sleep 100 > /dev/null 2>&1 & echo $! > esc.pid; "
    "sleep 100 & echo $$ > pgid.tmp && mv pgid.tmp pgid; sleep 100",
    cwd=Path.cwd(), env=dict(os.environ), limits=Limits.starting_now(60),
)
"""


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of the group."""
    return [proc.pid for proc in leftovers.processes() if proc.pgrp == pgid and proc.alive]


def interrupt_child(tmp_path: Path, sig: signal.Signals, setup: str = "") -> int:
    """Start a Python running run_bash, send it ``sig``; its exit status (group checked gone, and
    the process that left the group with setsid)."""
    root = str(Path(__file__).resolve().parents[1])
    code = textwrap.dedent(CHILD).format(root=root, setup=setup)
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        start_new_session=True,
        stderr=subprocess.PIPE,
    )
    pgid_file = tmp_path / "pgid"
    try:
        deadline = time.monotonic() + 10
        while not pgid_file.exists():
            assert time.monotonic() < deadline, "the child never started bash"
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.02)
        pgid = int(pgid_file.read_text())
        assert len(group_members(pgid)) >= 2  # bash and its sleeps
        child.send_signal(sig)
        status = child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert group_members(pgid) == []
    assert not pid_alive(int((tmp_path / "esc.pid").read_text()))
    return status


def test_ctrl_c_of_the_caller_stops_the_whole_group(tmp_path: Path) -> None:
    # Python's default SIGINT handler raises KeyboardInterrupt; unhandled, it dies of SIGINT.
    assert interrupt_child(tmp_path, signal.SIGINT) == -signal.SIGINT


def test_sigterm_turned_into_keyboard_interrupt_stops_the_group(tmp_path: Path) -> None:
    setup = textwrap.dedent(
        """
        def stop(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, stop)
        """
    )
    assert interrupt_child(tmp_path, signal.SIGTERM, setup) == -signal.SIGINT


def test_system_exit_from_a_signal_handler_stops_the_group(tmp_path: Path) -> None:
    setup = textwrap.dedent(
        """
        def stop(signum, frame):
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        """
    )
    assert interrupt_child(tmp_path, signal.SIGTERM, setup) == 143


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="SIGINT does not raise KeyboardInterrupt here",
)
def test_a_signal_while_a_process_starts_is_held_then_delivered() -> None:
    # While Popen runs, an interrupt would lose the child's pid: it waits until we know it.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers belong to the main thread")
    held = _HeldSignals()
    held.hold()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # delivered, and handled by Python, but held back
    except KeyboardInterrupt:
        held.release()
        pytest.fail("SIGINT was not held")
    with pytest.raises(KeyboardInterrupt):
        held.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_processes_run_when_our_descriptors_number_over_1024(tmp_path: Path) -> None:
    # select() cannot watch a descriptor numbered 1024 or more; a long pytest session with many
    # files open gets there, and the pidfd of the next process is then such a number.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"cannot open 1300 files here (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert max(held) >= 1024
        with LogSink(tmp_path / "x.log") as log:
            written = bash("seq 1 3000", tmp_path, log=log)  # the log file way
            piped = bash("seq 1 3000", tmp_path, log=log, capture_stdout=True)  # pipes
        assert written.ok and written.tail[-1] == "3000"
        assert piped.ok and piped.tail[-1] == "3000" and piped.stdout is not None
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_writing_to_dev_stderr_keeps_the_log_whole(tmp_path: Path) -> None:
    # `> /dev/stderr` reopens the process's stderr: were it the log file itself, that would
    # truncate the log (and everything earlier steps wrote into it).
    with LogSink(tmp_path / "x.log") as log:
        log.section("step 1/2: earlier")
        bash("echo from step one", tmp_path, log=log)
        log.section("step 2/2: shouting")
        result = bash(
            "echo one; echo oops > /dev/stderr; echo two > /dev/stdout; echo three",
            tmp_path,
            log=log,
        )
    assert result.ok and result.tail == ["one", "oops", "two", "three"]
    lines = (tmp_path / "x.log").read_text().splitlines()
    assert lines[:3] == ["=== step 1/2: earlier ===", "from step one", lines[2]]
    assert lines[2].startswith("--- exit 0 (")
    assert lines[3:8] == ["=== step 2/2: shouting ===", "one", "oops", "two", "three"]


def test_without_splice_the_log_copy_reads_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where splice() is missing (not Linux) the log copy moves the bytes itself.
    monkeypatch.delattr(os, "splice", raising=False)
    seen: list[str] = []
    with LogSink(tmp_path / "x.log") as log:
        log.section("step 1/1: print")
        result = bash("seq 1 20000; printf 'no newline'", tmp_path, log=log, on_line=seen.append)
    assert result.ok and result.tail[-2:] == ["20000", "no newline"]
    lines = (tmp_path / "x.log").read_text().splitlines()
    assert lines[1:20002] == [*map(str, range(1, 20001)), "no newline"]
    assert lines[20002].startswith("--- exit 0 (") and seen[-1] == "no newline"


def test_without_pidfd_what_left_the_group_is_still_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signalled by pid (its start time checked first) where the kernel gives no pidfd.
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    script = (
        "setsid sleep 60 > /dev/null 2>&1 & echo $! > a.pid; "
        "setsid sh -c 'trap \"\" TERM; echo $$ > b.pid; exec sleep 60' > /dev/null 2>&1 & "
        "while [ ! -s b.pid ]; do sleep 0.01; done"
    )
    result = bash(script, tmp_path, kill_grace=0.3)
    pids = [pid_from(tmp_path / name) for name in ("a.pid", "b.pid")]
    try:
        assert result.ok and [pid for pid in pids if pid_alive(pid)] == []
        assert result.duration >= 0.3  # the deaf one waited out the grace
    finally:
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
