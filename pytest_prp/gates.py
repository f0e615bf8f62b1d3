"""Run a PRP's shell validation gates and describe a failing one."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_prp.model import Gate
from pytest_prp.output import LogSink
from pytest_prp.processes import (
    DEFAULT_TAIL_LINES,
    idle_message,
    run_bash,
    timeout_message,
)


@dataclass
class GateResult:
    gate: Gate
    passed: bool
    returncode: int | None  # None when a limit stopped it (or it had nothing to run)
    timed_out: bool  # stopped by a limit: the wall clock, or idleness (idle_timed_out)
    duration: float
    tail: list[str]
    timeout: float | None = None  # the limit it ran under, for "timed out after N s"
    idle_timed_out: bool = False
    idle_timeout: float | None = None  # the idle limit it ran under, if any
    last_line: str | None = None  # its last non-blank output line


def gate_header(gate: Gate) -> str:
    """The log section title: ``gate 1: File Creation``."""
    return f"gate {gate.index}: {gate.name}"


def run_shell_gate(
    gate: Gate,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    log: LogSink | None,
    on_line: Callable[[str], None] | None = None,
    idle_timeout: float | None = None,
    activity_dir: Path | None = None,
) -> GateResult:
    """Run the gate's command with bash (errexit, pipefail) in ``cwd``; exit 0 passes.

    ``idle_timeout`` (None: none) stops a gate that printed nothing and changed no file in
    ``activity_dir`` (default: ``cwd``) for that long.
    """
    if log is not None:
        log.section(gate_header(gate))
    command = gate.command or ""
    if not command.strip():
        message = "the gate has no command to run"
        if log is not None:
            log.line(message)
        return GateResult(gate, False, None, False, 0.0, [message], timeout)
    if log is not None:
        for line in command.splitlines():
            log.line(f"$ {line}")
    result = run_bash(
        command,
        cwd=cwd,
        env=env,
        timeout=timeout,
        log=log,
        on_line=on_line,
        idle_timeout=idle_timeout,
        activity_dir=activity_dir if activity_dir is not None else cwd,
    )
    return GateResult(
        gate=gate,
        passed=result.ok,
        returncode=result.returncode,
        timed_out=result.timed_out,
        duration=result.duration,
        tail=result.tail,
        timeout=timeout,
        idle_timed_out=result.idle_timed_out,
        idle_timeout=result.idle_timeout,
        last_line=result.last_line,
    )


_EXPECTED_COMMENT = re.compile(r"^\s*#\s*expected\s*:", re.IGNORECASE)


def command_lines(gate: Gate) -> list[str]:
    """The gate's command for display, without its ``# Expected:`` comments (shown apart)."""
    lines = (gate.command or "").strip("\n").splitlines()
    return [line for line in lines if not _EXPECTED_COMMENT.match(line)]


def describe_status(result: GateResult) -> str:
    """``exit 1``, ``timed out after 600 s``, ``idle for 600 s (last output: "...")``,
    ``killed by signal 9``, ``passed``."""
    if result.idle_timed_out:
        return idle_message(result.idle_timeout or result.duration, result.last_line)
    if result.timed_out:
        return timeout_message(result.timeout if result.timeout is not None else result.duration)
    if result.returncode is None:
        return "not run"
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    if result.passed:
        return "passed"
    return f"exit {result.returncode}"


def format_gate_failure(result: GateResult, tail_lines: int = DEFAULT_TAIL_LINES) -> str:
    """A report for a failed gate: what ran, how it ended, what was expected, its last output."""
    gate = result.gate
    where = f" (line {gate.line})" if gate.line else ""
    lines = [f'gate {gate.index} "{gate.name}"{where} failed ({describe_status(result)})']
    command = command_lines(gate)
    if command:
        lines.append("command:")
        lines.extend(f"    {line}" for line in command)
    lines.extend(f"# Expected: {expected}" for expected in gate.expected)
    tail = result.tail[-tail_lines:] if tail_lines > 0 else []
    if tail:
        # A shorter tail is the whole output.
        heading = f"output (last {len(tail)} lines)" if len(tail) == tail_lines else "output"
        lines.append(f"{heading}:")
        lines.extend(f"    {line}" for line in tail)
    else:
        lines.append("output: (none)")
    return "\n".join(lines)
