"""Executing one PRP as a pytest item: setup = steps, call = gates, then commit and merge.

Runs in whichever process runs the item (the only process, or an xdist worker): everything it
knows about other PRPs comes from this process's own results, the git ledger and the batch
result JSON that the controller rewrites after every PRP; all it tells the controller travels
on the item's reports (``report.prp``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from pytest_prp.collect import PrpItem, PrpUserError
from pytest_prp.context import PrpContext
from pytest_prp.execution import (
    EXECUTION,
    RUN,
    Execution,
    PrpRun,
    prp_branch_name,
    worker_name,
)
from pytest_prp.gitops import GitError, trailers_message

if TYPE_CHECKING:
    from pytest_prp.executors import StepsOutcome
    from pytest_prp.gates import GateResult
    from pytest_prp.heartbeat import Heartbeat
    from pytest_prp.model import Gate
    from pytest_prp.options import Settings


CONTEXT = pytest.StashKey[PrpContext]()
HEARTBEAT = pytest.StashKey["Heartbeat"]()


def _fail(run: PrpRun, status: str, message: str) -> PrpUserError:
    run.status = status
    run.errors.append(message.splitlines()[0] if message else status)
    return PrpUserError([message])


def _keep_worktree(execution: Execution, run: PrpRun) -> None:
    """The PRP did not merge: its worktree stays for inspection (under the PRP's name)."""
    run.kept_worktree = True
    if run.workdir is not None:
        run.workdir = execution.git.keep_worktree(run.workdir, run.prp.id)


def check_ready(item: PrpItem) -> None:
    """Before any other setup: skip a blocked PRP, one complete already, or one over budget.

    Runs ahead of pytest-dependency, whose own results are per process and know nothing of
    the ledger; it is told about the dependencies we found complete so it agrees with us.
    """
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    run = PrpRun(prp=prp, stage=item.stage, branch=execution.branch)
    run.worker = worker_name(item.config)
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
    budget = settings.budget_usd
    if budget is not None and execution.batch_spent() >= budget:
        run.status = "skipped_budget"
        run.errors.append(f"skipped: budget exhausted (${budget:.2f})")
        pytest.skip(f"skipped: budget exhausted (${budget:.2f} spent)")
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


def _start_heartbeat(item: PrpItem, run: PrpRun, settings: Settings) -> Heartbeat:
    from pytest_prp.heartbeat import Heartbeat, heartbeat_path

    batch = item.prp.batch or "none"
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


def run_setup(item: PrpItem) -> None:
    from pytest_prp.agents import choose_model
    from pytest_prp.output import LogSink

    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    prp = item.prp
    run = item.stash[RUN]
    run.log_path = settings.results_dir / "logs" / (prp.batch or "none") / f"{prp.id}.log"
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
            assert tip is not None
            run.workdir = execution.git.prp_worktree(prp.id, prp_branch_name(prp), tip)
            run.base = tip
    except GitError as exc:
        raise _fail(run, "failed", f"could not create the worktree: {exc}") from None
    if settings.agent:
        run.model = choose_model(prp, settings.models)
    context = PrpContext(
        prp=prp,
        config=item.config,
        settings=settings,
        workdir=run.workdir,
        log=LogSink(run.log_path),
        deadline=time.monotonic() + settings.timeout,
        model=run.model,
        heartbeat=beat,
    )
    item.stash[CONTEXT] = context
    if settings.verify:
        return
    _run_steps(item, context, run)


def _run_steps(item: PrpItem, context: PrpContext, run: PrpRun) -> None:
    prp = item.prp
    context.heartbeat_phase("steps")
    run.enter_phase("steps", context.attempt)
    outcome: StepsOutcome | None = item.config.hook.pytest_prp_run_steps(context=context)
    if outcome is None:
        raise _fail(run, "failed", "no executor took the PRP's steps")
    run.add_cost(outcome)
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
        raise _fail(run, "failed", f"{prp.id}: {detail}\n\nworktree kept: {run.workdir}")


REPORT_TAIL_LINES = 20
REPORT_LINE_CHARS = 300


def _report_tail(lines: list[str]) -> list[str]:
    """The end of a failure's output as the result JSON keeps it: bounded, so that a batch of
    hundreds of PRPs keeps its result JSON and HTML report small (the log has it all)."""
    return [line[:REPORT_LINE_CHARS] for line in lines[-REPORT_TAIL_LINES:]]


def _gate_record(result: GateResult) -> dict[str, object]:
    """One gate of an attempt in the result JSON: a failed one with the end of its output."""
    record: dict[str, object] = {
        "index": result.gate.index,
        "name": result.gate.name,
        "passed": result.passed,
        "exit_code": result.returncode,
        "timed_out": result.timed_out,
        "seconds": round(result.duration, 3),
    }
    if not result.passed:
        record["tail"] = _report_tail(result.tail)
    return record


def _gate_failure_text(results: list[GateResult]) -> str:
    from pytest_prp.gates import format_gate_failure

    return "\n\n".join(format_gate_failure(r) for r in results if not r.passed)


def _run_gates(item: PrpItem, context: PrpContext, gates: list[Gate]) -> list[GateResult]:
    results: list[GateResult] = []
    item.stash[RUN].enter_phase("gates", context.attempt)
    for index, gate in enumerate(gates, 1):
        context.heartbeat_phase("gates", current=gate.name, index=index, total=len(gates))
        result: GateResult | None = item.config.hook.pytest_prp_run_gate(gate=gate, context=context)
        if result is None:
            run = item.stash[RUN]
            raise _fail(run, "failed", f"{item.prp.id}: no gate runner for kind {gate.kind!r}")
        results.append(result)
    return results


def run_call(item: PrpItem) -> None:
    execution = item.config.stash[EXECUTION]
    settings = execution.settings
    run = item.stash[RUN]
    context = item.stash[CONTEXT]
    prp = item.prp
    gates: list[Gate] = list(prp.body.executable_gates)
    run.gates_executable = len(gates)
    run.gates_unverified = len(prp.body.unverified_gates)
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
            and context.attempt < settings.attempts
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
        run.status = "failed_gates"
        run.errors.extend(f"gate {r.gate.index} {r.gate.name!r} failed" for r in failed)
        tried = f" after {context.attempt} attempts" if context.attempt > 1 else ""
        kept = ""
        if not settings.verify:  # verify mode checks HEAD as it is: nothing of its own to keep
            _keep_worktree(execution, run)
            kept = f"\n\nworktree kept: {run.workdir}"
        raise PrpUserError(
            [
                f"{prp.id}: {len(failed)} of {len(results)} gates failed{tried}\n\n"
                + _gate_failure_text(results)
                + kept
            ]
        )
    unverified = not gates
    if unverified and settings.strict:
        _keep_worktree(execution, run)
        raise _fail(run, "failed_gates", f"{prp.id}: no executable gate (--prp-strict)")
    if settings.verify:
        run.status = "unverified" if unverified else "success"
        return
    context.heartbeat_phase("merge")
    run.enter_phase("merge", context.attempt)
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
        # The PRP branch is moved only if the work stays there (a conflict); after a merge it
        # is deleted in the same transaction.
        info = execution.git.commit_all(run.workdir, message, allow_empty=True, move_branch=False)
    except GitError as exc:
        _keep_worktree(execution, run)
        raise _fail(run, "failed", f"{prp.id}: commit failed: {exc}") from None
    assert info is not None
    run.commits = [info.sha]
    run.files_created = list(info.created)
    run.files_modified = list(info.modified)
    prp_branch = prp_branch_name(prp)
    try:
        merge = execution.git.merge(
            execution.branch,
            info.sha,
            f"Merge {prp.id} into {execution.branch}",
            parent=run.base,
            delete_branch=prp_branch,
        )
        if not merge.ok:
            execution.git.set_branch(prp_branch, info.sha)
    except GitError as exc:
        _keep_worktree(execution, run)
        raise _fail(run, "failed", f"{prp.id}: merge failed: {exc}") from None
    if not merge.ok:
        _keep_worktree(execution, run)
        paths = ", ".join(merge.conflicts) or "(unknown paths)"
        raise _fail(
            run,
            "failed_merge",
            f"{prp.id}: merge into {execution.branch} conflicts in: {paths}\n"
            f"{execution.branch} is unchanged; worktree kept: {run.workdir}",
        )
    execution.passed[prp.id] = info.sha
    execution.tip = merge.sha
    run.status = "unverified" if unverified else "success"
    execution.git.done_with_worktree(run.workdir)


def run_teardown(item: PrpItem) -> None:
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
    if run.workdir is None:
        return
    if execution.settings.verify:
        execution.git.done_with_worktree(run.workdir)
        run.kept_worktree = False
    elif run.status not in ("success", "unverified"):
        _keep_worktree(execution, run)  # ended by an error of a plugin or hook of its own


def finish_heartbeat(item: pytest.Item, status: str) -> None:
    beat = item.stash.get(HEARTBEAT, None)
    if beat is not None:
        beat.finish(status)
