"""Ending a batch early, after the PRPs in progress, as an interrupted run (exit 2)."""

from __future__ import annotations

import pytest


def stop_batch(session: pytest.Session, reason: str) -> None:
    """The PRPs in progress end as they would (merged, or failed and kept); no new PRP starts;
    pytest ends the run with ``Interrupted: <reason>``. The same command resumes the batch."""
    if not session.shouldstop:
        session.shouldstop = reason  # pytest's own loop checks it after every item
    # With -n the controller's loop is xdist's, which has its own flag (as for --maxfail).
    dsession = session.config.pluginmanager.get_plugin("dsession")
    if dsession is not None and not getattr(dsession, "shouldstop", False):
        dsession.shouldstop = reason
