"""What an executor or a gate is given: the PRP, where to work, its environment and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from pytest_prp.model import Prp
    from pytest_prp.options import Settings
    from pytest_prp.processes import LogSink


@dataclass
class PrpContext:
    prp: Prp
    config: pytest.Config
    settings: Settings
    workdir: Path
    log: LogSink | None
    attempt: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The process environment plus the PRP_* variables every step, agent and gate sees."""
        import os

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
        env.update(self.extra_env)
        return env
