"""write_json_atomically: whole files only, indented or on one line."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pytest_prp.base.jsonfile import write_json_atomically


def test_indented_and_compact_files_read_back_the_same(tmp_path: Path) -> None:
    when = datetime(2026, 11, 26, tzinfo=timezone.utc)
    doc = {"batch_id": "7", "stages": {"1": {"PRP-7.1.1": {"status": "success"}}}, "at": when}
    pretty, compact = tmp_path / "deep" / "a.json", tmp_path / "b.json"
    write_json_atomically(pretty, doc)
    write_json_atomically(compact, doc, compact=True)
    assert pretty.read_text().startswith('{\n  "batch_id": "7",\n')
    assert compact.read_text().count("\n") == 1  # one line, newline-terminated
    expected = {**doc, "at": str(when)}  # what JSON cannot hold is written as text
    assert json.loads(pretty.read_text()) == json.loads(compact.read_text()) == expected
    # Rewriting replaces the file whole and leaves no temporary file beside it.
    write_json_atomically(compact, {"batch_id": "8"}, compact=True)
    assert json.loads(compact.read_text()) == {"batch_id": "8"}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.json", "deep"]
