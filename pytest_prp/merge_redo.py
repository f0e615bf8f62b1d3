"""A PRP whose merge failed (textual conflict, or gates failing on the merged tree) is redone
on the current integration tip, up to ``--prp-merge-attempts`` times; then it fails as
``failed_merge`` or ``failed_integration``, naming the PRPs it collides with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pytest_prp.base.naming import earlier_branch, prp_branch
from pytest_prp.records.record import FAILED, FAILED_INTEGRATION, FAILED_MERGE
from pytest_prp.spec.model import GATE_SHELL, Gate, PrpUserError
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.merge_check import diff_text, keep_earlier, merged_since
from pytest_prp.workspace.merge_queue import (
    SEMANTIC,
    TEXTUAL,
    MergeOutcome,
    collisions,
    redo_prompt,
)

if TYPE_CHECKING:
    from pytest_prp.execute.hook_context import PrpContext
    from pytest_prp.execution import Execution
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.record import PrpRun
    from pytest_prp.workspace.sibling_check import SiblingGate

INTEGRATION_GATE = "integration gate"


def integration_gates(command: str | None, after: int) -> list[Gate]:
    """The project's integration gate (``prp_integration_gate``) as one more shell gate of
    every PRP, numbered after its own ``after`` gates."""
    if not command:
        return []
    return [Gate(index=after + 1, name=INTEGRATION_GATE, kind=GATE_SHELL, command=command, line=0)]


def stacking(settings: Settings, gates: Sequence[Gate]) -> bool:
    """Whether merges are batched (``--prp-merge-batch``): only with an integration gate,
    the last of ``gates``, to run once per stack."""
    return bool(settings.merge_batch and gates and gates[-1].name == INTEGRATION_GATE)


def redo_or_fail(
    execution: Execution,
    run: PrpRun,
    context: PrpContext,
    outcome: MergeOutcome,
    fail: Callable[[PrpRun, str, str], PrpUserError],
    keep: Callable[[Execution, PrpRun], None],
    blame: SiblingGate | None = None,
) -> None:
    """Raise the PRP's failure when its merge attempts are spent; else put a fresh checkout
    of the current tip in its worktree and tell the agent why (``context.redo``). ``blame``:
    the sibling whose gate the merged tree failed (``--prp-merge-check siblings``), the one
    PRP it collides with."""
    git = execution.git
    prp = run.prp
    own_branch = prp_branch(prp.batch, prp.id)
    assert outcome.tip is not None and run.base is not None and run.workdir is not None
    commit = run.commits[-1]
    try:
        merged = merged_since(git, run.base, outcome.tip)
    except GitError:
        merged = []
    assert outcome.conflict is not None
    if blame is not None and outcome.conflict == SEMANTIC:
        culprits = [blame.prp_id]
    else:
        blame = None
        culprits = collisions(merged, outcome.conflict, outcome.paths)
    run.culprits = list(dict.fromkeys([*run.culprits, *culprits]))
    run.merge_failures.append(
        {
            "kind": outcome.conflict,
            "tip": outcome.tip,
            "paths": list(outcome.paths),
            "failed_gates": outcome.failed,
            "collides_with": culprits,
        }
    )
    with_whom = f" (collides with {', '.join(culprits)})" if culprits else ""
    if run.redos < execution.settings.merge_attempts:
        try:
            diff = diff_text(git, run.base, commit)
            keep_earlier(git, own_branch, commit)  # the redo resets its branch
            run.workdir = git.prp_worktree(prp.id, own_branch, outcome.tip)
        except GitError as exc:
            keep(execution, run)
            raise fail(run, FAILED, f"{prp.id}: could not redo it: {exc}") from None
        run.redos += 1
        run.redone_on.append(outcome.tip)
        run.base = outcome.tip
        if run.refs_before is not None:
            git.release_logs(run.refs_before)  # its links to the reflog: new ones are taken
        # Watched as the first attempt's: the redo's steps may not move the branch either.
        run.refs_before = git.ref_state(run.workdir, execution.own_refs, watch=(execution.branch,))
        context.move_to(run.workdir)
        context.attempt += 1
        context.feedback = None
        context.redo = redo_prompt(
            outcome.conflict, outcome.tip, outcome.paths, outcome.failed, merged, diff
        )
        return
    keep(execution, run)
    branch = execution.branch
    redone = f" after {run.redos} redo(s)" if run.redos else ""
    tail = f"\n{branch} is unchanged; worktree kept: {run.workdir}"
    if run.redos:
        tail += f"\nits work before the redo: branch {earlier_branch(own_branch)}"
    if outcome.conflict == TEXTUAL:
        paths = ", ".join(outcome.paths) or "(unknown paths)"
        raise fail(
            run,
            FAILED_MERGE,
            f"{prp.id}: merge into {branch} conflicts in: {paths}{with_whom}{redone}{tail}",
        )
    if blame is not None:
        run.errors.append(f"{blame.label} failed on the merged tree")
        raise fail(
            run,
            FAILED_INTEGRATION,
            f"{prp.id}: merged onto {branch} at {outcome.tip[:12]}, its own gates pass but "
            f"the sibling's {blame.label} fails{with_whom}{redone}\n\n"
            f"{outcome.detail}{tail}",
        )
    gates = ", ".join(repr(g) for g in outcome.failed)
    run.errors.extend(f"gate {g!r} failed on the merged tree" for g in outcome.failed)
    raise fail(
        run,
        FAILED_INTEGRATION,
        f"{prp.id}: merged onto {branch} at {outcome.tip[:12]}, gate(s) {gates} fail"
        f"{with_whom}{redone}\n\n{outcome.detail}{tail}",
    )
