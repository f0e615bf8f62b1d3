"""The default implementations of pytest-prp's hooks, registered ``trylast`` in every process:
the agent and literal executors, the shell gate, and the git ledger for unknown dependencies.

Adapters only: each takes what it needs from the context or the config and calls the module
that does the work (``executors``, ``prompt``, ``gates``, ``ledger``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_prp.base.naming import prompts_dir
from pytest_prp.keys import KNOWN_PRPS
from pytest_prp.spec.model import PrpUserError

if TYPE_CHECKING:
    from pytest_prp.execute.executors import StepsOutcome
    from pytest_prp.execute.gates import GateResult
    from pytest_prp.execute.hook_context import PrpContext
    from pytest_prp.spec.model import Gate
    from pytest_prp.workspace.ledger import LedgerLookup


class DefaultImplementations:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._ledger: LedgerLookup | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_prp_run_steps(self, context: PrpContext) -> StepsOutcome | None:
        from pytest_prp.execute.executors import run_agent, run_literal_steps
        from pytest_prp.execute.prompt import TemplateUnreadable, agent_prompt
        from pytest_prp.spec.agents import fill_model

        settings = context.settings
        if settings.agent:
            try:
                prompt = agent_prompt(
                    context.prp,
                    settings.prompt_template,
                    attempt=context.attempt,
                    feedback=context.feedback,
                    redo=context.redo,
                )
            except TemplateUnreadable as exc:
                raise PrpUserError([str(exc)]) from None
            return run_agent(
                context.prp,
                command=fill_model(settings.agent, context.model),
                prompt=prompt,
                workdir=context.workdir,
                env=context.env,
                limits=context.limits,
                # Kept beside the logs: what the agent was told is part of the record.
                prompt_dir=prompts_dir(settings.results_dir, context.prp.batch),
            )
        return run_literal_steps(
            context.prp,
            workdir=context.workdir,
            env=context.env,
            limits=context.limits,
            on_step=lambda step, total: context.heartbeat_phase(
                "steps", current=step.title, index=step.index, total=total
            ),
        )

    @pytest.hookimpl(trylast=True)
    def pytest_prp_run_gate(self, gate: Gate, context: PrpContext) -> GateResult | None:
        from pytest_prp.execute.gates import gate_limits, run_shell_gate
        from pytest_prp.spec.model import GATE_SHELL

        if gate.kind != GATE_SHELL:
            return None
        return run_shell_gate(
            gate,
            cwd=context.workdir,
            env=context.env,
            limits=gate_limits(context.limits, context.settings.gate_timeout),
        )

    @pytest.hookimpl(trylast=True)
    def pytest_prp_dependency_complete(self, config: pytest.Config, prp_id: str) -> str | None:
        from pytest_prp.execution import EXECUTION

        execution = config.stash.get(EXECUTION, None)
        if execution is not None:
            return execution.completed(prp_id)
        # Planning happens before the run is prepared: the ledger is read on first need.
        if self._ledger is None:
            from pytest_prp.execution import repository_start
            from pytest_prp.keys import SETTINGS
            from pytest_prp.workspace.ledger import LedgerLookup, ledger_refs

            batches = (prp.batch for prp in config.stash.get(KNOWN_PRPS, []) if prp.batch)
            refs = ledger_refs(config.stash[SETTINGS].branch, batches)
            self._ledger = LedgerLookup(repository_start(config), refs)
        return self._ledger.proof(prp_id)
