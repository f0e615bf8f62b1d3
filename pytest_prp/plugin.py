"""pytest glue: options, collection of PRP files, planning, ordering and markers.

Execution lives in ``runner``; the PRP on pytest's reports in ``item_reports``; the plan view
in ``plan_output``. This module only wires them in.
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

from pytest_prp import hooks
from pytest_prp.keys import (
    GRAPH_LOADER,
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
from pytest_prp.options import add_options, read_settings, selection_given

# Everything else is imported where PRPs are in play: a run without PRPs must not pay for
# YAML, markdown, git or planning code (benchmarks/bench_collection.py measures it).
if TYPE_CHECKING:
    from pytest_prp.collect import PrpFile, PrpItem
    from pytest_prp.plan.prp_info import PrpInfo
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.results import RunFacts
    from pytest_prp.spec.model import Problem


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
    from pytest_prp.remote import add_option

    add_option(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


@pytest.hookimpl(trylast=True)  # after the terminal plugin registered its reporter
def pytest_configure(config: pytest.Config) -> None:
    settings = read_settings(config)
    config.stash[SETTINGS] = settings
    config.stash[SEEN_FILES] = []
    config.addinivalue_line("markers", "prp: a PRP (Product Requirement Prompt) item")
    if not settings.enabled:
        return
    from pytest_prp.base.stopping import QuietFinish

    config.stash[KNOWN_PRPS] = []
    config.stash[LOAD_ERRORS] = []
    config.stash[NOT_PRPS] = []
    finishing = QuietFinish()
    config.pluginmanager.register(finishing, "prp-quiet-finish")
    # A cleanup registered now runs after those registered later (the worktree's release).
    config.add_cleanup(finishing.stop)
    if settings.plan_format in ("json", "mermaid"):
        # The document must be all that stdout carries, so pytest's own lines go.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)
    # Late imports: a run that collects no PRP pays nothing for execution and reporting code.
    from pytest_prp.defaults import DefaultImplementations
    from pytest_prp.item_reports import ReportHooks
    from pytest_prp.records.results import BatchResults

    config.pluginmanager.register(DefaultImplementations(config), "prp-defaults")
    config.pluginmanager.register(ReportHooks(), "prp-reports")
    if hasattr(config, "workerinput") and not settings.plan_format:
        config.pluginmanager.register(WorkerFiller(), "prp-worker-filler")
    if not hasattr(config, "workerinput"):  # xdist workers report; the controller writes
        results = BatchResults(config, _run_facts(config, settings))
        config.pluginmanager.register(results, "prp-results")
        if config.getoption("prp_remote", None) and not settings.plan_format:
            from pytest_prp.remote import ControllerMerges, keep_going_without_dead_machines

            config.pluginmanager.register(ControllerMerges(config, settings), "prp-remote")
            keep_going_without_dead_machines(config)
        if settings.report is not None and not settings.plan_format:
            from pytest_prp.report_plugin import HtmlReport

            report = HtmlReport(config, results, settings.report)
            config.pluginmanager.register(report, "prp-report")


def _run_facts(config: pytest.Config, settings: Settings) -> RunFacts:
    """What the batch result is told of the run: the settings, and where the plan, the
    integration branch and the PRP files are found once they exist (looked up when needed)."""
    from pytest_prp.records.results import RunFacts

    def branch() -> str | None:
        from pytest_prp.execution import EXECUTION

        execution = config.stash.get(EXECUTION, None)
        return execution.branch if execution is not None else None

    def load(nodeid: str) -> PrpInfo | None:
        from pytest_prp.plan.prp_info import file_graph_loader

        # The scheduler's loader: it has read the files already.
        loader = config.stash.setdefault(GRAPH_LOADER, file_graph_loader(config.rootpath))
        return loader(nodeid)

    return RunFacts(
        results_dir=settings.results_dir,
        heartbeat=settings.heartbeat,
        budget_usd=settings.budget_usd,
        selected_batches=settings.selection.batches,
        chosen_branch=settings.branch,
        verify=settings.verify,
        plan=lambda: config.stash.get(PLAN, None),
        branch=branch,
        load=load,
    )


@pytest.hookimpl(tryfirst=True)  # before xdist reads -n
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not hasattr(config, "workerinput"):  # workers get their options from the controller
        again = _rerun_with_joined_values(config)
        if again is not None:
            return again
    if config.option.prp_plan and getattr(config.option, "numprocesses", None):
        config.option.numprocesses = None  # a plan is printed by this process, not by workers
    from pytest_prp.remote import local_and_remote_workers

    refusal = local_and_remote_workers(config)
    if refusal is not None:
        print(f"ERROR: {refusal}", file=sys.stderr)
        return pytest.ExitCode.USAGE_ERROR
    if config.option.prp_agent_presets:
        from pytest_prp.spec.agents import presets_text

        print(presets_text())
        return 0
    if config.option.prp_clean and not selection_given(config.option):
        # --prp-clean alone is a command of its own: clean, say what went, run nothing.
        from pytest_prp.execution import clean_worktrees, repository_start

        try:
            worktree_dir = read_settings(config).worktree_dir
            start = repository_start(config)
            lines = clean_worktrees(start, worktree_dir, config.option.collectonly)
        except pytest.UsageError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return pytest.ExitCode.USAGE_ERROR
        print("\n".join(lines))
        return 0
    return None


def _rerun_with_joined_values(config: pytest.Config) -> int | None:
    """``--prp-agent /abs/agent`` made pytest take the agent for a test path when it chose the
    rootdir and ini file (see ``joined_values``): the batch would run in the wrong repository
    with the wrong settings. Nothing has been configured yet, so the run starts over with the
    values joined (``--prp-agent=/abs/agent``), which every pytest version reads right."""
    import shlex

    from pytest_prp.options import joined_values

    params = config.invocation_params

    def is_path(value: str) -> bool:
        return (params.dir / value).exists()

    args = joined_values(params.args, is_path)
    addopts = os.environ.get("PYTEST_ADDOPTS")
    env_args = joined_values(shlex.split(addopts), is_path) if addopts else None
    if args is None and env_args is None:
        return None
    if env_args is not None:
        os.environ["PYTEST_ADDOPTS"] = shlex.join(env_args)
    try:
        return int(pytest.main(args or list(params.args), plugins=list(params.plugins or ())))
    finally:
        if addopts is not None:
            os.environ["PYTEST_ADDOPTS"] = addopts


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends a batch like Ctrl-C: processes ended, results written, resumable later."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


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


class WorkerFiller:
    """On xdist workers: the scheduler's filler item and its empty protocol."""

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None]:
        # After every deselection (-k, -m, --lf, ours), so that nothing removes it.
        result = yield
        from pytest_prp.collect import FillerItem
        from pytest_prp.scheduler import FILLER_NODEID

        items.append(FillerItem.from_parent(session, name="next", nodeid=FILLER_NODEID))
        return result

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        from pytest_prp.collect import FillerItem

        return True if isinstance(item, FillerItem) else None  # type: ignore[return-value]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With -n, PRP sessions use the dependency-aware scheduler, whatever --dist says."""
    settings = config.stash[SETTINGS]
    if not settings.enabled or settings.plan_format:
        return None
    if config.getvalue("dist") == "each":
        raise pytest.UsageError("prp: --dist each would run every PRP on every worker")
    from pytest_prp.scheduler import PrpScheduling

    return PrpScheduling(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: each worker learns which machine the controller is and its PRP files."""
    settings = node.config.stash[SETTINGS]
    if settings.enabled and not settings.plan_format:
        from pytest_prp.remote import controller_input

        node.workerinput.update(controller_input(node.config, settings))


@pytest.hookimpl(tryfirst=True)  # before xdist starts its workers
def pytest_sessionstart(session: pytest.Session) -> None:
    """With -n, the controller checks the repository itself: a worker's error would only
    show as a crash. Without a plan it knows the branch only when one batch was asked for."""
    config = session.config
    settings = config.stash[SETTINGS]
    distributed = (
        config.getvalue("dist") != "no" if config.pluginmanager.has_plugin("xdist") else False
    )
    if (
        not settings.enabled
        or settings.plan_format
        or settings.verify
        or config.option.collectonly
        or hasattr(config, "workerinput")
        or not distributed
    ):
        return
    from pytest_prp.execution import check_repository

    check_repository(config, settings)
    from pytest_prp.remote import publish_start

    publish_start(config, settings)
    # The controller too: xdist then ends its workers as after Ctrl-C, and they end their PRPs.
    _interrupt_on_sigterm()
    # Whatever a worker had not ended when xdist stopped waiting for it is ended before the
    # controller exits: the prompt comes back with nothing of the run left running.
    from pytest_prp.supervise import leftovers

    leftovers.become_subreaper()  # before xdist starts the workers: their orphans come to us
    config.add_cleanup(_end_strays)


def _end_strays() -> None:
    from pytest_prp.supervise import leftovers

    leftovers.end_strays(leftovers.GRACE)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Check the repository once, before the first PRP runs: one clear line, nothing executed."""
    config = session.config
    settings = config.stash[SETTINGS]
    plan = config.stash.get(PLAN, None)
    if plan is not None and not config.option.collectonly:
        from pytest_prp.collect import PrpItem

        if any(isinstance(item, PrpItem) for item in session.items):
            from pytest_prp.execution import prepare  # late: git is only needed when PRPs run

            # First: a run refused (another run of the batch holds it) changes nothing.
            prepare(config, config.stash[SETTINGS], plan)
            _interrupt_on_sigterm()
    if settings.clean and not hasattr(config, "workerinput"):
        # With a selection: clean, then run it (--collect-only: only tell what would go).
        from pytest_prp.execution import clean_worktrees, repository_start

        lines = clean_worktrees(
            repository_start(config), settings.worktree_dir, dry_run=config.option.collectonly
        )
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            for line in lines:
                reporter.write_line(line)


@pytest.hookimpl(tryfirst=True)  # ahead of pytest-dependency's per-process check
def pytest_runtest_setup(item: pytest.Item) -> None:
    if PLAN not in item.config.stash:
        return
    from pytest_prp.collect import PrpItem

    if isinstance(item, PrpItem):
        from pytest_prp.runner import check_ready

        check_ready(item)


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
    import sys

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
