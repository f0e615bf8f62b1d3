"""What ordering needs to know of one PRP (``PrpInfo``), read from its file by pytest node id.

The xdist controller never collects: the scheduler, the batch result and the HTML report learn
the PRPs of the run from the node ids the workers collected, through one loader per run (kept
under ``keys.GRAPH_LOADER``, so each file is read once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_prp.base.ids import normalize_id
from pytest_prp.spec.frontmatter import load_prp


@dataclass(frozen=True)
class PrpInfo:
    """What scheduling needs to know of one PRP (from its frontmatter)."""

    id: str
    dependencies: tuple[str, ...] = ()
    estimated_hours: float | None = None
    files_modified: tuple[str, ...] = ()
    stage: int | None = None  # declared stage; informational, not used for ordering


GraphLoader = Callable[[str], "PrpInfo | None"]


def file_graph_loader(rootpath: Path) -> GraphLoader:
    """Node id -> PrpInfo, read from ``rootpath / path`` of ``path::PRP-id`` (cached per path)."""
    cache: dict[str, PrpInfo | None] = {}

    def load(nodeid: str) -> PrpInfo | None:
        path, sep, name = nodeid.partition("::")
        # Only a name that is a canonical PRP id can be a PRP item: no file read for tests.
        if not sep or normalize_id(name) != name:
            return None
        if path not in cache:
            cache[path] = _read_info(rootpath / path)
        info = cache[path]
        return info if info is not None and info.id == name else None

    return load


def _read_info(path: Path) -> PrpInfo | None:
    if not path.is_file():
        return None
    prp = load_prp(path).prp
    if prp is None:
        return None
    return PrpInfo(
        id=prp.id,
        dependencies=tuple(prp.dependencies),
        estimated_hours=prp.estimated_hours,
        files_modified=tuple(prp.files_modified),
        stage=prp.declared_stage,
    )
