"""Run a PRP's shell validation gates and describe a failing one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_prp.spec.model import Gate
from pytest_prp.supervise.limits import GATE_LIMIT, Limits
from pytest_prp.supervise.processes import DEFAULT_TAIL_LINES, ProcessResult, run_bash


@dataclass
class GateResult:
    """A gate's verdict and how its check ran (exit status, limits, time, last output)."""

    gate: Gate
    passed: bool
    process: ProcessResult


def gate_limits(prp: Limits, gate_timeout: float) -> Limits:
    """What a gate runs under: its own time limit, never beyond the PRP's clock, and no idle
    limit (``--prp-idle-timeout`` is for steps and agents)."""
    return prp.within(gate_timeout, GATE_LIMIT).without_idle()


def gate_header(gate: Gate) -> str:
    """The log section title: ``gate 1: File Creation``."""
    return f"gate {gate.index}: {gate.name}"


def run_shell_gate(gate: Gate, *, cwd: Path, env: Mapping[str, str], limits: Limits) -> GateResult:
    """Run the gate's command with bash (errexit, pipefail) in ``cwd``; exit 0 passes."""
    log = limits.log
    if log is not None:
        log.section(gate_header(gate))
    command = gate.command or ""
    if not command.strip():
        message = "the gate has no command to run"
        if log is not None:
            log.line(message)
        nothing = ProcessResult(None, False, 0.0, [message], None, timeout=limits.stated)
        return GateResult(gate, False, nothing)
    if log is not None:
        for line in command.splitlines():
            log.line(f"$ {line}")
    result = run_bash(command, cwd=cwd, env=env, limits=limits)
    return GateResult(gate, result.ok, result)


_EXPECTED_COMMENT = re.compile(r"^\s*#\s*expected\s*:", re.IGNORECASE)


def command_lines(gate: Gate) -> list[str]:
    """The gate's command for display, without its ``# Expected:`` comments (shown apart)."""
    lines = (gate.command or "").strip("\n").splitlines()
    return [line for line in lines if not _EXPECTED_COMMENT.match(line)]


def describe_status(result: GateResult) -> str:
    """``exit 1``, ``timed out after 600 s``, ``idle for 600 s (last output: "...")``,
    ``killed by signal 9``, ``passed``."""
    process = result.process
    if process.timed_out:  # the wall clock or idleness
        return process.describe()
    if process.returncode is None:
        return "not run"
    if process.returncode < 0:
        return f"killed by signal {-process.returncode}"
    if result.passed:
        return "passed"
    return f"exit {process.returncode}"


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
    tail = result.process.tail[-tail_lines:] if tail_lines > 0 else []
    if tail:
        # A shorter tail is the whole output.
        heading = f"output (last {len(tail)} lines)" if len(tail) == tail_lines else "output"
        lines.append(f"{heading}:")
        lines.extend(f"    {line}" for line in tail)
    else:
        lines.append("output: (none)")
    return "\n".join(lines)
