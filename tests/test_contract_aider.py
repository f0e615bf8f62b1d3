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


def test_done_right_and_fixed_on_attempt_2_in_parallel_with_nothing_of_aiders_committed(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run (aider starts slowly: each start costs seconds), ``-n 2``: PRP-60.1.1 is done
    right; PRP-60.1.2's first edit is wrong (failed gates), its second attempt fixes it."""
    prp(repo, "PRP-60.1.1")
    prp(repo, "PRP-60.1.2", "grep -qx world world.txt")
    scripts = [
        {"when": "PRP-60.1.1", "turns": [whole("greeting.txt", "hello")]},
        {"when": "Attempt 2:", "turns": [whole("world.txt", "world")]},
        {"when": "PRP-60.1.2", "turns": [whole("world.txt", "wrong")]},
    ]
    with scripted({"scripts": scripts}) as server:
        aider_env(monkeypatch, server, tmp_path / "home")
        result = run(pytester, "60", "-n", "2", "--prp-attempts", "2")
        assert server.answered("Attempt 2:"), "the second attempt never reached the server"
    assert result.ret == 0, result.stdout.str()
    found = entries(repo, "60")
    assert {e["status"] for e in found.values()} == {"success"}
    assert [a["gates_failed"] for a in found["PRP-60.1.1"]["attempts"]] == [0]
    assert [a["gates_failed"] for a in found["PRP-60.1.2"]["attempts"]] == [1, 0]
    assert git(repo, "show", "prp/batch-60:greeting.txt") == "hello"
    assert git(repo, "show", "prp/batch-60:world.txt") == "world"
    # No .gitignore edit, no .aider.chat.history.md, no .aider.tags.cache.v4 in the commits.
    for prp_id, name in (("PRP-60.1.1", "greeting.txt"), ("PRP-60.1.2", "world.txt")):
        assert found[prp_id]["files_created"] == [name]
        assert found[prp_id]["files_modified"] == []
    assert not list(repo.glob(".aider*"))


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
