"""Every PRP shape seen in real repositories, from the project's own small fixtures (tests/shapes).

Each fixture is read as its author meant, or warns naming what it did not read. The tests on
``../shared/corpus`` (test_body, test_frontmatter) are extra; these need nothing outside the repo.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.frontmatter import load_prp
from pytest_prp.spec.model import Prp

SHAPES = Path(__file__).resolve().parent / "shapes"


@dataclass(frozen=True)
class Shape:
    name: str  # the file name the fixture is copied under
    prp_id: str
    dependencies: tuple[str, ...]
    steps: tuple[str, ...]
    gates: tuple[str, ...]  # executable gates' names
    unverified: int = 0
    # Substrings of the PRP's warnings (frontmatter and body), in order.
    warnings: tuple[str, ...] = field(default=())


SHAPE_TABLE = {
    # ctx-eng-plus: `dependencies: None`, quoted dates, "### Phase N" steps with a rule between
    # them, "## 4. Validation Gates" with "### Gate N" bash blocks and "# Expected:" comments; a
    # "### Phase 3: Validation" inside the implementation section is a step, not gates.
    "ctx-phases-gates": Shape(
        "PRP-61.1.1-task-execution.md",
        "PRP-61.1.1",
        (),
        (
            "Phase 1: Create Task Types (60 minutes)",
            "Phase 2: Detect the Task Context (45 minutes)",
            "Phase 3: Validation (15 min)",
        ),
        ("Gate 1: Files Exist", "Gate 2: Context Detection Works", "Gate 3: Unit Tests Pass"),
    ),
    # ctx-eng-plus: a scalar dependency; validation that is only a checklist.
    "ctx-checklist-gates": Shape(
        "PRP-61.2.1-classification.md",
        "PRP-61.2.1",
        ("PRP-61.1.1",),
        ("Phase 1: Task Context Detection (1h)", "Phase 2: ClassificationTask (3h)"),
        (),
        unverified=3,
    ),
    # ctx-eng-plus: a markdown example holding a bash block inside a step, and a gate whose
    # heredoc holds a python block: nested fences, read as their authors meant.
    "ctx-nested-fences": Shape(
        "PRP-61.2.3-generation.md",
        "PRP-61.2.3",
        ("PRP-61.1.1", "PRP-61.2.1"),
        ("Phase 1: Template", "Phase 2: Wire it"),
        ("Gate 1: Integration Test (Manual)",),
    ),
    # PRPs-agentic-eng: frontmatter without an opening "---", YAML "Task N:" entries as steps,
    # "Level N" bash gates and a final checklist.
    "wirasm-base": Shape(
        "PRP-80-base.md",
        "PRP-80",
        (),
        ("Task 1: CREATE src/models/{domain}_models.py", "Task 2: MODIFY src/main.py"),
        (
            "Level 1: Syntax & Style (Immediate Feedback)",
            "Level 2: Unit Tests (Component Validation)",
        ),
        unverified=2,
    ),
    # PRPs-agentic-eng: `description: |` with unindented text, then markdown before the rule.
    "wirasm-header-prose": Shape(
        "PRP-81-refactor.md",
        "PRP-81",
        (),
        ("Task 1: Models", "Task 2: Services"),
        ("Gate 1",),
    ),
    # ctx-eng-plus PRP-1: "## VALIDATION LOOPS" with "### Level N" bash blocks.
    "ctx-validation-loops": Shape(
        "PRP-1-init.md",
        "PRP-1",
        (),
        ("Phase 1: Create Directory Structure", "Phase 2: Update .gitignore"),
        ("Level 1: Directory Structure", "Level 2: Git Integration"),
    ),
    # ctx-eng-plus: "## 5. Validation Strategy", a prose **Command**, a range of dependencies.
    "ctx-validation-strategy": Shape(
        "PRP-13-hardening.md",
        "PRP-13",
        ("PRP-1", "PRP-2", "PRP-3"),
        ("Step 1: Harden",),
        ("Unit tests",),
        unverified=1,
        warnings=(
            "read as the range PRP-1 to PRP-3 (3 PRPs)",
            "**Command**: 'Manual review of all documentation files' has no `command`",
        ),
    ),
    # ctx-eng-plus PRP-7 / PRP-9: an IMPLEMENTATION PLAN and Implementation Steps.
    "ctx-two-implementations": Shape(
        "PRP-7-tests.md",
        "PRP-7",
        (),
        (
            "Phase 1: Test Infrastructure (1 hour)",
            "Phase 2: Error Parsing Tests (1 hour)",
            "Phase 1: Setup and Research (30 min)",
        ),
        ("Gate 1: Unit Tests Pass",),
        warnings=("2 implementation sections, 'IMPLEMENTATION PLAN' (line 6)",),
    ),
    # ctx-eng-plus PRP-42: validation blocks without a shell language, shell blocks under
    # other headings: no gate, and a warning naming each of them.
    "ctx-unverified-only": Shape(
        "PRP-42-init.md",
        "PRP-42",
        (),
        ("Phase 1: Rewrite the command", "Phase 3: Validation (5 minutes)"),
        (),
        warnings=(
            "no executable gate: not read as gates: "
            "shell block under 'Phase 3: Validation (5 minutes)' (line 13); "
            "unlabelled block in '4. Validation Gates' (line 19); "
            "shell block under 'Validation Results' (line 25).",
        ),
    ),
    # A metadata block under the H1 title.
    "title-then-metadata": Shape(
        "PRP-70.1-under-title.md",
        "PRP-70.1",
        ("PRP-70",),
        ("Step 1: Build",),
        ("Gate 1",),
    ),
    # A generator's `prp_id: TBD`: the file name's id, said clearly.
    "tbd-id": Shape(
        "PRP-90-generated.md",
        "PRP-90",
        (),
        ("Implementation",),
        ("Gate 1",),
        warnings=("prp_id 'TBD' is a placeholder, not an id yet; using PRP-90 from the file name",),
    ),
}


def shape_files() -> list[str]:
    return sorted(p.name[: -len(".md.txt")] for p in SHAPES.glob("*.md.txt"))


def test_every_fixture_has_its_expectation() -> None:
    assert shape_files() == sorted(SHAPE_TABLE)


def load_shape(key: str, dest: Path) -> Prp:
    shape = SHAPE_TABLE[key]
    path = dest / shape.name
    shutil.copyfile(SHAPES / f"{key}.md.txt", path)
    result = load_prp(path)
    assert result.errors == []
    assert result.prp is not None, result.skipped
    return result.prp


@pytest.mark.parametrize("key", sorted(SHAPE_TABLE))
def test_shape_reads_as_its_author_meant(key: str, tmp_path: Path) -> None:
    shape = SHAPE_TABLE[key]
    prp = load_shape(key, tmp_path)
    assert prp.id == shape.prp_id
    assert tuple(prp.dependencies) == shape.dependencies
    assert tuple(s.title for s in body_of(prp).steps) == shape.steps
    assert tuple(g.name for g in body_of(prp).executable_gates) == shape.gates
    assert len(body_of(prp).unverified_gates) == shape.unverified
    warnings = [w.message for w in [*prp.warnings, *body_of(prp).warnings]]
    assert len(warnings) == len(shape.warnings), warnings
    for message, expected in zip(warnings, shape.warnings, strict=True):
        assert expected in message
    for step in body_of(prp).steps:
        assert step.title and step.line >= prp.body_line
    for gate in body_of(prp).gates:
        assert gate.line >= prp.body_line


def test_shape_details(tmp_path: Path) -> None:
    phases = load_shape("ctx-phases-gates", tmp_path)
    assert phases.frontmatter["created"] == "2025-11-04"
    assert phases.estimated_hours == 7.0
    assert [b.language for b in body_of(phases).steps[0].code_blocks] == ["python", "bash"]
    assert not body_of(phases).steps[0].text.rstrip().endswith("---")
    gates = body_of(phases).gates
    assert gates[0].command == "# Verify files created\ntest -f tools/ce/task_types.py"
    assert gates[1].expected == ("In Task: False; Valid: True",)
    assert gates[2].expected == ("All tests pass (30+ tests)",)

    nested = load_shape("ctx-nested-fences", tmp_path)
    assert "```bash" in body_of(nested).steps[0].code_blocks[0].code
    command = body_of(nested).gates[0].command
    assert (
        command is not None and "```python" in command and command.endswith("# Expected: 1 match")
    )

    base = load_shape("wirasm-base", tmp_path)
    assert body_of(base).steps[0].create_paths == ("src/models/{domain}_models.py",)
    assert body_of(base).gates[0].expected == ("Zero errors.",)

    prose = load_shape("wirasm-header-prose", tmp_path)
    assert prose.title == "MCP Refactor - Phase 1: Foundation First"
    assert prose.frontmatter["description"].startswith("Transform the monolithic server")


def test_all_shapes_plan_through_pytest(pytester: pytest.Pytester) -> None:
    prps = pytester.path / "PRPs"
    prps.mkdir()
    for key, shape in SHAPE_TABLE.items():
        shutil.copyfile(SHAPES / f"{key}.md.txt", prps / shape.name)
    result = pytester.runpytest_subprocess("PRPs", "--prp-all", "--prp-plan=json")
    assert result.ret != 0  # dependencies found nowhere: errors, shown with the plan
    plan = json.loads(result.stdout.str())
    by_id = {p["id"]: p for p in plan["prps"]}
    assert set(by_id) == {s.prp_id for s in SHAPE_TABLE.values()}
    for shape in SHAPE_TABLE.values():
        entry = by_id[shape.prp_id]
        assert entry["steps"] == len(shape.steps)
        assert entry["gates"] == {"executable": len(shape.gates), "unverified": shape.unverified}
    missing = "which is not found under the given paths and not completed"
    assert [e["message"] for e in plan["errors"]] == [
        f"PRP-13 depends on PRP-2, {missing}",
        f"PRP-13 depends on PRP-3, {missing}",
        f"PRP-70.1 depends on PRP-70, {missing}",
    ]
    assert any("no executable gate" in w for w in plan["warnings"])
