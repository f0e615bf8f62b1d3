"""pytest glue for the session: xdist's scheduler and workers, the checks before the first PRP,
and the end of whatever a run leaves running.

With ``-n`` the controller uses the dependency-aware scheduler (``scheduler``) and checks the
repository itself; workers get the filler item. Before the first PRP runs, the repository is
prepared once (``execution.prepare``); SIGTERM ends a batch like Ctrl-C; ``--prp-clean`` with a
selection cleans first. Each PRP is checked ready (its dependencies) before it runs.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_prp.keys import PLAN, SETTINGS

# Everything else is imported where PRPs are in play: a run without PRPs must not pay for
# git, processes or scheduling code (benchmarks/bench_collection.py measures it).


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends a batch like Ctrl-C: processes ended, results written, resumable later."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


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
