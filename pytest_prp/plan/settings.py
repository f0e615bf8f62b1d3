"""What a run was asked to do: its options and ini keys, read and checked (``settings_reader``).

Frozen data, below the glue: the executors' context, the keys and the glue all read it, and
only ``settings_reader`` makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_prp.plan.planning import Selection


@dataclass(frozen=True)
class Settings:
    enabled: bool
    selection: Selection
    pattern: str
    plan_format: str | None
    agent: str | None
    branch: str | None
    base: str | None
    rerun: bool
    strict: bool
    verify: bool
    clean: bool
    gate_timeout: float
    timeout: float
    idle_timeout: float
    heartbeat: float
    attempts: int
    budget_usd: float | None
    rate_limit_wait: float
    models: dict[str, str]
    results_dir: Path
    prompt_template: Path | None
    worktree_dir: Path | None  # None: worktree_files.default_worktrees_dir
    # The HTML report: None (none), DEFAULT_REPORT (beside the result JSON) or a path.
    report: Path | None = None
    merge_attempts: int = 1  # redos on the current tip of a PRP whose merge failed
    integration_gate: str | None = None  # shell command, a gate of every PRP
    # What a merge check runs: "own" (the PRP's gates) or "siblings" (also the gates of the
    # PRPs merged since its base: merge_redo / workspace.sibling_check).
    merge_check: str = "own"
    final_check: bool = False  # every merged PRP's gates on the final tip (final_check_run)
    merge_batch: bool = False  # the integration gate once per stack of merges (merge_stack)


DEFAULT_REPORT = Path("<default>")
