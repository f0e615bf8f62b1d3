"""Command-line options and ini keys of pytest-prp, declared: their names, help and checks.

``add_options`` declares them; the checks (``positive_number``, ``seconds``, ...) are the rules
their values follow, on the command line and in the ini file alike; ``joined_values`` keeps a
path-like value from being taken for a test path. ``settings_reader`` reads them into
``plan.settings.Settings``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest

PLAN_FORMATS = ("text", "json", "mermaid")
_T = TypeVar("_T")


# The options that take a value (all but --prp-plan, whose value is optional and never a path).
VALUE_OPTIONS = (
    "--prp-batch",
    "--prp-id",
    "--prp-stage",
    "--prp-start",
    "--prp-agent",
    "--prp-branch",
    "--prp-base",
    "--prp-gate-timeout",
    "--prp-timeout",
    "--prp-idle-timeout",
    "--prp-heartbeat",
    "--prp-attempts",
    "--prp-budget-usd",
    "--prp-worktree-dir",
    "--prp-rate-limit-wait",
    "--prp-remote",
    "--prp-merge-attempts",
    "--prp-integration-gate",
    "--prp-merge-check",
)


def joined_values(args: Sequence[str], is_path: Callable[[str], bool]) -> list[str] | None:
    """``args`` with ``--prp-agent VALUE`` written ``--prp-agent=VALUE`` wherever VALUE names
    an existing path, or None when there is none.

    pytest finds the rootdir and ini file before plugins add their options: there, the value
    of ``--prp-agent /abs/agent`` reads as a test path and the rootdir becomes the common
    ancestor of it and the PRPs (pytest #8846); only values that exist count as paths."""
    out: list[str] = []
    changed = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":  # the rest are paths
            out.extend(args[index:])
            break
        following = args[index + 1] if index + 1 < len(args) else None
        if arg in VALUE_OPTIONS and following is not None and is_path(following):
            out.append(f"{arg}={following}")
            changed = True
            index += 2
            continue
        out.append(arg)
        index += 1
    return out if changed else None


def _plan_format(value: str) -> str:
    if value not in PLAN_FORMATS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(PLAN_FORMATS)}")
    return value


def positive_number(value: str) -> float:
    """A finite number above 0 (seconds, dollars): nan, inf and 1e999 are not limits.
    Raises ValueError with the reason."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"must be a finite number greater than 0: {value!r}")
    return number


def redo_count(value: object) -> int:
    """A whole number of at least 0 (redos). Raises ValueError with the reason."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a whole number of at least 0")
    return int(text)


MERGE_CHECKS = ("own", "siblings")


def merge_check_scope(value: object) -> str:
    """What a merge check runs: ``own`` (the PRP's gates) or ``siblings`` (also the gates of
    the PRPs merged since its base). Raises ValueError with the reason."""
    text = str(value).strip().lower()
    if text not in MERGE_CHECKS:
        raise ValueError(f"{text!r} is not one of {', '.join(MERGE_CHECKS)}")
    return text


def seconds(value: str) -> float:
    """A finite number of seconds, 0 or more (0 is a choice: do not wait). Raises ValueError."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a number of seconds, 0 or more: {value!r}")
    return number


def whole_number(value: str) -> int:
    """A whole number of at least 1 (attempts, stages). Raises ValueError with the reason."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"must be a whole number of at least 1: {value!r}") from None
    if number < 1:
        raise ValueError(f"must be a whole number of at least 1: {value!r}")
    return number


def _argument(check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a check: argparse shows ArgumentTypeError's text as the reason."""

    def convert(value: str) -> object:
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


_positive_float = _argument(positive_number)
_whole_number = _argument(whole_number)
_seconds = _argument(seconds)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("prp", "PRP batches (pytest-prp)")
    group.addoption(
        "--prp-batch",
        action="append",
        metavar="N",
        help="run the PRPs of batch N (repeatable, or a comma list)",
    )
    group.addoption(
        "--prp-id",
        action="append",
        metavar="ID",
        help="run these PRPs (repeatable, or a comma list; 47.2.1 means PRP-47.2.1)",
    )
    group.addoption("--prp-all", action="store_true", help="run every PRP found")
    group.addoption(
        "--prp-stage",
        type=_whole_number,
        metavar="N",
        help="only the PRPs of computed stage N of the selection",
    )
    group.addoption(
        "--prp-start",
        metavar="ID",
        help="start at this PRP: it and every PRP after it in plan order",
    )
    group.addoption(
        "--prp-plan",
        nargs="?",
        const="text",
        type=_plan_format,
        metavar="FORMAT",
        help="print the plan (text, json or mermaid) and exit without running",
    )
    group.addoption(
        "--prp-agent",
        metavar="CMD",
        help="agent command line that implements a PRP's steps (default: literal)",
    )
    group.addoption(
        "--prp-branch", metavar="NAME", help="integration branch (default prp/batch-<batch>)"
    )
    group.addoption(
        "--prp-base", metavar="REF", help="create the integration branch from REF instead of HEAD"
    )
    group.addoption(
        "--prp-rerun",
        action="store_true",
        help="execute PRPs again even when they are already completed",
    )
    group.addoption(
        "--prp-strict",
        action="store_true",
        help="fail PRPs that have no executable gate (instead of 'unverified')",
    )
    group.addoption(
        "--prp-verify",
        action="store_true",
        help="run only the gates, in a clean checkout of HEAD or --prp-base",
    )
    group.addoption(
        "--prp-clean",
        action="store_true",
        help="remove the worktrees kept from failed or interrupted PRPs; alone, only that",
    )
    group.addoption(
        "--prp-worktree-dir",
        metavar="DIR",
        help="where PRP worktrees live (default: ~/.cache/pytest-prp/worktrees/<repo>-<hash>)",
    )
    group.addoption(
        "--prp-gate-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="time limit of one gate (default 600, never beyond the PRP's own limit)",
    )
    group.addoption(
        "--prp-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="wall-clock limit of one PRP: steps, attempts and gates (default 3600)",
    )
    group.addoption(
        "--prp-idle-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="end a step or agent that printed nothing and changed no file this long (600)",
    )
    group.addoption(
        "--prp-heartbeat",
        type=_positive_float,
        metavar="SECONDS",
        help="heartbeat file and live progress interval (default 30)",
    )
    group.addoption(
        "--prp-attempts",
        type=_whole_number,
        metavar="N",
        help="agent attempts per PRP: failed gates go back to the agent (default 1)",
    )
    group.addoption(
        "--prp-merge-attempts",
        type=_argument(redo_count),
        metavar="N",
        help="redos of a PRP whose merge conflicts or fails its gates on the merged tree, "
        "each on the current integration tip (default 1; 0: none)",
    )
    group.addoption(
        "--prp-merge-check",
        type=_argument(merge_check_scope),
        metavar="own|siblings",
        help="what a merge that is not a fast-forward checks on the merged tree: the PRP's own "
        "gates, or also those of the PRPs merged since its base (default own)",
    )
    group.addoption(
        "--prp-remote",
        metavar="NAME",
        help="git remote shared by the controller and remote xdist workers: the controller "
        "publishes the integration branch there, workers fetch it",
    )
    group.addoption(
        "--prp-integration-gate",
        metavar="COMMAND",
        help="shell command run like a gate of every PRP, on its tree and on merged trees",
    )
    group.addoption(
        "--prp-merge-batch",
        action="store_true",
        default=None,
        help="merges that queue up run the integration gate once, on the tip of their stack",
    )
    group.addoption(
        "--prp-budget-usd",
        type=_positive_float,
        metavar="USD",
        help="start no new PRP once the batch has spent this much",
    )
    group.addoption(
        "--prp-rate-limit-wait",
        type=_seconds,
        metavar="SECONDS",
        help="longest a PRP waits in all for API rate limits and overload before it is "
        "rate_limited and no new PRP starts (default 3600; 0: do not wait)",
    )
    group.addoption(
        "--prp-report",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the batch's HTML report, rewritten as PRPs finish (PATH ends in .html; "
        "default <results-dir>/batches/batch-<batch>.html)",
    )
    group.addoption(
        "--prp-agent-presets",
        action="store_true",
        help="print the agent presets (claude, codex, aider) and exit",
    )
    group.addoption(
        "--prp-serialize-conflicts",
        action="store_true",
        help="with -n: never run PRPs that declare the same files_modified at the same time",
    )

    group.addoption(
        "--prp-final-check",
        action="store_true",
        default=None,
        help="at the end of the batch, run every merged PRP's gates on the final integration tip "
        "and name, by bisecting the run's merges, the PRP that broke a gate",
    )

    parser.addini("prp_enabled", "collect PRP files in every run", type="bool", default=False)
    parser.addini(
        "prp_final_check", "run the final check (as --prp-final-check)", type="bool", default=False
    )
    parser.addini("prp_file_pattern", "glob of PRP file names", default="PRP-*.md")
    parser.addini("prp_branch", "integration branch name", default="")
    parser.addini("prp_agent", "agent command line", default="")
    parser.addini(
        "prp_results_dir", "directory of batch results and logs", default=".ce/orchestration"
    )
    parser.addini(
        "prp_worktree_dir", "where PRP worktrees live (relative to the rootdir)", default=""
    )
    parser.addini("prp_prompt_template", "file holding the agent prompt template", default="")
    parser.addini("prp_gate_timeout", "time limit of one gate, seconds", default="600")
    parser.addini("prp_timeout", "wall-clock limit of one PRP, seconds", default="3600")
    parser.addini("prp_idle_timeout", "idle limit of a step or agent, seconds", default="600")
    parser.addini("prp_heartbeat", "heartbeat interval, seconds", default="30")
    parser.addini("prp_attempts", "agent attempts per PRP", default="1")
    parser.addini("prp_merge_attempts", "redos of a PRP whose merge fails", default="1")
    parser.addini("prp_merge_check", "own or siblings (as --prp-merge-check)", default="own")
    parser.addini("prp_integration_gate", "shell command run as a gate of every PRP", default="")
    parser.addini(
        "prp_merge_batch", "batch the merges that queue up (as --prp-merge-batch)", type="bool",
        default=False,
    )  # fmt: skip
    parser.addini(
        "prp_rate_limit_wait", "longest wait of a PRP for API rate limits, seconds", default="3600"
    )
    parser.addini(
        "prp_report", "write the HTML batch report: true, or its path (.html)", default=""
    )
    parser.addini(
        "prp_models",
        "model per complexity for {model}, e.g. low=haiku medium=sonnet high=opus",
        default="",
    )
