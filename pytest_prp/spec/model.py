"""The PRP model: what a PRP file says, normalised. Pure data, no I/O."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A user-facing message about one file (and line, where it applies)."""

    path: Path | None
    line: int | None
    message: str

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        shown = display_path(self.path)
        where = f"{shown}:{self.line}" if self.line else shown
        return f"{where}: {self.message}"


def display_path(path: Path) -> str:
    """A path as the user typed it: relative to the working directory when below it."""
    try:
        return str(_resolved(path).relative_to(_resolved_dir(os.getcwd())))
    except (ValueError, OSError):
        return str(path)


def _resolved(path: Path) -> Path:
    """``path.resolve()``, its directory resolved once for all the files in it (a plan of
    thousands of PRPs shows every one's path): the same unless the file is a symlink."""
    if not path.is_absolute() or path.name in ("", ".", "..") or os.path.islink(path):
        return path.resolve()
    return _resolved_dir(str(path.parent)) / path.name


@lru_cache(maxsize=64)
def _resolved_dir(directory: str) -> Path:
    return Path(directory).resolve()


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block: its info string (``bash``, ``python``, ...), its code and line."""

    info: str
    code: str
    line: int
    # Target of a ``**Create**: `path` `` line directly before this block, if any.
    create_path: str | None = None

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info.strip() else ""


@dataclass(frozen=True)
class Step:
    index: int  # 1-based
    title: str
    text: str
    line: int
    code_blocks: tuple[CodeBlock, ...] = ()
    create_paths: tuple[str, ...] = ()


GATE_SHELL = "shell"
GATE_CHECKLIST = "checklist"


@dataclass(frozen=True)
class Gate:
    index: int  # 1-based, document order
    name: str
    kind: str  # GATE_SHELL, GATE_CHECKLIST, or a kind a plugin adds
    command: str | None
    line: int
    expected: tuple[str, ...] = ()  # "# Expected: ..." comments, without the prefix

    @property
    def executable(self) -> bool:
        return self.kind != GATE_CHECKLIST


@dataclass(frozen=True)
class Body:
    steps: tuple[Step, ...]
    gates: tuple[Gate, ...]
    warnings: tuple[Problem, ...] = ()

    @property
    def executable_gates(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if g.executable)

    @property
    def unverified_gates(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if not g.executable)


@dataclass(frozen=True)
class BodySummary:
    """What the plan view shows of a body: its counts and warnings (cacheable, see body_cache)."""

    steps: int
    executable: int
    unverified: int
    warnings: tuple[Problem, ...] = ()


@dataclass
class Prp:
    """One PRP file's frontmatter, normalised. The body is parsed on demand, by
    ``body_cache.body_of``, which keeps it here (as ``body_cache`` keeps the summary)."""

    id: str
    path: Path
    line: int  # line of the frontmatter's first key (1-based)
    title: str
    batch: str | None
    dependencies: list[str]
    declared_stage: int | None = None
    declared_stage_raw: Any = None
    status: str | None = None
    estimated_hours: float | None = None  # midpoint of a range such as "35-45"
    estimated_hours_raw: Any = None
    files_modified: list[str] = field(default_factory=list)
    complexity: str | None = None
    model: str | None = None
    git_commit: str | None = None
    frontmatter: dict[str, Any] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    body_line: int = 1  # first line of the markdown body (1-based)
    # Where each dependency is written (1-based), for messages about it; else ``line``.
    dependency_lines: dict[str, int] = field(default_factory=dict)
    # Filled in by body_cache (body_of, summary_of, the cache): the model does no I/O.
    _body: Body | None = field(default=None, repr=False)
    _summary: BodySummary | None = field(default=None, repr=False)

    @property
    def declared_complete(self) -> bool:
        return (self.status or "").strip().lower() in {"completed", "executed", "done"}


class PrpUserError(Exception):
    """A user's mistake: reported as its message alone, never as a traceback."""

    def __init__(self, problems: Iterable[Problem | str]) -> None:
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


@dataclass
class LoadResult:
    """What loading one file gave: a PRP, or nothing (not a PRP), and errors."""

    prp: Prp | None
    errors: list[Problem] = field(default_factory=list)
    skipped: str | None = None  # why a file that is no PRP and no error was not taken
