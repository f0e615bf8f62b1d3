"""The names of a PRP's record, made in one place: its batch folder, branches and files.

The result writer, ``prp-status``, the heartbeats, the ledger fallback and git all find a PRP's
work by these names, so a second spelling of any of them would silently lose a record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pytest_prp.base.safepath import inside

BRANCHES = "prp"  # every branch pytest-prp makes is under prp/
NO_BATCH = "none"  # the folder and trailer of a PRP without a batch
SEVERAL_BATCHES = "integration"  # the label of a run of several batches, or of none
# The integration branch of several batches, or none, without --prp-branch.
INTEGRATION_BRANCH = f"{BRANCHES}/{SEVERAL_BATCHES}"
BATCH_PREFIX = "batch-"  # of a batch's integration branch, result JSON and HTML report
RESULT_PREFIX, RESULT_SUFFIX = BATCH_PREFIX, ".result.json"
BATCHES_DIR = "batches"  # under the results directory: result JSONs and HTML reports


def batch_folder(batch: str | None) -> str:
    """The batch's name in folders and trailers: ``none`` for a PRP without a batch."""
    return batch or NO_BATCH


def batch_branch(batch: str) -> str:
    """The default integration branch of one batch: ``prp/batch-<batch>``."""
    return f"{BRANCHES}/{BATCH_PREFIX}{batch}"


def batch_label(batches: Iterable[str | None]) -> str:
    """The batch id when the run's PRPs (their batches given) hold one batch, else
    ``integration``: the name of the run's result JSON and of its default branch."""
    found = set(batches)
    if len(found) == 1 and None not in found:
        return str(found.pop())
    return SEVERAL_BATCHES


def integration_branch(chosen: str | None, batches: Iterable[str | None]) -> str:
    """``--prp-branch``, else ``prp/batch-<id>`` for one batch, else ``prp/integration``."""
    if chosen:
        return chosen
    label = batch_label(batches)
    return batch_branch(label) if label != SEVERAL_BATCHES else INTEGRATION_BRANCH


def known_integration_branch(chosen: str | None, selected: Sequence[str]) -> str | None:
    """The integration branch as the command line alone names it (``--prp-branch``, or one
    ``--prp-batch``), before any PRP is read; None when only the PRPs can tell."""
    return chosen or (batch_branch(selected[0]) if len(selected) == 1 else None)


def prp_branch(batch: str | None, prp_id: str) -> str:
    """The branch of a PRP's worktree: ``prp/<batch>/<id>`` (each part one plain name)."""
    return inside(Path(BRANCHES), batch_folder(batch), prp_id).as_posix()


def prp_of_branch(branch: str) -> str | None:
    """The PRP id of a PRP's branch (``prp/<batch>/<id>``, as ``prp_branch`` makes it), or None
    for any other branch."""
    parts = branch.split("/")
    if len(parts) == 3 and parts[0] == BRANCHES and all(parts):
        return parts[2]
    return None


def earlier_branch(prp_branch: str) -> str:
    """Where a PRP's commit is kept while it is redone on a newer tip (``merge_check``)."""
    return f"{prp_branch}-before-redo"


def foreign_branch(prp_branch: str) -> str:
    """Where what a PRP's steps put on the integration branch is kept once the branch is
    moved back (``ref_watch.foreign_moves``): for inspection, never merged."""
    return f"{prp_branch}-foreign"


def result_path(results_dir: Path, batch: str) -> Path:
    """``<results_dir>/batches/batch-<batch>.result.json``."""
    return inside(results_dir / BATCHES_DIR, f"{RESULT_PREFIX}{batch}{RESULT_SUFFIX}")


def result_paths(results_dir: Path) -> dict[str, Path]:
    """Every batch's result JSON in the results directory, by batch."""
    try:
        found = list((results_dir / BATCHES_DIR).glob(f"{RESULT_PREFIX}*{RESULT_SUFFIX}"))
    except OSError:
        found = []
    return {path.name[len(RESULT_PREFIX) : -len(RESULT_SUFFIX)]: path for path in found}


def report_path(results_dir: Path, batch: str) -> Path:
    """``<results_dir>/batches/batch-<batch>.html``, beside the result JSON."""
    return results_dir / BATCHES_DIR / f"{BATCH_PREFIX}{batch}.html"


def log_path(results_dir: Path, batch: str | None, prp_id: str) -> Path:
    """``<results_dir>/logs/<batch>/<id>.log``: the output of a PRP's steps and gates."""
    return inside(results_dir / "logs", batch_folder(batch), f"{prp_id}.log")


def prompts_dir(results_dir: Path, batch: str | None) -> Path:
    """``<results_dir>/prompts/<batch>``: the prompts sent to the agent, kept for reading."""
    return results_dir / "prompts" / batch_folder(batch)
