"""Executing one PRP as a pytest item: setup = steps, call = gates, then commit and merge.

Runs in whichever process runs the item (the only process, or an xdist worker): everything it
knows about other PRPs comes from this process's own results and from the git ledger, and all it
tells the controller travels on the item's reports (``report.prp``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.collect import KNOWN_PRPS, PrpItem, PrpUserError
from pytest_prp.context import PrpContext
from pytest_prp.gitops import GitError, GitWorkspace, trailers_message
from pytest_prp.ids import natural_key
from pytest_prp.model import Prp

if TYPE_CHECKING:
    from pytest_prp.executors import StepsOutcome
    from pytest_prp.gates import GateResult
    from pytest_prp.model import Gate
    from pytest_prp.options import Settings
    from pytest_prp.planning import Plan

COMPLETE_STATUSES = {"completed", "executed", "done"}


@dataclass
class PrpRun:
    """What happened to one PRP in this process: the source of its report and JSON entry."""

    prp: Prp
    stage: int
    status: str = "running"
    branch: str = ""
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    workdir: Path | None = None
    commit: str | None = None
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
    log_path: Path | None = None
    kept_worktree: bool = False

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
            "commits": self.commits,
            "gates_passed": self.gates_passed,
            "gates_failed": self.gates_failed,
            "gates_executable": self.gates_executable,
            "gates_unverified": self.gates_unverified,
            "errors": self.errors,
            "elapsed_seconds": round(self.elapsed, 3),
            "cost_usd": self.cost_usd,
            "tokens": self.tokens,
            "worktree": str(self.workdir) if self.kept_worktree and self.workdir else None,
            "log": str(self.log_path) if self.log_path else None,
        }


RUN = pytest.StashKey[PrpRun]()
EXECUTION = pytest.StashKey["Execution"]()


def integration_branch_name(settings: Settings, prps: list[Prp]) -> str:
    if settings.branch:
        return settings.branch
    batches = {prp.batch for prp in prps}
    if len(batches) == 1 and None not in batches:
        return f"prp/batch-{batches.pop()}"
    return "prp/integration"


class Execution:
    """Per-process execution state: the repository, the integration branch, what is complete."""

    def __init__(self, config: pytest.Config, settings: Settings, plan: Plan) -> None:
        self.config = config
        self.settings = settings
        self.git = GitWorkspace.open(config.rootpath)
        self.branch = integration_branch_name(settings, plan.prps)
        self.known = {prp.id: prp for prp in config.stash.get(KNOWN_PRPS, [])}
        self.passed: dict[str, str] = {}  # PRP id -> commit, passed in this process
        self._ledger: dict[str, str] | None = None
        if settings.verify:
            return
        if settings.base is not None:
            try:
                self.git.resolve(settings.base)
            except GitError:
                raise GitError(f"--prp-base {settings.base} does not exist") from None
        self.git.ensure_branch(self.branch, settings.base)

    def ledger(self, refresh: bool = False) -> dict[str, str]:
        if self._ledger is None or refresh:
            refs = [self.branch, "HEAD"]
            self._ledger = self.git.ledger(refs)
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


def prepare(config: pytest.Config, settings: Settings, plan: Plan) -> Execution:
    """Check the repository before anything runs; a problem is one UsageError line."""
    try:
        execution = Execution(config, settings, plan)
        if settings.clean:
            execution.git.clean()
    except GitError as exc:
        raise pytest.UsageError(f"prp: {exc}") from None
    from pytest_prp.reporting import prepare_results_dir

    prepare_results_dir(settings.results_dir)
    config.stash[EXECUTION] = execution
    return execution


def _log_path(settings: Settings, prp: Prp) -> Path:
    return settings.results_dir / "logs" / (prp.batch or "none") / f"{prp.id}.log"


def _fail(run: PrpRun, status: str, message: str) -> PrpUserError:
    run.status = status
    run.errors.append(message.splitlines()[0] if message else status)
    return PrpUserError([message])


def check_ready(item: PrpItem) -> None:
    """Before any other setup: skip a blocked PRP, or one that is complete already.

    Runs ahead of pytest-dependency, whose own results are per process and know nothing of
    the ledger; it is told about the dependencies we found complete so it agrees with us.
    """
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    run = PrpRun(prp=prp, stage=item.stage, branch=execution.branch)
    item.stash[RUN] = run
    if settings.verify:
        return
    for dep in prp.dependencies:
        if execution.completed(dep) is None:
            run.status = "blocked"
            run.errors.append(f"blocked: {dep} not completed")
            pytest.skip(f"blocked: {dep} not completed")
    if not settings.rerun:
        proof = execution.ledger().get(prp.id)
        if proof:
            run.status = "completed_earlier"
            run.commits = [proof]
            pytest.skip(f"completed earlier in {proof[:7]}")
        if prp.declared_complete:
            run.status = "completed_earlier"
            pytest.skip("declared completed")
    _tell_pytest_dependency(item, prp.dependencies)


def _tell_pytest_dependency(item: pytest.Item, done: list[str]) -> None:
    try:
        from pytest_dependency import DependencyItemStatus, DependencyManager
    except ImportError:  # pragma: no cover - it is a declared dependency
        return
    manager = DependencyManager.getManager(item, scope="session")
    if manager is None:
        return
    for dep in done:
        status = DependencyItemStatus()
        status.results = dict.fromkeys(DependencyItemStatus.Phases, "passed")
        manager.results[dep] = status


def run_setup(item: PrpItem) -> None:
    from pytest_prp.processes import LogSink

    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    run = item.stash[RUN]

    run.log_path = _log_path(settings, prp)
    log = LogSink(run.log_path)
    batch = prp.batch or "none"
    try:
        if settings.verify:
            start = execution.git.resolve(settings.base or "HEAD")
            run.workdir = execution.git.create_worktree(
                f"verify-{prp.id}", f"prp/verify/{batch}/{prp.id}", start
            )
        else:
            tip = execution.git.branch_sha(execution.branch) or execution.git.head_sha()
            run.workdir = execution.git.create_worktree(prp.id, f"prp/{batch}/{prp.id}", tip)
    except GitError as exc:
        raise _fail(run, "failed", f"could not create the worktree: {exc}") from None
    context = PrpContext(
        prp=prp, config=item.config, settings=settings, workdir=run.workdir, log=log
    )
    item.stash[CONTEXT] = context
    if settings.verify:
        return
    outcome: StepsOutcome | None = item.config.hook.pytest_prp_run_steps(context=context)
    if outcome is None:
        raise _fail(run, "failed", "no executor took the PRP's steps")
    if outcome.cost_usd is not None:
        run.cost_usd = (run.cost_usd or 0.0) + outcome.cost_usd
    if outcome.tokens:
        run.tokens = dict(outcome.tokens)
    if not outcome.ok:
        run.kept_worktree = True
        tail = "\n".join(outcome.tail[-40:])
        message = outcome.error or "steps failed"
        detail = f"{message}\n\n--- last output ---\n{tail}" if tail else message
        raise _fail(run, "failed", f"{prp.id}: {detail}\n\nworktree kept: {run.workdir}")


CONTEXT = pytest.StashKey[PrpContext]()


def _gate_failure_text(results: list[GateResult]) -> str:
    from pytest_prp.gates import format_gate_failure

    return "\n\n".join(format_gate_failure(r) for r in results if not r.passed)


def run_call(item: PrpItem) -> None:
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    run = item.stash[RUN]
    context = item.stash[CONTEXT]
    prp = item.prp
    gates: list[Gate] = list(prp.body.executable_gates)
    run.gates_executable = len(gates)
    run.gates_unverified = len(prp.body.unverified_gates)
    results: list[GateResult] = []
    for gate in gates:
        result: GateResult | None = item.config.hook.pytest_prp_run_gate(gate=gate, context=context)
        if result is None:
            raise _fail(run, "failed", f"{prp.id}: no gate runner for gate kind {gate.kind!r}")
        results.append(result)
    run.gates_passed = sum(1 for r in results if r.passed)
    run.gates_failed = len(results) - run.gates_passed
    if run.gates_failed:
        run.kept_worktree = True
        failed = [r for r in results if not r.passed]
        run.status = "failed_gates"
        run.errors.extend(f"gate {r.gate.index} {r.gate.name!r} failed" for r in failed)
        raise PrpUserError(
            [
                f"{prp.id}: {run.gates_failed} of {len(results)} gates failed\n\n"
                + _gate_failure_text(results)
                + f"\n\nworktree kept: {run.workdir}"
            ]
        )
    unverified = not gates
    if unverified and settings.strict:
        run.kept_worktree = True
        raise _fail(run, "failed_gates", f"{prp.id}: no executable gate (--prp-strict)")
    if settings.verify:
        run.status = "unverified" if unverified else "success"
        return
    _commit_and_merge(execution, run, unverified)


def _commit_and_merge(execution: Execution, run: PrpRun, unverified: bool) -> None:
    prp = run.prp
    assert run.workdir is not None
    trailers = {
        "PRP-Id": prp.id,
        "PRP-Batch": prp.batch or "none",
        "PRP-Gates": f"{run.gates_passed}/{run.gates_executable} passed",
    }
    message = trailers_message(f"{prp.id}: Complete - {prp.title}", trailers)
    try:
        info = execution.git.commit_all(run.workdir, message, allow_empty=True)
    except GitError as exc:
        run.kept_worktree = True
        raise _fail(run, "failed", f"{prp.id}: commit failed: {exc}") from None
    assert info is not None
    run.commit = info.sha
    run.commits = [info.sha]
    run.files_created = list(info.created)
    run.files_modified = list(info.modified)
    merge = execution.git.merge(
        execution.branch, info.sha, f"Merge {prp.id} into {execution.branch}"
    )
    if not merge.ok:
        run.kept_worktree = True
        paths = ", ".join(merge.conflicts) or "(unknown paths)"
        raise _fail(
            run,
            "failed_merge",
            f"{prp.id}: merge into {execution.branch} conflicts in: {paths}\n"
            f"{execution.branch} is unchanged; worktree kept: {run.workdir}",
        )
    execution.passed[prp.id] = info.sha
    run.status = "unverified" if unverified else "success"
    execution.git.remove_worktree(run.workdir)


def run_teardown(item: PrpItem) -> None:
    context = item.stash.get(CONTEXT, None)
    if context is not None and context.log is not None:
        context.log.close()
    run = item.stash.get(RUN, None)
    if run is None:
        return
    run.elapsed = time.monotonic() - run.started
    execution = item.config.stash[EXECUTION]
    if execution.settings.verify and run.workdir is not None:
        execution.git.remove_worktree(run.workdir)
        run.kept_worktree = False


class DefaultImplementations:
    """The default executors, gate kind and ledger; registered ``trylast`` in every process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._ledger: dict[str, str] | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_prp_run_steps(self, context: PrpContext) -> StepsOutcome | None:
        from pytest_prp.executors import (
            default_prompt,
            render_prompt_template,
            run_agent,
            run_literal_steps,
        )

        settings = context.settings
        if settings.agent:
            text = context.prp.path.read_text(encoding="utf-8")
            if settings.prompt_template is not None:
                try:
                    template = settings.prompt_template.read_text(encoding="utf-8")
                except OSError as exc:
                    raise PrpUserError([f"prp_prompt_template: cannot read {exc}"]) from None
                prompt = render_prompt_template(template, context.prp, text)
            else:
                prompt = default_prompt(context.prp, text)
            return run_agent(
                context.prp,
                command=settings.agent,
                prompt=prompt,
                workdir=context.workdir,
                env=context.env,
                timeout=settings.step_timeout,
                log=context.log,
                # Kept beside the logs: what the agent was told is part of the record.
                prompt_dir=settings.results_dir / "prompts" / (context.prp.batch or "none"),
            )
        return run_literal_steps(
            context.prp,
            workdir=context.workdir,
            env=context.env,
            timeout=settings.step_timeout,
            log=context.log,
        )

    @pytest.hookimpl(trylast=True)
    def pytest_prp_run_gate(self, gate: Gate, context: PrpContext) -> GateResult | None:
        from pytest_prp.gates import run_shell_gate
        from pytest_prp.model import GATE_SHELL

        if gate.kind != GATE_SHELL:
            return None
        return run_shell_gate(
            gate,
            cwd=context.workdir,
            env=context.env,
            timeout=context.settings.gate_timeout,
            log=context.log,
        )

    @pytest.hookimpl(trylast=True)
    def pytest_prp_dependency_complete(self, config: pytest.Config, prp_id: str) -> str | None:
        execution = config.stash.get(EXECUTION, None)
        if execution is not None:
            return execution.completed(prp_id)
        # Planning happens before the run is prepared: read the ledger once, on first need.
        if self._ledger is None:
            self._ledger = {}
            try:
                git = GitWorkspace.open(config.rootpath)
                settings = config.stash[_settings_key()]
                refs = ["HEAD", *([settings.branch] if settings.branch else [])]
                self._ledger = git.ledger(refs + _batch_branches(config))
            except GitError:
                pass
        return self._ledger.get(prp_id)


def _settings_key() -> pytest.StashKey[Settings]:
    from pytest_prp.plugin import SETTINGS

    return SETTINGS


def _batch_branches(config: pytest.Config) -> list[str]:
    """Default integration branches of the known batches: where a resumed batch's work is."""
    batches = {prp.batch for prp in config.stash.get(KNOWN_PRPS, []) if prp.batch}
    return [f"prp/batch-{b}" for b in sorted(batches, key=natural_key)] + ["prp/integration"]
