"""Agent command lines: the presets of known agent CLIs and the per-PRP ``{model}`` choice."""

from __future__ import annotations

import re

from pytest_prp.model import Prp

# Documented headless command lines. The prompt goes to stdin (and to {prompt_file}); each
# may edit files without asking, and none may commit: pytest-prp commits itself.
PRESETS: dict[str, str] = {
    # Claude Code: print mode, stream-json (read for cost, tokens and is_error), edits allowed.
    "claude": (
        "claude -p --output-format stream-json --verbose --permission-mode acceptEdits "
        "--model {model}"
    ),
    # OpenAI Codex CLI: non-interactive exec, prompt from stdin ("-"), workspace writes only.
    "codex": "codex exec --sandbox workspace-write --ephemeral --model {model} -",
    # Aider: one message from a file, then exit; no commits of its own, no interactive prompts.
    "aider": (
        "aider --yes-always --no-auto-commits --no-stream --no-pretty --model {model} "
        "--message-file {prompt_file}"
    ),
}

# "--model {model}", "--model={model}", "-m {model}", or a bare "{model}".
_MODEL_WITH_FLAG = re.compile(r"\s*(?:--?[A-Za-z][\w-]*(?:=|\s+))?\{model\}")


def expand_agent(value: str) -> str:
    """A preset name becomes its command line; anything else is a command line already."""
    return PRESETS.get(value.strip(), value)


def fill_model(command: str, model: str | None) -> str:
    """Fill ``{model}``; with no model, drop the placeholder together with its flag."""
    if "{model}" not in command:
        return command
    if model:
        import shlex

        return command.replace("{model}", shlex.quote(model))
    return _MODEL_WITH_FLAG.sub("", command)


class ModelsError(ValueError):
    pass


def parse_models(spec: str) -> dict[str, str]:
    """ini ``prp_models``: ``low=haiku medium=sonnet high=opus`` (spaces, commas or lines)."""
    models: dict[str, str] = {}
    for entry in re.split(r"[\s,]+", spec.strip()):
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key or not value:
            raise ModelsError(f"prp_models: {entry!r} is not complexity=model")
        models[key.strip().lower()] = value.strip()
    return models


def choose_model(prp: Prp, models: dict[str, str]) -> str | None:
    """The PRP's own ``model:``, else the model for its ``complexity:``, else none."""
    if prp.model:
        return prp.model
    if prp.complexity:
        return models.get(prp.complexity.strip().lower())
    return None


def presets_text() -> str:
    lines = ["pytest-prp agent presets (--prp-agent NAME):"]
    for name, command in PRESETS.items():
        lines.append(f"  {name:<7} {command}")
    lines.append(
        "{model} comes from the PRP's `model:`, else its `complexity:` through ini prp_models; "
        "without one it is left out with its flag."
    )
    return "\n".join(lines)
