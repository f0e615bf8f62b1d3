"""Why a run found no PRP: one line per thing seen and not taken. Reads directories, no pytest.

Said only when no PRP at all was found, so the directory walk costs nothing in a normal run.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from pytest_prp.plan.planning import Selection
from pytest_prp.spec.model import display_path

# Hidden directories that never hold a team's PRPs: not worth a walk.
_TOOL_DIRS = {
    *(".git", ".hg", ".svn", ".venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache"),
    *(".ruff_cache", ".cache", ".eggs", ".idea", ".vscode", ".ipynb_checkpoints"),
}
MAX_ENTRIES = 20_000  # directory entries looked at, at most: a huge tree is not walked whole


def hidden_prp_dirs(roots: Iterable[Path], pattern: str, skip: Sequence[str]) -> dict[Path, int]:
    """Directories inside a dot-directory (which pytest does not enter) holding files named
    like PRPs, with how many each holds. ``skip``: the other norecursedirs patterns."""
    found: dict[Path, int] = {}
    budget = MAX_ENTRIES
    for root in roots:
        if not root.is_dir():
            continue
        for here, dirs, files in os.walk(root):
            budget -= len(dirs) + len(files)
            if budget < 0:
                return found
            hidden = any(part.startswith(".") for part in Path(here).relative_to(root).parts)
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in _TOOL_DIRS
                and (d.startswith(".") or not any(fnmatch.fnmatch(d, p) for p in skip))
            )
            if hidden:  # outside dot-directories pytest finds the files itself
                count = sum(1 for name in files if fnmatch.fnmatch(name, pattern))
                if count:
                    found[Path(here)] = count
    return found


def explain(
    skipped: Sequence[tuple[Path, str]],
    hidden: dict[Path, int],
    selection: Selection,
    pattern: str,
) -> list[str]:
    """The lines saying why nothing was found, most telling first."""
    lines = ["prp: no PRP found"]
    for path, reason in skipped:
        lines.append(f"prp: {display_path(path)}: not a PRP: {reason}")
    for directory, count in sorted(hidden.items()):
        shown = display_path(directory)
        lines.append(
            f"prp: {shown}: {count} file{'s' if count != 1 else ''} named {pattern} not "
            f"collected: pytest does not enter directories whose name starts with '.'; "
            f"name it: pytest {shown} ..."
        )
    for batch in selection.batches:
        lines.append(f"prp: --prp-batch {batch}: no PRP of that batch under the given paths")
    for prp_id in selection.ids:
        lines.append(f"prp: --prp-id {prp_id}: no PRP with that id under the given paths")
    if not skipped and not hidden:
        lines.append(f"prp: no file named {pattern} under the given paths")
    return lines
