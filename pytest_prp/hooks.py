"""Hook specifications of pytest-prp (published with ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin to add an agent integration or a gate kind.
The defaults are registered ``trylast``, so an implementation of your own runs first; return
``None`` to pass the call on.

The types the hooks take and return are importable from here, wherever their modules live:
``from pytest_prp.hooks import Gate, GateResult, PrpContext, ProcessResult, StepsOutcome``.
They are imported on first use, so that a run without PRPs loads none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_prp.execute.executors import StepsOutcome as StepsOutcome
    from pytest_prp.execute.gates import GateResult as GateResult
    from pytest_prp.execute.hook_context import PrpContext as PrpContext
    from pytest_prp.spec.model import Gate as Gate
    from pytest_prp.supervise.processes import ProcessResult as ProcessResult

# The types above, by the module that defines them (imported on first use).
_TYPES = {
    "Gate": "pytest_prp.spec.model",
    "GateResult": "pytest_prp.execute.gates",
    "PrpContext": "pytest_prp.execute.hook_context",
    "ProcessResult": "pytest_prp.supervise.processes",
    "StepsOutcome": "pytest_prp.execute.executors",
}


def __getattr__(name: str) -> object:
    if name in _TYPES:
        return getattr(importlib.import_module(_TYPES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
