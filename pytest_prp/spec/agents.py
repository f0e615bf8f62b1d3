"""Agent command lines: the presets of known agent CLIs and the per-PRP ``{model}`` choice."""

from __future__ import annotations

import re

from pytest_prp.spec.model import Prp

# Documented headless command lines. The prompt goes to stdin (and to {prompt_file}); each
# may edit files without asking, and none may commit: pytest-prp commits itself. Each was run
# with the genuine CLI by the contract tests (tests/test_contract_*.py), as root and not.
PRESETS: dict[str, str] = {
    # Claude Code: print mode, stream-json (cost, tokens, is_error, refused tool calls).
    # acceptEdits lets Write/Edit change files in the working directory (not outside it);
    # --allowedTools Bash lets it run the gates (acceptEdits alone refuses every command).
    # Not bypassPermissions: it refuses to run as root unless IS_SANDBOX=1 is set.
    "claude": (
        "claude -p --output-format stream-json --verbose --permission-mode acceptEdits "
        "--allowedTools Bash --model {model}"
    ),
    # OpenAI Codex CLI: non-interactive exec, prompt from stdin ("-"); --json for the failure
    # message and token usage; the workspace-write sandbox: writes in the worktree and temp
    # directories only (the repository's .git is read-only, so it cannot commit), no network.
    "codex": "codex exec --json --sandbox workspace-write --ephemeral --model {model} -",
    # Aider: one message from a file, then exit; no commits of its own, no prompts, and no
    # files of its own in the worktree (no .gitignore edit, no history files, no repo-map
    # cache: --map-tokens 0 turns the repo map off).
    "aider": (
        "aider --yes-always --no-auto-commits --no-stream --no-pretty --no-gitignore "
        "--chat-history-file /dev/null --input-history-file /dev/null --map-tokens 0 "
        "--no-check-update --no-show-release-notes --analytics-disable --model {model} "
        "--message-file {prompt_file}"
    ),
}

# What each preset lets the agent do, as --prp-agent-presets says it.
PERMITS: dict[str, str] = {
    "claude": "edit files in the worktree (Write/Edit), run any shell command "
    "(Bash: the gates, and whatever else the user running pytest may run); edits outside "
    "the worktree and other tools needing approval are refused and reported",
    "codex": "run shell commands and edit files in the codex sandbox: writes only in the "
    "worktree and temp directories, .git read-only, no network",
    "aider": "edit files in the worktree (whole-file edits from the model's text); runs no "
    "commands (suggested shell commands need an explicit yes, which --yes-always does not "
    "give); the repo map is off",
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
        lines.append(f"          permits: {PERMITS[name]}")
    lines.append(
        "{model} comes from the PRP's `model:`, else its `complexity:` through ini prp_models; "
        "without one it is left out with its flag."
    )
    return "\n".join(lines)
