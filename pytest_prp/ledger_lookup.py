"""The git ledger asked about a dependency before the run is prepared (at planning).

A dependency that is not among the collected PRP files is complete when the ledger says so: a
commit carrying its ``PRP-Id`` on ``HEAD``, the run's branch, or a known batch's integration
branch (where a resumed batch's work is). The ledger is read once, on first need: git is only
needed when some dependency is missing, and a directory that is no git repository has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pytest_prp.gitops import GitError, GitWorkspace
from pytest_prp.ids import natural_key
from pytest_prp.naming import INTEGRATION_BRANCH, batch_branch


def ledger_refs(branch: str | None, batches: Iterable[str]) -> list[str]:
    """Where completed PRPs are looked for: ``HEAD``, ``--prp-branch``, then the default
    integration branches of ``batches`` and the shared one."""
    known = sorted(set(batches), key=natural_key)
    return ["HEAD", *([branch] if branch else []), *map(batch_branch, known), INTEGRATION_BRANCH]


class LedgerLookup:
    """PRP id -> the commit proving it complete, read from the repository holding ``start``."""

    def __init__(self, start: Path, refs: list[str]) -> None:
        self._start = start
        self._refs = refs
        self._ledger: dict[str, str] | None = None

    def proof(self, prp_id: str) -> str | None:
        if self._ledger is None:
            try:
                self._ledger = GitWorkspace.open(self._start).ledger(self._refs)
            except GitError:
                self._ledger = {}  # no repository (or git fails): nothing is complete
        return self._ledger.get(prp_id)
