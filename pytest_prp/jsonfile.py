"""Writing a file that another process may read at any moment (result JSON, heartbeats, the
HTML report)."""

from __future__ import annotations

import json
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
