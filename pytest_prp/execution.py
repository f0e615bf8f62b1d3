"""The state of a run in one process (``Execution``): the repository, the integration branch,
what is complete, what this process spent; checked before anything runs. The record of each PRP
it runs is ``record.PrpRun`` (under ``keys.RUN`` on the item); the names it uses are
``naming``'s."""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_prp.base.naming import (
    BRANCHES,
    batch_label,
    integration_branch,
    known_integration_branch,
)
from pytest_prp.base.where import repository_top
from pytest_prp.keys import KNOWN_PRPS
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace

if TYPE_CHECKING:
    from pytest_prp.plan.planning import Plan
    from pytest_prp.plan.settings import Settings


EXECUTION = pytest.StashKey["Execution"]()


def repository_start(config: pytest.Config) -> Path:
    """Where the repository is looked for: the paths pytest was given (see ``where``)."""
    from pytest_prp.base.where import start_path

    return start_path(config.args, config.invocation_params.dir, config.rootpath)


def worker_name(config: pytest.Config) -> str:
    """The xdist worker this process is (``gw0``, ...), or ``main``: from xdist's own input,
    not the environment, which a pytest run started from inside a worker inherits."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "main"


class Execution:
    """Per-process execution state: the repository, the integration branch, what is complete."""

    def __init__(self, config: pytest.Config, settings: Settings, plan: Plan) -> None:
        self.config = config
        self.settings = settings
        self.git = GitWorkspace.open(repository_start(config), settings.worktree_dir)
        top = self.git.root.resolve()
        for prp in plan.prps:
            # The nearest repository, not a path prefix: a nested repository is another one.
            found = repository_top(prp.path.resolve())
            if found is None or found != top:
                raise GitError(
                    f"{prp.path} is not in the repository {top}: "
                    "run the PRPs of one repository at a time"
                )
        batches = [prp.batch for prp in plan.prps]
        # Verify mode checks HEAD as it is: it makes no integration branch.
        self.branch = "" if settings.verify else integration_branch(settings.branch, batches)
        self.label = batch_label(batches)
        self.known = {prp.id: prp for prp in config.stash.get(KNOWN_PRPS, [])}
        self.passed: dict[str, str] = {}  # PRP id -> commit, passed in this process
        self.spent_usd = 0.0  # by PRPs run in this process
        # One id for the whole run, shared by xdist workers: the status view tells runs apart.
        workerinput = getattr(config, "workerinput", None)
        self.run_id = str(workerinput["testrunuid"]) if workerinput else uuid.uuid4().hex
        self._ledger: dict[str, str] | None = None
        self._ledger_tip: str | None = None  # the integration tip the ledger has read up to
        self.tip: str | None = None  # the integration branch's tip after our last merge
        from pytest_prp.remote_worker import worker_link

        self.remote = worker_link(config, self.git, settings)  # None unless on another machine
        if settings.verify:
            return
        if settings.base is not None:
            try:
                self.git.resolve(settings.base)
            except GitError:
                raise GitError(f"--prp-base {settings.base} does not exist") from None
        self.tip = self.git.ensure_branch(self.branch, settings.base)

    def ledger(self, refresh: bool = False) -> dict[str, str]:
        """Completed PRPs on the integration branch and HEAD. ``refresh`` adds what other
        workers merged since the last look: nothing to read while the tip has not moved, else
        only the commits that are new (the branch only moves forward during a run)."""
        if self._ledger is None:
            self._ledger_tip = self.git.branch_sha(self.branch)
            self._ledger = self.git.ledger([self.branch, "HEAD"])
        elif refresh:
            tip = self.git.branch_sha(self.branch)
            if tip is not None and tip != self._ledger_tip:
                seen = [f"^{self._ledger_tip}"] if self._ledger_tip else []
                self._ledger.update(self.git.ledger([tip, *seen]))  # the newer commits win
                self._ledger_tip = tip
        return self._ledger

    def completed(self, prp_id: str) -> str | None:
        """Proof that a PRP is complete: this session's commit, the ledger, or its frontmatter."""
        if prp_id in self.passed:
            return self.passed[prp_id]
        for refresh in (False, True):  # another worker may have merged it meanwhile
            sha = self.ledger(refresh).get(prp_id)
            if sha:
                return sha
        prp = self.known.get(prp_id)
        if prp is not None and prp.declared_complete:
            return "declared"
        return None

    @property
    def own_refs(self) -> tuple[str, str]:
        """Refs that pytest-prp itself moves while PRPs run (every process's PRP branches and
        the integration branch): not counted as what a PRP's steps did."""
        return (f"refs/heads/{BRANCHES}/", f"refs/heads/{self.branch}")

    @property
    def result_path(self) -> Path:
        from pytest_prp.base.naming import result_path

        return result_path(self.settings.results_dir, self.label)

    def batch_spent(self) -> float:
        """What the batch has spent: other workers' PRPs are in the controller's result JSON."""
        from pytest_prp.records.record import read_result, spent_in_run

        document = read_result(self.result_path)
        recorded = 0.0
        try:
            recorded = spent_in_run(document) if document is not None else 0.0
        except (KeyError, TypeError, AttributeError, ValueError):
            pass
        return max(recorded, self.spent_usd)


def check_results_dir(results_dir: Path) -> None:
    """Results, heartbeats and logs can be written there, now: else one UsageError line (a
    file in the way, a path under /proc, a full disk), before anything runs."""
    import tempfile

    from pytest_prp.records.results import prepare_results_dir

    unusable = f"prp: cannot use the results directory {results_dir}"
    if results_dir.exists() and not results_dir.is_dir():
        raise pytest.UsageError(f"{unusable}: not a directory")
    try:
        prepare_results_dir(results_dir)
        # A file with something in it: on a full disk creating an empty one still works.
        with tempfile.TemporaryFile(dir=results_dir) as probe:
            probe.write(b"{}\n" * 1024)
            probe.flush()
    except OSError as exc:
        raise pytest.UsageError(f"{unusable}: {exc.strerror or exc}") from None


def prepare(config: pytest.Config, settings: Settings, plan: Plan) -> Execution:
    """Check the repository before anything runs; a problem is one UsageError line."""
    if not hasattr(config, "workerinput"):
        # Under -n the controller checked it before starting workers; a worker that starts
        # once the disk is full must not fail there (xdist would see a worker leave early).
        check_results_dir(settings.results_dir)
    try:
        execution = Execution(config, settings, plan)
        if not settings.verify:
            worker = hasattr(config, "workerinput")
            claim_run(config, execution.git, execution.branch, execution.run_id, not worker)
    except GitError as exc:
        raise pytest.UsageError(f"prp: {exc}") from None
    config.stash[EXECUTION] = execution
    # The worktree reused from PRP to PRP goes when this process ends its session (also
    # after Ctrl-C, when a PRP cut short in it is kept under that PRP's name instead).
    config.add_cleanup(execution.git.release_worktree)
    return execution


def check_repository(config: pytest.Config, settings: Settings) -> None:
    """In the xdist controller, before the workers start: the checks of ``prepare`` that need
    no plan (one UsageError line each) and the run lock when the branch is known already."""
    try:
        git = GitWorkspace.open(repository_start(config), settings.worktree_dir)
        # After the workers: the worktree of one that crashed mid-PRP is kept or removed.
        config.add_cleanup(git.sweep_slots)
        if settings.base is not None:
            try:
                git.resolve(settings.base)
            except GitError:
                raise GitError(f"--prp-base {settings.base} does not exist") from None
        batches = settings.selection.batches
        branch = known_integration_branch(settings.branch, batches)
        where = git.checked_out_in(branch) if branch else None
        if where is not None:
            raise GitError(f"integration branch {branch} is checked out in {where}")
        if branch is not None:
            # The controller owns the run; its workers get the same testrunuid from xdist.
            if getattr(config.option, "testrunuid", None) is None:
                config.option.testrunuid = uuid.uuid4().hex
            claim_run(config, git, branch, str(config.option.testrunuid))
    except GitError as exc:
        raise pytest.UsageError(f"prp: {exc}") from None
    check_results_dir(settings.results_dir)


def claim_run(
    config: pytest.Config, git: GitWorkspace, branch: str, run_id: str, refuse: bool = True
) -> None:
    """Hold the run lock of ``branch`` until this process ends (``runlock``); GitError when
    another run holds it and ``refuse``."""
    from pytest_prp.workspace import runlock

    command = shlex.join(["pytest", *config.invocation_params.args])
    fd = runlock.claim(git, branch, run_id, command, refuse)
    if fd is not None:
        config.add_cleanup(lambda: runlock.release(fd))


def clean_worktrees(start: Path, worktree_dir: Path | None, dry_run: bool = False) -> list[str]:
    """``--prp-clean``: remove the worktrees (and branches) kept from failed or interrupted
    PRPs; ``dry_run`` (``--collect-only``) only tells what would go. The lines to show."""
    try:
        git = GitWorkspace.open(start, worktree_dir)
        found = sorted(git.removable_worktrees()) if dry_run else git.clean()
    except GitError as exc:
        raise pytest.UsageError(f"prp: {exc}") from None
    if not found:
        return ["prp: no kept worktree to remove"]
    what = "would remove (--collect-only)" if dry_run else "removed"
    return [f"prp: {what} {len(found)} kept worktree(s):", *(f"  {path}" for path in found)]
