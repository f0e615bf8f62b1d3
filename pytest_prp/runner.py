"""Executing one PRP as a pytest item: setup = steps, call = gates, then commit and merge.

Runs in whichever process runs the item (the only process, or an xdist worker): everything it
knows about other PRPs comes from this process's own results, the git ledger and the batch
result JSON that the controller rewrites after every PRP; all it tells the controller travels
on the item's reports (``report.prp``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import pytest

from pytest_prp.base.naming import (
    batch_folder,
    earlier_branch,
    foreign_branch,
    log_path,
    prp_branch,
)
from pytest_prp.execute.hook_context import PrpContext
from pytest_prp.execution import EXECUTION, Execution, worker_name
from pytest_prp.keys import CONTEXT, HEARTBEAT, RUN, WAITER
from pytest_prp.merge_redo import INTEGRATION_GATE, integration_gates, redo_or_fail, stacking
from pytest_prp.merge_siblings import SiblingMergeCheck
from pytest_prp.records.record import (
    BLOCKED,
    COMPLETED_EARLIER,
    FAILED,
    FAILED_GATES,
    FAILED_INTEGRATION,
    INTERRUPTED,
    NO_CHANGES,
    PASSED,
    RATE_LIMITED,
    RUNNING,
    SKIPPED_BUDGET,
    SUCCESS,
    UNVERIFIED,
    PrpRun,
)
from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.model import PrpUserError
from pytest_prp.supervise.ratelimit import GiveUp, RateLimitWaiter, SharedPause, waiting_text
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.ledger import trailers_message
from pytest_prp.workspace.merge_check import check_out, drop_earlier
from pytest_prp.workspace.merge_queue import Check, MergeOutcome, checked_merge
from pytest_prp.workspace.merge_stack import stack_record, stacked_merge
from pytest_prp.workspace.sibling_check import SIBLINGS

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_prp.execute.executors import StepsOutcome
    from pytest_prp.execute.gates import GateResult
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.heartbeat import Heartbeat
    from pytest_prp.spec.model import Gate, Prp


class PrpNode(Protocol):
    """A PRP's pytest item as the runner uses it: ``collect.PrpItem`` hands itself in, so the
    runner needs nothing of the collector (which imports the runner to run)."""

    prp: Prp
    stage: int

    @property
    def config(self) -> pytest.Config: ...

    @property
    def stash(self) -> pytest.Stash: ...

    def warn(self, warning: Warning) -> None: ...


def _fail(run: PrpRun, status: str, message: str) -> PrpUserError:
    run.set_status(status, message.splitlines()[0] if message else status)
    return PrpUserError([message])


def _keep_worktree(execution: Execution, run: PrpRun) -> None:
    """The PRP did not merge: its worktree stays for inspection (under the PRP's name)."""
    run.kept_worktree = True
    if run.workdir is not None:
        run.workdir = execution.git.keep_worktree(run.workdir, run.prp.id)


def new_run(item: PrpNode) -> PrpRun:
    """The PRP's record in this process, from the moment pytest starts its setup."""
    execution = item.config.stash[EXECUTION]
    run = PrpRun(prp=item.prp, stage=item.stage, branch=execution.branch)
    run.worker = worker_name(item.config)
    if execution.remote is not None:
        run.worker += f"@{execution.remote.host}"  # the machine, in the JSON and prp-status
    item.stash[RUN] = run
    return run


def check_ready(item: PrpNode) -> None:
    """Before any other setup: skip a blocked PRP, one complete already, or one over budget.

    Runs ahead of pytest-dependency, whose own results are per process and know nothing of
    the ledger; it is told about the dependencies we found complete so it agrees with us.
    """
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    run = new_run(item)
    if execution.remote is not None:
        _sync_remote(execution, run)
    if settings.verify:
        # A PRP's gates are a property of the tree, not of its dependencies: every one runs.
        _tell_pytest_dependency(item, prp.dependencies)
        return
    missing = [dep for dep in prp.dependencies if execution.completed(dep) is None]
    if missing:
        message = f"blocked: {', '.join(missing)} not completed"
        run.set_status(BLOCKED, message)
        run.blocked_by = missing
        pytest.skip(message)
    if not settings.rerun:
        proof = execution.ledger().get(prp.id)
        if proof:
            run.set_status(COMPLETED_EARLIER)
            run.commits = [proof]
            pytest.skip(f"completed earlier in {proof[:7]}")
        if prp.declared_complete:
            run.set_status(COMPLETED_EARLIER)
            pytest.skip("declared completed")
    budget = settings.budget_usd
    if budget is not None and execution.batch_spent() >= budget:
        run.set_status(SKIPPED_BUDGET, f"skipped: budget exhausted (${budget:.2f})")
        pytest.skip(f"skipped: budget exhausted (${budget:.2f} spent)")
    if settings.agent and SharedPause(settings.results_dir, execution.run_id).exhausted():
        run.set_status(RATE_LIMITED, "not started: the API stayed rate limited")
        pytest.skip("not started: the API stayed rate limited (--prp-rate-limit-wait)")
    _tell_pytest_dependency(item, prp.dependencies)


def _sync_remote(execution: Execution, run: PrpRun) -> None:
    """A remote worker: refused (other PRP files, no remote), else the controller's tip now."""
    from pytest_prp.remote_worker import sync_tip

    assert execution.remote is not None
    refusal = execution.remote.refusal()
    if refusal is None and not execution.settings.verify:
        try:
            sync_tip(execution.git, execution.remote, execution.branch)
        except GitError as exc:
            refusal = f"cannot get {execution.branch} on {execution.remote.where()}: {exc}"
    if refusal is not None:
        raise _fail(run, FAILED, f"{run.prp.id}: {refusal}")


def _tell_pytest_dependency(item: PrpNode, done: list[str]) -> None:
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


def _start_heartbeat(item: PrpNode, run: PrpRun, settings: Settings) -> Heartbeat:
    from pytest_prp.records.heartbeat import Heartbeat, heartbeat_path

    batch = batch_folder(item.prp.batch)
    beat = Heartbeat(
        heartbeat_path(settings.results_dir, batch, item.prp.id),
        prp_id=item.prp.id,
        batch=batch,
        interval=settings.heartbeat,
        estimated_hours=item.prp.estimated_hours,
        run_id=item.config.stash[EXECUTION].run_id,
        worker=run.worker,
    )
    beat.start()
    item.stash[HEARTBEAT] = beat
    return beat


def run_setup(item: PrpNode) -> None:
    from pytest_prp.spec.agents import choose_model
    from pytest_prp.supervise.limits import IDLE_LIMIT, PRP_LIMIT, Limits
    from pytest_prp.supervise.output import LogSink

    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    run = item.stash[RUN]
    run.log_path = log_path(settings.results_dir, prp.batch, prp.id)
    # Said before any work: under -W error the PRP then fails here, with nothing to lose.
    for warning in body_of(prp).warnings:  # e.g. blocks that look like gates and are not read
        try:
            item.warn(pytest.PytestWarning(f"prp: {warning}"))
        except Warning as exc:
            raise _fail(run, FAILED, f"{prp.id}: {exc} (a warning, made an error by -W)") from None
    beat = _start_heartbeat(item, run, settings)
    run.enter_phase("workspace")
    try:
        if settings.verify:
            start = execution.git.resolve(settings.base or "HEAD")
            run.workdir = execution.git.prp_worktree(f"verify-{prp.id}", None, start)
        else:
            # In a serial run the tip this process last merged is the tip: one git call saved.
            # Under xdist other workers merge too, and the PRP must see their work.
            cached = execution.tip if not hasattr(item.config, "workerinput") else None
            tip = cached or execution.git.branch_sha(execution.branch)
            if tip is None:
                # Nothing is made yet: the PRP fails before any work of its own.
                raise _fail(
                    run,
                    FAILED,
                    f"{prp.id}: the integration branch {execution.branch} is gone (deleted "
                    "while the batch ran): no tip to start from; not started",
                )
            run.workdir = execution.git.prp_worktree(prp.id, prp_branch(prp.batch, prp.id), tip)
            run.base = tip
            run.refs_before = execution.git.ref_state(
                run.workdir, execution.own_refs, watch=(execution.branch,)
            )
    except GitError as exc:
        raise _fail(run, FAILED, f"could not create the worktree: {exc}") from None
    if settings.agent:
        run.model = choose_model(prp, settings.models)
    limits = Limits.starting_now(
        settings.timeout,
        source=PRP_LIMIT,
        idle=settings.idle_timeout,
        idle_source=IDLE_LIMIT,
        activity_dir=run.workdir,  # a step changing files in its worktree is not idle
        log=LogSink(run.log_path),
        on_line=beat.output,  # the heartbeat's sign of life
    )
    context = PrpContext(
        prp=prp,
        config=item.config,
        settings=settings,
        workdir=run.workdir,
        limits=limits,
        model=run.model,
        heartbeat=beat,
    )
    item.stash[CONTEXT] = context
    if settings.verify:
        return
    _run_steps(item, context, run)


def _run_steps(item: PrpNode, context: PrpContext, run: PrpRun) -> None:
    prp = item.prp
    context.heartbeat_phase("steps")
    run.enter_phase("steps", context.attempt)
    outcome = _steps_outcome(item, context, run)
    if outcome is None:
        raise _fail(run, FAILED, "no executor took the PRP's steps")
    run.add_cost(outcome)
    for note in outcome.notes:
        item.warn(PrpWarning(f"{prp.id}: {note}"))
    if run.cost_usd is not None and context.heartbeat is not None:
        context.heartbeat.cost(run.cost_usd)
    if not outcome.ok:
        _keep_worktree(item.config.stash[EXECUTION], run)
        tail = "\n".join(outcome.tail[-40:])
        run.failure_tail = _report_tail(outcome.tail)
        message = outcome.error or "steps failed"
        if context.attempt > 1:
            message = f"attempt {context.attempt}: {message}"
        detail = f"{message}\n\n--- last output ---\n{tail}" if tail else message
        refused = run.refusals_text()
        detail += f"\n\n{refused}" if refused else ""
        raise _fail(run, FAILED, f"{prp.id}: {detail}\n\nworktree kept: {run.workdir}")


def _steps_outcome(item: PrpNode, context: PrpContext, run: PrpRun) -> StepsOutcome | None:
    """The executor's outcome. An agent the API refused (rate limit, overload) is not at
    fault: it runs again after the wait, in the same attempt."""
    hook = item.config.hook.pytest_prp_run_steps
    if not context.settings.agent:
        result: StepsOutcome | None = hook(context=context)
        return result
    waiter = _waiter(item, context)
    while True:
        with _waiting(context, waiter, run):
            waiter.before_run()
        outcome: StepsOutcome | None = hook(context=context)
        if outcome is None or outcome.ok or outcome.rate_limit is None:
            return outcome
        run.add_cost(outcome)  # a refused run may still have cost something
        with _waiting(context, waiter, run):
            waiter.after_limit(outcome.rate_limit)


def _waiter(item: PrpNode, context: PrpContext) -> RateLimitWaiter:
    """The PRP's rate-limit waits (one bound for all its attempts)."""
    waiter = item.stash.get(WAITER, None)
    if waiter is None:
        from pytest_prp.records.heartbeat import iso

        def on_wait(until: float | None, reason: str) -> None:
            if context.heartbeat is not None:
                context.heartbeat.waiting(until)
            if until is not None and context.log is not None:
                context.log.line(f"{waiting_text(until)} ({iso(until)}): {reason}")

        execution = item.config.stash[EXECUTION]
        settings = context.settings
        waiter = RateLimitWaiter(
            SharedPause(settings.results_dir, execution.run_id),
            prp_id=item.prp.id,
            bound=settings.rate_limit_wait,
            on_wait=on_wait,
        )
        item.stash[WAITER] = waiter
    return waiter


@contextmanager
def _waiting(context: PrpContext, waiter: RateLimitWaiter, run: PrpRun) -> Iterator[None]:
    """Time spent waiting is not the PRP's: its wall-clock limit moves on by as much. Past
    the bound the PRP ends ``rate_limited``."""
    before = waiter.waited
    try:
        yield
    except GiveUp as exc:
        execution = context.config.stash[EXECUTION]
        _keep_worktree(execution, run)
        raise _fail(
            run,
            RATE_LIMITED,
            f"{run.prp.id}: rate limited: {exc}\n\nworktree kept: {run.workdir}",
        ) from None
    finally:
        context.limits = context.limits.extended(waiter.waited - before)
        run.rate_limit_waits = waiter.limits
        run.rate_limit_waited = waiter.waited


REPORT_TAIL_LINES = 20
REPORT_LINE_CHARS = 300


def _report_tail(lines: list[str]) -> list[str]:
    """The end of a failure's output as the result JSON keeps it: bounded, so that a batch of
    hundreds of PRPs keeps its result JSON and HTML report small (the log has it all)."""
    return [line[:REPORT_LINE_CHARS] for line in lines[-REPORT_TAIL_LINES:]]


def _gate_record(result: GateResult) -> dict[str, object]:
    """One gate of an attempt in the result JSON: a failed one with the end of its output."""
    process = result.process
    record: dict[str, object] = {
        "index": result.gate.index,
        "name": result.gate.name,
        "passed": result.passed,
        "exit_code": process.returncode,
        "timed_out": process.timed_out,
        "seconds": round(process.duration, 3),
    }
    if process.timed_out:  # which limit cut it, and the option that sets it
        record["cut_short"] = process.describe()
    if not result.passed:
        record["tail"] = _report_tail(process.tail)
    return record


def _gate_failure_text(results: list[GateResult]) -> str:
    from pytest_prp.execute.gates import format_gate_failure

    return "\n\n".join(format_gate_failure(r) for r in results if not r.passed)


def _run_gates(
    item: PrpNode, context: PrpContext, gates: list[Gate], phase: bool = True
) -> list[GateResult]:
    """The gates' results; ``phase`` False for a merge check (part of the merge phase)."""
    results: list[GateResult] = []
    if phase:
        item.stash[RUN].enter_phase("gates", context.attempt)
    for index, gate in enumerate(gates, 1):
        context.heartbeat_phase("gates", current=gate.name, index=index, total=len(gates))
        result: GateResult | None = item.config.hook.pytest_prp_run_gate(gate=gate, context=context)
        if result is None:
            run = item.stash[RUN]
            raise _fail(run, FAILED, f"{item.prp.id}: no gate runner for kind {gate.kind!r}")
        results.append(result)
    return results


def run_call(item: PrpNode) -> None:
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    run = item.stash[RUN]
    context = item.stash[CONTEXT]
    prp = item.prp
    body = body_of(prp)
    gates: list[Gate] = list(body.executable_gates) + integration_gates(
        settings.integration_gate, len(body.gates)
    )
    run.gates_executable = len(gates)
    run.gates_unverified = len(body.unverified_gates)
    wider = _sibling_check(item, execution, run)
    while True:
        _gates_pass(item, context, run, gates)
        unverified = not body.executable_gates
        if unverified and settings.strict:
            _keep_worktree(execution, run)
            raise _fail(run, FAILED_GATES, f"{prp.id}: no executable gate (--prp-strict)")
        if settings.verify:
            run.set_status(UNVERIFIED if unverified else SUCCESS)
            return
        context.heartbeat_phase("merge")
        _note_ref_changes(item, execution, run)
        run.enter_phase("merge", context.attempt)
        outcome = _commit_and_merge(item, execution, run, unverified, gates, wider)
        if outcome is None:
            return
        # Raises the PRP's failure, or prepares a redo on the current tip: steps run again.
        blame = wider.record.failing if wider is not None else None
        redo_or_fail(execution, run, context, outcome, _fail, _keep_worktree, blame)
        _run_steps(item, context, run)
        context.redo = None


def _sibling_check(item: PrpNode, execution: Execution, run: PrpRun) -> SiblingMergeCheck | None:
    """The sibling gates of the PRP's merge checks, when asked for (``--prp-merge-check``)."""
    if execution.settings.verify or execution.settings.merge_check != SIBLINGS:
        return None
    assert run.base is not None

    def run_gate(gate: Gate) -> tuple[bool, str]:
        result = _run_gates(item, item.stash[CONTEXT], [gate], phase=False)[0]
        return result.passed, "" if result.passed else _gate_failure_text([result])

    wider = SiblingMergeCheck(execution, item.prp, run.base, run_gate)
    run.sibling_gates = wider.record.as_json()
    return wider


def _gates_pass(item: PrpNode, context: PrpContext, run: PrpRun, gates: list[Gate]) -> None:
    """Run the gates, the agent retrying on failed ones; raise unless they all pass."""
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    while True:
        results = _run_gates(item, context, gates)
        failed = [r for r in results if not r.passed]
        run.attempts.append(
            {
                "attempt": context.attempt,
                "gates_passed": len(results) - len(failed),
                "gates_failed": len(failed),
                "failed_gates": [r.gate.name for r in failed],
                "gates": [_gate_record(r) for r in results],
            }
        )
        retry = (
            failed
            and settings.agent is not None
            and context.attempt < settings.attempts + run.redos
            and context.remaining() > 0
        )
        if not retry:
            break
        # Self-healing: the agent gets the failed gates and works again in the same worktree.
        context.attempt += 1
        context.feedback = _gate_failure_text(results)
        _run_steps(item, context, run)
    run.gates_passed = len(results) - len(failed)
    run.gates_failed = len(failed)
    if failed:
        # Redone on a newer tip, its gates fail there: the PRPs merged meanwhile broke it.
        run.set_status(FAILED_INTEGRATION if run.redos else FAILED_GATES)
        run.errors.extend(f"gate {r.gate.index} {r.gate.name!r} failed" for r in failed)
        tried = f" after {context.attempt} attempts" if context.attempt > 1 else ""
        if run.redos:
            tried += f", redone on {execution.branch} at {str(run.base)[:12]}; its work "
            tried += f"before the redo: branch {earlier_branch(prp_branch(prp.batch, prp.id))}"
            tried += f" (collides with {', '.join(run.culprits)})" if run.culprits else ""
        kept = ""
        if not settings.verify:  # verify mode checks HEAD as it is: nothing of its own to keep
            _keep_worktree(execution, run)
            kept = f"\n\nworktree kept: {run.workdir}"
        raise PrpUserError(
            [
                f"{prp.id}: {len(failed)} of {len(results)} gates failed{tried}\n\n"
                + _gate_failure_text(results)
                + (f"\n\n{run.refusals_text()}" if run.refusals else "")
                + kept
            ]
        )


class PrpWarning(UserWarning):
    """Something a PRP did that its result holds but its commit does not."""


def _note_ref_changes(item: PrpNode, execution: Execution, run: PrpRun) -> None:
    """Report what the steps did to git refs (commits, resets, checkouts, new branches): the
    PRP's commit is the tree they left on the PRP's base, so none of it is merged."""
    if run.workdir is None or run.refs_before is None:
        return
    try:
        run.ref_changes = execution.git.ref_changes(
            run.workdir, run.refs_before, execution.own_refs
        )
    except GitError as exc:
        run.ref_changes = [f"could not read the refs: {exc}"]
    if run.ref_changes:
        item.warn(
            PrpWarning(
                f"{run.prp.id}: git refs changed while it ran, not merged (its commit is the "
                f"tree it left, on {str(run.base)[:12]}): " + "; ".join(run.ref_changes)
            )
        )
    _refuse_foreign_moves(execution, run)


def _refuse_foreign_moves(execution: Execution, run: PrpRun) -> None:
    """The steps moved the integration branch themselves (an agent that checked it out and
    committed, or reset it): the PRP fails, and the branch goes back to where pytest-prp left
    it, what they put there kept aside. Nothing reaches the branch but checked merges."""
    assert run.workdir is not None and run.refs_before is not None
    branch = execution.branch
    _refuse_deletion(execution, run)  # the links to the reflog are released at teardown
    moves = execution.git.foreign_moves(run.refs_before, branch)
    if not moves:
        return
    keep = foreign_branch(prp_branch(run.prp.batch, run.prp.id))
    try:
        back_at = execution.git.undo_foreign_moves(branch, moves, keep)
    except GitError:
        back_at = None
    how = "; ".join(dict.fromkeys(message or "(no message)" for _, _, message in moves))
    if back_at is not None:
        outcome = f"{branch} is back at {back_at[:12]}, what they put there kept as {keep}"
    else:
        outcome = (
            f"{branch} has moved on since and was left as it is: inspect it (their commit: "
            f"{moves[-1][1][:12]})"
        )
    _keep_worktree(execution, run)
    raise _fail(
        run,
        FAILED,
        f"{run.prp.id}: its steps moved the integration branch {branch} ({how}); only checked "
        f"merges may: not merged; {outcome}",
    )


def _refuse_deletion(execution: Execution, run: PrpRun) -> None:
    """The steps or gates deleted the integration branch (``git branch -D``, which takes its
    reflog along): the PRP fails and the branch comes back where it was when deleted, with
    every merge it held, instead of the batch's merged work hanging on no branch."""
    outcome = _restore_deleted(execution, run)
    if outcome is None:
        return
    _keep_worktree(execution, run)
    raise _fail(
        run,
        FAILED,
        f"{run.prp.id}: its steps or gates deleted the integration branch "
        f"{execution.branch}; only checked merges may move it: not merged; {outcome}",
    )


def _restore_deleted(execution: Execution, run: PrpRun) -> str | None:
    """Put the integration branch back if the PRP's steps or gates deleted it: what was done
    (None when it is there)."""
    branch = execution.branch
    if run.refs_before is None:
        return None
    try:
        tip = execution.git.deleted_tip(run.refs_before, branch)
    except GitError:
        return None
    if tip is None:
        return None
    try:
        if execution.git.restore_branch(branch, tip):
            return f"{branch} is restored at {tip[:12]}"
    except GitError:
        pass
    return f"{branch} was not restored: inspect it (it held {tip[:12]})"


def _commit_and_merge(
    item: PrpNode,
    execution: Execution,
    run: PrpRun,
    unverified: bool,
    gates: list[Gate],
    wider: SiblingMergeCheck | None = None,
) -> MergeOutcome | None:
    """Commit the PRP's work and merge it under the rule of ``merge_queue``: None when merged,
    else how the merge failed (the PRP's commit back on its branch, the integration branch
    as it was)."""
    prp = run.prp
    assert run.workdir is not None
    trailers = {
        "PRP-Id": prp.id,
        "PRP-Batch": batch_folder(prp.batch),
        "PRP-Gates": f"{run.gates_passed}/{run.gates_executable} passed",
    }
    message = trailers_message(f"{prp.id}: Complete - {prp.title}", trailers)
    try:
        # The PRP branch is moved only if the work stays there (a conflict); after a merge it
        # is deleted in the same transaction.
        info = execution.git.commit_all(run.workdir, message, move_branch=False, base=run.base)
        if info is None and not unverified:
            # Nothing changed, and its gates pass on the tree as it was: an empty commit,
            # saying so, carries its trailers (the ledger's proof, for its dependents).
            run.no_changes = True
            message = trailers_message(f"{prp.id}: Complete (no changes) - {prp.title}", trailers)
            info = execution.git.commit_all(
                run.workdir, message, allow_empty=True, move_branch=False, base=run.base
            )
    except GitError as exc:
        _keep_worktree(execution, run)
        raise _fail(run, FAILED, f"{prp.id}: commit failed: {exc}") from None
    if info is None:
        # Nothing changed and nothing was checked: no commit may claim work that nothing shows.
        _keep_worktree(execution, run)
        raise _fail(
            run,
            NO_CHANGES,
            f"{prp.id}: its steps changed nothing and no executable gate checks it: nothing "
            "shows its work was done; not committed (add a gate that checks what it does)",
        )
    run.commits = [info.sha]
    run.files_created = list(info.created)
    run.files_modified = list(info.modified)
    run.files_deleted = list(info.deleted)
    own_branch = prp_branch(prp.batch, prp.id)
    merge = checked_merge
    if execution.remote is not None:  # the same rule; the controller holds the branch
        from pytest_prp.remote_worker import remote_merge

        merge = remote_merge(execution.remote, prp.id)
    assert run.base is not None

    def check_of(these: list[Gate], siblings: bool = True) -> Check:
        def check() -> tuple[list[str], str]:
            if wider is not None and siblings:
                wider.record.failing = None  # a failure of its own gates blames no sibling
            results = _run_gates(item, item.stash[CONTEXT], these, phase=False)
            failed = [r for r in results if not r.passed]
            if failed or wider is None or not siblings:
                return [r.gate.name for r in failed], _gate_failure_text(results)
            assert run.workdir is not None
            return wider.on_merged_tree(run.workdir)  # its own gates passed: its siblings' now

        return check

    check = check_of(gates)
    if execution.remote is None and stacking(execution.settings, gates):
        # The integration gate (the last gate) once per stack of merges (merge_stack); the
        # siblings' gates stay with the PRP's own.
        merge = stacked_merge(prp.id, check_of(gates[-1:], siblings=False), INTEGRATION_GATE)
        check = check_of(gates[:-1])

    try:
        if wider is not None and run.redos:  # a fast-forward would check no sibling
            early = wider.before_fast_forward(run.workdir, info.sha, run.base, own_branch)
            if early is not None:
                run.merge_checks += early.checks
                return early
        outcome = merge(
            execution.git,
            execution.branch,
            info.sha,
            run.base,
            run.workdir,
            f"Merge {prp.id} into {execution.branch}",
            check,
            delete_branch=own_branch,
        )
        run.merge_checks += outcome.checks
        if outcome.sha is None and outcome.checks:  # its own commit back, on its branch
            check_out(execution.git, run.workdir, info.sha, own_branch)
        elif outcome.sha is None:  # its files are its commit's: the branch moves there
            execution.git.set_branch(own_branch, info.sha, run.workdir)
    except GitError as exc:
        _keep_worktree(execution, run)
        raise _fail(run, FAILED, f"{prp.id}: merge failed: {exc}") from None
    finally:
        if wider is not None:
            run.sibling_gates = wider.record.as_json()
    if outcome.sha is None:
        return outcome
    run.merged_commit = outcome.sha
    if run.redos:  # the redo merged: its earlier attempt is superseded
        drop_earlier(execution.git, own_branch)
    run.merge_rechecks += outcome.rechecks
    run.merge_stack = stack_record(outcome)
    execution.passed[prp.id] = info.sha
    execution.tip = outcome.sha
    run.set_status(UNVERIFIED if unverified else SUCCESS)
    execution.git.done_with_worktree(run.workdir)
    return None


def run_teardown(item: PrpNode) -> None:
    context = item.stash.get(CONTEXT, None)
    if context is not None and context.log is not None:
        context.log.close()
    run = item.stash.get(RUN, None)
    if run is None:
        return
    run.elapsed = time.monotonic() - run.started
    run.end_phase()
    run.finished_at = time.time()
    execution = item.config.stash[EXECUTION]
    execution.spent_usd += run.cost_usd or 0.0
    # Still running at teardown: Ctrl-C or SIGTERM cut it short, and no report will carry its
    # record; its final heartbeat tells the controller how long it ran and what was kept.
    cut_short = run.status == RUNNING
    if run.refs_before is not None and not execution.settings.verify:
        # A PRP that failed (its gates, say, or its merge check's) after deleting the
        # integration branch: the branch still comes back with the batch's merges.
        restored = _restore_deleted(execution, run)
        if restored is not None:
            item.warn(PrpWarning(f"{run.prp.id}: the integration branch was deleted; {restored}"))
        execution.git.release_logs(run.refs_before)
    if not execution.settings.verify:
        undone, execution.git.undone[:] = list(execution.git.undone), []
        for line in undone:  # while this PRP merged: by its merge check's gates, it may be
            item.warn(PrpWarning(f"{run.prp.id}: while it merged, {line}"))
    if run.workdir is not None:
        if execution.settings.verify:
            execution.git.done_with_worktree(run.workdir)
            run.kept_worktree = False
        elif run.status not in PASSED:
            _keep_worktree(execution, run)  # cut short, or ended by a plugin's error
    if cut_short:
        finish_heartbeat(item, INTERRUPTED, run.workdir if run.kept_worktree else None)


def finish_heartbeat(item: PrpNode, status: str, worktree: Path | None = None) -> None:
    beat = item.stash.get(HEARTBEAT, None)
    if beat is not None:
        beat.finish(status, worktree)
