"""Loading PRP files: finding frontmatter, normalising it, and the messages users see."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.frontmatter import load_prp, split_frontmatter
from pytest_prp.spec.model import LoadResult, Prp

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
BATCH_43 = "ctx-eng-plus-batch-43"
TEMPLATES = "prps-agentic-eng-templates"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A private copy of the real-world PRP files."""
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, name: str, text: str) -> LoadResult:
    return load_prp(write(tmp_path, name, text))


def prp_of(tmp_path: Path, frontmatter: str, name: str = "PRP-9.1.1-x.md") -> Prp:
    """Load a PRP whose frontmatter is ``frontmatter`` (dedented) and expect no errors."""
    text = "---\n" + textwrap.dedent(frontmatter).strip("\n") + "\n---\n\n# Body\n"
    result = load_prp(write(tmp_path, name, text))
    assert result.errors == []
    assert result.prp is not None
    return result.prp


def messages(prp: Prp) -> list[str]:
    """Warnings as "line: message", after checking they all name the PRP's file."""
    assert all(w.path == prp.path for w in prp.warnings)
    return [f"{w.line}: {w.message}" for w in prp.warnings]


# --- the real corpus ---------------------------------------------------------------------------


def test_corpus_batch_43_loads_as_its_authors_meant(corpus: Path) -> None:
    prps = {}
    for path in sorted((corpus / BATCH_43).glob("*.md")):
        result = load_prp(path)
        assert result.errors == [], path.name
        assert result.prp is not None, path.name
        prps[result.prp.id] = result.prp

    assert sorted(prps) == [
        "PRP-43",
        "PRP-43-INITIAL",
        "PRP-43.1.1",
        "PRP-43.2.1",
        "PRP-43.2.2",
        "PRP-43.2.3",
        "PRP-43.3.1",
        "PRP-43.4.1",
    ]
    # `dependencies: None`, scalar `dependencies: PRP-43.1.1`, flow lists, `dependencies: null`.
    assert prps["PRP-43.1.1"].dependencies == []
    assert prps["PRP-43.2.3"].dependencies == ["PRP-43.1.1"]
    assert prps["PRP-43.2.1"].dependencies == ["PRP-43.1.1"]
    assert prps["PRP-43.3.1"].dependencies == ["PRP-43.2.1", "PRP-43.2.2"]
    assert prps["PRP-43.4.1"].dependencies == [
        "PRP-43.1.1",
        "PRP-43.2.1",
        "PRP-43.2.2",
        "PRP-43.3.1",
    ]
    assert prps["PRP-43"].dependencies == []
    # batch_id: 43 where given, else from the dotted id; none for undotted ids.
    assert {p.id: p.batch for p in prps.values()} == {
        "PRP-43": None,
        "PRP-43-INITIAL": None,
        "PRP-43.1.1": "43",
        "PRP-43.2.1": "43",
        "PRP-43.2.2": "43",
        "PRP-43.2.3": "43",
        "PRP-43.3.1": "43",
        "PRP-43.4.1": "43",
    }
    assert [prps[i].declared_stage for i in ("PRP-43.1.1", "PRP-43.2.2", "PRP-43.4.1")] == [1, 2, 4]
    # estimated_hours "35-45" and "1-2" are ranges: their midpoints.
    assert prps["PRP-43-INITIAL"].estimated_hours == 40.0
    assert prps["PRP-43-INITIAL"].estimated_hours_raw == "35-45"
    assert prps["PRP-43"].estimated_hours == 1.5
    assert prps["PRP-43.1.1"].estimated_hours == 6.0
    # title, else feature_name.
    assert prps["PRP-43.2.1"].title.startswith("Classification Task Refactoring")
    assert prps["PRP-43.1.1"].title.startswith("Task Execution Framework")
    assert prps["PRP-43"].title == "Code Cleanup for /generate-prp Tool"
    assert prps["PRP-43.1.1"].status == "pending"
    assert prps["PRP-43.2.2"].complexity == "high"
    # Quoted and unquoted dates do not bother anyone; the mapping is kept as loaded.
    assert prps["PRP-43.2.1"].frontmatter["created"] == "2025-11-08"
    assert str(prps["PRP-43.4.1"].frontmatter["created"]) == "2025-11-08"
    assert all(p.line == 2 for p in prps.values())
    assert prps["PRP-43.1.1"].body_line == 17
    assert all(p.warnings == [] for p in prps.values())


def test_corpus_templates_are_not_prps_and_not_errors(corpus: Path) -> None:
    for path in sorted((corpus / TEMPLATES).glob("*.md")) + [corpus / "README.md"]:
        result = load_prp(path)
        assert (result.prp, result.errors) == (None, []), path.name


def test_corpus_template_frontmatter_without_opening_delimiter(corpus: Path) -> None:
    text = (corpus / TEMPLATES / "prp_base.md").read_text(encoding="utf-8")
    split = split_frontmatter(text)
    assert split is not None
    yaml_text, yaml_line, body_line = split
    assert yaml_text.startswith('name: "Base PRP Template v3')
    assert (yaml_line, body_line) == (1, 5)
    assert text.splitlines()[body_line - 1 :][1] == "## Goal"


def test_corpus_template_with_a_prp_file_name_becomes_a_prp(corpus: Path) -> None:
    """Form (b) frontmatter plus an id in the file name is enough to make a PRP."""
    path = corpus / TEMPLATES / "PRP-7-base.md"
    shutil.copy(corpus / TEMPLATES / "prp_base.md", path)
    result = load_prp(path)
    assert result.errors == []
    assert result.prp is not None
    assert result.prp.id == "PRP-7"
    assert result.prp.title.startswith("Base PRP Template v3")
    assert (result.prp.line, result.prp.body_line) == (1, 5)
    assert [s.title.split(":")[0] for s in body_of(result.prp).steps] == [
        f"Task {n}" for n in range(1, 7)
    ]


def test_load_prp_never_imports_markdown_it(corpus: Path) -> None:
    """Collection must stay cheap: the markdown parser is only loaded for a PRP's body."""
    script = (
        "import sys; from pathlib import Path; from pytest_prp.spec.frontmatter import load_prp\n"
        f"for p in Path({str(corpus)!r}).rglob('*.md'): load_prp(p)\n"
        "print('markdown_it' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


# --- finding the frontmatter -------------------------------------------------------------------


def test_fenced_frontmatter_and_rules_tables_in_the_body(tmp_path: Path) -> None:
    result = load(
        tmp_path,
        "PRP-1.1.1-x.md",
        """
        ---
        prp_id: PRP-1.1.1
        title: One
        ---

        # One

        ---

        | a | b |
        |---|---|
        | 1 | 2 |

        ---
        """,
    )
    assert result.errors == []
    assert result.prp is not None
    assert (result.prp.id, result.prp.title, result.prp.line, result.prp.body_line) == (
        "PRP-1.1.1",
        "One",
        2,
        5,
    )


def test_split_frontmatter_forms() -> None:
    assert split_frontmatter("---\nprp_id: PRP-1\n---\nbody\n") == ("prp_id: PRP-1\n", 2, 4)
    assert split_frontmatter("prp_id: PRP-1\nx: 2\n---\nbody\n") == ("prp_id: PRP-1\nx: 2\n", 1, 4)
    # Form (b) must be a mapping; prose before a rule is not frontmatter.
    assert split_frontmatter("Note: this is prose: really\n\nmore text\n---\n") is None
    assert split_frontmatter("# Title\n\ntext\n---\nmore\n") is None
    assert split_frontmatter("- a\n- b\n---\n") is None
    # A rule on line 1 that never closes is not frontmatter.
    assert split_frontmatter("---\n# Title\n") is None
    assert split_frontmatter("") is None


def test_no_frontmatter_is_not_a_prp_even_with_a_prp_file_name(tmp_path: Path) -> None:
    result = load(tmp_path, "PRP-3.1.1-plan.md", "# Batch plan\n\n---\n\nno frontmatter\n")
    assert (result.prp, result.errors) == (None, [])


def test_frontmatter_without_any_id_is_not_a_prp(tmp_path: Path) -> None:
    result = load(tmp_path, "guide.md", "---\ntitle: A guide\nstatus: draft\n---\n# Guide\n")
    assert (result.prp, result.errors) == (None, [])


def test_id_from_file_name_when_frontmatter_has_none(tmp_path: Path) -> None:
    prp = prp_of(tmp_path, "title: Named by file", name="PRP-12.3.1-named.md")
    assert (prp.id, prp.batch, prp.title) == ("PRP-12.3.1", "12", "Named by file")


def test_empty_frontmatter_with_prp_file_name_is_a_prp(tmp_path: Path) -> None:
    result = load(tmp_path, "PRP-A.md", "---\n---\n# A\n")
    assert result.prp is not None
    assert (result.prp.id, result.prp.title, result.prp.batch) == ("PRP-A", "PRP-A", None)


def test_frontmatter_id_wins_over_file_name(tmp_path: Path) -> None:
    result = load(tmp_path, "PRP-43-INITIAL-quota.md", "---\nprp_id: PRP-43-INITIAL\n---\n")
    assert result.prp is not None
    assert result.prp.id == "PRP-43-INITIAL"


def test_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "PRP-2.md"
    path.write_bytes(b"\xef\xbb\xbf---\r\nprp_id: PRP-2\r\ntitle: Two\r\n---\r\n# Two\r\n")
    result = load_prp(path)
    assert result.prp is not None
    assert (result.prp.id, result.prp.title, result.prp.body_line) == ("PRP-2", "Two", 5)


# --- errors ------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_file_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "PRP-5.md",
        """
        ---
        prp_id: PRP-5
        title: Broken
        dependencies: [PRP-1, PRP-2
        status: pending
        ---
        # Five
        """,
    )
    result = load_prp(path)
    assert result.prp is None
    [problem] = result.errors
    assert problem.path == path
    assert problem.line == 5
    assert problem.message == (
        "invalid YAML in frontmatter: did not find expected ',' or ']' "
        "(while parsing a flow sequence on line 4)"
    )


def test_yaml_error_in_a_file_that_is_not_a_prp_is_still_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.md", "---\ntitle: x\n  bad: indent\n---\n")
    [problem] = load_prp(path).errors
    assert (problem.path, problem.line) == (path, 3)


def test_impossible_date_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "PRP-6.md", "---\nprp_id: PRP-6\ncreated: 2025-13-45\n---\n")
    result = load_prp(path)
    assert result.prp is None
    [problem] = result.errors
    assert "invalid YAML in frontmatter" in problem.message


def test_non_utf8_reports_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "PRP-7.md"
    path.write_bytes(b"---\nprp_id: PRP-7\ntitle: caf\xe9\n---\n")
    result = load_prp(path)
    assert result.prp is None
    [problem] = result.errors
    assert (problem.path, problem.line) == (path, 3)
    assert "UTF-8" in problem.message


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "PRP-8.md"
    [problem] = load_prp(missing).errors
    assert problem.path == missing
    assert "cannot read file" in problem.message
    directory = tmp_path / "PRP-9.md"
    directory.mkdir()
    [problem] = load_prp(directory).errors
    assert "cannot read file" in problem.message


def test_list_frontmatter_with_prp_file_name_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "PRP-10.md", "---\n- prp_id: PRP-10\n---\n# Ten\n")
    result = load_prp(path)
    assert result.prp is None
    [problem] = result.errors
    assert (problem.path, problem.line) == (path, 2)
    assert "mapping" in problem.message


def test_string_frontmatter_without_id_in_name_is_silently_not_a_prp(tmp_path: Path) -> None:
    result = load(tmp_path, "prp_task.md", "---\nIntended for Jira tasks.\n---\n# Task\n")
    assert (result.prp, result.errors) == (None, [])


def test_invalid_prp_id_without_file_name_id_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "feature.md", "---\ntitle: x\nprp_id: not an id\n---\n")
    [problem] = load_prp(path).errors
    assert problem.line == 3
    assert "'not an id'" in problem.message


def test_invalid_prp_id_falls_back_to_file_name_with_a_warning(tmp_path: Path) -> None:
    prp = prp_of(tmp_path, "prp_id: [1, 2]", name="PRP-11.2-x.md")
    assert prp.id == "PRP-11.2"
    assert messages(prp) == ["2: prp_id [1, 2] is not a PRP id; using PRP-11.2 from the file name"]


def test_numeric_prp_ids(tmp_path: Path) -> None:
    assert prp_of(tmp_path, "prp_id: 31").id == "PRP-31"
    assert prp_of(tmp_path, "prp_id: 34.2.2").id == "PRP-34.2.2"
    assert prp_of(tmp_path, "prp_id: 34.2").id == "PRP-34.2"


# --- dependencies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\n  - PRP-1.1.1\n  - PRP-1.2.1", ["PRP-1.1.1", "PRP-1.2.1"]),
        ("[PRP-1.1.1, PRP-1.2.1]", ["PRP-1.1.1", "PRP-1.2.1"]),
        ("PRP-34.1.1", ["PRP-34.1.1"]),
        ("34.1.1, 34.2.1", ["PRP-34.1.1", "PRP-34.2.1"]),
        ("[34.1.1, 31]", ["PRP-34.1.1", "PRP-31"]),
        ("None", []),
        ("none", []),
        ("null", []),
        ("", []),
        ("[]", []),
        ("[None]", []),
        ('"PRP-B (needs the usage guide)"', ["PRP-B"]),
        ('["PRP-B (needs a, b)", "34.1.1 - soft"]', ["PRP-B", "PRP-34.1.1"]),
        ("[PRP-1.1.1, PRP-1.1.1, 1.1.1]", ["PRP-1.1.1"]),
        ("\n  - PRP-2.1.1: needs the schema", ["PRP-2.1.1"]),
        ("[PRP-9.1.1]", ["PRP-9.1.1"]),  # a self-dependency is kept: the planner reports it
    ],
)
def test_dependency_forms(tmp_path: Path, value: str, expected: list[str]) -> None:
    prp = prp_of(tmp_path, f"prp_id: PRP-9.1.1\ndependencies: {value}")
    assert prp.dependencies == expected
    assert prp.warnings == []


def test_depends_on_is_accepted(tmp_path: Path) -> None:
    assert prp_of(tmp_path, "depends_on: [PRP-1]").dependencies == ["PRP-1"]


def test_dependency_in_prose_is_read_with_a_warning(tmp_path: Path) -> None:
    prp = prp_of(
        tmp_path,
        """
        prp_id: PRP-9.1.1
        title: x
        dependencies:
          - PRP-1.1.1
          - Soft dependency on PRP-32.1.1 (report helps)
        """,
    )
    assert prp.dependencies == ["PRP-1.1.1", "PRP-32.1.1"]
    assert messages(prp) == [
        "4: PRP-9.1.1: dependency 'Soft dependency on PRP-32.1.1 (report helps)' read as PRP-32.1.1"
    ]


def test_dependency_naming_no_prp_is_ignored_with_a_warning(tmp_path: Path) -> None:
    prp = prp_of(
        tmp_path,
        """
        prp_id: PRP-9.1.1
        dependencies: [src/auth.py, requests, PRP-2.1.1, 2025-01-01]
        """,
    )
    assert prp.dependencies == ["PRP-2.1.1"]
    assert messages(prp) == [
        "3: PRP-9.1.1: dependency 'src/auth.py' names no PRP id; ignored",
        "3: PRP-9.1.1: dependency 'requests' names no PRP id; ignored",
        "3: PRP-9.1.1: dependency datetime.date(2025, 1, 1) is not a PRP id; ignored",
    ]


# --- other fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("batch_id: 43", "43"),
        ("batch: 43", "43"),
        ("batch: auth-rework", "auth-rework"),
        ("batch_id: 7.0", "7"),
        ("batch_id: 43\nbatch: 12", "43"),
        ("title: no batch given", "9"),
    ],
)
def test_batch(tmp_path: Path, lines: str, expected: str) -> None:
    assert prp_of(tmp_path, lines).batch == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2), ("'2'", 2), ("stage-2-parallel", 2), ("Stage 3 (after auth)", 3), ("2.0", 2)],
)
def test_declared_stage(tmp_path: Path, value: str, expected: int) -> None:
    prp = prp_of(tmp_path, f"stage: {value}")
    assert prp.declared_stage == expected
    assert prp.warnings == []


def test_unparseable_stage_keeps_raw_value_and_warns(tmp_path: Path) -> None:
    prp = prp_of(tmp_path, "title: x\nstage: final")
    assert (prp.declared_stage, prp.declared_stage_raw) == (None, "final")
    assert messages(prp) == ["3: stage 'final' is not a stage number; ignored"]


def test_title_fallbacks(tmp_path: Path) -> None:
    assert prp_of(tmp_path, "title: T\nfeature_name: F\nname: N").title == "T"
    assert prp_of(tmp_path, "feature_name: F\nname: N").title == "F"
    assert prp_of(tmp_path, "name: N").title == "N"
    assert prp_of(tmp_path, "title: [a, b]\nname: N").title == "N"
    assert prp_of(tmp_path, "status: x").title == "PRP-9.1.1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("6", 6.0),
        ("2.5", 2.5),
        ("0.33-0.42", 0.375),
        ("35-45", 40.0),
        ("6h", 6.0),
        ("6 hours", 6.0),
        ("'3 - 5 h'", 4.0),
        ("TBD", None),
        ("[1, 2]", None),
        (".nan", None),
        ("-2", None),
    ],
)
def test_estimated_hours(tmp_path: Path, value: str, expected: float | None) -> None:
    prp = prp_of(tmp_path, f"estimated_hours: {value}")
    assert (
        prp.estimated_hours == pytest.approx(expected) if expected else prp.estimated_hours is None
    )
    assert prp.estimated_hours_raw is not None
    assert bool(prp.warnings) == (expected is None)


def test_files_modified_list_or_comma_string(tmp_path: Path) -> None:
    assert prp_of(tmp_path, "files_modified: [a.py, b/c.py]").files_modified == ["a.py", "b/c.py"]
    assert prp_of(tmp_path, "files_modified: a.py, b/c.py").files_modified == ["a.py", "b/c.py"]
    assert prp_of(tmp_path, "title: x").files_modified == []


def test_git_commit_that_yaml_reads_as_a_number_keeps_its_digits(tmp_path: Path) -> None:
    assert prp_of(tmp_path, "git_commit: 0123456").git_commit == "0123456"
    assert prp_of(tmp_path, "git_commit: 1234567").git_commit == "1234567"
    assert prp_of(tmp_path, "git_commit: 'abc1234'").git_commit == "abc1234"


def test_scalar_fields_and_declared_completion(tmp_path: Path) -> None:
    prp = prp_of(tmp_path, "status: Completed\ncomplexity: 3\nmodel: sonnet")
    assert (prp.status, prp.complexity, prp.model) == ("Completed", "3", "sonnet")
    assert prp.declared_complete


@pytest.mark.parametrize(
    "junk",
    ["{a: {b: [1, 2]}}", "[[1], {x: y}]", "2025-11-08", "2025-11-08T00:00:00Z", "true", "1.5", "~"],
)
def test_odd_values_in_any_field_never_crash(tmp_path: Path, junk: str) -> None:
    keys = [
        "title",
        "batch_id",
        "stage",
        "status",
        "complexity",
        "model",
        "git_commit",
        "estimated_hours",
        "files_modified",
        "dependencies",
    ]
    body = "prp_id: PRP-9.1.1\n" + "".join(f"{key}: {junk}\n" for key in keys)
    prp = prp_of(tmp_path, body)
    assert prp.id == "PRP-9.1.1"
    assert isinstance(prp.title, str)
    assert prp.status is None or isinstance(prp.status, str)
    assert all(isinstance(dep, str) for dep in prp.dependencies)
    assert all(w.line is not None and 2 <= w.line <= 12 for w in prp.warnings)


BOMB = (
    "---\nprp_id: PRP-9.1.1\n"
    'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    + "dependencies: *i\n---\n# x\n"
)


def test_yaml_alias_bomb_is_refused_quickly_naming_the_file(tmp_path: Path) -> None:
    assert len(BOMB) < 700  # expands to 9 * 8**8 (150 million) strings
    result = load(tmp_path, "PRP-9.1.1.md", BOMB)
    assert result.prp is None
    [error] = result.errors
    assert error.path is not None and error.path.name == "PRP-9.1.1.md" and error.line == 2
    assert error.message.startswith("frontmatter expands to more than 10,000 values")
    assert "aliases" in error.message


def test_recursive_alias_is_a_clear_error(tmp_path: Path) -> None:
    result = load(tmp_path, "PRP-9.1.2.md", "---\nprp_id: PRP-9.1.2\nx: &a [1, *a]\n---\n")
    assert result.prp is None
    [error] = result.errors
    assert error.path is not None and error.path.name == "PRP-9.1.2.md"
    assert "Traceback" not in error.message


def test_moderate_aliases_still_load(tmp_path: Path) -> None:
    prp = prp_of(tmp_path, "prp_id: PRP-9.1.3\nbase: &b [PRP-1, PRP-2]\ndependencies: *b\n")
    assert prp.dependencies == ["PRP-1", "PRP-2"]


def test_duplicate_keys_warn_naming_file_and_line(tmp_path: Path) -> None:
    text = """
        prp_id: PRP-9.2.1
        dependencies: [PRP-9.1.1]
        title: First
        dependencies: []
        extra:
          a: 1
          a: 2
        """
    prp = prp_of(tmp_path, text)
    assert prp.dependencies == []  # YAML's rule, unchanged: the last one wins
    assert messages(prp) == [
        "5: duplicate key 'dependencies' (first on line 3); YAML keeps the last value",
        "8: duplicate key 'a' (first on line 7); YAML keeps the last value",
    ]


# --- shapes seen in public PRP repositories (small excerpts written for these tests) -----------


def test_wirasm_header_with_unindented_description_and_markdown_before_the_rule(
    tmp_path: Path,
) -> None:
    text = """
        name: "Agent PRP - Context-Rich Implementation"
        description: |
        Build an agent that writes PRPs,
        reusing the codebase's patterns.

        ## Goal

        Build it.

        ## Validation Loop

        ```bash
        pytest -q
        ```

        ---

        ## Notes
        """
    result = load(tmp_path, "PRP-5-agent.md", text)
    assert result.errors == []
    prp = result.prp
    assert prp is not None and prp.id == "PRP-5"
    assert prp.title == "Agent PRP - Context-Rich Implementation"
    assert prp.frontmatter["description"].startswith("Build an agent that writes PRPs,")
    assert prp.body_line == 6
    assert [g.command for g in body_of(prp).gates] == ["pytest -q"]


def test_wirasm_header_block_text_then_rule(tmp_path: Path) -> None:
    text = """
        name: "React POC Template"
        description: |
        Optimized for POCs.
        Frontend-only with mocked data.

        ---

        ## Goal
        """
    prp = load(tmp_path, "PRP-6.md", text).prp
    assert prp is not None and prp.frontmatter["description"] == (
        "Optimized for POCs.\nFrontend-only with mocked data.\n"
    )
    assert prp.body_line == 7


def test_wirasm_header_with_empty_description(tmp_path: Path) -> None:
    text = 'name: "Planning PRP"\ndescription: |\n\n## Purpose\nPlan.\n\n---\n\n## Goal\n'
    prp = load(tmp_path, "PRP-7.md", text).prp
    assert prp is not None and (prp.title, prp.body_line) == ("Planning PRP", 4)


def test_metadata_block_under_the_title_is_the_prps_frontmatter(tmp_path: Path) -> None:
    text = """
        # PRP-12: Feature

        ---
        prp_id: PRP-12.1
        dependencies: [PRP-11]
        ---

        ## Validation Gates

        ```bash
        make test
        ```
        """
    prp = load(tmp_path, "feature-12.md", text).prp
    assert prp is not None
    assert (prp.id, prp.dependencies, prp.line, prp.body_line) == ("PRP-12.1", ["PRP-11"], 4, 7)
    assert [g.line for g in body_of(prp).gates] == [10]


def test_yaml_fence_under_the_title_is_the_prps_frontmatter(tmp_path: Path) -> None:
    text = "# Title\n\n```yaml\nprp_id: PRP-13\ntitle: Thirteen\n```\n\n## Steps\n"
    prp = load(tmp_path, "PRP-13-x.md", text).prp
    assert prp is not None and (prp.id, prp.title, prp.body_line) == ("PRP-13", "Thirteen", 7)


def test_a_block_under_the_title_without_prp_id_is_not_frontmatter(tmp_path: Path) -> None:
    result = load(tmp_path, "PRP-14.md", "# Title\n\n---\n\n| a |\n|---|\n")
    assert result.prp is None and result.errors == []
    assert result.skipped is not None and result.skipped.startswith("no frontmatter")


def test_broken_yaml_under_the_title_naming_a_prp_id_is_an_error(tmp_path: Path) -> None:
    result = load(tmp_path, "PRP-15.md", "# Title\n\n---\nprp_id: [PRP-15\n---\n")
    assert result.prp is None
    [error] = result.errors
    assert error.line is not None and "invalid YAML" in error.message


@pytest.mark.parametrize("placeholder", ["TBD", "PRP-X.Y", "PRP-XXX", "TODO", "'<id>'"])
def test_placeholder_prp_id_says_so(tmp_path: Path, placeholder: str) -> None:
    prp = prp_of(tmp_path, f"prp_id: {placeholder}", name="PRP-21.1-x.md")
    assert prp.id == "PRP-21.1"
    [message] = messages(prp)
    assert message.endswith("is a placeholder, not an id yet; using PRP-21.1 from the file name")
    result = load(tmp_path, "feature.md", f"---\nprp_id: {placeholder}\n---\n")
    [error] = result.errors
    assert error.line == 2 and "is a placeholder, not an id yet (write it like PRP-12" in str(error)


def test_dependency_range_is_expanded_with_a_warning(tmp_path: Path) -> None:
    prp = prp_of(
        tmp_path,
        """
        prp_id: PRP-28
        dependencies:
          - "PRP-1 through PRP-4: All preceding PRPs (documentation only)"
          - PRP-7.1 to PRP-7.3
          - PRP-28
        """,
    )
    assert prp.dependencies == [
        "PRP-1", "PRP-2", "PRP-3", "PRP-4", "PRP-7.1", "PRP-7.2", "PRP-7.3", "PRP-28"
    ]  # fmt: skip
    assert messages(prp) == [
        "3: PRP-28: dependency 'PRP-1 through PRP-4: All preceding PRPs (documentation only)' "
        "read as the range PRP-1 to PRP-4 (4 PRPs)",
        "3: PRP-28: dependency 'PRP-7.1 to PRP-7.3' read as the range PRP-7.1 to PRP-7.3 (3 PRPs)",
    ]


def test_dependency_range_that_cannot_be_expanded_is_ignored_with_a_warning(
    tmp_path: Path,
) -> None:
    prp = prp_of(tmp_path, "prp_id: PRP-9\ndependencies: ['PRP-A through PRP-C', PRP-2]")
    assert prp.dependencies == ["PRP-2"]
    [message] = messages(prp)
    assert "names a range (PRP-A to PRP-C) that cannot be expanded; ignored" in message


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("PRP-1.md", "# Just a title\n\nprose\n", "no frontmatter"),
        ("PRP-2.md", "Note: prose: more\n\ntext\n---\n", "the lines before '---' are not YAML"),
        ("notes.md", "---\ntitle: x\n---\n", "no prp_id in the frontmatter and no PRP id"),
        ("tmpl.md", "---\n- a\n- b\n---\n", "the frontmatter is a YAML list, not a mapping"),
    ],
)
def test_files_that_are_not_prps_say_why(tmp_path: Path, name: str, text: str, reason: str) -> None:
    result = load(tmp_path, name, text)
    assert result.prp is None and result.errors == []
    assert result.skipped is not None and result.skipped.startswith(reason)


def test_fenced_frontmatter_running_into_markdown_is_read_with_a_warning(tmp_path: Path) -> None:
    text = """
        ---
        name: "Agent PRP"
        description: |
        Build an agent.

        ## Goal

        Build it.
        ---
        """
    prp = load(tmp_path, "PRP-5-agent.md", text).prp
    assert prp is not None and prp.title == "Agent PRP" and prp.body_line == 6
    assert messages(prp) == [
        "6: the frontmatter runs into the markdown: read up to this heading; "
        "close it with '---' before the markdown"
    ]


def test_fenced_frontmatter_with_a_stray_prose_line_stays_a_yaml_error(tmp_path: Path) -> None:
    text = "---\nprp_id: PRP-1\nSome prose without a colon\ntitle: x\n---\n# Body\n"
    result = load(tmp_path, "PRP-1.md", text)
    assert result.prp is None
    [error] = result.errors
    assert "invalid YAML" in error.message
