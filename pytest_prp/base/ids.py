"""PRP ids: normalising, reading them from file names and free text, sorting. Pure."""

from __future__ import annotations

import re

# The part after "PRP-": alphanumeric segments joined by "." or "-" ("47.2.1", "A", "43-INITIAL").
_ID_BODY = r"[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*"
_PREFIXED = re.compile(rf"(?i:prp)(?:[-_ ]|(?=\d))({_ID_BODY})")
# Without the prefix only numeric ids are ids: "34.2.2" is one, "foo" is not.
_NUMERIC = re.compile(r"\d+(?:\.\d+)*")
# Outside YAML an id starts with a digit or is an upper-case token ("47.2", "A"), so words such
# as prp_base.md, "PRP-Based" or "PRP-driven" are not read as ids.
_FIRST = r"(?:\d[A-Za-z0-9]*|[A-Z][A-Z0-9]*)(?![a-z])"
# A file name's id stops at the first "-": "PRP-43-INITIAL-task-quota" names PRP-43 (its slug
# cannot be told apart from a qualifier; frontmatter, when present, wins anyway).
_FILENAME = re.compile(rf"(?i:prp)[-_]({_FIRST}(?:\.[A-Za-z0-9]+)*)(?![A-Za-z0-9.])")
# In prose an id may carry upper-case qualifiers ("PRP-43-INITIAL") but not a slug ("PRP-43-foo").
_IN_TEXT = re.compile(
    rf"(?<![\w-])(?i:prp)-({_FIRST}(?:\.[A-Za-z0-9]+)*(?:-[A-Z][A-Z0-9]*(?![a-z0-9]))*)"
)
_BATCHED = re.compile(r"PRP-([A-Za-z0-9]+)(?:\.[A-Za-z0-9]+)+")
_PARTS = re.compile(r"\d+|[^\d.\-]+")
# Ids name branches (prp/<batch>/<id>) and files: short, and one plain name each.
MAX_ID_LENGTH = 100
# A batch id: letters and digits, single ".", "-" or "_" between them (a valid git ref part).
_BATCH_ID = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def normalize_id(raw: object) -> str | None:
    """The canonical form ``PRP-<id>`` of an id as written in YAML, or None for non-ids."""
    found = _normalize_id(raw)
    return found if found is not None and len(found) <= MAX_ID_LENGTH else None


def _normalize_id(raw: object) -> str | None:
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return f"PRP-{raw}" if raw >= 0 else None
    if isinstance(raw, float):
        # YAML reads "34.2" as a float; repr gives back the digits (nan, inf, 1e+20 fail).
        text = repr(raw)
        return f"PRP-{text}" if _NUMERIC.fullmatch(text) else None
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    match = _PREFIXED.fullmatch(text)
    if match:
        return f"PRP-{match.group(1)}"
    if _NUMERIC.fullmatch(text):
        return f"PRP-{text}"
    return None


def id_from_filename(name: str) -> str | None:
    """The PRP id a file name starts with ("PRP-47.2.1-foo.md" -> "PRP-47.2.1"), or None."""
    stem = name[:-3] if name.lower().endswith(".md") else name
    match = _FILENAME.match(stem)
    return f"PRP-{match.group(1)}" if match else None


def batch_id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a batch id (it names a branch and folders), or None."""
    if len(text) > MAX_ID_LENGTH:
        return f"is not a batch id: longer than {MAX_ID_LENGTH} characters"
    if not _BATCH_ID.fullmatch(text) or text.lower().endswith(".lock"):
        return "is not a batch id: letters and digits, with single '.', '-' or '_' between them"
    return None


def batch_of(prp_id: str) -> str | None:
    """The batch a dotted id belongs to ("PRP-47.2.1" -> "47"); None for undotted ids."""
    match = _BATCHED.fullmatch(prp_id)
    return match.group(1) if match else None


def natural_key(prp_id: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key comparing number runs as numbers: PRP-47.9.1 < PRP-47.10.1 < PRP-47.A."""
    key: list[tuple[int, int, str]] = []
    for part in _PARTS.findall(prp_id):
        if part.isdigit():
            key.append((0, int(part), ""))
        else:
            key.append((1, 0, part.lower()))
    return tuple(key)


def find_ids(text: str) -> list[str]:
    """PRP ids named in free text, in order of first mention, without repeats."""
    found: list[str] = []
    for match in _IN_TEXT.finditer(text):
        prp_id = f"PRP-{match.group(1)}"
        if prp_id not in found:
            found.append(prp_id)
    return found
