"""The ledger: which PRPs are done, read from git history.

A PRP's commit carries trailers (``PRP-Id: <id>`` and others, written by
``trailers_message``); the ledger maps each PRP id to the newest commit reachable from some refs
that carries its ``PRP-Id`` trailer, or whose subject reads ``<id>: Complete...`` (commits made
by hand). A PRP in the ledger counts as done for the PRPs that depend on it.

At planning, before the run is prepared, ``LedgerLookup`` answers for a dependency that is not
among the collected PRP files: it reads the ledger once, on first need (git is only needed when
some dependency is missing, and a directory that is no git repository has none).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pytest_prp.base.ids import natural_key
from pytest_prp.base.naming import INTEGRATION_BRANCH, batch_branch
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.repository import Repository

_COMPLETE_SUBJECT = re.compile(r"(\S+): Completed?\b", re.IGNORECASE)
_TRAILER_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_LEDGER_FORMAT = "%H%x00%s%x00%(trailers:key=PRP-Id,valueonly,unfold,separator=%x01)%x1e"


def trailers_message(subject: str, trailers: Mapping[str, str]) -> str:
    """``subject`` plus a trailer block (``Key: value`` lines) that ``git interpret-trailers``
    and ``%(trailers)`` recognise. Newlines in the subject or values are folded to spaces."""
    lines = [" ".join(subject.split())]
    if trailers:
        lines.append("")
        for key, value in trailers.items():
            if not _TRAILER_KEY.fullmatch(key):
                raise ValueError(f"invalid trailer key: {key!r}")
            lines.append(f"{key}: {' '.join(str(value).split())}")
    return "\n".join(lines) + "\n"


def parse_ledger(output: str) -> dict[str, str]:
    """PRP id -> sha from ``_LEDGER_FORMAT`` records, newest (first listed) winning."""
    found: dict[str, str] = {}
    for record in output.split("\x1e"):
        fields = record.lstrip("\n").split("\x00")
        if len(fields) < 3:
            continue
        sha, subject, trailer_values = fields[0], fields[1], fields[2]
        ids = [v.strip() for v in trailer_values.split("\x01") if v.strip()]
        match = _COMPLETE_SUBJECT.match(subject)
        if match:
            ids.append(match.group(1))
        for prp_id in ids:
            found.setdefault(prp_id, sha)
    return found


class LedgerReading(Repository):
    """Reading the ledger from this repository's history."""

    def ledger(self, refs: Sequence[str]) -> dict[str, str]:
        """PRP id -> sha of the newest commit reachable from ``refs`` (revisions such as branch
        names or ``HEAD``; ones that do not exist are skipped) that carries a ``PRP-Id:``
        trailer or whose subject reads ``<id>: Complete...``. One ``git rev-list`` call;
        ``--grep`` lets git skip unrelated commits without formatting them."""
        revs = [ref for ref in refs if ref and not ref.startswith("-")]
        if not revs:
            return {}
        out = self.output(
            "rev-list",
            "--no-commit-header",
            "--ignore-missing",
            f"--format={_LEDGER_FORMAT}",
            "--regexp-ignore-case",
            "--grep=^PRP-Id:",
            "--grep=: Complete",
            *revs,
            "--",
        )
        return parse_ledger(out)


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
                self._ledger = LedgerReading.open(self._start).ledger(self._refs)
            except GitError:
                self._ledger = {}  # no repository (or git fails): nothing is complete
        return self._ledger.get(prp_id)
