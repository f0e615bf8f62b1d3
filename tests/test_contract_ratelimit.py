"""Contract: API overload and rate limits from the genuine CLIs pause the PRP instead of
failing it (``--prp-rate-limit-wait``), against the scripted server's overload scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest
from contract import claude_env, codex_env, entries, scenario_file, scripted

from conftest import git, write_prp

# Runs once the rate-limit waiting (issue 11) is merged; checked against h-ratelimit merged
# into h-agents. Until then there is nothing to prove.
pytest.importorskip("pytest_prp.supervise.ratelimit", reason="rate-limit waiting is not merged yet")

GATE = "grep -qx hello greeting.txt\n# Expected: greeting.txt says hello"


def test_claude_overloaded_waits_and_succeeds_without_using_an_attempt(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_prp(repo, "PRP-48.1.1", gates=[GATE], extra="model: claude-sonnet-4-5")
    with scripted(scenario_file("claude_overloaded_then_done", "PRP-48.1.1")) as server:
        claude_env(monkeypatch, server, tmp_path / "home")  # CLAUDE_CODE_MAX_RETRIES=0
        result = pytester.runpytest_subprocess(
            "--prp-batch", "48", "--prp-agent", "claude", "--prp-rate-limit-wait", "8",
            "-p", "no:cacheprovider",
        )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    assert [r.status for r in server.answered("PRP-48.1.1")][:2] == [529, 200]
    entry = entries(repo, "48")["PRP-48.1.1"]
    assert entry["status"] == "success"
    assert len(entry["attempts"]) == 1 and entry["rate_limit_waits"] == 1
    assert git(repo, "show", "prp/batch-48:greeting.txt") == "hello"


def test_codex_rate_limited_then_overloaded_waits_and_succeeds(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_prp(repo, "PRP-55.1.1", gates=[GATE], extra="model: gpt-5.5")
    with scripted(scenario_file("codex_rate_limited_then_done", "PRP-55.1.1")) as server:
        codex_env(monkeypatch, server, tmp_path / "home")  # request_max_retries = 0
        result = pytester.runpytest_subprocess(
            "--prp-batch", "55", "--prp-agent", "codex", "--prp-rate-limit-wait", "8",
            "-p", "no:cacheprovider",
        )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    assert [r.status for r in server.answered("PRP-55.1.1")][:3] == [429, 529, 200]
    entry = entries(repo, "55")["PRP-55.1.1"]
    assert entry["status"] == "success"
    assert len(entry["attempts"]) == 1 and entry["rate_limit_waits"] == 2
    assert git(repo, "show", "prp/batch-55:greeting.txt") == "hello"
