"""What a hook is given (``PrpContext``): the PRP, where to work, its environment and limits.

The steps hook and the gate hook receive it (see ``hooks``); the runner makes one per PRP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.heartbeat import Heartbeat
    from pytest_prp.spec.model import Prp
    from pytest_prp.supervise.limits import Limits
    from pytest_prp.supervise.output import LogSink


@dataclass
class PrpContext:
    prp: Prp
    config: pytest.Config
    settings: Settings
    workdir: Path
    # The PRP's clock, idle limit, log and sign of life: every step, agent and gate runs under
    # them (a wait on a rate limit moves the deadline on: ``Limits.extended``).
    limits: Limits
    attempt: int = 1
    model: str | None = None  # filled into the agent command's {model}
    feedback: str | None = None  # the failed gates, for the agent's next attempt
    redo: str | None = None  # why the PRP is redone on a newer tip (merge_queue.redo_prompt)
    heartbeat: Heartbeat | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def remaining(self) -> float:
        """Seconds left of the PRP's wall-clock limit (steps, attempts and gates together)."""
        return self.limits.remaining()

    def move_to(self, workdir: Path) -> None:
        """Work on in a new worktree (a redo on a newer tip): its file changes are the activity
        that keeps a step from going idle."""
        self.workdir = workdir
        self.limits = replace(self.limits, activity_dir=workdir)

    @property
    def log(self) -> LogSink | None:
        """The PRP's log (``.ce/orchestration/logs/<batch>/<id>.log``)."""
        return self.limits.log

    def heartbeat_phase(
        self,
        phase: str,
        *,
        current: str | None = None,
        index: int | None = None,
        total: int | None = None,
    ) -> None:
        if self.heartbeat is not None:
            self.heartbeat.phase(
                phase, current=current, index=index, total=total, attempt=self.attempt
            )

    @property
    def env(self) -> dict[str, str]:
        """The process environment plus the PRP_* variables every step, agent and gate sees."""
        env = dict(os.environ)
        env.update(
            {
                "PRP_ID": self.prp.id,
                "PRP_BATCH": self.prp.batch or "",
                "PRP_ATTEMPT": str(self.attempt),
                "PRP_WORKDIR": str(self.workdir),
                "PRP_FILE": str(self.prp.path),
            }
        )
        if self.model:
            env["PRP_MODEL"] = self.model
        env.update(self.extra_env)
        return env
