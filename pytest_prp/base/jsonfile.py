"""Writing a file that another process may read at any moment (result JSON, heartbeats, the
HTML report), and reading JSON back."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, document: dict[str, Any], compact: bool = False) -> None:
    """Readers in another terminal must never see a half-written file (see
    ``write_text_atomically``).

    ``compact``: one line, by json's C encoder (indented output is encoded in Python, about
    15x slower): for a file rewritten many times while a batch runs."""
    if compact:
        text = json.dumps(document, default=str, separators=(",", ":"))
    else:
        text = json.dumps(document, indent=2, default=str)
    write_text_atomically(path, text + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write a hidden temporary file beside ``path``, then rename it over the old one: a
    reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Python's json reads NaN, Infinity and 1e999 (as inf): no count, time or cost is one of them.
_MAX_INT_DIGITS = 18


def _finite_float(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _bounded_int(text: str) -> int | None:
    return int(text) if len(text.lstrip("-")) <= _MAX_INT_DIGITS else None


def loads_finite(text: str) -> Any:
    """``json.loads``, with every number that is not a finite float or a sane int read as null:
    a file another process (or a person) wrote must not crash whoever does sums with it."""
    return json.loads(
        text,
        parse_constant=lambda _name: None,
        parse_float=_finite_float,
        parse_int=_bounded_int,
    )


def read_json(path: Path) -> Any:
    """A JSON file's content by ``loads_finite``; OSError and ValueError as ``json`` raises."""
    return loads_finite(path.read_text(encoding="utf-8"))
