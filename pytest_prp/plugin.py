"""The pytest plugin (entry point ``prp``): options, hookspecs, configuration and commands.

``pytest_configure`` reads the settings and registers the run's plugin objects (defaults,
report hooks, the batch result, the HTML report, remote merges); ``pytest_cmdline_main`` runs
the commands that run no test (``--prp-agent-presets``, ``--prp-clean`` alone). The other hooks
are in the modules it loads with it: ``collection_hooks`` (PRP files, the plan, markers) and
``session_hooks`` (xdist's scheduler and workers, the repository check, the end of strays).
Execution lives in ``runner``; the PRP on pytest's reports in ``item_reports``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from pytest_prp import hooks
from pytest_prp.keys import (
    GRAPH_LOADER,
    KNOWN_PRPS,
    LOAD_ERRORS,
    NOT_PRPS,
    PLAN,
    SEEN_FILES,
    SETTINGS,
)
from pytest_prp.options import add_options
from pytest_prp.settings_reader import read_settings, selection_given

# Everything else is imported where PRPs are in play: a run without PRPs must not pay for
# YAML, markdown, git or planning code (benchmarks/bench_collection.py measures it).
if TYPE_CHECKING:
    from pytest_prp.plan.prp_info import PrpInfo
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.results import RunFacts

# Registered with this module, under their own names (pytest reads ``pytest_plugins`` of a
# plugin module as it registers it).
pytest_plugins = ("pytest_prp.collection_hooks", "pytest_prp.session_hooks")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


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
        from pytest_prp.session_hooks import WorkerFiller
        from pytest_prp.supervise import leftovers

        # A worker's process may have run workers before: an execnet socket server runs every
        # run's worker in its one long-lived process. Each run is a run of its own.
        leftovers.start_run()

        config.pluginmanager.register(WorkerFiller(), "prp-worker-filler")
    if not hasattr(config, "workerinput"):  # xdist workers report; the controller writes
        results = BatchResults(config, _run_facts(config, settings))
        config.pluginmanager.register(results, "prp-results")
        if settings.final_check and not settings.verify and not settings.plan_format:
            from pytest_prp.final_check_run import FinalCheck

            config.pluginmanager.register(FinalCheck(config, settings, results), "prp-final-check")
        if config.getoption("prp_remote", None) and not settings.plan_format:
            from pytest_prp.remote_controller import (
                ControllerMerges,
                keep_going_without_dead_machines,
            )

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
    if getattr(config.option, "prp_remote", None):  # remote workers' code only where used
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
