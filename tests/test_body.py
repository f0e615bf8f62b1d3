"""PRP bodies: implementation steps and validation gates, from real PRPs and small cases."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from pytest_prp.spec.body import normalise_heading, parse_body
from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.frontmatter import load_prp, split_frontmatter
from pytest_prp.spec.model import GATE_CHECKLIST, GATE_SHELL, Body, Prp

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BATCH_43 = "ctx-eng-plus-batch-43"
TEMPLATES = "prps-agentic-eng-templates"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the real-world PRP files (read-only use, so shared by this module)."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    target = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(CORPUS, target)
    return target


FILES = {
    "PRP-43": "PRP-43-improve-generate-prp-implementation-quality.md",
    "PRP-43-INITIAL": "PRP-43-INITIAL-task-based-quota.md",
    "PRP-43.1.1": "PRP-43.1.1-task-execution-framework.md",
    "PRP-43.2.1": "PRP-43.2.1-classification-task-refactoring.md",
    "PRP-43.2.3": "PRP-43.2.3-prp-generation-task-integration.md",
    "PRP-43.3.1": "PRP-43.3.1-initialization-workflow-integration.md",
    "PRP-43.4.1": "PRP-43.4.1-documentation-and-migration-guide.md",
}


def corpus_prp(corpus: Path, prp_id: str) -> Prp:
    result = load_prp(corpus / BATCH_43 / FILES[prp_id])
    assert result.prp is not None
    return result.prp


def template_body(corpus: Path, name: str) -> Body:
    """Templates have no PRP id, so parse their body the way body_cache.body_of does."""
    path = corpus / TEMPLATES / name
    text = path.read_text(encoding="utf-8")
    split = split_frontmatter(text)
    first = split[2] if split else 1
    return parse_body("".join(text.splitlines(keepends=True)[first - 1 :]), path, first)


def body(markdown: str, first_line: int = 1) -> Body:
    return parse_body(textwrap.dedent(markdown).lstrip("\n"), Path("PRP-1.md"), first_line)


def file_line(path: Path, line: int) -> str:
    return path.read_text(encoding="utf-8").splitlines()[line - 1]


# --- the real corpus ---------------------------------------------------------------------------


def test_every_corpus_file_parses_cleanly(corpus: Path) -> None:
    for path in sorted(corpus.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        split = split_frontmatter(text)
        first = split[2] if split else 1
        parsed = parse_body("".join(text.splitlines(keepends=True)[first - 1 :]), path, first)
        if path.name == FILES["PRP-43.4.1"]:
            # Its gates are checklists; the bash blocks of "Step 5: Validation and Testing"
            # are steps: said, since the PRP has no executable gate.
            [warning] = parsed.warnings
            assert warning.message.startswith("no executable gate: not read as gates: shell")
            continue
        assert parsed.warnings == (), path.name
        for step in parsed.steps:
            assert step.title, path.name
        for gate in parsed.gates:
            assert gate.name and (gate.command is None) == (gate.kind == GATE_CHECKLIST)


def test_prp_43_1_1_phases_and_gate_blocks(corpus: Path) -> None:
    prp = corpus_prp(corpus, "PRP-43.1.1")
    assert [s.title for s in body_of(prp).steps] == [
        "Phase 1: Create Task Type Definitions (60 minutes)",
        "Phase 2: Implement Task Context Detection (45 minutes)",
        "Phase 3: Implement TaskExecutor Class (90 minutes)",
        "Phase 4: Add Error Handling and Logging (30 minutes)",
        "Phase 5: Write Unit Tests (120 minutes)",
        "Phase 6: Documentation and Examples (30 minutes)",
    ]
    first = body_of(prp).steps[0]
    assert file_line(prp.path, first.line) == "### " + first.title
    assert first.text.startswith("### Phase 1: Create Task Type Definitions")
    assert not first.text.rstrip().endswith("---")  # the separator rule is not step text
    assert [b.language for b in first.code_blocks] == ["python", "bash"]
    assert file_line(prp.path, first.code_blocks[0].line) == "```python"

    # "## 4. Validation Gates": one bash block per "### Gate N", all executable.
    gates = body_of(prp).gates
    assert [g.name for g in gates] == [
        "Gate 1: File Creation and Imports",
        "Gate 2: Context Detection Works",
        "Gate 3: TaskExecutor Initialization",
        "Gate 4: Task Execution (Direct Mode)",
        "Gate 5: Error Handling",
        "Gate 6: Unit Tests Pass",
        "Gate 7: Documentation Complete",
    ]
    assert [g.index for g in gates] == list(range(1, 8))
    assert all(g.kind == GATE_SHELL for g in gates)
    assert all(file_line(prp.path, g.line) == "```bash" for g in gates)
    assert gates[0].command is not None
    assert gates[0].command.startswith("# Verify files created\ncd /Users/bprzybyszi/")
    assert gates[0].expected == ()
    assert gates[1].expected == ("In Task: False", "In Task: True, ID: test-123", "Valid: True")
    assert gates[5].expected == ("All tests pass (30+ tests)", ">90% coverage")
    assert body_of(prp).unverified_gates == ()


def test_prp_43_2_1_phases_and_checklist_gates(corpus: Path) -> None:
    prp = corpus_prp(corpus, "PRP-43.2.1")
    assert [s.title for s in body_of(prp).steps] == [
        "Phase 1: Task Context Detection (1h)",
        "Phase 2: ClassificationTask Implementation (3h)",
        "Phase 3: Refactor classify_with_haiku() (2h)",
        "Phase 4: Testing Strategy (2h)",
    ]
    # "## Validation Gates" holds only "- [ ]" items: 14 unverifiable gates, none runnable.
    assert len(body_of(prp).gates) == 14
    assert body_of(prp).executable_gates == ()
    assert body_of(prp).gates[0].name == (
        "Task Mode Works: Classification via Task executes without ANTHROPIC_API_KEY"
    )
    assert file_line(prp.path, body_of(prp).gates[0].line).startswith("- [ ] **Task Mode Works**")


def test_prp_43_improve_command_gates_and_a_validation_phase_that_is_a_step(
    corpus: Path,
) -> None:
    prp = corpus_prp(corpus, "PRP-43")
    # "### Phase 3: Validation" sits inside "## 3. Implementation Steps": a step, not gates.
    assert [s.title for s in body_of(prp).steps][-1] == "Phase 3: Validation (15 min)"
    assert [(g.name, g.command) for g in body_of(prp).gates] == [
        (
            "Gate 1: Deprecated Code Removed",
            'grep -n "def _update_linear_issue" tools/ce/generate.py',
        ),
        ("Gate 2: TODO at L1209 Resolved", 'grep -n "TODO.*success_metrics" tools/ce/generate.py'),
        (
            "Gate 3: Existing Tests Still Pass",
            "cd tools && uv run pytest tests/test_generate.py -v",
        ),
        ("Gate 4: Documentation Clarified", body_of(prp).gates[3].command),
    ]
    assert body_of(prp).gates[3].command is not None
    assert body_of(prp).gates[3].command.count("grep -A") == 2


def test_nested_fences_keep_later_steps_and_whole_gate_scripts(corpus: Path) -> None:
    """PRP-43.2.3 shows a markdown example holding bash blocks, and a gate whose heredoc holds a
    python block. CommonMark would end those fences early; the authors meant them nested."""
    prp = corpus_prp(corpus, "PRP-43.2.3")
    assert [s.title.split(":")[0] for s in body_of(prp).steps] == [
        f"Phase {n}" for n in range(1, 7)
    ]
    integration = body_of(prp).gates[5]
    assert integration.name == "Gate 6: Integration Test (Manual)"
    assert integration.command is not None
    assert "```python" in integration.command
    assert "\nEOF\n" in integration.command
    assert integration.command.endswith(
        "grep -E '^## [0-9]\\.'\n# Expected: All 6 sections present"
    )
    assert integration.expected == ("All 6 sections present",)


def test_documentation_prp_keeps_all_six_steps(corpus: Path) -> None:
    prp = corpus_prp(corpus, "PRP-43.4.1")
    assert [s.title.split(":")[0] for s in body_of(prp).steps] == [f"Step {n}" for n in range(1, 7)]
    assert len(body_of(prp).gates) == 9
    assert body_of(prp).gates[0].name == "CLAUDE.md Updated: New section added with Task patterns"


def test_prp_43_3_1_step_headings(corpus: Path) -> None:
    prp = corpus_prp(corpus, "PRP-43.3.1")
    assert [s.title.split(":")[0] for s in body_of(prp).steps] == [f"Step {n}" for n in range(1, 7)]
    assert body_of(prp).gates[-1].name == (
        "Documentation Complete: .claude/commands/ce-init.md created and accurate"
    )


def test_initial_plan_has_no_steps_or_gates(corpus: Path) -> None:
    prp = corpus_prp(corpus, "PRP-43-INITIAL")
    assert (body_of(prp).steps, body_of(prp).gates) == ((), ())


def test_wirasm_base_template_tasks_and_levels(corpus: Path) -> None:
    parsed = template_body(corpus, "prp_base.md")
    assert [s.title for s in parsed.steps] == [
        "Task 1: CREATE src/models/{domain}_models.py",
        "Task 2: CREATE src/services/{domain}_service.py",
        "Task 3: CREATE src/tools/{action}_{resource}.py",
        "Task 4: MODIFY src/main.py or src/server.py",
        "Task 5: CREATE src/services/tests/test_{domain}_service.py",
        "Task 6: CREATE src/tools/tests/test_{action}_{resource}.py",
    ]
    task_2 = parsed.steps[1]
    path = corpus / TEMPLATES / "prp_base.md"
    assert file_line(path, task_2.line) == "Task 2: CREATE src/services/{domain}_service.py"
    assert task_2.text.splitlines()[-1] == "  - PLACEMENT: Service layer in src/services/"
    assert task_2.create_paths == ("src/services/{domain}_service.py",)
    assert parsed.steps[3].create_paths == ()

    shell = parsed.executable_gates
    assert [g.name for g in shell] == [
        "Level 1: Syntax & Style (Immediate Feedback)",
        "Level 2: Unit Tests (Component Validation)",
        "Level 3: Integration Testing (System Validation)",
        "Level 4: Creative & Domain-Specific Validation",
    ]
    assert shell[0].expected == (
        "Zero errors. If errors exist, READ output and fix before proceeding.",
    )
    # "## Final Validation Checklist" counts: its items are unverified gates after the levels.
    checklist = parsed.unverified_gates
    assert len(checklist) == 18
    assert checklist[1].name == "All tests pass: uv run pytest src/ -v"
    assert [g.index for g in parsed.gates] == list(range(1, 23))


def test_wirasm_story_template_steps_and_levels(corpus: Path) -> None:
    parsed = template_body(corpus, "prp_story_task.md")
    assert parsed.steps[3].title == "CREATE services/user_service.py:"
    assert [g.name.split(":")[0] for g in parsed.gates] == [f"Level {n}" for n in range(1, 5)]


# --- sections and headings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("4. Validation Gates", "validation gates"),
        ("✅ Validation Loop", "validation loop"),
        ("1) Implementation Plan", "implementation plan"),
        ("Step 3: Validation", "validation"),
        ("🔨 3.1 Implementation Steps:", "implementation steps"),
        ("IMPLEMENTATION TASKS", "implementation tasks"),
        ("Implementation Tasks (ordered by dependencies)", "implementation tasks"),
        ("Step-by-Step Tasks", "step by step tasks"),
        ("Phase 3: Validation", "phase 3 validation"),
    ],
)
def test_normalise_heading(heading: str, expected: str) -> None:
    assert normalise_heading(heading) == expected


def test_headings_in_code_blocks_rules_and_tables_do_not_split_sections() -> None:
    parsed = body(
        """
        # PRP-1

        ## 🛠️ 2. Implementation Steps

        ### Step 1: Write the parser

        ```markdown
        ## Validation Gates
        ### Not a step
        ```

        ---

        | col | other |
        |-----|-------|
        | --- | ### x |

        - item
          - nested item

            ### A heading inside a list item is not structure

        > ### Nor is one in a quote

        ### Step 2: Test it

        Done.

        ## Notes
        """
    )
    assert [s.title for s in parsed.steps] == ["Step 1: Write the parser", "Step 2: Test it"]
    assert parsed.gates == ()
    assert parsed.steps[0].code_blocks[0].code == "## Validation Gates\n### Not a step\n"
    assert parsed.steps[1].text == "### Step 2: Test it\n\nDone."


def test_section_without_sub_headings_is_one_step() -> None:
    parsed = body(
        """
        ## Implementation

        Write `hello.py`.

        ```python
        print("hi")
        ```

        ## Validation
        """,
        first_line=10,
    )
    [step] = parsed.steps
    assert (step.index, step.title, step.line) == (1, "Implementation", 10)
    assert step.text == '## Implementation\n\nWrite `hello.py`.\n\n```python\nprint("hi")\n```'
    assert [(b.language, b.line) for b in step.code_blocks] == [("python", 14)]


def test_empty_implementation_section_has_no_steps() -> None:
    assert body("## Implementation\n\n## Validation\n").steps == ()


def test_steps_split_at_the_shallowest_sub_heading_level() -> None:
    parsed = body(
        """
        ## Implementation Blueprint

        Intro text is not a step.

        ### Task 1

        #### Details

        text

        ### Task 2
        """
    )
    assert [(s.index, s.title) for s in parsed.steps] == [(1, "Task 1"), (2, "Task 2")]
    assert "#### Details" in parsed.steps[0].text


def test_yaml_task_blocks_are_the_steps() -> None:
    parsed = body(
        """
        ## Implementation Blueprint

        ### Data models

        ```python
        class A: ...
        ```

        ### Implementation Tasks

        ```yaml
        Task 1: CREATE src/a.py
          - IMPLEMENT: A

        Task 2: MODIFY src/b.py
          - ADD: import
        ```
        """
    )
    assert [(s.title, s.line, s.create_paths) for s in parsed.steps] == [
        ("Task 1: CREATE src/a.py", 12, ("src/a.py",)),
        ("Task 2: MODIFY src/b.py", 15, ()),
    ]
    assert parsed.steps[0].text == "Task 1: CREATE src/a.py\n  - IMPLEMENT: A"


@pytest.mark.parametrize(
    "line",
    ["**Create**: `src/app.py`", "**Create:** `src/app.py`", "Create: `src/app.py` (new file)"],
)
def test_create_lines_mark_the_block_after_them(line: str) -> None:
    parsed = body(
        f"""
        ## Implementation

        ### Step 1

        {line}

        ```python
        app = 1
        ```

        ```python
        other = 2
        ```
        """
    )
    [step] = parsed.steps
    assert step.create_paths == ("src/app.py",)
    assert [b.create_path for b in step.code_blocks] == ["src/app.py", None]


def test_create_line_followed_by_prose_marks_no_block() -> None:
    parsed = body(
        """
        ## Implementation

        - **Create**: `docs/guide.md`

        Then write it by hand.

        ```bash
        ls docs
        ```
        """
    )
    [step] = parsed.steps
    assert step.create_paths == ("docs/guide.md",)
    assert step.code_blocks[0].create_path is None


# --- gates -------------------------------------------------------------------------------------


def test_shell_blocks_checklists_and_inline_commands_in_document_order() -> None:
    parsed = body(
        """
        ## Implementation

        ```bash
        echo "implementation blocks are not gates"
        ```

        ## 4. ✅ Validation Gates

        ```bash
        make lint
        ```

        ### Level 1: Unit tests

        ```sh
        pytest -q
        # Expected: 12 passed
        ```
        Expected: no warnings either

        ```python
        print("python is not a gate")
        ```

        ```json
        {"not": "a gate"}
        ```

        **Command**: `ruff check .`

        ### Level 2: Manual

        - [ ] The page loads
        - [x] **Docs** updated in `README.md`
          - not a checkbox
          - [ ] Nested check
        1. [ ] Ordered check
        """,
        first_line=20,
    )
    assert [(g.index, g.name, g.kind, g.command) for g in parsed.gates] == [
        (1, "Gate 1", GATE_SHELL, "make lint"),
        (2, "Level 1: Unit tests", GATE_SHELL, "pytest -q\n# Expected: 12 passed"),
        (3, "Level 1: Unit tests (2)", GATE_SHELL, "ruff check ."),
        (4, "The page loads", GATE_CHECKLIST, None),
        (5, "Docs updated in README.md", GATE_CHECKLIST, None),
        (6, "Nested check", GATE_CHECKLIST, None),
        (7, "Ordered check", GATE_CHECKLIST, None),
    ]
    assert parsed.gates[1].expected == ("12 passed", "no warnings either")
    assert [g.line for g in parsed.gates] == [28, 34, 48, 52, 53, 55, 56]


def test_console_blocks_keep_only_prompted_commands() -> None:
    parsed = body(
        """
        ## Validation Commands

        ```console
        $ uv run pytest -q
        3 passed in 0.1s
        $ ruff check .
        All checks passed!
        ```

        ```bash
        $ make test
        ok
        ```

        ```console
        just output, no prompt
        ```
        """
    )
    assert [g.command for g in parsed.gates] == ["uv run pytest -q\nruff check .", "make test"]
    [warning] = parsed.warnings
    assert (warning.line, warning.message) == (
        15,
        "console block without `$ ` command lines is not a gate",
    )


@pytest.mark.parametrize(
    ("code", "is_gate"),
    [
        ("uv run pytest\n", True),
        ("# run the tests\nCI=1 pytest -q\n", True),
        ("./scripts/check.sh\n", True),
        ("$ make test\n", True),
        ("READ src/config.py:\n  - UNDERSTAND: config\n", False),
        ("What prompt would you run?\n", False),
        ("Expected output here\n", False),
    ],
)
def test_untagged_blocks_are_gates_only_when_they_look_like_shell(code: str, is_gate: bool) -> None:
    markdown = "## Validation\n\n```\n" + code + "```\n"
    assert len(body(markdown).gates) == int(is_gate)


def test_expected_comment_without_text_takes_the_comment_lines_under_it() -> None:
    parsed = body(
        """
        ## Validation Gates

        ```bash
        uv run ce generate x.md
        # Expected:
        # - Mode detection: cli
        # - PRP generated

        ls PRPs
        ```
        """
    )
    assert parsed.gates[0].expected == ("Mode detection: cli; PRP generated",)


@pytest.mark.parametrize(
    "line", ["**Run**: `make check`", "**Command:** `make check`", "Commands: `make check`"]
)
def test_expected_after_an_inline_command(line: str) -> None:
    parsed = body(
        f"""
        ## Validation

        {line}

        **Expected**: exit code 0
        """
    )
    [gate] = parsed.gates
    assert (gate.name, gate.command, gate.expected) == ("Gate 1", "make check", ("exit code 0",))


def test_validation_sections_are_numbered_across_and_nested_ones_counted_once() -> None:
    parsed = body(
        """
        ## Validation Loop

        ```bash
        make a
        ```

        ### Validation

        ```bash
        make b
        ```

        ## Notes

        ```bash
        make not-a-gate
        ```

        ## Final Validation Checklist

        - [ ] Reviewed
        """
    )
    assert [(g.index, g.command or g.name) for g in parsed.gates] == [
        (1, "make a"),
        (2, "make b"),
        (3, "Reviewed"),
    ]
    assert parsed.gates[1].name == "Validation"


def test_unclosed_fence_is_a_warning_with_its_line(tmp_path: Path) -> None:
    parsed = body(
        """
        ## Validation

        ```bash
        make test
        """,
        first_line=7,
    )
    [warning] = parsed.warnings
    assert warning.line == 9
    assert "never closed" in warning.message
    assert [g.command for g in parsed.gates] == ["make test"]


def test_nested_fence_that_never_balances_follows_commonmark() -> None:
    parsed = body(
        """
        ## Validation

        ```bash
        cat > x.md <<'EOF'
        ```python
        EOF
        ```

        ```bash
        make test
        ```
        """
    )
    assert [g.command for g in parsed.gates] == ["cat > x.md <<'EOF'\n```python\nEOF", "make test"]


def test_python_string_with_backticks_does_not_open_a_nested_block() -> None:
    parsed = body(
        """
        ## Implementation

        ### Step 1

        ```python
        reply = '''```json
        {}
        ```'''
        ```

        ### Step 2
        """
    )
    assert [s.title for s in parsed.steps] == ["Step 1", "Step 2"]


def test_crlf_markdown_keeps_line_numbers() -> None:
    markdown = "## Validation\r\n\r\n```bash\r\nmake\r\n```\r\n- [ ] ok\r\n"
    parsed = parse_body(markdown, Path("PRP-1.md"), 3)
    assert [(g.command or g.name, g.line) for g in parsed.gates] == [("make", 5), ("ok", 8)]


def test_prp_body_is_parsed_lazily_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "PRP-5.1.1-x.md"
    path.write_text(
        "---\nprp_id: PRP-5.1.1\n---\n\n## Implementation\n\nDo it.\n\n"
        "## Validation\n\n```bash\nmake test\n```\n",
        encoding="utf-8",
    )
    result = load_prp(path)
    assert result.prp is not None
    [step] = body_of(result.prp).steps
    [gate] = body_of(result.prp).gates
    assert (step.line, gate.line, gate.command) == (5, 11, "make test")


# --- shapes seen in public PRP repositories (small excerpts written for these tests) -----------


def test_validation_loops_heading_in_capitals_gives_its_bash_gates() -> None:
    parsed = body(
        """
        ## 🛠️ Implementation

        ### Phase 1: Create directories

        Make them.

        ---

        ## VALIDATION LOOPS

        ### Level 1: Directory Structure

        ```bash
        # Check all directories exist
        test -d PRPs/templates && echo "✅ Structure OK"
        ```

        **Expected:** Structure OK
        **On Failure:** Check mkdir commands

        ### Level 2: File Existence

        ```bash
        test -f PRPs/templates/kiss.md
        ```

        ### Level 3: Git Integration

        ```bash
        git check-ignore PRPs/ai_docs/test.md
        ```
        """
    )
    assert [g.name for g in parsed.executable_gates] == [
        "Level 1: Directory Structure",
        "Level 2: File Existence",
        "Level 3: Git Integration",
    ]
    assert parsed.gates[0].expected == ("Structure OK On Failure: Check mkdir commands",)
    assert [s.title for s in parsed.steps] == ["Phase 1: Create directories"]


def test_numbered_validation_strategy_section_gives_gates() -> None:
    parsed = body(
        """
        ## 4. Implementation Steps

        ### Step 1: code

        ## 5. Validation Strategy

        ### Unit tests

        ```bash
        pytest tests/unit -q
        ```

        ```bash
        ruff check src
        ```
        """
    )
    assert [(g.name, g.command) for g in parsed.executable_gates] == [
        ("Unit tests", "pytest tests/unit -q"),
        ("Unit tests (2)", "ruff check src"),
    ]


def test_command_line_without_backticks_is_an_unverified_check_with_a_warning() -> None:
    parsed = body(
        """
        ## Validation Gates

        ### Gate 1: Tests

        **Command**: `pytest -q`

        ### Gate 2: Documentation

        **Command**: Manual review of all documentation files
        **Expected**: no stale references

        **Command:**
        ```bash
        make docs
        ```
        """,
        first_line=20,
    )
    assert [(g.kind, g.name, g.command) for g in parsed.gates] == [
        (GATE_SHELL, "Gate 1: Tests", "pytest -q"),
        (GATE_CHECKLIST, "Manual review of all documentation files", None),
        (GATE_SHELL, "Gate 2: Documentation", "make docs"),
    ]
    [warning] = parsed.warnings
    assert warning.line == 28
    assert warning.message == (
        "**Command**: 'Manual review of all documentation files' has no `command` in "
        "backticks: not run, counted as an unverified check"
    )


def test_two_implementation_sections_give_all_their_steps_and_a_warning() -> None:
    parsed = body(
        """
        # Title

        ## IMPLEMENTATION PLAN

        ### Phase 1: Infrastructure

        ### Phase 2: Parsing

        ## Acceptance Criteria

        - works

        ## 3. Implementation Steps

        ### Phase 1: Setup

        ### Phase 2: Core

        ## Validation Gates

        ```bash
        pytest
        ```
        """
    )
    assert [(s.index, s.title) for s in parsed.steps] == [
        (1, "Phase 1: Infrastructure"),
        (2, "Phase 2: Parsing"),
        (3, "Phase 1: Setup"),
        (4, "Phase 2: Core"),
    ]
    [warning] = parsed.warnings
    assert warning.line == 13
    assert warning.message == (
        "2 implementation sections, 'IMPLEMENTATION PLAN' (line 3), '3. Implementation Steps' "
        "(line 13): steps are read from all"
    )


def test_an_implementation_heading_inside_another_section_does_not_hide_the_real_one() -> None:
    parsed = body(
        """
        ## Testing Iteration Protocol

        ### Step 4: Decision

        ### Step 5: Implementation (Only After Tests Pass)

        Implement phase by phase.

        ## 🔧 Implementation Blueprint

        ### Phase 1: Detect

        ### Phase 2: Remediate
        """
    )
    assert [s.title for s in parsed.steps] == [
        "Step 5: Implementation (Only After Tests Pass)",
        "Phase 1: Detect",
        "Phase 2: Remediate",
    ]
    assert "2 implementation sections" in parsed.warnings[0].message


def test_no_executable_gate_names_the_shell_blocks_it_skipped() -> None:
    parsed = body(
        """
        ## Implementation

        ### Phase 3: Validation (5 minutes)

        ```bash
        ls .claude/settings.local.json
        ```

        ## Validation Gates

        ```python
        assert load() == 1
        ```

        - [ ] Reviewed

        ## Validation Results

        ```bash
        pytest -q
        ```
        """
    )
    assert parsed.executable_gates == ()
    [warning] = parsed.warnings
    assert warning.line == 5
    assert warning.message.startswith(
        "no executable gate: not read as gates: "
        "shell block under 'Phase 3: Validation (5 minutes)' (line 5); "
        "python block in 'Validation Gates' (line 11); "
        "shell block under 'Validation Results' (line 19). "
    )


def test_a_prp_with_gates_gets_no_skipped_warning() -> None:
    parsed = body(
        """
        ## Validation Results

        ```bash
        pytest -q
        ```

        ## Validation

        ```bash
        make check
        ```
        """
    )
    assert [g.command for g in parsed.gates] == ["make check"]
    assert parsed.warnings == ()
