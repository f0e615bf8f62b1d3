"""Loading one PRP file: find and parse its YAML frontmatter, normalise it into a ``Prp``.

Kept cheap on purpose (one YAML parse, no markdown parsing): it runs for every file at collection.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_prp.base.ids import batch_id_problem, batch_of, find_ids, id_from_filename, normalize_id
from pytest_prp.spec.model import LoadResult, Problem, Prp

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_DELIMITER = "---"
# Closing delimiter lines, found with a regex scan (C speed; files can be thousands of lines).
_CLOSE_A = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.M)
_CLOSE_B = re.compile(r"^---[ \t]*\r?$", re.M)
# Form (b) must start like a YAML mapping: a plain key and a colon on the very first line.
_KEY_LINE = re.compile(r"[A-Za-z_][\w.-]*\s*:(\s|$)")
_NONE_WORDS = {"", "none", "null", "~", "n/a", "-"}
# "PRP-B (needs the usage guide)", "34.1.1: reason", "PRP-7 - soft": an id plus a note.
_ANNOTATED = re.compile(
    r"\s*((?:(?i:prp)[-_ ]?)?[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*)"
    r"\s*(?:\(.*\)|\[.*\]|[:;]\s*.*|\s[-\u2013\u2014]\s.*)?\s*",
    re.DOTALL,
)
_HOURS = re.compile(
    r"~?\s*(\d+(?:\.\d+)?)\s*(?:(?:-|\u2013|to)\s*(\d+(?:\.\d+)?))?\s*"
    r"(?:h|hr|hrs|hour|hours)?",
    re.IGNORECASE,
)
_FIRST_INT = re.compile(r"\d+")
# Ids a template or generator leaves for the author to fill in.
# A line inside a key's value (indented, a list item, a comment, blank), not the next key.
_VALUE_LINE_STARTS = ("", " ", "\t", "-", "#")
_PLACEHOLDER = re.compile(
    r"(?i:tbd|tba|todo|fixme|\?+|<[^>]*>|\{[^}]*\}|\[[^\]]*\]"
    r"|(?:prp[-_ ]?)?(?:tbd|todo|xx+|x\.y(?:\.z)?|n\.n(?:\.n)?|nnn?))"
)
# "PRP-1 through PRP-27", "PRP-7.1 to PRP-7.4", "PRP-3..PRP-5", "PRP-3 – PRP-5": a range.
_RANGE = re.compile(
    r"(?<![\w-])(?i:prp)-([\w.]+?)\s*(?:\s(?i:through|thru|to)\s|\.\.\.?|[\u2013\u2014])\s*"
    r"(?i:prp)-([\w.]*\w)"
)
_LAST_NUMBER = re.compile(r"(.*?)(\d+)")
MAX_RANGE = 200


@dataclass(frozen=True)
class _Split:
    yaml_text: str
    yaml_line: int  # 1-based file line of the YAML's first line
    body_line: int  # 1-based file line where the markdown body starts
    fenced: bool  # form (a): opened by a "---" line on line 1


def _locate(text: str) -> _Split | None:
    """Where the frontmatter is, by a line scan (``---`` also appears in rules and tables)."""
    first_end = text.find("\n")
    first = text if first_end < 0 else text[:first_end]
    if first.rstrip() == _DELIMITER:
        if first_end < 0:
            return None
        close = _CLOSE_A.search(text, first_end + 1)
        if close is None:
            return None  # never closed: a horizontal rule on line 1, not frontmatter
        closing_line = text.count("\n", 0, close.start()) + 1
        return _Split(text[first_end + 1 : close.start()], 2, closing_line + 1, True)
    if not _KEY_LINE.match(first):
        return None
    close = _CLOSE_B.search(text)
    if close is None:
        return None
    closing_line = text.count("\n", 0, close.start()) + 1
    return _Split(text[: close.start()], 1, closing_line + 1, False)


# Real frontmatter holds tens of values; aliases (``&a`` / ``*a``) can make a few hundred bytes
# expand to billions ("billion laughs"), so the expanded size is counted before building it.
MAX_VALUES = 10_000


class ExpansionError(ValueError):
    """Frontmatter whose aliases expand beyond ``MAX_VALUES`` values, or into themselves."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line  # 0-based, within the YAML text


@dataclass(frozen=True)
class _Duplicate:
    key: str
    line: int  # 0-based lines within the YAML text
    first_line: int


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document builds, aliases expanded, without expanding them."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            raise ExpansionError("a YAML alias refers to itself", node.start_mark.line)
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_VALUES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key) + size(value)
                if total > MAX_VALUES:
                    break
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


def _duplicates(root: yaml.Node) -> list[_Duplicate]:
    """Keys given twice in one mapping (YAML keeps the last one silently)."""
    found: list[_Duplicate] = []
    seen_nodes: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                pending.append(value)
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                line = key.start_mark.line
                if key.value in first:
                    found.append(_Duplicate(key.value, line, first[key.value]))
                else:
                    first[key.value] = line
    return sorted(found, key=lambda d: d.line)


def _compose_and_load(yaml_text: str) -> tuple[Any, list[_Duplicate]]:
    """The data (a safe loader: plain data only) and its duplicate keys; bounded in size."""
    loader = _Loader(yaml_text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, []
        if _expanded_size(root) > MAX_VALUES:
            raise ExpansionError(
                f"frontmatter expands to more than {MAX_VALUES:,} values (YAML aliases, "
                "&name and *name, repeat what they name); refusing to load it",
                root.start_mark.line,
            )
        return loader.construct_document(root), _duplicates(root)
    finally:
        loader.dispose()


def _load_yaml(yaml_text: str) -> Any:
    return _compose_and_load(yaml_text)[0]


def split_frontmatter(text: str) -> tuple[str, int, int] | None:
    """(yaml text, file line of its first line, first body line), or None without frontmatter.

    Form (a): a block between ``---`` lines at the very top. Form (b), seen in public templates:
    YAML keys from line 1 up to the first ``---`` line; it counts only when it is a YAML mapping.
    """
    split = _locate(text)
    if split is None:
        return None
    if not split.fenced:
        try:
            if not isinstance(_load_yaml(split.yaml_text), dict):
                return None
        except Exception:  # any failure at all means: not frontmatter
            return None
    return split.yaml_text, split.yaml_line, split.body_line


def _read(path: Path) -> tuple[str | None, Problem | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, Problem(path, None, f"cannot read file: {exc.strerror or exc}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        return None, Problem(path, line, f"not valid UTF-8 (byte 0x{bad}); save the file as UTF-8")
    return text.removeprefix("\ufeff"), None


def _yaml_error(path: Path, split: _Split, exc: Exception) -> Problem:
    line: int | None = None
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            line = split.yaml_line + mark.line
        if exc.problem:
            detail = exc.problem
            if exc.context:
                started = exc.context_mark
                where = f" on line {split.yaml_line + started.line}" if started else ""
                detail = f"{detail} ({exc.context}{where})"
    return Problem(path, line, f"invalid YAML in frontmatter: {detail}")


_BLOCK_KEY = re.compile(r"[A-Za-z_][\w.-]*\s*:\s*[|>][-+0-9]*\s*$")
_FENCE_OPEN = re.compile(r"(?:```|~~~)\s*(?:ya?ml)\s*$", re.IGNORECASE)
_PRP_ID_LINE = re.compile(r"^['\"]?prp_id['\"]?\s*:", re.M)
_NO_FRONTMATTER = (
    "no frontmatter: no block between '---' lines at the top, no 'key: value' line on line 1, "
    "no metadata block with a prp_id under the title"
)


def _lenient(text: str, split: _Split) -> tuple[_Split, bool] | None:
    """The header as people write it (Wirasm's templates): ``name:`` / ``description: |``
    lines whose text is not indented, ended by a ``---`` line, a heading or prose.

    Lines keep their numbers: unindented text under ``key: |`` is indented, nothing moves.
    Returns the header and whether a markdown heading ended it; None when this reading finds
    nothing different to try.
    """
    lines = text.split("\n")
    first = split.yaml_line - 1
    out: list[str] = []
    block = False
    index = first
    body = None
    while index < len(lines):
        line = lines[index].rstrip("\r")
        if re.fullmatch(r"(?:---|\.\.\.)[ \t]*", line):
            body = index + 1
            break
        if line.startswith("#"):
            body = index
            break
        if _KEY_LINE.match(line):
            block = bool(_BLOCK_KEY.match(line))
            out.append(line)
        elif not line.strip():
            block = False
            out.append(line)
        elif line[0] in " \t" or line.startswith("- "):
            out.append(line)
        elif block:
            out.append("  " + line)
        else:
            body = index
            break
        index += 1
    if body is None:
        body = len(lines)
    yaml_text = "\n".join(out) + "\n"
    if yaml_text == split.yaml_text:
        return None
    at_heading = body < len(lines) and lines[body].startswith("#")
    return _Split(yaml_text, split.yaml_line, body + 1, split.fenced), at_heading


def _after_title(text: str) -> _Split | None:
    """A metadata block right under the H1 title (``---`` lines or a yaml fence) naming a
    prp_id: some PRPs put their frontmatter there."""
    lines = text.split("\n")
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index >= len(lines) or not re.match(r"#\s", lines[index]):
        return None
    index += 1
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index >= len(lines):
        return None
    opening = lines[index].rstrip()
    if opening == _DELIMITER:
        closing = re.compile(r"---[ \t]*\r?")
    elif _FENCE_OPEN.fullmatch(opening):
        closing = re.compile(re.escape(opening.lstrip()[:3]) + r"[ \t]*\r?")
    else:
        return None
    for end in range(index + 1, len(lines)):
        if closing.fullmatch(lines[end]):
            yaml_text = "".join(line + "\n" for line in lines[index + 1 : end])
            if not _PRP_ID_LINE.search(yaml_text):
                return None  # not the PRP's metadata: an example, a table, a rule
            return _Split(yaml_text, index + 2, end + 2, True)
    return None


def load_prp(path: Path, text: str | None = None) -> LoadResult:
    """Load one markdown file. Files without frontmatter or without any id are not PRPs;
    ``LoadResult.skipped`` then says why (shown when a run finds no PRP at all)."""
    if text is None:
        text, problem = _read(path)
        if text is None:
            return LoadResult(None, [problem] if problem else [])
    text = text.removeprefix("\ufeff")
    split = _locate(text) or _after_title(text)
    if split is None:
        return LoadResult(None, skipped=_NO_FRONTMATTER)
    file_id = id_from_filename(path.name)
    lenient_warnings: list[Problem] = []
    try:
        data, duplicates = _compose_and_load(split.yaml_text)
    except ExpansionError as exc:
        return LoadResult(None, [Problem(path, split.yaml_line + exc.line, str(exc))])
    # Not only YAMLError: a date such as 2025-13-01 makes the constructor raise ValueError.
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        reading = _lenient(text, split)
        # Between "---" lines only markdown under the header is forgiven (a "description: |"
        # whose closing "---" came after the markdown); anything else stays a YAML error.
        if reading is not None and split.fenced and not reading[1]:
            reading = None
        loaded = _try_load(reading[0]) if reading is not None else None
        if reading is None or loaded is None:
            if not split.fenced:  # form (b) that is not YAML: just text before a rule
                detail = getattr(exc, "problem", None) or str(exc).split("\n", 1)[0]
                return LoadResult(None, skipped=f"the lines before '---' are not YAML ({detail})")
            return LoadResult(None, [_yaml_error(path, split, exc)])
        if split.fenced:
            message = (
                "the frontmatter runs into the markdown: read up to this heading; "
                "close it with '---' before the markdown"
            )
            lenient_warnings.append(Problem(path, reading[0].body_line, message))
        split, (data, duplicates) = reading[0], loaded
    if data is None and split.fenced:
        data = {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        if split.fenced and file_id is not None:
            message = f"frontmatter must be a YAML mapping of 'key: value' lines, not a {kind}"
            return LoadResult(None, [Problem(path, split.yaml_line, message)])
        return LoadResult(None, skipped=f"the frontmatter is a YAML {kind}, not a mapping")
    result = _build(path, split, data, file_id)
    if result.prp is not None:
        result.prp.warnings[:0] = lenient_warnings + [
            Problem(
                path,
                split.yaml_line + d.line,
                f"duplicate key {d.key!r} (first on line {split.yaml_line + d.first_line}); "
                "YAML keeps the last value",
            )
            for d in duplicates
        ]
    elif not result.errors:
        result.skipped = "no prp_id in the frontmatter and no PRP id in the file name"
    return result


def _try_load(split: _Split) -> tuple[Any, list[_Duplicate]] | None:
    """The lenient reading's data, when it is a mapping; None otherwise."""
    try:
        data, duplicates = _compose_and_load(split.yaml_text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None
    return (data, duplicates) if isinstance(data, dict) else None


class _Fields:
    """The loaded mapping plus where each key sits, for warnings that name a line."""

    def __init__(self, path: Path, split: _Split, data: dict[Any, Any]) -> None:
        self.path = path
        self.split = split
        self.data = data
        self.warnings: list[Problem] = []

    def get(self, *keys: str) -> tuple[str | None, Any]:
        for key in keys:
            if key in self.data:
                return key, self.data[key]
        return None, None

    def line_of(self, key: str | None) -> int:
        if key is not None:
            found = re.search(rf"^['\"]?{re.escape(key)}['\"]?\s*:", self.split.yaml_text, re.M)
            if found:
                return self.split.yaml_line + self.split.yaml_text.count("\n", 0, found.start())
        return self.split.yaml_line

    def value_lines(self, key: str | None) -> list[tuple[int, str]]:
        """The lines of ``key``'s value with their file line numbers: the key's line, then
        the lines up to the next top-level key."""
        start = self.line_of(key)
        lines = self.split.yaml_text.split("\n")[start - self.split.yaml_line :]
        found = [(start, lines[0])] if lines else []
        for offset, line in enumerate(lines[1:], 1):
            if line[:1] not in _VALUE_LINE_STARTS and ":" in line:
                break
            found.append((start + offset, line))
        return found

    def raw_scalar(self, key: str) -> str | None:
        """The text after ``key:`` on its line, for values YAML mangles (a sha read as octal)."""
        found = re.search(rf"^{re.escape(key)}\s*:[ \t]*(.*)$", self.split.yaml_text, re.M)
        if not found:
            return None
        raw = found.group(1).split(" #")[0].strip().strip("'\"")
        return raw or None

    def warn(self, key: str | None, message: str) -> None:
        self.warnings.append(Problem(self.path, self.line_of(key), message))


def _build(path: Path, split: _Split, data: dict[Any, Any], file_id: str | None) -> LoadResult:
    fields = _Fields(path, split, data)
    id_key, raw_id = fields.get("prp_id")
    placeholder = isinstance(raw_id, str) and bool(_PLACEHOLDER.fullmatch(raw_id.strip()))
    prp_id = None if placeholder else normalize_id(raw_id)
    if prp_id is None and not _is_blank(raw_id):
        what = "a placeholder, not an id yet" if placeholder else "not a PRP id"
        if file_id is None:
            line = fields.line_of(id_key)
            message = f"prp_id {raw_id!r} is {what} (write it like PRP-12 or PRP-12.1.1)"
            return LoadResult(None, [Problem(path, line, message)])
        fields.warn(id_key, f"prp_id {raw_id!r} is {what}; using {file_id} from the file name")
    prp_id = prp_id or file_id
    if prp_id is None:
        return LoadResult(None)  # a batch plan, guide or template: not a PRP, not an error

    batch = _batch(fields, prp_id)
    bad_batch = batch_id_problem(batch) if batch is not None else None
    if bad_batch:
        # It would name a branch and folders: refused, not just ignored (another batch's PRP).
        batch_key, _ = fields.get("batch_id", "batch")
        message = f"{batch_key} {batch!r:.60} {bad_batch}"
        return LoadResult(None, [Problem(path, fields.line_of(batch_key), message)])
    stage_key, stage_raw = fields.get("stage")
    hours_key, hours_raw = fields.get("estimated_hours")
    dependencies, dependency_lines = _dependencies(fields, prp_id)
    prp = Prp(
        id=prp_id,
        path=path,
        line=split.yaml_line,
        dependency_lines=dependency_lines,
        title=_title(data, prp_id),
        batch=batch,
        dependencies=dependencies,
        declared_stage=_stage(fields, stage_key, stage_raw),
        declared_stage_raw=stage_raw,
        status=_text(fields, "status"),
        estimated_hours=_hours(fields, hours_key, hours_raw),
        estimated_hours_raw=hours_raw,
        files_modified=_files(fields),
        complexity=_text(fields, "complexity"),
        model=_text(fields, "model"),
        git_commit=_commit(fields),
        frontmatter=data,
        body_line=split.body_line,
    )
    prp.warnings.extend(fields.warnings)
    return LoadResult(prp)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list, tuple, set))


def _title(data: dict[Any, Any], prp_id: str) -> str:
    for key in ("title", "feature_name", "name"):
        value = data.get(key)
        if value is not None and _is_scalar(value) and str(value).strip():
            return str(value).strip()
    return prp_id


def _text(fields: _Fields, key: str) -> str | None:
    value = fields.data.get(key)
    if value is None:
        return None
    if not _is_scalar(value):
        fields.warn(key, f"{key} should be a single value, not a {type(value).__name__}; ignored")
        return None
    return str(value).strip() or None


def _commit(fields: _Fields) -> str | None:
    value = fields.data.get("git_commit")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fields.raw_scalar("git_commit")  # an all-digit sha is read as a number
    return _text(fields, "git_commit")


def _batch(fields: _Fields, prp_id: str) -> str | None:
    key, value = fields.get("batch_id", "batch")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        if text:
            return text
    elif value is not None:
        fields.warn(key, f"{key} should be a batch number or name, not {value!r}; ignored")
    return batch_of(prp_id)


def _stage(fields: _Fields, key: str | None, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        found = _FIRST_INT.search(value)
        if found:
            return int(found.group())
        if not value.strip():
            return None
    fields.warn(key, f"stage {value!r} is not a stage number; ignored")
    return None


def _hours(fields: _Fields, key: str | None, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value) and value >= 0:
            return float(value)
    elif isinstance(value, str):
        found = _HOURS.fullmatch(value.strip())
        if found:
            low = float(found.group(1))
            high = float(found.group(2)) if found.group(2) else low
            return (low + high) / 2
        if _is_blank(value):
            return None
    fields.warn(key, f"estimated_hours {value!r} is not a number of hours; ignored")
    return None


def _files(fields: _Fields) -> list[str]:
    value = fields.data.get("files_modified")
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(item).strip() for item in value if item is not None and _is_scalar(item)]
    fields.warn("files_modified", "files_modified should be a list of paths; ignored")
    return []


def _split_commas(text: str) -> list[str]:
    """Split on commas outside parentheses: "34.1.1, PRP-B (needs a, b)" is two entries."""
    parts: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _dependencies(fields: _Fields, prp_id: str) -> tuple[list[str], dict[str, int]]:
    """The dependencies' ids, and the line each is written on."""
    key, value = fields.get("dependencies", "depends_on")
    if isinstance(value, str):
        entries: list[Any] = _split_commas(value)
    elif isinstance(value, dict):
        entries = list(value)  # "- PRP-B: why" style: the keys are the ids
    elif isinstance(value, (list, tuple)):
        entries = []
        for item in value:
            entries.extend(item if isinstance(item, dict) else [item])
    else:
        entries = [value]
    found: list[str] = []
    lines: dict[str, int] = {}
    written = fields.value_lines(key) if key is not None else []
    key_line = written[0][0] if written else fields.split.yaml_line
    for entry in entries:
        for dep in _dependency_ids(fields, key, prp_id, entry):
            if dep not in found:
                found.append(dep)
                lines[dep] = _line_holding(written, str(entry).strip(), key_line)
    return found, lines


def _line_holding(lines: list[tuple[int, str]], text: str, default: int) -> int:
    """The first of ``lines`` holding ``text`` whole (PRP-1 is not in PRP-12), else
    ``default``. By ``str.find``: a regex per entry would double the time of loading a PRP."""
    for number, line in lines:
        at = line.find(text)
        while text and at >= 0:
            before = line[at - 1 : at]
            after = line[at + len(text) : at + len(text) + 1]
            if not _id_char(before) and not _id_char(after):
                return number
            at = line.find(text, at + 1)
    return default


def _id_char(char: str) -> bool:
    return bool(char) and (char.isalnum() or char in "._-")


def _dependency_ids(fields: _Fields, key: str | None, prp_id: str, entry: Any) -> list[str]:
    if _is_blank(entry):
        return []
    direct = normalize_id(entry)
    if direct is not None:
        return [direct]
    if not isinstance(entry, str):
        fields.warn(key, f"{prp_id}: dependency {entry!r} is not a PRP id; ignored")
        return []
    annotated = _ANNOTATED.fullmatch(entry)
    if annotated:
        dep = normalize_id(annotated.group(1))
        if dep is not None:
            return [dep]
    found_range = _RANGE.search(entry)
    if found_range:
        return _range(fields, key, prp_id, entry, found_range)
    named = find_ids(entry)
    if named:
        read_as = ", ".join(named)
        fields.warn(key, f"{prp_id}: dependency {entry.strip()!r} read as {read_as}")
        return named
    fields.warn(key, f"{prp_id}: dependency {entry.strip()!r} names no PRP id; ignored")
    return []


def _range(
    fields: _Fields, key: str | None, prp_id: str, entry: str, found: re.Match[str]
) -> list[str]:
    """A range of ids, expanded when its ends differ only in their last number."""
    low, high = f"PRP-{found.group(1)}", f"PRP-{found.group(2)}"
    first, last = _LAST_NUMBER.fullmatch(found.group(1)), _LAST_NUMBER.fullmatch(found.group(2))
    if first and last and first.group(1) == last.group(1):
        start, stop = int(first.group(2)), int(last.group(2))
        if start <= stop and stop - start < MAX_RANGE:
            ids = [f"PRP-{first.group(1)}{n}" for n in range(start, stop + 1)]
            ids = [i for i in ids if i != prp_id]  # "PRP-1 through PRP-9" written in PRP-9
            fields.warn(
                key,
                f"{prp_id}: dependency {entry.strip()!r} read as the range {low} to {high} "
                f"({len(ids)} PRPs)",
            )
            return ids
    fields.warn(
        key,
        f"{prp_id}: dependency {entry.strip()!r} names a range ({low} to {high}) that cannot be "
        "expanded; ignored: list the PRPs it depends on",
    )
    return []
