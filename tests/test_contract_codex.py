"""Contract: the genuine Codex CLI, driven by ``--prp-agent codex`` (the preset as shipped),
against the scripted model server (OpenAI Responses API). What Codex prints (its ``--json``
events in the PRP's log) is compared with what pytest-prp reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from contract import agent_log, codex_env, codex_usage, entries, scripted

from conftest import git, write_prp

GATE = "grep -qx hello greeting.txt\n# Expected: greeting.txt says hello"


def shell(cmd: str) -> dict[str, Any]:
    return {"tools": [{"name": "exec_command", "input": {"cmd": cmd}}]}


def patch(body: str) -> dict[str, Any]:
    """Codex's free-form apply_patch tool (offered for models it knows, such as gpt-5.5)."""
    return {"tools": [{"name": "apply_patch", "input": f"*** Begin Patch\n{body}*** End Patch\n"}]}


def done(text: str = "Done.") -> dict[str, Any]:
    return {"text": text}


def prp(repo: Path, prp_id: str, gate: str = GATE) -> None:
    write_prp(repo, prp_id, gates=[gate], extra="model: gpt-5.5")


def run(pytester: pytest.Pytester, batch: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--prp-batch", batch, "--prp-agent", "codex", "-p", "no:cacheprovider", *args
    )


def test_a_prp_done_right_succeeds_with_the_tokens_codex_reported(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-50.1.1")
    turns = [
        patch("*** Add File: greeting.txt\n+hello\n"),
        shell("grep -qx hello greeting.txt && echo GATE-OK"),
        done(),
    ]
    with scripted({"scripts": [{"when": "PRP-50.1.1", "turns": turns}]}) as server:
        codex_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "50")
    assert result.ret == 0, result.stdout.str()
    entry = entries(repo, "50")["PRP-50.1.1"]
    assert entry["status"] == "success"
    assert git(repo, "show", "prp/batch-50:greeting.txt") == "hello"
    assert "GATE-OK" in str(server.answered("PRP-50.1.1")[-1].body["input"])
    usage = codex_usage(agent_log(repo, "50", "PRP-50.1.1"))
    assert entry["tokens"]["input"] == usage["input_tokens"] == 3000
    assert entry["tokens"]["output"] == usage["output_tokens"] == 150
    assert git(repo, "show", "--name-only", "--format=", "prp/batch-50") == "greeting.txt"


def test_a_wrong_edit_is_failed_gates_and_fixed_on_attempt_2(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-51.1.1")
    scripts = [
        {"when": "Attempt 2:", "turns": [shell("echo hello > greeting.txt"), done()]},
        {"when": "PRP-51.1.1", "turns": [shell("echo bye > greeting.txt"), done()]},
    ]
    with scripted({"scripts": scripts}) as server:
        codex_env(monkeypatch, server, tmp_path / "home")
        once = run(pytester, "51")
        assert once.ret == 1
        assert entries(repo, "51")["PRP-51.1.1"]["status"] == "failed_gates"
        twice = run(pytester, "51", "--prp-attempts", "2", "--prp-clean")
    assert twice.ret == 0, twice.stdout.str()
    entry = entries(repo, "51")["PRP-51.1.1"]
    assert entry["status"] == "success"
    assert [a["gates_failed"] for a in entry["attempts"]] == [1, 0]
    assert git(repo, "show", "prp/batch-51:greeting.txt") == "hello"


def test_a_failed_turn_shows_codexs_message(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-52.1.1")
    turns = [{"errors": [400], "text": "never"}]
    with scripted({"scripts": [{"when": "PRP-52.1.1", "turns": turns}]}) as server:
        codex_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "52")
    assert result.ret == 1
    entry = entries(repo, "52")["PRP-52.1.1"]
    assert entry["status"] == "failed"
    result.stdout.fnmatch_lines(["*agent command failed (exit 1): *HTTP 400 (scripted)*"])


def test_a_hung_server_ends_in_the_idle_timeout(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-53.1.1")
    with scripted({"scripts": [{"when": "PRP-53.1.1", "turns": [{"hang": True}]}]}) as server:
        codex_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "53", "--prp-idle-timeout", "3")
        assert server.answered("PRP-53.1.1"), "Codex never asked the server"
    assert result.ret == 1
    assert entries(repo, "53")["PRP-53.1.1"]["status"] == "failed"
    result.stdout.fnmatch_lines(["*agent idle for 3 s*"])


def test_two_prps_in_parallel(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-54.1.1")
    prp(repo, "PRP-54.1.2", "grep -qx world world.txt")
    scripts = [
        {"when": "PRP-54.1.1", "turns": [shell("echo hello > greeting.txt"), done()]},
        {"when": "PRP-54.1.2", "turns": [shell("echo world > world.txt"), done()]},
    ]
    with scripted({"scripts": scripts}) as server:
        codex_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "54", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    assert {e["status"] for e in entries(repo, "54").values()} == {"success"}
    assert git(repo, "show", "prp/batch-54:greeting.txt") == "hello"
    assert git(repo, "show", "prp/batch-54:world.txt") == "world"
