"""The names of a PRP's record, made in one place: its batch folder, its branches, its result file.

The result writer, ``prp-status``, the heartbeats, the ledger fallback and git all find a PRP's
work by these names, so a second spelling of any of them would silently lose a record.
"""

from __future__ import annotations

from pathlib import Path

from pytest_prp.safepath import inside

NO_BATCH = "none"  # the folder and trailer of a PRP without a batch
INTEGRATION_BRANCH = "prp/integration"  # several batches, or none, and no --prp-branch
RESULT_PREFIX, RESULT_SUFFIX = "batch-", ".result.json"


def batch_folder(batch: str | None) -> str:
    """The batch's name in folders and trailers: ``none`` for a PRP without a batch."""
    return batch or NO_BATCH


def batch_branch(batch: str) -> str:
    """The default integration branch of one batch: ``prp/batch-<batch>``."""
    return f"prp/batch-{batch}"


def prp_branch(batch: str | None, prp_id: str) -> str:
    """The branch of a PRP's worktree: ``prp/<batch>/<id>`` (each part one plain name)."""
    return inside(Path("prp"), batch_folder(batch), prp_id).as_posix()


def earlier_branch(prp_branch: str) -> str:
    """Where a PRP's commit is kept while it is redone on a newer tip (``merge_check``)."""
    return f"{prp_branch}-before-redo"


def result_path(results_dir: Path, batch: str) -> Path:
    """``<results_dir>/batches/batch-<batch>.result.json``."""
    return inside(results_dir / "batches", f"{RESULT_PREFIX}{batch}{RESULT_SUFFIX}")


def report_path(results_dir: Path, batch: str) -> Path:
    """``<results_dir>/batches/batch-<batch>.html``, beside the result JSON."""
    return results_dir / "batches" / f"{RESULT_PREFIX}{batch}.html"
