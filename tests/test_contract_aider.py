"""Contract: the genuine aider CLI, driven by ``--prp-agent aider`` (the preset as shipped),
against the scripted model server (OpenAI chat completions; aider edits through the model's
text, whole-file format, not through tools)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from contract import aider_env, entries, scripted

from conftest import git, write_prp

GATE = "grep -qx hello greeting.txt\n# Expected: greeting.txt says hello"


def whole(path: str, content: str) -> dict[str, Any]:
    """A whole-file edit as aider's ``whole`` edit format expects it."""
    return {"text": f"Here it is.\n\n{path}\n```\n{content}\n```\n"}


def prp(repo: Path, prp_id: str, gate: str = GATE) -> None:
    write_prp(repo, prp_id, gates=[gate], extra="model: openai/scripted")


def run(pytester: pytest.Pytester, batch: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--prp-batch", batch, "--prp-agent", "aider", "-p", "no:cacheprovider", *args
    )


def test_a_prp_done_right_commits_the_edit_and_nothing_of_aiders(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-60.1.1")
    turns = [whole("greeting.txt", "hello")]
    with scripted({"scripts": [{"when": "PRP-60.1.1", "turns": turns}]}) as server:
        aider_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "60")
    assert result.ret == 0, result.stdout.str()
    assert entries(repo, "60")["PRP-60.1.1"]["status"] == "success"
    assert git(repo, "show", "prp/batch-60:greeting.txt") == "hello"
    # No .gitignore edit, no .aider.chat.history.md, no .aider.tags.cache.v4 in the commit.
    assert git(repo, "show", "--name-only", "--format=", "prp/batch-60") == "greeting.txt"
    assert not list(repo.glob(".aider*"))


def test_a_wrong_edit_is_failed_gates_then_fixed_on_attempt_2(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-61.1.1")
    scripts = [
        {"when": "Attempt 2:", "turns": [whole("greeting.txt", "hello")]},
        {"when": "PRP-61.1.1", "turns": [whole("greeting.txt", "bye")]},
    ]
    with scripted({"scripts": scripts}) as server:
        aider_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "61", "--prp-attempts", "2")
        assert server.answered("Attempt 2:"), "the second attempt never reached the server"
    assert result.ret == 0, result.stdout.str()
    entry = entries(repo, "61")["PRP-61.1.1"]
    assert entry["status"] == "success"
    assert [a["gates_failed"] for a in entry["attempts"]] == [1, 0]
    assert git(repo, "show", "prp/batch-61:greeting.txt") == "hello"


def test_a_hung_server_ends_in_the_idle_timeout(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-62.1.1")
    # aider is silent for a few seconds while it starts: the limit must be longer than that.
    with scripted({"scripts": [{"when": "PRP-62.1.1", "turns": [{"hang": True}]}]}) as server:
        aider_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "62", "--prp-idle-timeout", "15")
        assert server.answered("PRP-62.1.1"), "aider never asked the server"
    assert result.ret == 1
    assert entries(repo, "62")["PRP-62.1.1"]["status"] == "failed"
    result.stdout.fnmatch_lines(["*agent idle for 15 s*"])


def test_two_prps_in_parallel(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prp(repo, "PRP-63.1.1")
    prp(repo, "PRP-63.1.2", "grep -qx world world.txt")
    scripts = [
        {"when": "PRP-63.1.1", "turns": [whole("greeting.txt", "hello")]},
        {"when": "PRP-63.1.2", "turns": [whole("world.txt", "world")]},
    ]
    with scripted({"scripts": scripts}) as server:
        aider_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "63", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    assert {e["status"] for e in entries(repo, "63").values()} == {"success"}
    assert git(repo, "show", "prp/batch-63:greeting.txt") == "hello"
    assert git(repo, "show", "prp/batch-63:world.txt") == "world"
