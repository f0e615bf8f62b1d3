"""The options and ini keys of a run read into one frozen ``plan.settings.Settings``.

Command line first, then the ini file, each value checked by its option's rule (``options``):
a value that breaks it is one usage error naming the option or ini key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_prp.options import (
    merge_check_scope,
    positive_number,
    redo_count,
    seconds,
    whole_number,
)
from pytest_prp.plan.settings import DEFAULT_REPORT, Settings

_T = TypeVar("_T")


def _split_list(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable options that also take comma lists: ``--prp-batch 47,48 --prp-batch 49``."""
    out: list[str] = []
    for value in values or []:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


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
    integration_gate = (
        opt.prp_integration_gate or str(config.getini("prp_integration_gate")).strip() or None
    )
    if opt.prp_merge_batch and integration_gate is None:
        # Asked for on the command line, it would do nothing: say so rather than run unbatched.
        raise pytest.UsageError(
            "--prp-merge-batch batches the runs of the integration gate, and none is set: "
            "add --prp-integration-gate CMD (or ini prp_integration_gate)"
        )
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
        merge_check=opt.prp_merge_check or _ini(config, "prp_merge_check", merge_check_scope),
        integration_gate=integration_gate,
        final_check=bool(opt.prp_final_check or config.getini("prp_final_check")),
        merge_batch=bool(opt.prp_merge_batch or config.getini("prp_merge_batch")),
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
