"""Where a run's repository is: where its PRP files are, not the rootdir.

The rootdir can lie above the repository (``pytest project/PRPs`` run from an outer directory,
an ini file of an outer project): branches, commits and results must still go to the
repository holding the PRP files. Pure path logic; git itself is asked in ``repository``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def start_path(args: Sequence[str], invocation_dir: Path, rootpath: Path) -> Path:
    """The first path pytest was given that exists (``path::PRP-1`` counts as ``path``), as
    an absolute path; the rootdir when there is none (``--pyargs``, only node ids)."""
    for arg in args:
        path = invocation_dir / arg.split("::", 1)[0]
        if path.exists():
            return path
    return rootpath


def repository_top(path: Path) -> Path | None:
    """The nearest directory at or above ``path`` holding ``.git`` (a repository, or a linked
    worktree's ``.git`` file), without running git; None outside any repository."""
    probe = path if path.is_dir() else path.parent
    for folder in (probe, *probe.parents):
        if (folder / ".git").exists():
            return folder
    return None


def results_base(rootpath: Path, start: Path) -> Path:
    """What a relative ``prp_results_dir`` is relative to: the rootdir, unless the rootdir lies
    outside the repository holding the PRP files; then that repository's top."""
    top = repository_top(start)
    if top is None or rootpath == top or top in rootpath.parents:
        return rootpath
    return top
