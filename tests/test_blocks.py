"""The fast block scanner gives markdown-it's tokens, or gives up: compared on every shape."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_prp.spec.blocks import Tok, scan
from pytest_prp.spec.body import _markdown, _plain, parse_body, parsed_plain, summarise_body
from pytest_prp.spec.frontmatter import split_frontmatter
from pytest_prp.spec.model import BodySummary

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "corpus"
FIELDS = ("type", "tag", "nesting", "level", "map", "info", "content", "markup")


def tokens_of(markdown: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]] | None]:
    expected = [tuple(getattr(t, f) for f in FIELDS) for t in _markdown().parse(markdown)]
    fast = scan(markdown)
    got = None if fast is None else [tuple(getattr(t, f) for f in FIELDS) for t in fast]
    return expected, got


def assert_same(markdown: str, *, may_give_up: bool = False) -> None:
    expected, got = tokens_of(markdown)
    if got is None:
        assert may_give_up, "the scanner gave up"
        return
    assert got == expected


SNIPPETS = {
    "headings": "# One\n\n## Two ##\n### Three #not\n#### \n####### seven\n#5 no\n",
    "paragraphs": "a\n  b\n      c\n\nd\n# h\ne\n```\nx\n```\n",
    "setext": "Title\n===\n\nSub\n---\n\ntext\n- item\n---\n",
    "hr": "***\n- - -\n___\n----\n",
    "lists": "- a\n- b\n  - c\n    - d\n- e\n\n  more e\n\n1. one\n2. two\n3) three\n",
    "lazy": "- item\ncontinued\n- [ ] check\n  **Command**: `x`\n\n* star\n+ plus\n",
    "ordered interrupts": "text\n2. not a list\n1. a list\n",
    "list fences": "1. Step\n   ```bash\n   make\n   ```\n2. Next\n  ```\n  two\n  ```\n",
    "list ends fence": "- item\n  ```bash\n  echo\nout\n```\n",
    "tables": "| a | b |\n|---|:-:|\n| 1 | 2 |\n| 3\n\n| x |\n|---|\nrow\n# h\n",
    "table escapes": "| a \\| b | c |\n|---|---|\n| 1 \\| 2 | 3 |\n",
    "not tables": "| a |\n| b |\n\na | b\n-- | --\n",
    "html": "<!-- note\nstill -->\ntext\n\n<details>\n<summary>x</summary>\n\n## In\n</details>\n",
    "html in list": "- a\n  <!--\n\n  -->\n- b\n",
    "code block": "text\n\n    indented\n    code\n\n  more\n",
    "nested fences": "```markdown\n## Gates\n```bash\npytest\n```\n```\n\n# After\n",
    "heredoc": "```bash\ncat <<EOF\n```python\nx = 1\n```\nEOF\n```\n",
    "unclosed": "## S\n\n```bash\nnever closed\n",
    "tilde": "~~~\n```\n~~~\n",
    "fence lines everywhere": "> ```\n> in quote\n```\nafter\n```\n- a\n  ```\n  b\n```\nc\n",
    "short closers": "````\n```\n````\n```` x\n",
    "info with backticks": "``` a`b\nnot fence\n```\n",
    "spaces": "   # h\n   ```\n   x\n  ```\n  \n",
}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_snippet_tokens_match_markdown_it(name: str) -> None:
    assert_same(SNIPPETS[name])


@pytest.mark.parametrize(
    "markdown",
    ["> lazy\ncontinued\n", "[ref]: https://example.com\n", "-\n  x\n", "\tindented\n"],
)
def test_what_the_scanner_does_not_follow_it_leaves_to_markdown_it(markdown: str) -> None:
    assert scan(markdown) is None


def bodies(paths: list[Path]) -> list[tuple[Path, str, int]]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        split = split_frontmatter(text)
        first = split[2] if split else 1
        found.append((path, "".join(text.splitlines(keepends=True)[first - 1 :]), first))
    return found


def own_files() -> list[Path]:
    return sorted((HERE / "shapes").glob("*.md.txt")) + sorted((HERE.parent / "PRPs").rglob("*.md"))


def assert_bodies_identical(paths: list[Path]) -> int:
    """Whole bodies (steps, gates, warnings) are the same either way; returns files scanned."""
    scanned = 0
    for path, markdown, first in bodies(paths):
        assert_same(markdown, may_give_up=True)
        scanned += scan(markdown) is not None
        fast = parse_body(markdown, path, first)
        slow = parse_body(markdown, path, first, fast=False)
        assert fast == slow, path
    return scanned


def full_summary(markdown: str, path: Path, first: int, *, fast: bool = True) -> BodySummary:
    body = parse_body(markdown, path, first, fast=fast)
    executable, unverified = len(body.executable_gates), len(body.unverified_gates)
    return BodySummary(len(body.steps), executable, unverified, body.warnings)


def assert_summaries_identical(paths: list[Path]) -> None:
    """The plan view's skimming pass gives the counts and warnings of the full parse."""
    for path, markdown, first in bodies(paths):
        assert summarise_body(markdown, path, first) == full_summary(markdown, path, first), path


def test_own_prp_files_summarise_as_they_parse() -> None:
    assert_summaries_identical(own_files())


def test_corpus_summarises_as_it_parses() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    assert_summaries_identical(sorted(CORPUS.rglob("*.md")))


SKIMMED = {
    "setext validation": "# PRP\n\ntext\n\nValidation\n----------\n\n- [ ] by hand\n",
    "indented heading": "# PRP\n\n- a\n\n  ## Validation\n- [ ] x\n\n ## Validation\n- [ ] y\n",
    "html swallows": "# PRP\n\n<div>\n## Validation\n- [ ] x\n</div>\n\n## Validation\n- [ ] y\n",
    "list resumes": "## Steps\n\n- a\n\n- b\n  ```bash\n  x\n  ```\n\n## Validation\n- [ ] c\n",
    "fence in list": "## Implementation\n\ntext\n- a\n  ```bash\n  x\n```\n# no\n```\n",
    "nested sections": "## Validation\n\n### Level 1\n\ntext\n\n- [ ] a\n\n## Other\n\n- [ ] b\n",
    "quote": "# PRP\n\n> ## Validation\n> - [ ] x\n\n## Validation\n\n**Command**: `make`\n",
    "commands outside": "# Notes\n\n**Command**: `x`\n\n## Gate 1\n\n```bash\nmake\n```\n",
    "no final newline": "## Validation\n\n- [ ] a\n\ntext",
}


@pytest.mark.parametrize("name", sorted(SKIMMED))
def test_skimmed_shapes_summarise_as_markdown_it_parses(name: str) -> None:
    markdown = SKIMMED[name]
    path = Path("PRP-1.md")
    expected = full_summary(markdown, path, 1, fast=False)
    assert summarise_body(markdown, path, 1) == expected


def test_random_markdown_summarises_as_markdown_it_parses() -> None:
    """Shuffled lines with section headings among them: the skimming pass gives the counts and
    warnings markdown-it's tokens give."""
    import random

    rng = random.Random(21)
    pieces = [
        *PIECES,
        *("## Validation", "## Implementation", "### Step 2", "Validation", "# Other", "text"),
        *("", "", "- [x] done", "**Command**: Manual review", "- [ ] **Command**: `ls`"),
    ]
    path = Path("PRP-1.md")
    for _ in range(3000):
        lines = [rng.choice(pieces) for _ in range(rng.randint(1, 24))]
        markdown = "\n".join(lines) + rng.choice(["", "\n"])
        expected = full_summary(markdown, path, 1, fast=False)
        assert summarise_body(markdown, path, 1) == expected, markdown


def test_own_prp_files_read_the_same_either_way() -> None:
    paths = own_files()
    assert assert_bodies_identical(paths) == len(paths)  # none needs markdown-it


def test_corpus_reads_the_same_either_way() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    paths = sorted(CORPUS.rglob("*.md"))
    assert assert_bodies_identical(paths) == len(paths)


def test_markdown_as_written_in_tests_reads_the_same() -> None:
    markdown = textwrap.dedent(
        """
        ## Implementation Steps

        ### Step 1: create

        **Create**: `a.txt`
        ```text
        a
        ```

        ## Validation Gates

        | Gate | Command |
        |------|---------|
        | **Create**: `x` | `y` |

        - [ ] checked by hand
        **Command**: `not a gate: lazy line`

        **Command**: `pytest -q`
        Expected: passes
        """
    ).lstrip("\n")
    path = Path("PRP-1.md")
    assert parse_body(markdown, path, 1) == parse_body(markdown, path, 1, fast=False)
    assert_same(markdown)


@pytest.mark.parametrize(
    "text",
    [
        "Gate 1: Unit Tests Pass",
        "4. Validation Gates (30 min) - C# / F#: 100% #1",
        "Level 2:  spaced   out\nover lines",
        "Step 5: Implementation (Only After Tests Pass) ~ ok + = ^ $ % @ { }",
        "**Bold** and `code` and [link](x) and <b>x</b> & &amp; \\* esc",
        "Update `tools/ce/core.py` and ``a ` b``",
        "x` y `z and ` ` and `unclosed",
        "```run``` then `` `tick` `` and ``` odd",
        "`a\nb` across lines",
        "[ ] **Task Mode Works**: runs without `ANTHROPIC_API_KEY`",
        "[x] **Docs** and **More words here**.",
        "Risks & Mitigations &amp; &#35; &copy; &nosuch; & x",
        "task_types.py and __init__ and _private and snake_case_name",
        "**a**b and ** a** and **a **b and ***x*** and **(p)**q",
        "`x`**y** and **`code` inside** and **a\nb**",
        "[link] [ ] late checkbox",
    ],
)
def test_plain_text_shortcuts_match_the_inline_parse(text: str) -> None:
    assert plain_of(text) == parsed_plain(text)


def plain_of(text: str) -> str:
    token = Tok("inline", "", 0, 1)
    token.content = text
    return _plain(token)


def test_plain_text_of_every_inline_in_own_files_and_corpus_matches_the_inline_parse() -> None:
    paths = own_files() + (sorted(CORPUS.rglob("*.md")) if CORPUS.is_dir() else [])
    seen = 0
    for _path, markdown, _first in bodies(paths):
        for token in _markdown().parse(markdown):
            if token.type == "inline":
                assert plain_of(token.content) == parsed_plain(token.content), token.content
                seen += 1
    assert seen > 100


@pytest.mark.parametrize(
    "markdown",
    [
        "> quoted\n> more\n\nafter\n",
        "> a\n>\n> b\n# h\n",
        ">no space\n>  two spaces\n- list\n",
        "> ```bash\n> echo\n> ```\n",
        "> - [ ] a\n> - [x] b\n\n> # heading in a quote\n",
        "> quote\n---\n",
    ],
)
def test_block_quotes_match_markdown_it(markdown: str) -> None:
    assert_same(markdown)


PIECES = [
    *("# H", "## Validation Gates", " ## indented", "#no", "text line", "more text"),
    *("**Command**: `x`", "Expected: ok", "- item", "- [ ] check", "  - nested", "   continued"),
    *("1. one", "2. two", "10) ten", "* star", "+ plus", "   - deep", "     x", "-notlist"),
    *("```bash", "```", "~~~", "````", "```python", "  ```", "    code", "---", "***", "==="),
    *("- - -", "| a | b |", "|---|---|", "| 1 | 2 |", "> quote", "> - q item", ">"),
    *("<!-- c -->", "<div>", "</div>", "<b>x</b>", "`code` line", "", "", "", " "),
]


def test_random_markdown_gives_markdown_its_tokens_or_nothing() -> None:
    """Lines of every kind, shuffled: the scanner agrees with markdown-it or gives up."""
    import random

    rng = random.Random(12)
    scanned = 0
    for _ in range(3000):
        lines = [rng.choice(PIECES) for _ in range(rng.randint(1, 14))]
        markdown = "\n".join(lines) + rng.choice(["", "\n"])
        expected, got = tokens_of(markdown)
        if got is not None:
            assert got == expected, markdown
            scanned += 1
    assert scanned > 2500


def test_headings_spared_the_normalising_name_no_section() -> None:
    """``_key`` skips ``normalise_heading`` for headings without a section word: every heading
    of the own files and the corpus, and tricky ones, whose normalised text would name a section
    holds such a word."""
    from pytest_prp.spec.body import (
        _IMPLEMENTATION,
        _SECTION_WORDS,
        _VALIDATION,
        _VALIDATION_LIKE,
        _key,
        normalise_heading,
    )

    def names_a_section(key: str) -> bool:
        return bool(
            key in _IMPLEMENTATION or _VALIDATION.fullmatch(key) or _VALIDATION_LIKE.search(key)
        )

    texts = [
        "4. ✅ Validation Gates:",
        "Step 3: Tasks (1 h)",
        "STEP-BY-STEP IMPLEMENTATION",
        "Gate 2 – Verify",
        "VERIFICATION",
        "Low-level tasks",
        "Overview",
        "Imple_mentation",
    ]
    paths = own_files() + (sorted(CORPUS.rglob("*.md")) if CORPUS.is_dir() else [])
    for _path, markdown, _first in bodies(paths):
        texts += [t.content for t in _markdown().parse(markdown) if t.type == "inline"]
    named = 0
    for text in texts:
        plain = plain_of(text)
        if names_a_section(normalise_heading(plain)):
            named += 1
            assert _SECTION_WORDS.search(plain.lower()), text
        expected = normalise_heading(plain) if _SECTION_WORDS.search(plain.lower()) else ""
        token = Tok("inline", "", 0, 1)
        token.content = text
        assert _key(token) == expected
    assert named > 20
