"""Command-line options and ini keys of pytest-prp, read into ``settings.Settings``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_prp.plan.settings import DEFAULT_REPORT, Settings

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
    "--prp-remote",  # added by pytest_prp.remote
    "--prp-merge-attempts",
    "--prp-integration-gate",
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


def _split_list(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable options that also take comma lists: ``--prp-batch 47,48 --prp-batch 49``."""
    out: list[str] = []
    for value in values or []:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


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
        "--prp-integration-gate",
        metavar="COMMAND",
        help="shell command run like a gate of every PRP, on its tree and on merged trees",
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
    parser.addini("prp_integration_gate", "shell command run as a gate of every PRP", default="")
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


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("", "false", "no", "off", "0")


def _report(config: pytest.Config) -> Path | None:
    """``--prp-report[=PATH]``, else ini ``prp_report`` (true or a path). A path must end in
    .html: ``--prp-report PRPs/`` would otherwise take the PRPs' directory for the report."""
    given = config.option.prp_report
    if given is None:
        raw = str(config.getini("prp_report")).strip()
        if raw.lower() in _FALSE:
            return None
        given, where = ("" if raw.lower() in _TRUE else raw), "ini option prp_report"
    else:
        where = "--prp-report"
    if not given:
        return DEFAULT_REPORT
    if not given.lower().endswith((".html", ".htm")):
        raise pytest.UsageError(
            f"{where} {given!r}: the report's path must end in .html "
            "(write --prp-report=PATH; --prp-report alone writes it beside the result JSON)"
        )
    path = Path(given).expanduser()
    return path if path.is_absolute() else config.rootpath / path


def _ini(config: pytest.Config, name: str, check: Callable[[str], _T]) -> _T:
    """An ini key's value by the rule its option has: one usage error when it breaks it."""
    raw = str(config.getini(name)).strip()
    try:
        return check(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"ini option {name} {exc}") from None


def _rate_limit_wait(config: pytest.Config) -> float:
    value: float | None = config.option.prp_rate_limit_wait
    if value is not None:  # 0 is a choice, not "unset"
        return value
    return _ini(config, "prp_rate_limit_wait", seconds)


def _results_base(config: pytest.Config) -> Path:
    from pytest_prp.base.where import results_base, start_path

    params = config.invocation_params
    return results_base(config.rootpath, start_path(config.args, params.dir, config.rootpath))


def _models(config: pytest.Config) -> dict[str, str]:
    from pytest_prp.spec.agents import ModelsError, parse_models

    try:
        return parse_models(str(config.getini("prp_models")))
    except ModelsError as exc:
        raise pytest.UsageError(str(exc)) from None


def _agent(value: str | None) -> str | None:
    from pytest_prp.spec.agents import expand_agent

    return expand_agent(value) if value else None


def read_settings(config: pytest.Config) -> Settings:
    from pytest_prp.base.ids import batch_id_problem, batch_of, normalize_id
    from pytest_prp.plan.planning import Selection

    opt = config.option
    ids = []
    for raw in _split_list(opt.prp_id):
        norm = normalize_id(raw)
        if norm is None:
            raise pytest.UsageError(f"--prp-id {raw!r} is not a PRP id")
        ids.append(norm)
    start = None
    if opt.prp_start:
        start = normalize_id(opt.prp_start)
        if start is None:
            raise pytest.UsageError(f"--prp-start {opt.prp_start!r} is not a PRP id")
    batches = _split_list(opt.prp_batch)
    for batch in batches:
        problem = batch_id_problem(batch)
        if problem:
            raise pytest.UsageError(f"--prp-batch {batch!r:.60} {problem}")
    if start and not (batches or ids or opt.prp_all) and batch_of(start):
        # "--prp-start PRP-47.3.1" alone means: the rest of batch 47, not of every batch.
        batches = (str(batch_of(start)),)
    asked = bool(
        batches or ids or opt.prp_all or opt.prp_plan or start or opt.prp_stage or opt.prp_clean
    )
    ini_enabled = bool(config.getini("prp_enabled"))
    selection = Selection(
        batches=batches,
        ids=tuple(ids),
        stage=opt.prp_stage,
        start=start,
        # With no explicit batch or id, "the PRPs" means all of them.
        all=bool(opt.prp_all) or not (batches or ids),
    )
    results_dir = Path(str(config.getini("prp_results_dir")))
    if not results_dir.is_absolute():
        results_dir = _results_base(config) / results_dir
    template = str(config.getini("prp_prompt_template")).strip()
    worktree_dir = opt.prp_worktree_dir or str(config.getini("prp_worktree_dir")).strip()
    return Settings(
        enabled=asked or ini_enabled or bool(opt.prp_verify),
        selection=selection,
        pattern=str(config.getini("prp_file_pattern")) or "PRP-*.md",
        plan_format=opt.prp_plan,
        agent=_agent(opt.prp_agent or str(config.getini("prp_agent")).strip() or None),
        branch=opt.prp_branch or str(config.getini("prp_branch")).strip() or None,
        base=opt.prp_base,
        rerun=bool(opt.prp_rerun),
        strict=bool(opt.prp_strict),
        verify=bool(opt.prp_verify),
        clean=bool(opt.prp_clean),
        gate_timeout=opt.prp_gate_timeout or _ini(config, "prp_gate_timeout", positive_number),
        timeout=opt.prp_timeout or _ini(config, "prp_timeout", positive_number),
        idle_timeout=opt.prp_idle_timeout or _ini(config, "prp_idle_timeout", positive_number),
        heartbeat=opt.prp_heartbeat or _ini(config, "prp_heartbeat", positive_number),
        attempts=opt.prp_attempts or _ini(config, "prp_attempts", whole_number),
        budget_usd=opt.prp_budget_usd,
        rate_limit_wait=_rate_limit_wait(config),
        models=_models(config),
        results_dir=results_dir,
        prompt_template=(config.rootpath / template) if template else None,
        # Relative to the rootdir, as the results dir (pytest's own cwd may be elsewhere).
        report=_report(config),
        merge_attempts=redo_count(opt.prp_merge_attempts)
        if opt.prp_merge_attempts is not None
        else _ini(config, "prp_merge_attempts", redo_count),
        integration_gate=(
            opt.prp_integration_gate or str(config.getini("prp_integration_gate")).strip() or None
        ),
        final_check=bool(opt.prp_final_check or config.getini("prp_final_check")),
        worktree_dir=(config.rootpath / Path(worktree_dir).expanduser()).resolve()
        if worktree_dir
        else None,
    )


def selection_given(opt: Any) -> bool:
    """Whether the command line asks for PRPs to run, plan or verify (not only to clean)."""
    return bool(
        opt.prp_batch
        or opt.prp_id
        or opt.prp_all
        or opt.prp_stage
        or opt.prp_start
        or opt.prp_plan
        or opt.prp_verify
    )
