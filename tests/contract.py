"""Helpers of the contract tests: the genuine agent CLIs (installed by ``.ci/install-agents``)
driven by real pytest-prp runs against the scripted model server, never a real API.

A CLI that is not installed skips its tests with the reason, except under ``CI=true``, where
it fails them: CI must prove the contract, not skip it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from scripted_server import ScriptedServer, load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
AGENTS_BIN = Path(os.environ.get("PRP_AGENTS_DIR") or ROOT / ".agents") / "bin"
RESULTS = Path(".ce/orchestration")


def require_cli(name: str) -> Path:
    """The CLI's path: ``$PRP_AGENTS_DIR/bin`` (default ``.agents/bin``), else PATH."""
    local = AGENTS_BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        why = f"{name} is not installed (run .ci/install-agents)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {why}: the contract tests must run in CI", pytrace=False)
        pytest.skip(why)
    return Path(found)


def entries(root: Path, batch: str) -> dict[str, dict[str, Any]]:
    doc = json.loads((root / RESULTS / "batches" / f"batch-{batch}.result.json").read_text())
    return {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}


def summary(root: Path, batch: str) -> dict[str, Any]:
    doc = json.loads((root / RESULTS / "batches" / f"batch-{batch}.result.json").read_text())
    summary: dict[str, Any] = doc["summary"]
    return summary


def agent_log(root: Path, batch: str, prp_id: str) -> str:
    return (root / RESULTS / "logs" / batch / f"{prp_id}.log").read_text()


def events(log: str, kind: str) -> list[dict[str, Any]]:
    """The JSON events of one ``type`` that the CLI printed, read back from the PRP's log."""
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("type") == kind:
                found.append(event)
    return found


def claude_result(log: str) -> dict[str, Any]:
    """The last ``result`` event Claude Code printed."""
    found = events(log, "result")
    assert found, "no result event in the log"
    return found[-1]


def codex_usage(log: str) -> dict[str, int]:
    """The ``turn.completed`` usage Codex printed, added up."""
    total: dict[str, int] = {}
    for event in events(log, "turn.completed"):
        for key, value in event["usage"].items():
            total[key] = total.get(key, 0) + value
    return total


def scenario_file(name: str, when: str | None = None) -> dict[str, Any]:
    """A scenario from ``tests/scenarios/<name>.json``; ``when`` replaces every script's."""
    scenario: dict[str, Any] = json.loads((SCENARIOS / f"{name}.json").read_text())
    if when is not None:
        for script in scenario["scripts"]:
            script["when"] = when
    return scenario


@contextmanager
def scripted(scenario: dict[str, Any]) -> Iterator[ScriptedServer]:
    with ScriptedServer(load_scenario(scenario)) as server:
        yield server


def use_cli(monkeypatch: pytest.MonkeyPatch, home: Path, cli: Path) -> None:
    """The CLI first on PATH, and a fresh HOME: nothing of the caller's config is read."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{cli.parent}{os.pathsep}{os.environ.get('PATH', '')}")


def claude_env(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer, home: Path) -> None:
    """Claude Code against the scripted server, and no other connection."""
    use_cli(monkeypatch, home, require_cli("claude"))
    for name, value in {
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": "dummy",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "API_TIMEOUT_MS": "60000",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDECODE"):
        monkeypatch.delenv(name, raising=False)


def codex_env(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer, home: Path) -> None:
    """Codex against the scripted server: a provider in a fresh ``$CODEX_HOME/config.toml``."""
    use_cli(monkeypatch, home, require_cli("codex"))
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model_provider = "scripted"\n'
        "[model_providers.scripted]\n"
        'name = "scripted"\n'
        f'base_url = "{server.url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "SCRIPTED_API_KEY"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.setenv("SCRIPTED_API_KEY", "dummy")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def aider_env(monkeypatch: pytest.MonkeyPatch, server: ScriptedServer, home: Path) -> None:
    """aider against the scripted server (an OpenAI-compatible base URL)."""
    use_cli(monkeypatch, home, require_cli("aider"))
    monkeypatch.setenv("OPENAI_API_BASE", f"{server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    for name in ("ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
