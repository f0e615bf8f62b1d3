"""The git side of a run, as one object: ``GitWorkspace``, a repository with its worktree slots,
its commit building, its merging, its ref watching and its ledger (one module each).

Two rules shape everything it does:

* The user's checkout is never modified: no checkout, reset, stash or ``add`` in it. PRPs work
  in linked worktrees kept outside the checkout (by default in the user's cache directory, see
  ``worktree_files.default_worktrees_dir``: invisible to ``git status`` and to the user's own
  tools), and the integration branch is updated with plumbing
  (``merge-tree``/``commit-tree``/``update-ref``) without ever being checked out.
* Several processes (pytest-xdist workers) use one repository at once. Each worktree has its
  own index; merges into a branch take turns under a lock file, and ref updates are still
  compare-and-swap (``update-ref <ref> <new> <old>``), retried on the new tip if anything else
  moved it; nothing writes shared files such as ``COMMIT_EDITMSG`` or ``.git/config``.

User hooks never run and no command here triggers ``gc --auto`` (``git_command``).
"""

from __future__ import annotations

from pytest_prp.workspace.git_merge import Merging
from pytest_prp.workspace.ledger import LedgerReading
from pytest_prp.workspace.ref_watch import RefWatching
from pytest_prp.workspace.worktree_slots import WorktreeSlots


class GitWorkspace(WorktreeSlots, Merging, RefWatching, LedgerReading):
    """One repository, seen from the user's checkout at ``root``: open it with
    ``GitWorkspace.open``. Every method runs git through ``Repository.run``."""
