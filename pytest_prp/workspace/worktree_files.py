"""Where PRP worktrees live, and what a linked worktree's own files say, read without git.

``default_worktrees_dir`` places them outside the checkout and outside ``.git``; ``safe_name``
turns a PRP id into a folder name. The readers (``admin_dir``, ``read_head``, ``head_branch``)
open a worktree's ``.git`` file and its admin directory directly: no process per question.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """A file name for ``name``: characters other than ``[A-Za-z0-9._-]`` become ``_``; when
    anything changed a short hash keeps distinct names distinct (``a/b`` vs ``a_b``)."""
    safe = _UNSAFE.sub("_", name).lstrip(".-")[:100] or "_"
    if safe != name:
        safe = f"{safe}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
    return safe


def default_worktrees_dir(common_dir: Path, environ: Mapping[str, str]) -> Path:
    """Where a repository's PRP worktrees live unless configured: the user's cache directory
    (``$XDG_CACHE_HOME``, else ``~/.cache``), one folder per repository named after it and a
    hash of its git dir.

    Not under ``.git``: Claude Code treats every path below a ``.git`` directory as a sensitive
    file and refuses to edit it, whatever its permission settings say. Not in the checkout
    either: ``git status`` would show it, and the user's own pytest, linters and IDE indexers
    would pick up every PRP's copy of the project."""
    cache = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):  # the XDG rule: a relative value is to be ignored
        cache = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    resolved = common_dir.resolve()
    repo = resolved.parent.name if resolved.name == ".git" else resolved.name
    digest = hashlib.sha1(str(resolved).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return Path(cache) / "pytest-prp" / "worktrees" / f"{safe_name(repo)}-{digest}"


def worktree_entries(porcelain_z: str) -> list[tuple[Path, str | None]]:
    """(path, branch or None) per worktree from ``git worktree list --porcelain -z``."""
    entries: list[tuple[Path, str | None]] = []
    for field in porcelain_z.split("\x00"):
        if field.startswith("worktree "):
            entries.append((Path(field[len("worktree ") :]), None))
        elif field.startswith("branch refs/heads/") and entries:
            entries[-1] = (entries[-1][0], field[len("branch refs/heads/") :])
    return entries


def admin_dir(worktree: Path) -> Path | None:
    """A linked worktree's private git dir (``.git/worktrees/<name>``), from its ``.git``
    file (no process); None when unreadable."""
    try:
        pointer = (worktree / ".git").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not pointer.startswith("gitdir:"):
        return None
    return worktree / pointer.removeprefix("gitdir:").strip()  # absolute or relative


def read_head(worktree: Path) -> str | None:
    """The content of a linked worktree's HEAD file (``ref: refs/heads/x`` or a sha)."""
    admin = admin_dir(worktree)
    try:
        return (admin / "HEAD").read_text(encoding="utf-8").strip() if admin else None
    except (OSError, UnicodeDecodeError):
        return None


def head_branch(worktree: Path) -> str | None:
    """The branch a linked worktree has checked out, read from its files (no process); None
    when detached or unreadable."""
    head = read_head(worktree) or ""
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else None


def same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one directory (symlinks and case folding resolved)."""
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
