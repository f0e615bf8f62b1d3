"""Shell gates with real bash: pass, fail, timeouts, the failure report, background servers."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pytest_prp.execute.gates import GateResult, format_gate_failure, gate_limits, run_shell_gate
from pytest_prp.spec.model import GATE_SHELL, Gate
from pytest_prp.supervise.leftovers import pid_alive
from pytest_prp.supervise.limits import Limits
from pytest_prp.supervise.output import LogSink

ENV = dict(os.environ)


def gate(command: str, name: str = "File Creation", expected: tuple[str, ...] = ()) -> Gate:
    return Gate(index=1, name=name, kind=GATE_SHELL, command=command, line=42, expected=expected)


def run(g: Gate, tmp_path: Path, timeout: float = 20, log: LogSink | None = None) -> GateResult:
    return run_shell_gate(g, cwd=tmp_path, env=ENV, limits=Limits.starting_now(timeout, log=log))


def test_a_passing_gate(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text("print('hi')\n")
    result = run(gate("test -f hello.py && python3 hello.py"), tmp_path)
    assert result.passed and result.process.returncode == 0 and not result.process.timed_out
    assert result.process.tail == ["hi"]


def test_a_failing_gate_is_reported_with_command_expectations_and_output(tmp_path: Path) -> None:
    g = gate(
        "echo checking\ntest -f hello.py\n# Expected: hello.py exists",
        expected=("hello.py exists", "exit code 0"),
    )
    result = run(g, tmp_path)
    assert not result.passed and result.process.returncode == 1
    report = format_gate_failure(result)
    assert report.splitlines() == [
        'gate 1 "File Creation" (line 42) failed (exit 1)',
        "command:",
        "    echo checking",
        "    test -f hello.py",
        "# Expected: hello.py exists",
        "# Expected: exit code 0",
        "output:",
        "    checking",
    ]


def test_the_report_shows_the_last_40_lines(tmp_path: Path) -> None:
    result = run(gate("seq 1 100; false"), tmp_path)
    report = format_gate_failure(result)
    assert "output (last 40 lines):" in report
    shown = report.split("output (last 40 lines):\n")[1].splitlines()
    assert [line.strip() for line in shown] == [str(n) for n in range(61, 101)]


def test_a_gate_without_output_says_so(tmp_path: Path) -> None:
    report = format_gate_failure(run(gate("exit 4"), tmp_path))
    assert "failed (exit 4)" in report and "output: (none)" in report


def test_a_gate_that_runs_too_long_times_out(tmp_path: Path) -> None:
    start = time.monotonic()
    result = run(gate("echo waiting; sleep 100", name="Slow"), tmp_path, timeout=0.5)
    assert time.monotonic() - start < 3
    assert not result.passed and result.process.timed_out and result.process.returncode is None
    report = format_gate_failure(result)
    assert report.startswith('gate 1 "Slow" (line 42) failed (timed out after 0.5 s)')
    assert "    waiting" in report


def test_the_log_gets_a_section_the_command_and_the_output(tmp_path: Path) -> None:
    with LogSink(tmp_path / "PRP-1.log") as log:
        run(gate("echo fine"), tmp_path, log=log)
    lines = (tmp_path / "PRP-1.log").read_text().splitlines()
    assert lines[:3] == ["=== gate 1: File Creation ===", "$ echo fine", "fine"]
    assert lines[3].startswith("--- exit 0 (")


def test_a_background_server_started_by_a_gate_is_gone_afterwards(tmp_path: Path) -> None:
    # The server keeps the gate's stdout open; the gate must still return promptly.
    command = (
        f"{sys.executable} -m http.server 0 --bind 127.0.0.1 & echo $! > server.pid\n"
        f"sleep 0.3\n"
        f"echo checked"
    )
    start = time.monotonic()
    result = run(gate(command, name="Server"), tmp_path)
    assert result.passed and "checked" in result.process.tail
    assert time.monotonic() - start < 5
    assert not pid_alive(int((tmp_path / "server.pid").read_text()))


def test_a_gate_without_a_command_fails_clearly(tmp_path: Path) -> None:
    result = run(gate("   "), tmp_path)
    assert not result.passed
    assert "the gate has no command to run" in format_gate_failure(result)


def test_a_silent_gate_is_stopped_as_idle_and_reported_so(tmp_path: Path) -> None:
    g = gate("echo 'Starting the server'; sleep 100", name="Server answers")
    result = run_shell_gate(g, cwd=tmp_path, env=ENV, limits=Limits.starting_now(30, idle=0.4))
    assert not result.passed and result.process.timed_out and result.process.idle_timed_out
    assert result.process.returncode is None and result.process.duration < 3
    report = format_gate_failure(result)
    assert report.splitlines()[0] == (
        'gate 1 "Server answers" (line 42) failed '
        '(idle for 0.4 s (last output: "Starting the server"))'
    )


def test_a_gate_printing_steadily_runs_until_done(tmp_path: Path) -> None:
    g = gate("for i in $(seq 10); do echo $i; sleep 0.1; done")
    result = run_shell_gate(g, cwd=tmp_path, env=ENV, limits=Limits.starting_now(30, idle=0.4))
    assert result.passed and not result.process.timed_out and result.process.tail[-1] == "10"


def test_a_gate_cut_short_by_the_prp_clock_names_the_prp_limit(tmp_path: Path) -> None:
    # The PRP was given 30 s and its steps used all but 0.4 s; the gate's own limit is 600 s.
    prp = Limits(time.monotonic() + 0.4, 30.0, idle=0.1, log=None, source="--prp-timeout")
    limits = gate_limits(prp, 600)
    assert limits.idle is None  # the idle limit is for steps and agents
    result = run_shell_gate(gate("sleep 100", name="Slow"), cwd=tmp_path, env=ENV, limits=limits)
    assert result.process.timed_out and result.process.duration < 3
    assert format_gate_failure(result).splitlines()[0] == (
        'gate 1 "Slow" (line 42) failed (timed out after 30 s (--prp-timeout))'
    )


def test_a_gate_stopped_by_its_own_limit_names_it(tmp_path: Path) -> None:
    limits = gate_limits(Limits.starting_now(3600), 0.4)
    result = run_shell_gate(gate("sleep 100", name="Slow"), cwd=tmp_path, env=ENV, limits=limits)
    assert format_gate_failure(result).splitlines()[0] == (
        'gate 1 "Slow" (line 42) failed (timed out after 0.4 s (--prp-gate-timeout))'
    )
