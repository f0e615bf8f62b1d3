"""Unattended runs: limits, signals, heartbeats, retries, budget, models (real processes)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import FAKE_AGENT, git, processes_with, wait_gone, worktrees_dir, write_prp

RESULTS = Path(".ce/orchestration")


def agent(*flags: str) -> str:
    return " ".join([sys.executable, str(FAKE_AGENT), *flags])


def entries(root: Path, batch: str) -> dict[str, dict[str, Any]]:
    doc = json.loads((root / RESULTS / "batches" / f"batch-{batch}.result.json").read_text())
    return {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}


def test_failed_gates_go_back_to_the_agent(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-20.1.1", gates=["grep -qx RIGHT out.txt\n# Expected: out.txt says RIGHT"])
    command = agent("--fix-on-attempt", "2", "--write", "out.txt=RIGHT", "--cost", "0.5")
    once = pytester.runpytest("--prp-batch", "20", "--prp-agent", command)
    assert once.ret == 1
    assert entries(repo, "20")["PRP-20.1.1"]["status"] == "failed_gates"
    twice = pytester.runpytest(
        "--prp-batch", "20", "--prp-agent", command, "--prp-attempts", "2", "-v"
    )
    assert twice.ret == 0, twice.stdout.str()
    entry = entries(repo, "20")["PRP-20.1.1"]
    assert entry["status"] == "success"
    assert [a["gates_failed"] for a in entry["attempts"]] == [1, 0]
    assert entry["cost_usd"] == pytest.approx(1.0)
    assert git(repo, "show", "prp/batch-20:out.txt") == "RIGHT"
    prompts = sorted((repo / RESULTS / "prompts" / "20").iterdir())
    assert prompts and "failed gates" in prompts[-1].read_text()


def test_wall_clock_limit_ends_the_prp_and_the_batch_goes_on(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-21.1.1", gates=["true"])
    write_prp(repo, "PRP-21.1.2", gates=["true"], extra="model: fine")
    token = "wallclock-token-21"
    hang = agent("--mode", "hang_printing")
    command = f"if [ $PRP_ID = PRP-21.1.1 ]; then {hang} {token}; else {agent()}; fi"
    start = time.monotonic()
    result = pytester.runpytest("--prp-batch", "21", "--prp-agent", command, "--prp-timeout", "2")
    assert time.monotonic() - start < 30
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*agent timed out after 2 s (--prp-timeout)*"])
    statuses = {pid: e["status"] for pid, e in entries(repo, "21").items()}
    assert statuses == {"PRP-21.1.1": "failed", "PRP-21.1.2": "success"}
    assert wait_gone(token) == []


def test_a_gate_cut_short_by_the_prp_limit_names_that_limit(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # The steps use most of the PRP's 3 s; the gate has 600 s of its own but only what is left
    # of the PRP's: it is said to have timed out after the PRP's limit, not the seconds left.
    write_prp(repo, "PRP-21.2.1", steps=["sleep 2"], gates=["sleep 60"])
    result = pytester.runpytest("--prp-batch", "21", "--prp-timeout", "3")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*failed (timed out after 3 s (--prp-timeout))*"])
    gate = entries(repo, "21")["PRP-21.2.1"]["attempts"][0]["gates"][0]
    assert gate["timed_out"] and gate["exit_code"] is None and gate["seconds"] < 2.5


def test_idle_limit_names_the_last_output(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-22.1.1", gates=["true"])
    result = pytester.runpytest(
        "--prp-batch", "22", "--prp-agent", agent("--mode", "hang"), "--prp-idle-timeout", "1"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*agent idle for 1 s (last output: *; --prp-idle-timeout)*"])


@pytest.mark.parametrize(
    ("steps", "gate", "options", "said"),
    [
        (
            ["sleep 30"],
            "true",
            ["--prp-timeout", "1"],
            "*step 2/2 * timed out after 1 s (--prp-timeout)*",
        ),
        (
            ["sleep 30"],
            "true",
            ["--prp-idle-timeout", "1"],
            "*step 2/2 * idle for 1 s (no output; --prp-idle-timeout)*",
        ),
        (
            [],
            "sleep 30",
            ["--prp-gate-timeout", "1"],
            "*failed (timed out after 1 s (--prp-gate-timeout))*",
        ),
        (
            ["true"],
            "sleep 30",
            ["--prp-timeout", "1"],
            "*failed (timed out after 1 s (--prp-timeout))*",
        ),
    ],
    ids=["step-by-prp-clock", "step-idle", "gate-by-its-limit", "gate-by-prp-clock"],
)
def test_every_limit_that_cuts_a_process_short_names_its_option(
    pytester: pytest.Pytester,
    repo: Path,
    steps: list[str],
    gate: str,
    options: list[str],
    said: str,
) -> None:
    write_prp(repo, "PRP-22.2.1", creates={"a.txt": "a"}, steps=steps, gates=[gate])
    start = time.monotonic()
    result = pytester.runpytest("--prp-batch", "22", *options)
    assert time.monotonic() - start < 20
    assert result.ret == 1
    result.stdout.fnmatch_lines([said])
    if gate != "true":  # the gate's record says it too
        record = entries(repo, "22")["PRP-22.2.1"]["attempts"][0]["gates"][0]
        assert record["cut_short"] == f"timed out after 1 s ({options[0]})"


def test_budget_stops_new_prps(pytester: pytest.Pytester, repo: Path) -> None:
    for n in (1, 2, 3):
        write_prp(repo, f"PRP-23.1.{n}", gates=["true"])
    result = pytester.runpytest(
        "--prp-batch", "23", "--prp-agent", agent("--cost", "0.5"), "--prp-budget-usd", "0.6"
    )
    assert result.ret == 0
    statuses = {pid: e["status"] for pid, e in entries(repo, "23").items()}
    assert statuses == {
        "PRP-23.1.1": "success",
        "PRP-23.1.2": "success",
        "PRP-23.1.3": "skipped_budget",
    }
    result.stdout.fnmatch_lines(["*1 over budget*"])


def test_model_from_frontmatter_or_complexity(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-24.1.1", gates=["true"], extra="complexity: low")
    write_prp(repo, "PRP-24.1.2", gates=["true"], extra="model: opus\ncomplexity: low")
    write_prp(repo, "PRP-24.1.3", gates=["true"])
    pytester.makeini("[pytest]\nprp_models = low=haiku high=opus\n")
    record = repo.parent / "record-{prp_id}.json"
    command = agent("--record", str(record), "--model {model}")
    result = pytester.runpytest("--prp-batch", "24", "--prp-agent", command)
    assert result.ret == 0, result.stdout.str()
    models = {pid: e["model"] for pid, e in entries(repo, "24").items()}
    assert models == {"PRP-24.1.1": "haiku", "PRP-24.1.2": "opus", "PRP-24.1.3": None}
    argv = json.loads((repo.parent / "record-PRP-24.1.3.json").read_text())["argv"]
    assert "--model" not in argv
    argv = json.loads((repo.parent / "record-PRP-24.1.1.json").read_text())["argv"]
    assert argv[argv.index("--model") + 1] == "haiku"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_everything_and_the_batch_resumes(
    pytester: pytest.Pytester, repo: Path, signum: int
) -> None:
    write_prp(repo, "PRP-25.1.1", gates=["true"])
    token = f"signal-token-{int(signum)}"
    started = repo.parent / f"agent-started-{int(signum)}"
    # The agent also detaches a process from its group, as `nohup cmd &` in a tool call does.
    detached = f"setsid bash -c 'sleep 300; : {token}' > /dev/null 2>&1 &"
    hang = f"{detached} touch {started}; {agent('--mode', 'hang')} {token}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--prp-batch",
            "25",
            "--prp-agent",
            hang,
            "-p",
            "no:cacheprovider",
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists() or len(processes_with(token)) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    doc = json.loads((repo / RESULTS / "batches" / "batch-25.result.json").read_text())
    assert doc["interrupted"] is True
    assert wait_gone(token) == []
    # The worktree it ran in is kept under the PRP's name for a look, no other is left.
    kept = [p.name for p in worktrees_dir(repo).iterdir()]
    assert kept == ["PRP-25.1.1"]
    # The same command with a working agent completes the batch.
    again = pytester.runpytest("--prp-batch", "25", "--prp-agent", agent())
    assert again.ret == 0, again.stdout.str()


def test_heartbeat_and_status_view_of_a_running_batch(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-26.1.1", gates=["true"], extra="estimated_hours: 1")
    token = "status-token-26"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--prp-batch",
            "26",
            "-p",
            "no:cacheprovider",
            "--prp-agent",
            f"{agent('--mode', 'hang_printing')} {token}",
            "--prp-heartbeat",
            "0.2",
        ],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    beat_file = repo / RESULTS / "heartbeats" / "26" / "PRP-26.1.1.json"
    try:
        deadline = time.monotonic() + 60
        beat: dict[str, Any] = {}
        while not (beat.get("phase") == "steps" and beat.get("last_output")):
            assert time.monotonic() < deadline and proc.poll() is None, beat
            time.sleep(0.05)
            try:  # the agent's first output, however long a loaded machine takes for it
                beat = json.loads(beat_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                beat = {}
        # The result JSON lists the batch from the start, before any PRP has finished.
        listed = entries(repo, "26")
        assert listed["PRP-26.1.1"]["status"] == "pending"
        assert beat["phase"] == "steps" and beat["pid"] > 0 and beat["last_output"]
        status = subprocess.run(
            [sys.executable, "-m", "pytest_prp", "status", "--batch", "26", "--json"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        view = json.loads(status.stdout)
        assert "PRP-26.1.1" in json.dumps(view) and "running" in json.dumps(view)
        table = subprocess.run(
            [sys.executable, "-m", "pytest_prp", "status", "--batch", "26"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "PRP-26.1.1" in table.stdout and "steps" in table.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert wait_gone(token) == []


def test_refused_tool_calls_are_shown_under_the_failure_and_counted(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-25.1.1", gates=["test -f out.txt"])
    write_prp(repo, "PRP-25.1.2", gates=["true"])
    deny = ("--deny", "'Bash=pytest -q'", "--deny", "Write=/etc/out.txt")
    command = f"if [ $PRP_ID = PRP-25.1.1 ]; then {agent(*deny)}; else {agent()}; fi"
    result = pytester.runpytest("--prp-batch", "25", "--prp-agent", command)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*PRP-25.1.1: 1 of 1 gates failed*",
            "*the agent CLI refused 2 tool call(s):*",
            "*  - Bash pytest -q: fake agent: Bash on pytest -q needs approval",
            "*  - Write /etc/out.txt: fake agent: Write on /etc/out.txt needs approval",
            "*PRP-25.1.1*failed_gates*refused tool calls 2*",
        ]
    )
    found = entries(repo, "25")
    assert found["PRP-25.1.1"]["refused_tool_calls"][0] == {
        "tool": "Bash",
        "target": "pytest -q",
        "reason": "fake agent: Bash on pytest -q needs approval",
    }
    assert found["PRP-25.1.2"]["refused_tool_calls"] == []
    doc = json.loads((repo / RESULTS / "batches" / "batch-25.result.json").read_text())
    assert doc["summary"]["refused_tool_calls"] == 2
