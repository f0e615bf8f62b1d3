"""A PRP's markdown body: its implementation steps and its validation gates.

Parsed with markdown-it (CommonMark plus tables), so headings inside code blocks, rules and tables
are told apart the way a markdown viewer does. Only text of one heading or one line is matched with
regular expressions.

Sections, found by their heading text after normalising (numbering such as "4." or "Step 3:",
emoji, case, a trailing "(...)" and punctuation are ignored):

- Steps come from the implementation sections ("Implementation", "Implementation Steps",
  "Implementation Plan", "Implementation Blueprint", "Implementation Tasks", "Step-by-Step Tasks",
  ...; two of them give a warning and the steps of both). A fenced YAML block of ``Task N:``
  entries in it (the Wirasm template) gives one step per entry; otherwise each of its
  shallowest sub-headings starts a step; without sub-headings the whole section is one step.
- Gates come from every validation section outside them ("Validation", "Validation Gates",
  "Validation Loops", "Validation Commands", "Validation Strategy", and also "Final Validation
  Checklist": its checklist items are the author's acceptance checks, so they are reported as
  unverified gates rather than silently dropped). Each shell block and each inline
  ``**Command**: `cmd` `` line is an executable gate; each ``- [ ]`` / ``- [x]`` item, and a
  ``**Command**:`` line of prose, is a checklist gate. A body left without an executable gate
  warns about every code block that looked like a gate and was not read as one.

A fenced block is shell when its info string is bash, sh, shell, zsh, console or shell-session. A
block without an info string is shell when its first line that is not blank or a comment starts
with ``$ ``, a path (``./``, ``../``, ``~/``), a well-known command (cd, uv, python, pytest, make,
npm, git, grep, test, ...) or a shell word (export, if, while, ...), optionally after
``VAR=value`` assignments. The same rule (``shell_commands``) picks the blocks the literal
executor runs in a step. Blocks whose commands carry a ``$ `` prompt (console
transcripts) keep only the prompted lines, without the prompt. ``# Expected: ...`` comments in a
gate's block, and an ``Expected: ...`` paragraph right after a gate, fill ``Gate.expected``.

The plan view needs only the counts and warnings: ``summarise_body`` gives them without reading
in full the blocks outside validation sections (``blocks.Skim``), the same as ``parse_body``'s.

Only top-level headings structure the document (not those inside list items or quotes). Fences
that hold fences (a markdown example with bash blocks, a heredoc with a python block) are read as
nested, as their authors meant; see ``blocks.nested_fence_end``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.token import Token

from pytest_prp.spec.blocks import BlockToken, Skim, Tok, nested_fence_end, scan
from pytest_prp.spec.model import (
    GATE_CHECKLIST,
    GATE_SHELL,
    Body,
    BodySummary,
    CodeBlock,
    Gate,
    Problem,
    Step,
)

_IMPLEMENTATION = {
    "implementation",
    "implementation steps",
    "implementation plan",
    "implementation blueprint",
    "implementation tasks",
    "step by step tasks",
    "step by step implementation",
    "step by step",
    "tasks",
    "task list",
    "low level tasks",
}
# "Validation", "Validation Gates", "VALIDATION LOOPS", "5. Validation Strategy", "Final
# Validation Checklist", ...: a heading naming validation and nothing else.
_VALIDATION = re.compile(
    r"(?:final )?validation(?: (?:gates?|loops?|commands?|steps?|checklist|strategy|plan"
    r"|levels?))?"
)
# Headings that look like validation without being a validation section ("Validation Results",
# "Gate 2: ..."): their shell blocks are named in a warning when a PRP ends up with no gate.
_VALIDATION_LIKE = re.compile(r"\b(?:validat\w*|gates?|verif\w*)\b")
_SHELL_INFOS = {"bash", "sh", "shell", "zsh", "console", "shell-session", "shellsession"}
_KNOWN_COMMANDS = {
    *("cd", "uv", "uvx", "python", "python3", "pip", "pip3", "pytest", "make", "npm", "npx"),
    *("node", "yarn", "pnpm", "bun", "deno", "git", "gh", "grep", "rg", "test", "[", "[["),
    *("echo", "printf", "ls", "cat", "curl", "wget", "ruff", "mypy", "black", "flake8", "tox"),
    *("nox", "poetry", "pre-commit", "docker", "docker-compose", "kubectl", "cargo", "go"),
    *("bash", "sh", "zsh", "export", "source", "mkdir", "rm", "cp", "mv", "find", "diff", "wc"),
    *("head", "tail", "sed", "awk", "jq", "touch", "chmod", "mvn", "gradle", "dotnet", "ruby"),
    *("bundle", "rake", "php", "composer", "just", "if", "for", "set", "sleep", "timeout", "env"),
    *("tree", "true", "false", "xargs", "sort", "uniq", "tee", "time", "coverage", "hatch"),
    # shell words that are no programs
    *(".", "while", "case", "until", "function", "unset", "alias", "!", "read", "eval", "exec"),
    *("exit", "trap", "wait", "pushd", "popd", "umask", "ulimit", "local", "declare"),
}

_LEADING_SYMBOLS = re.compile(r"^[\W_]+")
_NUMBERING = re.compile(r"^(?:\d+(?:\.\d+)*[.)]?|[ivx]+[.)])\s+")
_STEP_PREFIX = re.compile(r"^(?:step|part|section)\s+\d+\s*[:.)\-\u2013\u2014]?\s*")
_TRAILING_PARENS = re.compile(r"\s*\([^()]*\)\s*$")
_NON_WORD = re.compile(r"[\W_]+")
_TASK_LINE = re.compile(r"^\s*Task\s+\d+\s*:", re.IGNORECASE)
_TASK_CREATE = re.compile(r"^\s*Task\s+\d+\s*:\s*CREATE\s+`?([^\s`]+)`?", re.IGNORECASE)
_CREATE_LINE = re.compile(r"^\s*(?:\*\*|__)?Create(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*`([^`]+)`")
_COMMAND_LINE = re.compile(
    r"^\s*(?:\*\*|__)?(?:Commands?|Run)(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*`([^`]+)`", re.IGNORECASE
)
# The same line without a code span ("**Command**: Manual review of ..."): not run, but kept as
# an unverified check so that it is seen.
_COMMAND_TEXT = re.compile(
    r"^\s*(?:\*\*|__)?Commands?(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*([^`\s*_].*?)\s*$", re.IGNORECASE
)
_CHECKBOX = re.compile(r"^\[([ xX])\]\s+")
_EXPECTED_COMMENT = re.compile(r"^\s*#\s*Expected\b[^:\n]*:\s*(.*?)\s*$", re.IGNORECASE)
_EXPECTED_TEXT = re.compile(r"^\s*(?:#\s*)?Expected\b[^:\n]*:\s*(.*?)\s*$", re.IGNORECASE)
_COMMENT = re.compile(r"^\s*#\s?(.*?)\s*$")
_PROMPT = re.compile(r"^\s*\$ ")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
_RULE = re.compile(r"^\s*([-*_])(?:\s*\1){2,}\s*$")

# Characters that start inline markup changing the plain text (emphasis, code, links, images,
# autolinks and HTML, entities, escapes); text without them reads as it is written.
_INLINE_MARKUP = re.compile(r"[*_`\[\]!<&\\]")
_INLINE_MARKUP_BUT_CODE = re.compile(r"[*_\[\]!<&\\]")
_BACKTICKS = re.compile(r"`+")
# "**Word words**" after a space or the start, before a space, ":.,;)" or the end: strong.
_STRONG = re.compile(
    r"(?<!\S)\*\*([A-Za-z0-9](?:[^*_`\[\]!<&\\\n]*[A-Za-z0-9])?)\*\*(?=[\s:.,;)]|$)"
)
_INTRAWORD_UNDERSCORE = re.compile(r"(?<=[A-Za-z0-9])_+(?=[A-Za-z0-9])")
_LITERAL_AMP = re.compile(r"&(?!#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")

_parser: MarkdownIt | None = None


def _markdown() -> MarkdownIt:
    global _parser
    if _parser is None:
        parser = MarkdownIt("commonmark").enable("table")
        alt = ["paragraph", "reference", "blockquote", "list"]
        parser.block.ruler.before("fence", "nested_fence", _nested_fence, {"alt": alt})
        # Inline markup is parsed on demand (see _plain): only headings and validation
        # paragraphs need it, and parsing every paragraph costs a third of the time.
        parser.core.ruler.disable("inline")
        _parser = parser
    return _parser


def _nested_fence(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """The nested fence rule (``blocks.nested_fence_end``) as a markdown-it block rule."""
    begin = state.bMarks[start] + state.tShift[start]
    if state.src[begin : begin + 3] not in ("```", "~~~"):
        return False  # the common case, decided without building the line
    found = nested_fence_end(
        lambda line: _line(state, line),
        lambda line: state.sCount[line],
        state.blkIndent,
        start,
        end,
    )
    if found is None:
        return False
    if silent:
        return True
    line, markup, info = found
    state.line = line + 1
    token = state.push("fence", "code", 0)
    token.info = info
    token.content = state.getLines(start + 1, line, state.sCount[start], True)
    token.markup = markup
    token.map = [start, state.line]
    return True


def _line(state: StateBlock, line: int) -> str:
    return state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]


def normalise_heading(text: str) -> str:
    """Heading text reduced for matching: "4. ✅ Validation Gates:" -> "validation gates"."""
    text = _LEADING_SYMBOLS.sub("", text.strip().lower())
    text = _NUMBERING.sub("", text)
    text = _STEP_PREFIX.sub("", text)
    text = _TRAILING_PARENS.sub("", text)
    return " ".join(_NON_WORD.sub(" ", text).split())


def _plain(inline: BlockToken) -> str:
    """The text of an inline token without markup (code spans keep their content)."""
    if "plain" in inline.meta:
        return str(inline.meta["plain"])
    content = inline.content
    markup = _INLINE_MARKUP.search(content)
    if markup is None:  # most headings: no markup, no parse
        text = " ".join(content.split())
    else:
        simple = _simple_plain(content)  # code spans, **strong**, snake_case: read here
        text = " ".join(simple.split()) if simple is not None else parsed_plain(content)
    inline.meta["plain"] = text
    return text


# Words one of which every key a section is matched by holds (``_IMPLEMENTATION``,
# ``_VALIDATION``, ``_VALIDATION_LIKE``). A key is made of the lowered plain text with parts cut
# off its ends and non-word characters made spaces, so its words are in that text too.
_SECTION_WORDS = re.compile(r"valid|gate|verif|implement|task|step")


def _key(inline: BlockToken) -> str:
    """``normalise_heading`` of a heading's plain text, kept with the token like the text; ""
    for a heading that can name no section ("Overview", "Risks"): most headings, spared the
    normalising."""
    meta = inline.meta
    if "key" not in meta:
        plain = _plain(inline)
        meta["key"] = normalise_heading(plain) if _SECTION_WORDS.search(plain.lower()) else ""
    return str(meta["key"])


def parsed_plain(content: str) -> str:
    """``_plain`` by markdown-it's inline parser (the reference for the shortcuts above)."""
    children: list[Token] = []
    parser = _markdown()
    parser.inline.parse(content, parser, {}, children)
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "text_special", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def _simple_plain(content: str) -> str | None:
    """The plain text of inline markdown whose only markup is code spans, ``**strong**`` words,
    snake_case underscores, ampersands that start no entity and a leading ``[ ]``; None for
    anything else (then markdown-it's inline parser reads it)."""
    out: list[str] = []
    for index, (code, segment) in enumerate(_segments(content)):
        if code:
            out.append(segment)
            continue
        if index and segment.startswith("*"):
            return None  # emphasis right after a code span: the parser decides
        text = _STRONG.sub(r"\1", segment)
        rest = _LITERAL_AMP.sub("", _INTRAWORD_UNDERSCORE.sub("", text))
        if index == 0:
            rest = _CHECKBOX.sub("", rest, count=1)
        if _INLINE_MARKUP_BUT_CODE.search(rest):
            return None
        out.append(text)
    return "".join(out)


def _segments(content: str) -> list[tuple[bool, str]]:
    """Text split into (is code, text) parts: CommonMark code spans (a run of n backticks closes
    at the next run of exactly n; unmatched runs are text), code without its delimiters."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(content)]
    parts: list[tuple[bool, str]] = []
    pos = 0
    index = 0
    while index < len(runs):
        start, end = runs[index]
        size = end - start
        closing = next(
            (j for j in range(index + 1, len(runs)) if runs[j][1] - runs[j][0] == size), None
        )
        if closing is None:
            index += 1  # literal backticks
            continue
        code = content[end : runs[closing][0]].replace("\n", " ")
        if code.startswith(" ") and code.endswith(" ") and code.strip(" "):
            code = code[1:-1]
        parts.append((False, content[pos:start]))
        parts.append((True, code))
        pos = runs[closing][1]
        index = closing + 1
    parts.append((False, content[pos:]))
    return parts


# Named tuples: a PRP makes dozens of each, and a frozen dataclass is several times slower
# to make.
class _Heading(NamedTuple):
    token: int  # index of heading_open
    level: int
    text: str
    key: str  # normalise_heading(text), "" when it can name no section (see _key)
    line: int  # 0-based line in the markdown


class _Section(NamedTuple):
    heading: _Heading
    end_token: int  # exclusive
    end_line: int  # exclusive, 0-based

    def contains(self, heading: _Heading) -> bool:
        return self.heading.token < heading.token < self.end_token


@dataclass
class _Doc:
    tokens: Sequence[BlockToken]
    lines: list[str]
    offset: int  # add to a 0-based markdown line to get a 1-based file line
    path: Path
    headings: list[_Heading]
    warnings: list[Problem] = field(default_factory=list)
    _ends: dict[int, tuple[int, int]] | None = None  # heading token -> its section's end

    def file_line(self, line: int) -> int:
        return line + self.offset

    def section(self, heading: _Heading) -> _Section:
        """The heading's section: up to the next heading of its level or above."""
        if self._ends is None:
            self._ends = {}
            open_headings: list[_Heading] = []
            for other in self.headings:
                while open_headings and open_headings[-1].level >= other.level:
                    self._ends[open_headings.pop().token] = (other.token, other.line)
                open_headings.append(other)
        end_token, end_line = self._ends.get(heading.token, (len(self.tokens), len(self.lines)))
        return _Section(heading, end_token, end_line)

    def source(self, start: int, end: int) -> str:
        """Lines start..end of the markdown, without trailing blank lines and rules."""
        chunk = self.lines[start:end]
        while chunk and (not chunk[-1].strip() or _RULE.match(chunk[-1])):
            chunk.pop()
        return "\n".join(chunk).rstrip("\n")


def parse_body(markdown: str, path: Path, first_line: int, *, fast: bool = True) -> Body:
    """Steps and gates of a PRP body that starts on file line ``first_line``.

    ``fast=False`` parses with markdown-it only (tests compare the two)."""
    # Lines as markdown-it counts them (it treats "\r\n" and "\r" as "\n"; str.splitlines
    # would also split on form feeds and the like, shifting every line number after them).
    if "\r" in markdown:
        markdown = markdown.replace("\r\n", "\n").replace("\r", "\n")
    # The fast scanner gives markdown-it's tokens for common markdown; else markdown-it itself.
    lines = markdown.split("\n")
    tokens: Sequence[BlockToken] | None = scan(markdown, lines=lines) if fast else None
    if tokens is None:
        tokens = _markdown().parse(markdown)
    return _read(lines, tokens, path, first_line)


def summarise_body(markdown: str, path: Path, first_line: int) -> BodySummary:
    """``parse_body``'s counts and warnings, for the plan view, without reading in full the
    blocks they do not depend on: outside validation sections only headings and fences count
    (paragraphs there give only a step's ``create_paths``, which the summary does not show),
    so the scanner skims them (``blocks.Skim``). Identical to the summary of ``parse_body``
    (``tests/test_blocks.py`` compares them on every PRP shape and corpus file)."""
    if "\r" in markdown:
        markdown = markdown.replace("\r\n", "\n").replace("\r", "\n")
    lines = markdown.split("\n")
    tokens = scan(markdown, _validation_in_full(), lines)
    body = parse_body(markdown, path, first_line) if tokens is None else None
    if body is None:
        assert tokens is not None
        body = _read(lines, tokens, path, first_line)
    return BodySummary(
        len(body.steps), len(body.executable_gates), len(body.unverified_gates), body.warnings
    )


def _validation_in_full() -> Skim:
    """The skim rule of ``summarise_body``: read a validation section's blocks in full (its
    gates come from paragraphs and list items too), skim the rest."""
    open_level = 0  # the level of the validation section being read, 0 outside one

    def in_full(level: int, inline: Tok) -> bool:
        nonlocal open_level
        if open_level and level <= open_level:
            open_level = 0
        if not open_level and _VALIDATION.fullmatch(_key(inline)):
            open_level = level
        return open_level != 0

    return in_full


def _read(lines: list[str], tokens: Sequence[BlockToken], path: Path, first_line: int) -> Body:
    """Steps, gates and warnings from the block tokens of the markdown split at its "\\n"."""
    doc = _Doc(tokens, lines, first_line, path, _headings(tokens))
    _check_fences(doc)
    implementations: list[_Section] = []
    for heading in doc.headings:
        if heading.key in _IMPLEMENTATION and not _inside(implementations, heading):
            implementations.append(doc.section(heading))
    validation: list[_Section] = []
    for heading in doc.headings:
        if not _VALIDATION.fullmatch(heading.key):
            continue
        if _inside(implementations, heading) or _inside(validation, heading):
            continue
        validation.append(doc.section(heading))
    steps: list[Step] = []
    for section in implementations:
        steps.extend(replace(s, index=len(steps) + 1) for s in _steps(doc, section))
    if len(implementations) > 1:
        named = ", ".join(
            f"{s.heading.text!r} (line {doc.file_line(s.heading.line)})" for s in implementations
        )
        message = (
            f"{len(implementations)} implementation sections, {named}: steps are read from all"
        )
        first = implementations[1].heading.line
        doc.warnings.append(Problem(doc.path, doc.file_line(first), message))
    gates = _Gates(doc)
    for section in validation:
        gates.collect(section)
    if not any(d.kind != GATE_CHECKLIST for d in gates.drafts):
        _warn_skipped(doc, validation)
    return Body(steps=tuple(steps), gates=tuple(gates.gates), warnings=tuple(doc.warnings))


def _inside(sections: list[_Section], heading: _Heading) -> bool:
    return any(section.contains(heading) for section in sections)


def _warn_skipped(doc: _Doc, validation: list[_Section]) -> None:
    """A PRP with no executable gate: name every code block that looks like one and is not."""
    skipped: list[tuple[int, str]] = []
    ends: list[tuple[_Heading, int]] | None = None  # each heading and its section's end token
    for index, token in enumerate(doc.tokens):
        if token.type != "fence" or token.map is None or not token.content.strip():
            continue
        section = next((s for s in validation if s.heading.token < index < s.end_token), None)
        shell = _is_shell(token.info, token.content)
        if section is not None:
            if not shell:  # a shell block of a validation section that is no gate is warned of
                language = token.info.split()[0] if token.info.strip() else "unlabelled"
                skipped.append((token.map[0], f"{language} block in {section.heading.text!r}"))
            continue
        if not shell:
            continue
        if ends is None:
            ends = [(h, doc.section(h).end_token) for h in doc.headings]
        owner = [h for h, end in ends if h.token < index < end]
        if any(_VALIDATION_LIKE.search(h.key) for h in owner):
            skipped.append((token.map[0], f"shell block under {owner[-1].text!r}"))
    if not skipped:
        return
    where = "; ".join(f"{what} (line {doc.file_line(line)})" for line, what in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    message = (
        f"no executable gate: not read as gates: {where}{more}. Gates are the shell blocks and "
        "**Command**: `cmd` lines of a section named Validation (Gates, Loop, Commands, ...)"
    )
    doc.warnings.append(Problem(doc.path, doc.file_line(skipped[0][0]), message))


def _headings(tokens: Sequence[BlockToken]) -> list[_Heading]:
    found: list[_Heading] = []
    for index, token in enumerate(tokens):
        # Headings inside list items or quotes are not document structure.
        if token.type == "heading_open" and token.map is not None and token.level == 0:
            inline = tokens[index + 1]
            level = int(token.tag[1:])
            found.append(_Heading(index, level, _plain(inline), _key(inline), token.map[0]))
    return found


def _check_fences(doc: _Doc) -> None:
    """An unclosed fence swallows the rest of the file: say so, it hides steps and gates."""
    for token in doc.tokens:
        if token.type != "fence" or token.map is None:
            continue
        end = min(token.map[1], len(doc.lines))
        last = doc.lines[end - 1].strip() if end > token.map[0] + 1 else ""
        if not (last.startswith(token.markup) and not last.strip(token.markup[0])):
            message = f"code block opened here ({token.markup}{token.info}) is never closed"
            doc.warnings.append(Problem(doc.path, doc.file_line(token.map[0]), message))


# --- steps -------------------------------------------------------------------------------------


def _steps(doc: _Doc, section: _Section) -> tuple[Step, ...]:
    start = section.heading.token + 3  # past heading_open, inline, heading_close
    tasks = _yaml_tasks(doc, start, section.end_token)
    if tasks:
        return tasks
    inner = [h for h in doc.headings if section.contains(h)]
    if not inner:
        text = doc.source(section.heading.line, section.end_line)
        if not doc.source(section.heading.line + 1, section.end_line).strip():
            return ()
        return (_step(doc, 1, section.heading, start, section.end_token, text),)
    level = min(h.level for h in inner)
    steps: list[Step] = []
    for heading in (h for h in inner if h.level == level):
        sub = doc.section(heading)
        end_token = min(sub.end_token, section.end_token)
        end_line = min(sub.end_line, section.end_line)
        text = doc.source(heading.line, end_line)
        steps.append(_step(doc, len(steps) + 1, heading, heading.token + 3, end_token, text))
    return tuple(steps)


def _step(doc: _Doc, index: int, heading: _Heading, start: int, end: int, text: str) -> Step:
    blocks: list[CodeBlock] = []
    creates: list[str] = []
    pending: str | None = None
    for token in doc.tokens[start:end]:
        if token.type == "fence" and token.map is not None:
            line = doc.file_line(token.map[0])
            blocks.append(CodeBlock(token.info.strip(), token.content, line, pending))
            pending = None
        elif token.type == "inline":
            found = _CREATE_LINE.match(token.content.split("\n", 1)[0])
            pending = found.group(1).strip() if found else None
            if pending and pending not in creates:
                creates.append(pending)
        elif token.nesting >= 0 and token.type not in ("paragraph_open", "list_item_open"):
            pending = None  # only a block directly after the Create line is its content
    title = heading.text or f"Step {index}"
    return Step(index, title, text, doc.file_line(heading.line), tuple(blocks), tuple(creates))


def _yaml_tasks(doc: _Doc, start: int, end: int) -> tuple[Step, ...]:
    """Steps from fenced blocks of ``Task N: ...`` entries (Wirasm's Implementation Blueprint)."""
    steps: list[Step] = []
    for token in doc.tokens[start:end]:
        if token.type != "fence" or token.map is None:
            continue
        if token.info.strip().split(" ")[0].lower() not in ("yaml", "yml", ""):
            continue
        lines = token.content.splitlines()
        starts = [i for i, line in enumerate(lines) if _TASK_LINE.match(line)]
        for number, begin in enumerate(starts):
            finish = starts[number + 1] if number + 1 < len(starts) else len(lines)
            entry = lines[begin:finish]
            while entry and not entry[-1].strip():
                entry.pop()
            title = entry[0].strip()
            created = _TASK_CREATE.match(title)
            steps.append(
                Step(
                    index=len(steps) + 1,
                    title=title,
                    text="\n".join(entry),
                    line=doc.file_line(token.map[0] + 1 + begin),
                    create_paths=(created.group(1),) if created else (),
                )
            )
    return tuple(steps)


# --- gates -------------------------------------------------------------------------------------


def shell_commands(info: str, code: str) -> str | None:
    """The commands a fenced block runs, or None when it is not shell (documentation).

    The one rule for what is shell, for the gates and for the literal executor's steps alike
    (see the module's docstring). It is read from the block alone, never from the PATH of the
    machine it runs on: the plan, the gates and the steps see a PRP the same way everywhere,
    and a block of output that happens to start with a program's name is not run on one
    machine and skipped on the next. A transcript runs its ``$ `` lines only.
    """
    if not _is_shell(info, code):
        return None
    command = _console_commands(code)
    if command is None:
        return None if _is_transcript(info) else code
    return command


def _is_shell(info: str, code: str) -> bool:
    language = info.split()[0].lower() if info.strip() else ""
    if language:
        return language in _SHELL_INFOS
    for line in code.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _PROMPT.match(line):
            return True
        words = stripped.split()
        while words and _ASSIGNMENT.match(words[0]):
            words.pop(0)
        if not words:
            return True  # only variable assignments: still shell
        first = words[0]
        return first in _KNOWN_COMMANDS or first.startswith(("./", "../", "~/"))
    return False


def _is_transcript(info: str) -> bool:
    return bool(info.strip()) and info.split()[0].lower() in ("console", "shell-session")


def _console_commands(code: str) -> str | None:
    """For a transcript (first command line has a ``$ `` prompt): the prompted lines only."""
    for line in code.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not _PROMPT.match(line):
            return None
        break
    else:
        return None
    commands = [_PROMPT.sub("", line, count=1) for line in code.splitlines() if _PROMPT.match(line)]
    return "\n".join(commands)


def _expected_in(code: str) -> list[str]:
    """``# Expected: ...`` comments; an empty one takes the comment lines right under it."""
    found: list[str] = []
    lines = code.splitlines()
    for index, line in enumerate(lines):
        match = _EXPECTED_COMMENT.match(line)
        if not match:
            continue
        text = match.group(1)
        if not text:
            follow: list[str] = []
            for after in lines[index + 1 :]:
                comment = _COMMENT.match(after)
                if not comment or not comment.group(1) or _EXPECTED_COMMENT.match(after):
                    break
                follow.append(comment.group(1).lstrip("- ").strip())
            text = "; ".join(part for part in follow if part)
        if text:
            found.append(text)
    return found


@dataclass
class _GateDraft:
    name: str
    kind: str
    command: str | None
    line: int
    expected: list[str] = field(default_factory=list)


class _Gates:
    """Walks validation sections in document order, numbering gates across all of them."""

    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.drafts: list[_GateDraft] = []

    @property
    def gates(self) -> list[Gate]:
        return [
            Gate(i, d.name, d.kind, d.command, d.line, tuple(d.expected))
            for i, d in enumerate(self.drafts, start=1)
        ]

    def collect(self, section: _Section) -> None:
        doc = self.doc
        heading: str | None = None
        per_heading = 0
        # The gate an "Expected: ..." paragraph right after it belongs to.
        last: _GateDraft | None = None
        tokens = doc.tokens
        for index in range(section.heading.token + 3, section.end_token):
            token = tokens[index]
            if token.type == "heading_open":
                heading = _plain(tokens[index + 1]) or None
                per_heading = 0
                last = None
            elif token.type == "fence" and token.map is not None:
                last = None
                command = shell_commands(token.info, token.content)
                if command is None:
                    if _is_transcript(token.info):
                        message = "console block without `$ ` command lines is not a gate"
                        doc.warnings.append(Problem(doc.path, doc.file_line(token.map[0]), message))
                    continue
                command = command.rstrip("\n")
                if not command.strip():
                    continue
                per_heading += 1
                name = self._name(heading, per_heading)
                last = self._add(name, GATE_SHELL, command, token.map[0])
                last.expected.extend(_expected_in(token.content))
            elif token.type == "inline" and token.map is not None and index >= 2:
                if tokens[index - 1].type != "paragraph_open":
                    continue  # heading text and table cells
                # The plain text (an inline parse) only where it is read.
                expected = _EXPECTED_TEXT.match(_plain(token)) if last is not None else None
                if last is not None and expected:
                    if expected.group(1):
                        last.expected.append(expected.group(1))
                    continue
                last = None
                in_item = tokens[index - 2].type == "list_item_open"
                checkbox = _CHECKBOX.match(token.content) if in_item else None
                command_line = _COMMAND_LINE.match(token.content.split("\n", 1)[0])
                if checkbox:
                    name = _CHECKBOX.sub("", _plain(token), count=1).strip()
                    name = name or f"Check {len(self.drafts)}"
                    self._add(name, GATE_CHECKLIST, None, token.map[0])
                elif command_line and command_line.group(1).strip():
                    per_heading += 1
                    name = self._name(heading, per_heading)
                    last = self._add(name, GATE_SHELL, command_line.group(1).strip(), token.map[0])
                elif command_text := _COMMAND_TEXT.match(token.content.split("\n", 1)[0]):
                    # Prose after "Command:" is not run; kept as an unverified check, and said.
                    what = command_text.group(1)
                    self._add(what, GATE_CHECKLIST, None, token.map[0])
                    message = (
                        f"**Command**: {what!r} has no `command` in backticks: "
                        "not run, counted as an unverified check"
                    )
                    line = doc.file_line(token.map[0])
                    doc.warnings.append(Problem(doc.path, line, message))

    def _name(self, heading: str | None, count: int) -> str:
        if heading is None:
            return f"Gate {len(self.drafts) + 1}"
        return heading if count == 1 else f"{heading} ({count})"

    def _add(self, name: str, kind: str, command: str | None, line: int) -> _GateDraft:
        draft = _GateDraft(name, kind, command, self.doc.file_line(line))
        self.drafts.append(draft)
        return draft
