"""Hook specifications of pytest-prp (published with ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin to add an agent integration or a gate kind.
The defaults are registered ``trylast``, so an implementation of your own runs first; return
``None`` to pass the call on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_prp.context import PrpContext
    from pytest_prp.executors import StepsOutcome
    from pytest_prp.gates import GateResult
    from pytest_prp.model import Gate


@pytest.hookspec(firstresult=True)
def pytest_prp_run_steps(context: PrpContext) -> StepsOutcome | None:
    """Carry out the PRP's steps in ``context.workdir``; return the outcome.

    Defaults: the agent executor when an agent command is configured, else the literal one.
    """


@pytest.hookspec(firstresult=True)
def pytest_prp_run_gate(gate: Gate, context: PrpContext) -> GateResult | None:
    """Run one executable gate in ``context.workdir``. Default: ``shell`` gates with bash."""


@pytest.hookspec(firstresult=True)
def pytest_prp_dependency_complete(config: pytest.Config, prp_id: str) -> str | None:
    """Say whether a PRP that is not among the collected files is complete.

    Return a short description of the proof (such as a commit sha), or ``None``.
    Default: the git ledger (a commit with the trailer ``PRP-Id: <id>``).
    """
