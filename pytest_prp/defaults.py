"""The default implementations of pytest-prp's hooks, registered ``trylast`` in every process:
the agent and literal executors, the shell gate, and the git ledger for unknown dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_prp.collect import KNOWN_PRPS, PrpUserError
from pytest_prp.ids import natural_key
from pytest_prp.naming import INTEGRATION_BRANCH, batch_branch, batch_folder

if TYPE_CHECKING:
    from pytest_prp.context import PrpContext
    from pytest_prp.executors import StepsOutcome
    from pytest_prp.gates import GateResult
    from pytest_prp.model import Gate


def retry_prompt(prompt: str, feedback: str, attempt: int) -> str:
    """The prompt of a further attempt: the original task plus what the gates said."""
    return (
        f"{prompt}\n\n"
        f"## Attempt {attempt}: your previous attempt left failed gates\n\n"
        "Your changes are still in this directory. These validation gates failed when run "
        "after your last attempt; fix the implementation so that they pass (do not edit the "
        "gates, do not commit):\n\n"
        f"{feedback}\n"
    )


class DefaultImplementations:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._ledger: dict[str, str] | None = None

    def _prompt(self, context: PrpContext) -> str:
        from pytest_prp.executors import default_prompt, render_prompt_template

        text = context.prp.path.read_text(encoding="utf-8")
        template_path = context.settings.prompt_template
        if template_path is not None:
            try:
                template = template_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PrpUserError([f"prp_prompt_template: cannot read it: {exc}"]) from None
            prompt = render_prompt_template(template, context.prp, text)
        else:
            prompt = default_prompt(context.prp, text)
        if context.feedback and context.attempt > 1:
            prompt = retry_prompt(prompt, context.feedback, context.attempt)
        if context.redo:
            prompt = f"{prompt}\n\n{context.redo}"
        return prompt

    @pytest.hookimpl(trylast=True)
    def pytest_prp_run_steps(self, context: PrpContext) -> StepsOutcome | None:
        from pytest_prp.agents import fill_model
        from pytest_prp.executors import run_agent, run_literal_steps

        settings = context.settings
        if settings.agent:
            return run_agent(
                context.prp,
                command=fill_model(settings.agent, context.model),
                prompt=self._prompt(context),
                workdir=context.workdir,
                env=context.env,
                timeout=context.remaining(),
                stated_timeout=settings.timeout,
                idle_timeout=settings.idle_timeout,
                activity_dir=context.workdir,
                log=context.log,
                # Kept beside the logs: what the agent was told is part of the record.
                prompt_dir=settings.results_dir / "prompts" / batch_folder(context.prp.batch),
                on_line=context.on_line,
            )
        return run_literal_steps(
            context.prp,
            workdir=context.workdir,
            env=context.env,
            timeout=context.remaining(),
            stated_timeout=settings.timeout,
            idle_timeout=settings.idle_timeout,
            activity_dir=context.workdir,
            log=context.log,
            on_line=context.on_line,
            on_step=lambda step, total: context.heartbeat_phase(
                "steps", current=step.title, index=step.index, total=total
            ),
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
            # One clock for the whole PRP: a gate never outlives the PRP's own limit.
            timeout=max(0.001, min(context.settings.gate_timeout, context.remaining())),
            log=context.log,
            on_line=context.on_line,
        )

    @pytest.hookimpl(trylast=True)
    def pytest_prp_dependency_complete(self, config: pytest.Config, prp_id: str) -> str | None:
        from pytest_prp.execution import EXECUTION
        from pytest_prp.plugin import SETTINGS

        execution = config.stash.get(EXECUTION, None)
        if execution is not None:
            return execution.completed(prp_id)
        # Planning happens before the run is prepared: read the ledger once, on first need.
        if self._ledger is None:
            # late: git is only needed for a ledger
            from pytest_prp.git_command import GitError
            from pytest_prp.git_workspace import GitWorkspace

            self._ledger = {}
            try:
                from pytest_prp.execution import repository_start

                git = GitWorkspace.open(repository_start(config))
                settings = config.stash[SETTINGS]
                refs = ["HEAD", *([settings.branch] if settings.branch else [])]
                self._ledger = git.ledger(refs + _batch_branches(config))
            except GitError:
                pass
        return self._ledger.get(prp_id)


def _batch_branches(config: pytest.Config) -> list[str]:
    """Default integration branches of the known batches: where a resumed batch's work is."""
    batches = {prp.batch for prp in config.stash.get(KNOWN_PRPS, []) if prp.batch}
    return [batch_branch(b) for b in sorted(batches, key=natural_key)] + [INTEGRATION_BRANCH]
