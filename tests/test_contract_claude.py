"""Contract: the genuine Claude Code CLI, driven by ``--prp-agent claude`` (the preset as
shipped), against the scripted model server. What Claude Code prints (its ``result`` event in
the PRP's log) is compared with what pytest-prp reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from contract import (
    agent_log,
    claude_env,
    claude_result,
    entries,
    require_cli,
    scenario_file,
    scripted,
    summary,
)

from conftest import git, write_prp
from pytest_prp.spec.agents import PRESETS

GATE = "grep -qx hello greeting.txt\n# Expected: greeting.txt says hello"


def write(content: str, path: str = "{cwd}/greeting.txt") -> dict[str, Any]:
    return {"tools": [{"name": "Write", "input": {"file_path": path, "content": content}}]}


def bash(command: str) -> dict[str, Any]:
    return {"tools": [{"name": "Bash", "input": {"command": command, "description": "gate"}}]}


def read(path: str = "{cwd}/greeting.txt") -> dict[str, Any]:
    """Claude Code writes an existing file only after reading it in the same conversation."""
    return {"tools": [{"name": "Read", "input": {"file_path": path}}]}


def done(text: str = "Done.") -> dict[str, Any]:
    return {"text": text}


def prp(repo: Path, prp_id: str) -> None:
    write_prp(repo, prp_id, gates=[GATE], extra="model: claude-sonnet-4-5")


def run(pytester: pytest.Pytester, batch: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--prp-batch", batch, "--prp-agent", "claude", "-p", "no:cacheprovider", *args
    )


def test_a_prp_done_right_succeeds_with_the_cost_and_tokens_claude_reported(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-40.1.1")
    # Gates are commands like python3 or pytest, which need Bash permission (grep or echo
    # alone would not: Claude Code runs read-only commands without asking).
    check = 'python3 -c \'print(open("greeting.txt").read().strip() + "-GATE-OK")\''
    turns = [write("hello\n"), bash(check), done()]
    with scripted({"scripts": [{"when": "PRP-40.1.1", "turns": turns}]}) as server:
        claude_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "40")
    assert result.ret == 0, result.stdout.str()
    entry = entries(repo, "40")["PRP-40.1.1"]
    assert entry["status"] == "success"
    assert git(repo, "show", "prp/batch-40:greeting.txt") == "hello"
    # The preset let the agent run the gate itself: its output went back to the model.
    last = server.answered("PRP-40.1.1")[-1].body["messages"][-1]
    assert "hello-GATE-OK" in str(last["content"])
    said = claude_result(agent_log(repo, "40", "PRP-40.1.1"))
    assert said["is_error"] is False and said["permission_denials"] == []
    assert entry["cost_usd"] == pytest.approx(said["total_cost_usd"]) and entry["cost_usd"] > 0
    usage = said["modelUsage"]["claude-sonnet-4-5"]
    assert entry["tokens_by_model"] == {
        "claude-sonnet-4-5": {
            "input": usage["inputTokens"],
            "output": usage["outputTokens"],
            "cache_read": usage["cacheReadInputTokens"],
            "cache_creation": usage["cacheCreationInputTokens"],
        }
    }
    assert entry["tokens"]["input"] == 3000 and entry["tokens"]["output"] == 150  # 3 turns
    assert entry["refused_tool_calls"] == []
    # Nothing of Claude Code's own lands in the commit.
    assert git(repo, "show", "--name-only", "--format=", "prp/batch-40") == "greeting.txt"


def test_a_wrong_edit_is_failed_gates(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-41.1.1")
    with scripted({"scripts": [{"when": "PRP-41.1.1", "turns": [write("bye\n"), done()]}]}) as s:
        claude_env(monkeypatch, s, tmp_path / "home")
        result = run(pytester, "41")
    assert result.ret == 1
    entry = entries(repo, "41")["PRP-41.1.1"]
    assert entry["status"] == "failed_gates"
    assert entry["cost_usd"] == pytest.approx(
        claude_result(agent_log(repo, "41", "PRP-41.1.1"))["total_cost_usd"]
    )
    result.stdout.fnmatch_lines(["*PRP-41.1.1: 1 of 1 gates failed*"])


def test_fixed_on_attempt_2(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-42.1.1")
    scripts = [
        {"when": "Attempt 2:", "turns": [read(), write("hello\n"), done()]},
        {"when": "PRP-42.1.1", "turns": [write("bye\n"), done()]},
    ]
    with scripted({"scripts": scripts}) as server:
        claude_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "42", "--prp-attempts", "2")
    assert result.ret == 0, result.stdout.str()
    entry = entries(repo, "42")["PRP-42.1.1"]
    assert entry["status"] == "success"
    assert [a["gates_failed"] for a in entry["attempts"]] == [1, 0]
    assert git(repo, "show", "prp/batch-42:greeting.txt") == "hello"
    # The second conversation was told what failed.
    assert "grep -qx hello greeting.txt" in str(server.answered("Attempt 2:")[0].body["messages"])
    assert entry["tokens"]["input"] == 5000  # 2 turns, then 3, added up


def test_refused_tool_calls_are_shown_under_the_failure_and_counted(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-43.1.1")
    outside = tmp_path / "outside.txt"
    turns = [write("hello\n", str(outside)), done("I could not write it.")]
    with scripted({"scripts": [{"when": "PRP-43.1.1", "turns": turns}]}) as server:
        claude_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "43")
    assert result.ret == 1
    assert not outside.exists()
    entry = entries(repo, "43")["PRP-43.1.1"]
    assert entry["status"] == "failed_gates"
    [refused] = entry["refused_tool_calls"]
    assert refused["tool"] == "Write" and refused["target"] == str(outside)
    assert "permission" in refused["reason"].lower()
    assert summary(repo, "43")["refused_tool_calls"] == 1
    result.stdout.fnmatch_lines(
        [
            "*PRP-43.1.1: 1 of 1 gates failed*",
            "*the agent CLI refused 1 tool call(s):*",
            f"*- Write {outside}: *",
        ]
    )
    result.stdout.fnmatch_lines(["*PRP-43.1.1*failed_gates*refused tool calls 1*"])


def test_a_hung_server_ends_in_the_idle_timeout(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-44.1.1")
    with scripted({"scripts": [{"when": "PRP-44.1.1", "turns": [{"hang": True}]}]}) as server:
        claude_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "44", "--prp-idle-timeout", "3")
        assert server.answered("PRP-44.1.1"), "Claude Code never asked the server"
    assert result.ret == 1
    entry = entries(repo, "44")["PRP-44.1.1"]
    assert entry["status"] == "failed"
    result.stdout.fnmatch_lines(["*agent idle for 3 s*"])


def test_two_prps_in_parallel(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-45.1.1")
    write_prp(
        repo,
        "PRP-45.1.2",
        gates=["grep -qx world world.txt"],
        extra="model: claude-sonnet-4-5",
    )
    scripts = [
        {"when": "PRP-45.1.1", "turns": [write("hello\n"), done()]},
        {"when": "PRP-45.1.2", "turns": [write("world\n", "{cwd}/world.txt"), done()]},
    ]
    with scripted({"scripts": scripts}) as server:
        claude_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "45", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    found = entries(repo, "45")
    assert {e["status"] for e in found.values()} == {"success"}
    assert git(repo, "show", "prp/batch-45:greeting.txt") == "hello"
    assert git(repo, "show", "prp/batch-45:world.txt") == "world"
    assert summary(repo, "45")["cost_usd"] == pytest.approx(
        sum(claude_result(agent_log(repo, "45", p))["total_cost_usd"] for p in found)
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs root and runuser to run the agent as another user (as a normal user, the "
    "other tests here are that proof)",
)
def test_the_preset_works_for_a_normal_user_too(
    pytester: pytest.Pytester, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root the other tests prove the preset; here Claude Code runs as ``nobody``."""
    claude = require_cli("claude")
    probe = ["runuser", "-u", "nobody", "--", str(claude), "--version"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip(f"nobody cannot run {claude} (a directory on its way is not readable)")
    prp(repo, "PRP-46.1.1")
    shared = Path(tempfile.mkdtemp(prefix="prp-contract-nobody-"))
    try:
        shared.chmod(0o777)
        (shared / "home").mkdir(mode=0o777)
        (shared / "home").chmod(0o777)
        # Files pytest-prp and git make are the user's to write: with umask 0, nobody's too.
        old = os.umask(0)
        check = "python3 -c 'import os; print(os.geteuid(), open(\"greeting.txt\").read())'"
        turns = [write("hello\n"), bash(check), done()]
        try:
            with scripted({"scripts": [{"when": "PRP-46.1.1", "turns": turns}]}) as server:
                claude_env(monkeypatch, server, shared / "home")
                command = f"runuser -u nobody -- env HOME={shared / 'home'} {PRESETS['claude']}"
                result = pytester.runpytest_subprocess(
                    "--prp-batch", "46", "--prp-agent", command,
                    "--prp-worktree-dir", str(shared / "worktrees"), "-p", "no:cacheprovider",
                )  # fmt: skip
        finally:
            os.umask(old)
        assert result.ret == 0, result.stdout.str()
        assert entries(repo, "46")["PRP-46.1.1"]["status"] == "success"
        assert git(repo, "show", "prp/batch-46:greeting.txt") == "hello"
        ran = str(server.answered("PRP-46.1.1")[-1].body["messages"][-1]["content"])
        assert "65534 hello" in ran  # the gate command ran, as nobody
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_claude_codes_own_retry_rides_over_one_overloaded_answer(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overload scenario left for the rate-limit work: 529 first, then the turn. With
    retries on, Claude Code's own retry gets the answer and pytest-prp never sees the 529."""
    prp(repo, "PRP-47.1.1")
    with scripted(scenario_file("claude_overloaded_then_done", "PRP-47.1.1")) as server:
        claude_env(monkeypatch, server, tmp_path / "home")
        monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "2")
        result = run(pytester, "47")
    assert result.ret == 0, result.stdout.str()
    assert [r.status for r in server.answered("PRP-47.1.1")][:2] == [529, 200]
    assert entries(repo, "47")["PRP-47.1.1"]["status"] == "success"
