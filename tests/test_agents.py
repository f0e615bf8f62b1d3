"""Agent presets and the per-PRP model choice (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_prp.spec.agents import (
    PRESETS,
    ModelsError,
    choose_model,
    expand_agent,
    fill_model,
    parse_models,
)
from pytest_prp.spec.model import Prp


def prp(**kwargs: object) -> Prp:
    return Prp(
        id="PRP-1.1", path=Path("x.md"), line=1, title="t", batch="1", dependencies=[], **kwargs
    )  # type: ignore[arg-type]


def test_presets_expand_and_other_values_stay() -> None:
    assert expand_agent("claude").startswith("claude -p --output-format stream-json --verbose")
    assert "--permission-mode acceptEdits" in expand_agent("claude")
    assert expand_agent("codex").startswith("codex exec")
    assert "--message-file {prompt_file}" in expand_agent("aider")
    assert expand_agent("my-agent --flag") == "my-agent --flag"
    assert all("{model}" in command for command in PRESETS.values())


@pytest.mark.parametrize(
    ("command", "model", "expected"),
    [
        ("claude -p --model {model} --verbose", "haiku", "claude -p --model haiku --verbose"),
        ("claude -p --model {model} --verbose", None, "claude -p --verbose"),
        ("agent --model={model} x", None, "agent x"),
        ("agent -m {model}", None, "agent"),
        ("agent {model}", None, "agent"),
        ("agent --model {model}", "a b", "agent --model 'a b'"),
        ("agent --fast", None, "agent --fast"),
    ],
)
def test_fill_model(command: str, model: str | None, expected: str) -> None:
    assert fill_model(command, model) == expected


def test_models_by_complexity_and_frontmatter_model_wins() -> None:
    models = parse_models("low=haiku, medium=sonnet\nhigh=opus")
    assert models == {"low": "haiku", "medium": "sonnet", "high": "opus"}
    assert choose_model(prp(complexity="Low"), models) == "haiku"
    assert choose_model(prp(complexity="low", model="opus"), models) == "opus"
    assert choose_model(prp(complexity="extreme"), models) is None
    assert choose_model(prp(), models) is None
    with pytest.raises(ModelsError, match="'low' is not complexity=model"):
        parse_models("low")


def test_presets_option_prints_and_exits(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--prp-agent-presets")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*agent presets*", "  claude  claude -p*", "  codex *", "  aider *"]
    )


def test_presets_say_what_each_permits() -> None:
    from pytest_prp.spec.agents import presets_text

    text = presets_text()
    assert "--allowedTools Bash" in expand_agent("claude")  # acceptEdits alone refuses gates
    assert "exec --json" in expand_agent("codex")  # failure messages and usage
    for flag in ("--no-gitignore", "--chat-history-file /dev/null", "--map-tokens 0"):
        assert flag in expand_agent("aider")  # no files of aider's own in the commit
    assert text.count("permits: ") == len(PRESETS)
    assert "run any shell command" in text and "no network" in text and "runs no commands" in text
