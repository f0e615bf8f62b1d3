"""run_process / run_bash with real processes: output, exit status, timeouts, process groups."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_prp.processes import LogSink, ProcessResult, run_bash, run_process

ENV = dict(os.environ)


def pid_alive(pid: int) -> bool:
    """Running (a zombie is dead: some containers' PID 1 never reaps orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(")") + 2] not in "ZX"


def zombie_children() -> set[int]:
    """Our own children left unreaped."""
    zombies = set()
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rfind(")") + 2] == "Z":
                zombies.add(int(pid))
    return zombies


def bash(script: str, tmp_path: Path, **kwargs: object) -> ProcessResult:
    options: dict[str, object] = {"cwd": tmp_path, "env": ENV, "timeout": 20, "log": None}
    options.update(kwargs)
    return run_bash(script, **options)  # type: ignore[arg-type]


def test_success_gives_exit_0_and_the_output(tmp_path: Path) -> None:
    result = bash("echo hello; echo oops >&2; echo bye", tmp_path)
    assert result.ok and result.returncode == 0 and not result.timed_out
    assert result.tail == ["hello", "oops", "bye"]
    assert result.stdout is None
    assert result.describe() == "exit 0"


def test_runs_in_cwd_with_the_given_env(tmp_path: Path) -> None:
    result = bash('pwd; echo "$MY_VAR"', tmp_path, env={**ENV, "MY_VAR": "from env"})
    assert result.tail == [str(tmp_path), "from env"]


def test_errexit_stops_at_the_first_failing_command(tmp_path: Path) -> None:
    result = bash("echo before; false; echo after", tmp_path)
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


def test_partial_last_line_and_bad_bytes_are_kept(tmp_path: Path) -> None:
    result = bash(r"printf 'caf\xff\nno newline'", tmp_path)
    assert result.tail == ["caf\ufffd", "no newline"]


def test_long_lines_are_cut_in_the_tail_only(tmp_path: Path) -> None:
    with LogSink(tmp_path / "x.log") as log:
        result = bash("printf 'x%.0s' $(seq 5000); echo", tmp_path, log=log)
    assert len(result.tail[0]) < 1100 and "more characters in the log" in result.tail[0]
    assert "x" * 5000 in (tmp_path / "x.log").read_text()


def test_on_line_sees_every_line_in_order(tmp_path: Path) -> None:
    seen: list[str] = []
    bash("for i in 1 2 3; do echo line $i; done", tmp_path, on_line=seen.append)
    assert seen == ["line 1", "line 2", "line 3"]


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


def test_background_child_is_killed_when_the_script_ends(tmp_path: Path) -> None:
    # The background sleep inherits stdout: a naive reader would wait 100 s for EOF.
    zombies = zombie_children()
    start = time.monotonic()
    result = bash("sleep 100 & echo $! > bg.pid; echo started", tmp_path)
    assert result.ok and result.tail == ["started"]
    assert time.monotonic() - start < 5
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert zombie_children() <= zombies


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
def test_keyboard_interrupt_kills_the_group_and_is_reraised(tmp_path: Path) -> None:
    zombies = zombie_children()
    # A real SIGINT, as Ctrl-C sends it to pytest (our children are in their own session).
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        bash("sleep 100 & echo $! > bg.pid; sleep 100", tmp_path)
    assert time.monotonic() - start < 5
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))
    assert zombie_children() <= zombies


def test_an_error_in_on_line_kills_the_group_and_propagates(tmp_path: Path) -> None:
    def boom(line: str) -> None:
        raise RuntimeError(f"callback failed on {line}")

    with pytest.raises(RuntimeError, match="callback failed on started"):
        bash("sleep 100 & echo $! > bg.pid; echo started; sleep 100", tmp_path, on_line=boom)
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))


def test_killed_by_a_signal_is_described(tmp_path: Path) -> None:
    result = run_process(
        [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
        cwd=tmp_path,
        env=ENV,
        timeout=10,
        log=None,
    )
    assert result.returncode == -9
    assert result.describe() == "killed by signal 9 (SIGKILL)"


def test_a_process_that_cannot_start_gives_127_and_the_reason(tmp_path: Path) -> None:
    with LogSink(tmp_path / "x.log") as log:
        result = bash("true", tmp_path / "missing", log=log)
    assert result.returncode == 127
    assert result.tail[0].startswith(f"cannot start bash in {tmp_path / 'missing'}")
    assert "cannot start bash" in (tmp_path / "x.log").read_text()


def test_a_stopped_background_child_is_killed_too(tmp_path: Path) -> None:
    result = bash("sleep 100 & echo $! > bg.pid; kill -STOP $!", tmp_path, kill_grace=5)
    assert result.ok and result.duration < 3  # SIGCONT lets it act on SIGTERM at once
    assert not pid_alive(int((tmp_path / "bg.pid").read_text()))


def test_a_process_escaping_the_group_cannot_hold_us(tmp_path: Path) -> None:
    # setsid leaves our process group (so we cannot stop it), keeping stdout open: we stop
    # listening to it shortly after the script ends instead of hanging.
    result = bash("setsid sleep 30 & echo $! > esc.pid; echo end", tmp_path)
    pid = int((tmp_path / "esc.pid").read_text())
    try:
        assert result.ok and result.tail == ["end"] and result.duration < 3
    finally:
        os.kill(pid, signal.SIGKILL)
