"""A fast block scanner giving the block tokens markdown-it would give, for common PRP markdown.

markdown-it-py costs ~12 ms for a real PRP (~36 KB), nearly all of it in calling a dozen rule
functions per line. This scanner classifies lines with plain string tests and follows
markdown-it's block rules (CommonMark plus tables and the nested fences of ``body``) for the
constructs PRPs use: ATX headings, fences, thematic breaks, bullet and ordered lists, tables,
paragraphs, setext headings, indented code, HTML blocks and block quotes. On anything else (lazy
lines in a block quote, a block quote inside a list, link reference definitions, tabs in the
indentation, empty list items, ...) it gives up and returns None:
the caller then parses with markdown-it. ``tests/test_blocks.py`` checks that both give the
same tokens on every PRP shape and corpus file.

Only what ``body`` reads is produced: type, tag, nesting, level, map, info, content, markup.

With a ``Skim`` rule (the plan view's summary pass, ``body.summarise_body``) the top-level
stretches of blocks that hold no heading, fence or HTML block are jumped over where the rule
allows: their tokens are left out, everything else is as above.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import accumulate
from typing import Any, Protocol

from markdown_it.rules_block.html_block import HTML_SEQUENCES


class BlockToken(Protocol):
    """What ``body`` reads of a block token: markdown-it's Token and ``Tok`` both have it."""

    @property
    def type(self) -> str: ...
    @property
    def tag(self) -> str: ...
    @property
    def nesting(self) -> int: ...
    @property
    def level(self) -> int: ...
    @property
    def map(self) -> list[int] | None: ...
    @property
    def info(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def markup(self) -> str: ...
    @property
    def meta(self) -> dict[Any, Any]: ...


class Tok:
    """A block token with markdown-it's attribute names (those ``body`` reads)."""

    # Defaults on the class: most tokens set only their first four fields (creating tokens is
    # a good part of the scanner's time).
    map: list[int] | None = None
    info = ""
    content = ""
    markup = ""
    meta: dict[Any, Any]  # made on first use (see __getattr__): only inline tokens need one

    def __init__(self, type: str, tag: str, nesting: int, level: int) -> None:
        self.type = type
        self.tag = tag
        self.nesting = nesting
        self.level = level

    def __getattr__(self, name: str) -> Any:
        if name != "meta":
            raise AttributeError(name)
        self.meta = {}
        return self.meta


Skim = Callable[[int, "Tok"], bool]
"""Told each top-level heading in document order (its level, 1-6, and its inline token), says
whether the blocks up to the next top-level heading are wanted in full (True) or may be skimmed
(False): a skimmed stretch gives only its headings and fences (see ``_Scanner.skip_to``)."""


class _GiveUp(Exception):
    """A construct this scanner does not follow: markdown-it must parse the document."""


_FENCE_LINE = re.compile(r"(`{3,}|~{3,})[ \t]*(.*?)\s*")
_LANGUAGE = re.compile(r"[A-Za-z][\w+#.-]*")
_FENCE_STARTS = ("```", "~~~")
_HR = re.compile(r"([-*_])(?:[ \t]*\1){2,}[ \t]*")
_SETEXT = re.compile(r"(?:-+|=+)[ \t]*")
_ATX = re.compile(r"#{1,6}(?:[ \t]|$)")
_ORDERED = re.compile(r"(\d{1,9})([.)])")
_HEADER_CELL = re.compile(r"^:?-+:?$")
# First characters of lines that may start a block or underline a heading ("|" anywhere may make
# a table header).
_MAY_START_BLOCK = frozenset("`~>|<-*_+#=0123456789")
_HEADING_TAGS = ("", "h1", "h2", "h3", "h4", "h5", "h6")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")


def scan(
    markdown: str, skim: Skim | None = None, lines: list[str] | None = None
) -> list[Tok] | None:
    """markdown-it's block tokens for ``markdown`` ("\\n" line ends), or None when unsure.

    With ``skim``, top-level blocks that can hold no heading, fence or HTML block are left out
    where ``skim`` says the section they are in needs only those (see ``Skim``). ``lines``:
    ``markdown.split("\\n")`` when the caller has it already (it is not changed)."""
    if "\t" in markdown and _tab_in_indent(markdown) or "\x00" in markdown:
        return None  # tab stops, and markdown-it's NUL replacement, are not followed here
    scanner = _Scanner(markdown, lazy=skim is not None, lines=lines)
    if skim is not None:
        scanner.skim_from(markdown, skim)
    if scanner.lines and not scanner.final_newline and not scanner.texts[len(scanner.lines) - 1]:
        return None  # markdown-it reads past the source's end there (an IndexError it catches)
    try:
        scanner.blocks(0, len(scanner.lines), 0, 0, -1)
    except _GiveUp:
        return None
    return scanner.tokens


# Skimming. Where a skim must stop (_SKIM_LIMIT): a heading at column 0, and lines that may
# open or close a fence or an HTML block, start a quote, or be a heading not at column 0, or
# underline a setext heading (group "underline": only when right under text); a stretch holding
# one of the latter is read in full. Each pattern starts at the line's "\n" (the text searched
# starts with one), so that the search jumps from line to line.
_SKIM_HEADING = re.compile(r"\n#{1,6}(?:[ \t]|$)", re.M)
_SKIM_LIMIT = re.compile(
    r"\n(?:#{1,6}(?:[ \t]|$)| *(?:```|~~~|[<>])| {1,3}#{1,6}(?:[ \t]|$)"
    r"|(?P<underline> *(?:-+|=+)[ \t]*$))",
    re.M,
)
# Lines where a top-level block starts whatever came before, as long as nothing before them
# was a stop line: an ATX heading or a fence at column 0 (they end paragraphs, lists, tables
# and quotes alike), and a line at column 0 right after an empty line, unless it starts a list
# item (which may continue the list above). The last kind matches at the empty line's "\n"
# and marks the line after it (group 1).
_SKIM_BOUNDARY = re.compile(
    r"\n(?:#{1,6}(?:[ \t]|$)|`{3,}[^`\n]*$|~{3,}.*$"
    r"|(\n)(?![ \n]|[-*+](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)))",
    re.M,
)

# The first two alternatives of _SKIM_BOUNDARY: a stop line that starts a block itself.
_SKIM_TOP_START = re.compile(r"\n(?:#{1,6}(?:[ \t]|$)|`{3,}[^`\n]*$|~{3,}.*$)", re.M)


class _Texts(dict[int, str]):
    """Each line without its indentation (markdown-it's bMarks + tShift .. eMarks), made when
    first asked for; the scanner may change a line's entry while it reads a container."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def __missing__(self, line: int) -> str:
        text = self[line] = self.lines[line].lstrip(" ")
        return text


class _Indents(dict[int, int]):
    """Each line's indentation in columns (markdown-it's sCount), made when first asked for."""

    def __init__(self, lines: list[str], texts: _Texts) -> None:
        super().__init__()
        self.lines = lines
        self.texts = texts

    def __missing__(self, line: int) -> int:
        indent = self[line] = len(self.lines[line]) - len(self.texts[line])
        return indent


_FENCE_LINE_START = re.compile(r" *(?:```|~~~)")
_NEXT_FENCE_LINE = re.compile(r"\n *(?:```|~~~)")


def _fence_lines(markdown: str) -> list[int]:
    """The lines whose text after the indentation starts with ``` or ~~~."""
    found = [0] if _FENCE_LINE_START.match(markdown) else []
    line = pos = 0
    count = markdown.count
    # One search jumping from line start to line start (the pattern starts with its "\n").
    for match in _NEXT_FENCE_LINE.finditer(markdown):
        begin = match.start()
        line += count("\n", pos, begin) + 1
        pos = begin + 1
        found.append(line)
    return found


def _tab_in_indent(markdown: str) -> bool:
    return re.search(r"^[ ]*\t", markdown, re.M) is not None


class _Scanner:
    def __init__(self, markdown: str, lazy: bool = False, lines: list[str] | None = None) -> None:
        lines = markdown.split("\n") if lines is None else lines[:]
        self.final_newline = bool(lines) and lines[-1] == ""
        if self.final_newline:
            lines.pop()  # markdown-it counts no line after a final newline
        self.lines = lines
        # Each line without its indentation (markdown-it's bMarks + tShift .. eMarks) and its
        # indentation in columns (sCount). A list item's first line is changed to its content
        # while the item is read, as markdown-it does. ``lazy`` (when skimming): each made on
        # first use of its line, since most lines are then never looked at one by one.
        self.texts: list[str] | _Texts
        self.indent: list[int] | _Indents
        if lazy:
            self.texts = texts = _Texts(lines)
            self.indent = _Indents(lines, texts)
        else:
            stripped = [line.lstrip(" ") for line in lines]
            self.texts = stripped
            pairs = zip(lines, stripped, strict=True)
            self.indent = [len(line) - len(text) for line, text in pairs]
        self.tokens: list[Tok] = []
        # Lines that may open or close a fence, for the top level's fence rules (below it a
        # less indented line also ends a fence, and a quote's lines start with ">").
        self.fence_lines = _fence_lines(markdown)
        self.line_max = len(lines)
        self.quotes = 0
        self.skim: Skim | None = None
        self.detailed = True  # read the blocks at hand in full (always, unless skimming)

    def skim_from(self, markdown: str, skim: Skim) -> None:
        """Skim top-level blocks from here on where ``skim`` allows it."""
        self.skim = skim
        self.detailed = False
        self.text = "\n" + markdown  # at offset start(n), the "\n" before line n
        self.ends = list(accumulate(map(len, self.lines)))  # line lengths added up
        # Per pattern, the last search: (searched from, first match there or the text's end).
        self.found: dict[re.Pattern[str], tuple[int, int]] = {}

    def start(self, line: int) -> int:
        """Offset of the line in the markdown (each line before it and its "\\n")."""
        return self.ends[line - 1] + line if line else 0

    def next_match(self, pattern: re.Pattern[str], here: int) -> int:
        """Offset of the first match of ``pattern`` at or after ``here`` (of its group
        "underline", only those right under text); the text's length when there is none. The
        last search of each pattern is kept: skimming asks again and again from a little
        further on."""
        text = self.text
        searched, found = self.found.get(pattern, (len(text) + 1, 0))
        if searched <= here <= found:
            return found
        pos = here
        while match := pattern.search(text, pos):
            found = match.start()
            if match.lastgroup is None or (found and text[found - 1] != "\n"):
                break
            pos = match.end()
        else:
            found = len(text)
        self.found[pattern] = (here, found)
        return found

    def skip_to(self, line: int, end: int) -> int:
        """Where a top-level block at ``line`` can be skimmed to: the last block start before
        the next stop line and the next heading at column 0, all blocks between giving no
        token ``body`` reads outside a section it wants in full: no heading (top-level ones
        start at column 0 or are stop lines), no fence, no HTML block. ``line`` itself when
        nothing can be skipped. Searched from ``line`` on, as far as needed."""
        text = self.text
        here = self.start(line)
        if _SKIM_HEADING.match(text, here):
            return line  # a heading: read it
        last = self.start(end) if end < len(self.lines) else len(text)
        # The next heading at column 0, stop line or underline (not at ``here``: no heading).
        limit = min(self.next_match(_SKIM_LIMIT, here), last)
        if limit == here:
            return line  # a stop line: read it
        target = line
        if limit == last:
            return end  # nothing stops the skim: the rest gives no token read there
        count = text.count
        stop = line + count("\n", here, limit)  # limit is the "\n" before that line
        if _SKIM_TOP_START.match(text, limit):
            return stop  # the common case: the last block start before it is the stop line
        bound = self.start(stop + 1) if stop + 1 < len(self.lines) else len(text)
        at, pos = line, here
        for match in _SKIM_BOUNDARY.finditer(text, here + 1, bound):
            at += count("\n", pos, match.start())
            pos = match.start()
            after = at + 1 if match.lastindex else at
            if after <= stop:
                target = after
        return target

    def candidates(self, start: int, end: int, blk: int) -> Iterable[int]:
        """The lines after ``start`` a fence rule must look at."""
        if blk or self.quotes:
            return range(start + 1, end)
        marks = self.fence_lines
        return marks[bisect_right(marks, start) : bisect_left(marks, end)]

    # --- lines --------------------------------------------------------------------------------

    def get_lines(self, begin: int, end: int, indent: int, keep_last: bool) -> str:
        """markdown-it's StateBlock.getLines, for space indentation."""
        if indent == 0 and not self.quotes:
            # The lines as written (a quote changes its lines' entries while it is read).
            parts = self.lines[begin:end]
        else:
            texts, indents = self.texts, self.indent
            parts = [
                " " * (indents[line] - indent) + texts[line]
                if indents[line] > indent
                else texts[line]
                for line in range(begin, end)
            ]
        joined = "\n".join(parts)
        if keep_last and parts and (end < len(self.lines) or self.final_newline):
            joined += "\n"  # markdown-it keeps the line end the source has
        return joined

    def push(self, type: str, tag: str, nesting: int, level: int) -> Tok:
        token = Tok(type, tag, nesting, level)
        self.tokens.append(token)
        return token

    # --- block loop ---------------------------------------------------------------------------

    def blocks(self, start: int, end: int, blk: int, level: int, list_indent: int) -> int:
        """markdown-it's tokenize: blocks from ``start`` until a line indented less than
        ``blk``; returns the line where it stopped (its state.line)."""
        line = start
        texts, indents, line_max = self.texts, self.indent, self.line_max
        top = level == 0 and self.skim is not None  # only the document's own loop skims
        while line < end:
            while line < line_max and not texts[line]:
                line += 1  # as markdown-it, up to the end of the document, not of the block
            if line >= end or indents[line] < blk:
                break
            if top and not self.detailed:
                # A heading or a fence at column 0 ends any skim (skip_to returns the line):
                # read at once, as ``block`` would (a "|" may make a table of the line).
                text = texts[line]
                if not indents[line] and "|" not in text:
                    first = text[0]
                    if first == "#" and _ATX.match(text):
                        self.heading(line, text, level)
                        line += 1
                        if line < end and not texts[line]:
                            line += 1
                        continue
                    if first in "`~":
                        fence_end = self.fence(line, end, blk, level)
                        if fence_end is not None:
                            line = fence_end
                            if line < end and not texts[line]:
                                line += 1
                            continue
                target = self.skip_to(line, end)
                if target > line:
                    line = target
                    continue
            line = self.block(line, end, blk, level, list_indent)
            if line < end and not texts[line]:
                line += 1
        return line

    def block(self, line: int, end: int, blk: int, level: int, list_indent: int) -> int:
        """The block starting on ``line`` (markdown-it's rules in their order); its end."""
        if self.indent[line] - blk >= 4:
            return self.code(line, end, blk, level)
        text = self.texts[line]
        first = text[0]
        if "|" in text:
            table_end = self.table(line, end, blk, level, silent=False)
            if table_end is not None:
                return table_end
        if first in "`~":
            fence_end = self.fence(line, end, blk, level)
            if fence_end is not None:
                return fence_end
        if first == ">":
            return self.quote(line, end, blk, level, list_indent)
        if first == "<":
            html_end = self.html(line, end, blk, level)
            if html_end is not None:
                return html_end
        if first in "-*_" and _HR.fullmatch(text):
            token = self.push("hr", "hr", 0, level)
            token.map = [line, line + 1]
            token.markup = first * (text.count(first) + 1)  # as markdown-it counts
            return line + 1
        if self.list_marker(line) is not None:
            return self.list(line, end, blk, level)
        if first == "[" and re.match(r"\[[^\]]*\]:", text):
            raise _GiveUp("link reference definition")
        if first == "#" and _ATX.match(text):
            self.heading(line, text, level)
            return line + 1
        return self.paragraph(line, end, blk, level, list_indent)

    # --- rules --------------------------------------------------------------------------------

    def quote(self, start: int, end: int, blk: int, level: int, list_indent: int) -> int:
        """markdown-it's blockquote rule, for quotes at the top level without lazy lines."""
        if blk != 0:
            raise _GiveUp("block quote inside a list")
        texts, indents = self.texts, self.indent
        saved: list[tuple[str, int]] = []
        line = start
        last_empty = False
        terminated = False
        while line < end:
            text = texts[line]
            if not text:
                break
            if text[0] != ">":
                if last_empty:
                    break
                if self.interrupts(line, 0, quote=False):
                    terminated = True
                    break
                raise _GiveUp("lazy line in a block quote")
            saved.append((text, indents[line]))
            rest = text[2:] if text[1:2] == " " else text[1:]
            inner = rest.lstrip(" ")
            texts[line], indents[line] = inner, len(rest) - len(inner)
            last_empty = not inner
            line += 1
        opening = self.push("blockquote_open", "blockquote", 1, level)
        opening.markup = ">"
        self.quotes += 1
        line_max = self.line_max
        if terminated:
            self.line_max = line  # markdown-it's lineMax: blank lines are skipped up to it
        try:
            after = self.blocks(start, line, 0, level + 1, list_indent)
        finally:
            self.quotes -= 1
            self.line_max = line_max
            for index, (text, indent) in enumerate(saved):
                texts[start + index], indents[start + index] = text, indent
        opening.map = [start, after]
        closing = self.push("blockquote_close", "blockquote", -1, level)
        closing.markup = ">"
        return after

    def setext(self, start: int, underline: int, blk: int, level: int, marker: str) -> int:
        tag = "h1" if marker == "=" else "h2"
        opening = self.push("heading_open", tag, 1, level)
        opening.map = [start, underline + 1]
        opening.markup = marker
        inline = self.push("inline", "", 0, level + 1)
        inline.map = [start, underline]
        inline.content = self.get_lines(start, underline, blk, False).strip()
        closing = self.push("heading_close", tag, -1, level)
        closing.markup = marker
        if level == 0 and self.skim is not None:
            self.detailed = self.skim(int(tag[1:]), inline)
        return underline + 1

    def code(self, start: int, end: int, blk: int, level: int) -> int:
        """markdown-it's code rule: lines indented 4 columns more than the block."""
        last = line = start + 1
        while line < end:
            if not self.texts[line]:
                line += 1
                continue
            if self.indent[line] - blk >= 4:
                line += 1
                last = line
                continue
            break
        token = self.push("code_block", "code", 0, level)
        token.content = self.get_lines(start, last, 4 + blk, False) + "\n"
        token.map = [start, last]
        return last

    def html(self, start: int, end: int, blk: int, level: int) -> int | None:
        """markdown-it's html_block rule (its own patterns)."""
        text = self.texts[start]
        sequence = _html_sequence(text, interrupting=False)
        if sequence is None:
            return None
        closing, ends_on_blank = sequence
        line = start + 1
        if not closing.search(text):
            while line < end:
                if self.indent[line] < blk and (ends_on_blank or self.texts[line]):
                    break
                body = self.texts[line]
                if closing.search(body):
                    if body:
                        line += 1
                    break
                line += 1
        token = self.push("html_block", "", 0, level)
        token.map = [start, line]
        token.content = self.get_lines(start, line, blk, True)
        return line

    def heading(self, line: int, text: str, level: int) -> None:
        hashes = len(text) - len(text.lstrip("#"))
        content = text[hashes:].strip()
        content = _CLOSING_HASHES.sub("", content) if content.endswith("#") else content
        tag, markup = _HEADING_TAGS[hashes], "#" * hashes
        opening = Tok("heading_open", tag, 1, level)
        opening.map = [line, line + 1]
        opening.markup = markup
        inline = Tok("inline", "", 0, level + 1)
        inline.map = [line, line + 1]
        inline.content = content.strip()
        closing = Tok("heading_close", tag, -1, level)
        closing.markup = markup
        self.tokens += (opening, inline, closing)  # a PRP has dozens: spared three calls each
        if level == 0 and self.skim is not None:
            self.detailed = self.skim(hashes, inline)

    def is_fence_start(self, line: int, blk: int) -> bool:
        text = self.texts[line]
        if self.indent[line] - blk >= 4 or text[:3] not in ("```", "~~~"):
            return False
        found = _FENCE_LINE.fullmatch(text)
        return not (found and found.group(1)[0] == "`" and "`" in found.group(2))

    def fence(self, start: int, end: int, blk: int, level: int) -> int | None:
        text = self.texts[start]
        if text[:3] not in ("```", "~~~"):
            return None
        marker = text[0]
        size = len(text) - len(text.lstrip(marker))
        params = text[size:]
        if marker == "`" and "`" in params:
            return None  # neither fence rule takes the line (nested_fence_end declines too)
        line = end  # unclosed unless a closing line is found
        closed = False
        # Whether a fence line with an info string comes before the closing one: only then
        # can the nested rule take the block (it declines at a first bare fence line).
        inner = False
        for here in self.candidates(start, end, blk):
            body = self.texts[here]
            if body and self.indent[here] < blk:
                line = here
                break
            if not body.startswith(marker):
                continue
            if self.indent[here] - blk >= 4:
                continue
            run = len(body) - len(body.lstrip(marker))
            if run < size:
                continue
            if body[run:].strip(" \t"):
                inner = True
                continue
            line = here
            closed = True
            break
        if inner or not closed:
            nested = self.nested_fence(start, end, blk, level)
            if nested is not None:
                return nested
        token = self.push("fence", "code", 0, level)
        token.info = params
        token.content = self.get_lines(start + 1, line, self.indent[start], True)
        token.markup = marker * size
        token.map = [start, line + (1 if closed else 0)]
        return line + (1 if closed else 0)

    def nested_fence(self, start: int, end: int, blk: int, level: int) -> int | None:
        """The nested fence rule (``nested_fence_end``) on these lines."""
        texts, indents = self.texts, self.indent
        found = nested_fence_end(
            texts.__getitem__,
            indents.__getitem__,
            blk,
            start,
            end,
            self.candidates(start, end, blk),
        )
        if found is None:
            return None
        line, markup, info = found
        token = self.push("fence", "code", 0, level)
        token.info = info
        token.content = self.get_lines(start + 1, line, indents[start], True)
        token.markup = markup
        token.map = [start, line + 1]
        return line + 1

    def list_marker(self, line: int) -> tuple[bool, str, int, int] | None:
        """(ordered, marker char, value, marker length) when the line starts a list item."""
        return _list_marker(self.texts[line])

    def terminates_paragraph(self, line: int, end: int, blk: int, list_indent: int) -> bool:
        """Does a block start here that may interrupt a paragraph (markdown-it's alt rules)?"""
        text = self.texts[line]
        ind = self.indent[line]
        first = text[0]
        if ind - blk >= 4:
            return False
        if "|" in text and self.table(line, end, blk, 0, silent=True) is not None:
            return True
        if first in "`~" and self.is_fence_start(line, blk):
            return True
        if first == ">":
            return True
        if first == "<" and _html_sequence(text, interrupting=True):
            return True
        if first in "-*_" and _HR.fullmatch(text):
            return True
        marker = self.list_marker(line)
        if marker is not None:
            if list_indent >= 0 and ind - list_indent >= 4 and ind < blk:
                return False
            ordered, _, value, size = marker
            if ind >= blk:  # markdown-it's isTerminatingParagraph
                if ordered and value != 1:
                    return False
                if not text[size:].strip():
                    return False
            return True
        return first == "#" and _ATX.match(text) is not None

    def paragraph(self, start: int, end: int, blk: int, level: int, list_indent: int) -> int:
        """markdown-it's lheading and paragraph rules (they scan the same lines)."""
        texts, indents = self.texts, self.indent
        line = start + 1
        while line < end:
            text = texts[line]
            if not text:
                break
            if text[0] not in _MAY_START_BLOCK and "|" not in text:
                line += 1  # plain text: it continues the paragraph
                continue
            if indents[line] - blk > 3:
                line += 1
                continue
            if indents[line] >= blk and _SETEXT.fullmatch(text):
                return self.setext(start, line, blk, level, text[0])
            if self.terminates_paragraph(line, end, blk, list_indent):
                break
            line += 1
        lines = [start, line]
        opening = Tok("paragraph_open", "p", 1, level)
        opening.map = lines
        inline = Tok("inline", "", 0, level + 1)
        inline.map = [start, line]
        if line == start + 1 and indents[start] <= blk:
            inline.content = texts[start].strip()  # one line: getLines is that line
        else:
            inline.content = self.get_lines(start, line, blk, False).strip()
        self.tokens += (opening, inline, Tok("paragraph_close", "p", -1, level))
        return line

    def list(self, start: int, end: int, blk: int, level: int) -> int:
        marker = self.list_marker(start)
        assert marker is not None
        ordered, char, _, _ = marker
        kind = "ordered_list" if ordered else "bullet_list"
        opening = self.push(f"{kind}_open", "ol" if ordered else "ul", 1, level)
        opening.map = [start, 0]
        opening.markup = char
        line = start
        while line < end:
            found = self.list_marker(line)
            assert found is not None
            size = found[3]
            text = self.texts[line]
            rest = text[size:]
            spaces = len(rest) - len(rest.lstrip(" "))
            if not rest.strip():
                raise _GiveUp("empty list item")
            if spaces > 4:
                raise _GiveUp("indented code in a list item")
            content = rest[spaces:]
            column = self.indent[line] + size + spaces
            item = self.push("list_item_open", "li", 1, level + 1)
            item.map = [line, 0]
            item.markup = char
            if ordered:
                item.info = text[: size - 1]
            saved = self.texts[line], self.indent[line]
            self.texts[line], self.indent[line] = content, column
            after = self.blocks(line, end, column, level + 2, blk)
            self.texts[line], self.indent[line] = saved
            closing = self.push("list_item_close", "li", -1, level + 1)
            closing.markup = char
            item.map[1] = after
            line = after
            if line >= end or self.indent[line] < blk:
                break
            if self.indent[line] - blk >= 4:
                break
            text = self.texts[line]
            if text[0] in "`~" and self.is_fence_start(line, blk):
                break
            if text[0] == ">":
                break
            if text[0] in "-*_" and _HR.fullmatch(text):
                break
            following = self.list_marker(line)
            if following is None or following[0] != ordered or following[1] != char:
                break
        closing = self.push(f"{kind}_close", "ol" if ordered else "ul", -1, level)
        closing.markup = char
        opening.map[1] = line
        return line

    def table(self, start: int, end: int, blk: int, level: int, silent: bool) -> int | None:
        """markdown-it's table rule (GFM tables)."""
        if start + 2 > end:
            return None
        delimiter = start + 1
        if self.indent[delimiter] < blk or self.indent[delimiter] - blk >= 4:
            return None
        row = self.texts[delimiter]
        if len(row) < 2 or row[0] not in "|-:":
            return None
        if row[1] not in "|-: \t" or (row[0] == "-" and row[1] in " \t"):
            return None
        if any(ch not in "|-: \t" for ch in row):
            return None
        aligns = 0
        cells = row.split("|")
        for index, cell in enumerate(cells):
            cell = cell.strip()
            if not cell:
                if index == 0 or index == len(cells) - 1:
                    continue
                return None
            if not _HEADER_CELL.search(cell):
                return None
            aligns += 1
        header = self.texts[start].strip()
        if "|" not in header or self.indent[start] - blk >= 4:
            return None
        columns = _split_row(header)
        if not columns or len(columns) != aligns:
            return None
        if silent:
            return start
        opening = self.push("table_open", "table", 1, level)
        opening.map = [start, 0]
        self.push("thead_open", "thead", 1, level + 1).map = [start, start + 1]
        self.push("tr_open", "tr", 1, level + 2).map = [start, start + 1]
        for cell in columns:
            self.push("th_open", "th", 1, level + 3)
            inline = self.push("inline", "", 0, level + 4)
            inline.map = [start, start + 1]
            inline.content = cell.strip()
            self.push("th_close", "th", -1, level + 3)
        self.push("tr_close", "tr", -1, level + 2)
        self.push("thead_close", "thead", -1, level + 1)
        line = start + 2
        while line < end:
            if self.indent[line] < blk and self.texts[line]:
                break
            if self.texts[line] and self.interrupts(line, blk, quote=True):
                break
            text = self.texts[line].strip()
            if not text:
                break
            if self.indent[line] - blk >= 4:
                break
            cells_here = _split_row(text)
            if line == start + 2:
                tbody = len(self.tokens)
                self.push("tbody_open", "tbody", 1, level + 1).map = [start + 2, 0]
            self.push("tr_open", "tr", 1, level + 2).map = [line, line + 1]
            for index in range(len(columns)):
                self.push("td_open", "td", 1, level + 3)
                inline = self.push("inline", "", 0, level + 4)
                inline.map = [line, line + 1]
                inline.content = cells_here[index].strip() if index < len(cells_here) else ""
                self.push("td_close", "td", -1, level + 3)
            self.push("tr_close", "tr", -1, level + 2)
            line += 1
        if line > start + 2:
            self.tokens[tbody].map = [start + 2, line]
            self.push("tbody_close", "tbody", -1, level + 1)
        self.push("table_close", "table", -1, level)
        opening.map[1] = line
        return line

    def interrupts(self, line: int, blk: int, *, quote: bool) -> bool:
        """Whether a fence, HTML block, rule, list item or ATX heading starts at ``line`` (in a
        block indented by ``blk``), or with ``quote`` a block quote: what ends a block quote
        at a line without ">" (``quote=False``) and a table (``quote=True``), markdown-it's
        "blockquote" alternatives of each."""
        text = self.texts[line]
        if self.indent[line] - blk >= 4:
            return False
        first = text[0]
        if first in "`~" and self.is_fence_start(line, blk):
            return True
        if quote and first == ">":
            return True
        if first == "<" and _html_sequence(text, interrupting=True):
            return True
        if first in "-*_" and _HR.fullmatch(text):
            return True
        if self.list_marker(line) is not None:
            return True
        return first == "#" and _ATX.match(text) is not None

def _split_row(text: str) -> list[str]:
    columns = _escaped_split(text) if "\\" in text else text.split("|")
    if columns and columns[0] == "":
        columns.pop(0)
    if columns and columns[-1] == "":
        columns.pop()
    return columns


@lru_cache(maxsize=4096)  # asked of the same line by several rules
def _list_marker(text: str) -> tuple[bool, str, int, int] | None:
    first = text[0]
    if first in "-*+":
        if len(text) > 1 and text[1] not in " \t":
            return None
        return False, first, 0, 1
    if first.isdigit():
        found = _ORDERED.match(text)
        if found is None:
            return None
        size = found.end()
        if size < len(text) and text[size] not in " \t":
            return None
        return True, found.group(2), int(found.group(1)), size
    return None


def nested_fence_end(
    text: Callable[[int], str],
    indent: Callable[[int], int],
    blk: int,
    start: int,
    end: int,
    lines: Iterable[int] | None = None,
) -> tuple[int, str, str] | None:
    """A fence holding fences, as PRP authors write them (a markdown or heredoc example): its
    closing line, markup and info string; None when the line opens no such fence.

    CommonMark ends a fence at its first bare fence line, so in a ```` ```markdown ```` example
    holding a ```` ```bash ```` block the rest of the example spills out, and its headings end
    real sections. Here a fence line with a language opens a nested block and a bare one closes
    the innermost; once nesting is seen, a bare fence line at the outer level with text right
    under it opens a block too (a closing fence is followed by a blank line). When the first
    inner fence line is bare, or the nesting never balances, the rule declines and the
    CommonMark fence rule applies unchanged. ``text`` gives a line without its indentation,
    ``indent`` its indentation; ``blk`` is the enclosing block's (markdown-it's blkIndent);
    ``lines``, the lines after ``start`` that may matter (all of them by default).
    One rule for both parsers: markdown-it's (``body._nested_fence``) and the scanner's.
    """
    if indent(start) - blk >= 4:
        return None
    opening = _FENCE_LINE.fullmatch(text(start))
    if opening is None:
        return None
    markup, info = opening.group(1), opening.group(2)
    if markup[0] == "`" and "`" in info:
        return None
    depth = 0
    nested = False
    for line in range(start + 1, end) if lines is None else lines:
        here = text(line)
        if here and indent(line) < blk:
            return None
        if indent(line) - blk >= 4:
            continue
        found = _FENCE_LINE.fullmatch(here)
        if found is None or found.group(1)[0] != markup[0] or len(found.group(1)) < len(markup):
            continue
        if found.group(2):
            if not _LANGUAGE.fullmatch(found.group(2).split()[0]):
                continue  # e.g. ```''' inside a Python string: content, as in CommonMark
            depth += 1
            nested = True
        elif depth:
            depth -= 1
        elif not nested:
            return None  # a plain fence: the CommonMark rule handles it
        elif line + 1 < end and text(line + 1):
            depth += 1  # a bare fence with code right under it opens a block; closers end one
        else:
            return line, markup, info
    return None  # unbalanced: not a nested fence


def _escaped_split(string: str) -> list[str]:
    """markdown-it's table cell split: a backslash keeps a pipe in its cell."""
    result: list[str] = []
    current = ""
    last = 0
    escaped = False
    for pos, ch in enumerate(string):
        if ch == "|":
            if not escaped:
                result.append(current + string[last:pos])
                current = ""
                last = pos + 1
            else:
                current += string[last : pos - 1]
                last = pos
        escaped = ch == "\\"
    result.append(current + string[last:])
    return result


def _html_sequence(text: str, interrupting: bool) -> tuple[re.Pattern[str], bool] | None:
    """The closing pattern of the HTML block ``text`` opens (and whether a blank line is it);
    with ``interrupting``, only blocks that may interrupt a paragraph."""
    for opening, closing, can_interrupt in HTML_SEQUENCES:
        if opening.search(text):
            if interrupting and not can_interrupt:
                return None
            return closing, bool(closing.search(""))
    return None
