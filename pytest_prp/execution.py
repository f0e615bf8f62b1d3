"""The state of a run in one process: each PRP's record (``PrpRun``) and the repository, the
integration branch and what is complete (``Execution``). Checked before anything runs."""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.collect import KNOWN_PRPS
from pytest_prp.gitops import GitError, GitWorkspace, RefState
from pytest_prp.heartbeat import iso
from pytest_prp.model import Prp
from pytest_prp.naming import INTEGRATION_BRANCH, batch_branch, prp_branch
from pytest_prp.where import repository_top

if TYPE_CHECKING:
    from pytest_prp.executors import StepsOutcome
    from pytest_prp.options import Settings
    from pytest_prp.planning import Plan
    from pytest_prp.stream_json import Refusal


@dataclass
class PrpRun:
    """What happened to one PRP in this process: the source of its report and JSON entry."""

    prp: Prp
    stage: int
    branch: str = ""
    status: str = "running"
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    workdir: Path | None = None
    commits: list[str] = field(default_factory=list)
    files_created: list[str] = field(default_factory=list)
    files_modified: list[str] = field(default_factory=list)
    gates_passed: int = 0
    gates_failed: int = 0
    gates_executable: int = 0
    gates_unverified: int = 0
    errors: list[str] = field(default_factory=list)
    cost_usd: float | None = None
    tokens: dict[str, int] | None = None
    model: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    log_path: Path | None = None
    kept_worktree: bool = False
    base: str | None = None  # the integration tip the worktree started from
    rate_limit_waits: int = 0  # times the API refused the agent (rate limit, overload)
    rate_limit_waited: float = 0.0  # seconds waited for it
    refs_before: RefState | None = None  # git's refs when the steps started
    ref_changes: list[str] = field(default_factory=list)  # what the steps did to refs
    files_deleted: list[str] = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)  # dependencies not complete
    tokens_by_model: dict[str, dict[str, int]] | None = None
    refusals: list[Refusal] = field(default_factory=list)  # over all attempts
    # For the report's timeline: wall-clock start and end, the process, and the phases.
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    worker: str = "main"  # the xdist worker id (gw0, ...) running it, or main
    phases: list[dict[str, Any]] = field(default_factory=list)
    failure_tail: list[str] = field(default_factory=list)  # of a failed step
    handed_back: str | None = None  # a remote worker's ref of its commit (``remote``)
    # The checked merge (merge_queue): gate runs on merged trees, of them after the tip moved,
    # redos on a newer tip, the tree merged, and the PRPs its failed merges collided with.
    merge_checks: int = 0
    merge_rechecks: int = 0
    redos: int = 0
    redone_on: list[str] = field(default_factory=list)
    merged_commit: str | None = None
    culprits: list[str] = field(default_factory=list)
    merge_failures: list[dict[str, Any]] = field(default_factory=list)

    def enter_phase(self, phase: str, attempt: int = 1) -> None:
        """A new phase (``workspace``, ``steps``, ``gates``, ``merge``) begins and the one
        before ends: seconds from ``started`` (the PRP's own clock)."""
        now = round(time.monotonic() - self.started, 3)
        self.end_phase(now)
        self.phases.append({"phase": phase, "attempt": attempt, "start": now, "end": None})

    def end_phase(self, at: float | None = None) -> None:
        if self.phases and self.phases[-1]["end"] is None:
            now = round(time.monotonic() - self.started, 3) if at is None else at
            self.phases[-1]["end"] = now

    def add_cost(self, outcome: StepsOutcome) -> None:
        """Cost, tokens and refused tool calls add up over attempts."""
        from pytest_prp.stream_json import add_tokens

        if outcome.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + outcome.cost_usd, 6)
        self.tokens = add_tokens(self.tokens, outcome.tokens)
        for model, tokens in (outcome.tokens_by_model or {}).items():
            self.tokens_by_model = self.tokens_by_model or {}
            self.tokens_by_model[model] = add_tokens(self.tokens_by_model.get(model), tokens) or {}
        self.refusals.extend(outcome.refusals)

    def refusals_text(self) -> str:
        """The refused tool calls, for a failure report ("" when there were none)."""
        if not self.refusals:
            return ""
        lines = [f"the agent CLI refused {len(self.refusals)} tool call(s):"]
        lines += [f"  - {r.describe()}" for r in self.refusals[:10]]
        if len(self.refusals) > 10:
            lines.append(f"  ... and {len(self.refusals) - 10} more (see the result JSON)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prp_id": self.prp.id,
            "title": self.prp.title,
            "batch": self.prp.batch,
            "integration_branch": self.branch,
            "stage": self.stage,
            "status": self.status,
            "files_created": self.files_created,
            "files_modified": self.files_modified,
            "files_deleted": self.files_deleted,
            "ref_changes": self.ref_changes,
            "commits": self.commits,
            "gates_passed": self.gates_passed,
            "gates_failed": self.gates_failed,
            "gates_executable": self.gates_executable,
            "gates_unverified": self.gates_unverified,
            "errors": self.errors,
            "elapsed_seconds": round(self.elapsed, 3),
            "cost_usd": self.cost_usd,
            "tokens": self.tokens,
            "tokens_by_model": self.tokens_by_model,
            "refused_tool_calls": [r.to_dict() for r in self.refusals],
            "model": self.model,
            "attempts": self.attempts,
            "rate_limit_waits": self.rate_limit_waits,
            "rate_limit_waited_seconds": round(self.rate_limit_waited, 3),
            "estimated_hours": self.prp.estimated_hours,
            "worktree": str(self.workdir) if self.kept_worktree and self.workdir else None,
            "log": str(self.log_path) if self.log_path else None,
            "blocked_by": self.blocked_by,
            "dependencies": list(self.prp.dependencies),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "worker": self.worker,
            "phases": self.phases,
            "failure_tail": self.failure_tail,
            **({"handed_back": self.handed_back} if self.handed_back else {}),
            "base_commit": self.base,
            "merged_commit": self.merged_commit,
            "merge_checks": self.merge_checks,
            "merge_rechecks": self.merge_rechecks,
            "redos": self.redos,
            "redone_on": self.redone_on,
            "collides_with": self.culprits,
            "merge_failures": self.merge_failures,
        }


RUN = pytest.StashKey[PrpRun]()
EXECUTION = pytest.StashKey["Execution"]()


def repository_start(config: pytest.Config) -> Path:
    """Where the repository is looked for: the paths pytest was given (see ``where``)."""
    from pytest_prp.where import start_path

    return start_path(config.args, config.invocation_params.dir, config.rootpath)


def worker_name(config: pytest.Config) -> str:
    """The xdist worker this process is (``gw0``, ...), or ``main``: from xdist's own input,
    not the environment, which a pytest run started from inside a worker inherits."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "main"


def integration_branch_name(settings: Settings, batches: Iterable[str | None]) -> str:
    """``--prp-branch``, else ``prp/batch-<id>`` for one batch, else ``prp/integration``."""
    if settings.branch:
        return settings.branch
    label = batch_label(batches)
    return batch_branch(label) if label != "integration" else INTEGRATION_BRANCH


def prp_branch_name(prp: Prp) -> str:
    """The branch of a PRP's worktree: ``prp/<batch>/<id>`` (each part one plain name)."""
    return prp_branch(prp.batch, prp.id)


def batch_label(batches: Iterable[str | None]) -> str:
    """The batch id when the run's PRPs (their batches given) hold one batch, else
    ``integration`` (branch and JSON)."""
    found = set(batches)
    if len(found) == 1 and None not in found:
        return str(found.pop())
    return "integration"


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
        self.branch = "" if settings.verify else integration_branch_name(settings, batches)
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
        from pytest_prp.remote import worker_link

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
        return ("refs/heads/prp/", f"refs/heads/{self.branch}")

    @property
    def result_path(self) -> Path:
        from pytest_prp.naming import result_path

        return result_path(self.settings.results_dir, self.label)

    def batch_spent(self) -> float:
        """What the batch has spent: other workers' PRPs are in the controller's result JSON."""
        from pytest_prp.jsonfile import read_json
        from pytest_prp.results import spent_in_run

        recorded = 0.0
        try:
            recorded = spent_in_run(read_json(self.result_path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return max(recorded, self.spent_usd)


def check_results_dir(results_dir: Path) -> None:
    """Results, heartbeats and logs can be written there, now: else one UsageError line (a
    file in the way, a path under /proc, a full disk), before anything runs."""
    import tempfile

    from pytest_prp.results import prepare_results_dir

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
        branch = settings.branch or (batch_branch(batches[0]) if len(batches) == 1 else None)
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
    from pytest_prp import runlock

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
