"""pytest glue for collection: PRP files as items, the plan, its order and its markers.

Each PRP file is collected as one item (``collect``); when collection ends the plan is built
(``plan.planning``), its problems reported as collection errors, the items put in plan order
with their stage, batch and dependency markers, or the plan shown instead (``--prp-plan``). When
no PRP is found, it says what was seen and why it was not taken.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.keys import (
    KNOWN_PRPS,
    LOAD_ERRORS,
    NOT_PRPS,
    NOTHING_FOUND,
    PLAN,
    PLAN_SHOWN,
    REGISTERED_MARKERS,
    SEEN_FILES,
    SETTINGS,
)

# Everything else is imported where PRPs are in play: a run without PRPs must not pay for
# YAML, markdown, git or planning code (benchmarks/bench_collection.py measures it).
if TYPE_CHECKING:
    from pytest_prp.collect import PrpFile, PrpItem
    from pytest_prp.plan.settings import Settings
    from pytest_prp.spec.model import Problem


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> PrpFile | None:
    config = parent.config
    settings = config.stash[SETTINGS]
    if not fnmatch.fnmatch(file_path.name, settings.pattern):
        return None
    if not settings.enabled:
        config.stash[SEEN_FILES].append(file_path)
        return None
    from pytest_prp.collect import PrpFile

    return PrpFile.from_parent(parent, path=file_path)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    """A PRP file that another plugin skipped collecting (``--lf`` skips the files without
    failures) is still part of the batch: its PRP is known to the plan, which then computes
    the batch's real stages, but is not run."""
    report = yield
    settings = collector.config.stash[SETTINGS]
    if settings.enabled and report.passed and not report.result:
        from pytest_prp.collect import PrpFile, register_skipped_file

        if isinstance(collector, PrpFile):
            register_skipped_file(collector)
    return report


def _is_complete(config: pytest.Config, prp_id: str) -> bool:
    return config.hook.pytest_prp_dependency_complete(config=config, prp_id=prp_id) is not None


def _report_problems(session: pytest.Session, problems: list[Problem]) -> None:
    """Report planning problems as collection errors: listed by pytest, no traceback, exit 2."""
    for problem in problems:
        nodeid = ""
        if problem.path is not None:
            nodeid = os.path.relpath(problem.path, session.config.rootpath)
        report = pytest.CollectReport(nodeid, "failed", longrepr=str(problem), result=[])
        session.config.hook.pytest_collectreport(report=report)


def _register_marker(config: pytest.Config, name: str, doc: str) -> None:
    # Registered before use so that --strict-markers accepts them and -m can select them;
    # once per name, as pytest re-reads the whole list for every new one.
    registered = config.stash.setdefault(REGISTERED_MARKERS, set())
    if name not in registered:
        registered.add(name)
        config.addinivalue_line("markers", f"{name}: {doc}")


@pytest.hookimpl(tryfirst=True)  # before -k/-m/--lf deselect, so stage markers are there
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    settings = config.stash[SETTINGS]
    if not settings.enabled:
        return
    from pytest_prp.collect import PrpItem
    from pytest_prp.plan.planning import build_plan

    prp_items = [item for item in items if isinstance(item, PrpItem)]
    others = [item for item in items if not isinstance(item, PrpItem)]
    known = config.stash[KNOWN_PRPS]
    load_errors = config.stash[LOAD_ERRORS]
    if not known and not prp_items:
        if _asked_for_prps(config):  # not a suite of ordinary tests under prp_enabled = true
            _explain_nothing_found(session, settings)
        if not settings.plan_format:
            return
    plan = build_plan(known, settings.selection, lambda prp_id: _is_complete(config, prp_id))
    config.stash[PLAN] = plan
    if plan.errors:
        _report_problems(session, plan.errors)
    if settings.plan_format:
        from pytest_prp.plan_output import show_plan  # late: only the plan view needs it

        # The plan is shown whatever is wrong, with every problem in it: files that did not
        # load as well as the plan's own errors (those alone make the exit status non-zero).
        show_plan(config, replace(plan, errors=[*load_errors, *plan.errors]), settings.plan_format)
        config.stash[PLAN_SHOWN] = True
        items[:] = []
        return
    if plan.errors:
        items[:] = others
        return
    by_id = {item.prp.id: item for item in prp_items}
    selected: list[PrpItem] = []
    for prp in plan.prps:
        item = by_id.get(prp.id)
        if item is None or item.prp is not prp:
            continue
        item.stage = plan.stages[prp.id]
        selected.append(item)
    _register_markers(config, selected)
    for item in selected:
        _add_markers(item)
    chosen = set(selected)
    deselected = [item for item in prp_items if item not in chosen]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = [*others, *selected]


def _register_markers(config: pytest.Config, items: list[PrpItem]) -> None:
    # All before the first use: pytest re-reads every registered marker whenever a name it
    # has not seen is used, which would make a chain of N stages cost N^2.
    for item in items:
        if item.prp.batch is not None:
            batch = item.prp.batch
            _register_marker(config, f"prp_batch_{batch}", f"PRPs of batch {batch}")
        _register_marker(config, f"prp_stage_{item.stage}", f"PRPs of computed stage {item.stage}")


def _add_markers(item: PrpItem) -> None:
    prp = item.prp
    item.add_marker(pytest.mark.prp)
    if prp.batch is not None:
        item.add_marker(getattr(pytest.mark, f"prp_batch_{prp.batch}"))
    item.add_marker(getattr(pytest.mark, f"prp_stage_{item.stage}"))
    # scope="session": pytest-dependency's default module scope crashes on non-Python items.
    item.add_marker(
        pytest.mark.dependency(name=prp.id, depends=list(prp.dependencies), scope="session")
    )


def _asked_for_prps(config: pytest.Config) -> bool:
    option = config.option
    names = ("prp_batch", "prp_id", "prp_all", "prp_plan", "prp_start", "prp_stage", "prp_verify")
    return any(getattr(option, name, None) for name in names)


def _explain_nothing_found(session: pytest.Session, settings: Settings) -> None:
    """No PRP found: say what was seen and why it was not taken, one line each."""
    from pytest_prp.plan.not_found import explain, hidden_prp_dirs

    config = session.config
    base = config.invocation_params.dir
    roots = [base / str(arg).split("::")[0] for arg in config.args] or [base]
    skip = [str(p) for p in config.getini("norecursedirs")]
    hidden = hidden_prp_dirs(roots, settings.pattern, skip)
    skipped: list[tuple[Path, str]] = config.stash[NOT_PRPS]
    lines = explain(skipped, hidden, settings.selection, settings.pattern)
    if config.pluginmanager.get_plugin("terminalreporter") is not None:
        config.stash[NOTHING_FOUND] = lines  # shown when collection ends
        return

    sys.stderr.write("".join(line + "\n" for line in lines))  # a json/mermaid plan's stdout


def pytest_report_collectionfinish(config: pytest.Config) -> str | list[str] | None:
    settings = config.stash[SETTINGS]
    if NOTHING_FOUND in config.stash:
        return config.stash[NOTHING_FOUND]
    seen = config.stash[SEEN_FILES]
    if settings.enabled or not seen:
        return None
    return (
        f"prp: {len(seen)} PRP file{'s' if len(seen) != 1 else ''} seen, not run; "
        "run them with --prp-batch N, --prp-id ID or --prp-all (--prp-plan shows the plan)"
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A plan view is a successful run although it runs no test.
    if (
        session.config.stash.get(PLAN_SHOWN, False)
        and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED
    ):
        session.exitstatus = pytest.ExitCode.OK
