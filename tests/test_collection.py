"""Collection, selection, markers and errors, through real pytest runs (pytester)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import copy_corpus, write_prp


def diamond(root: Path) -> None:
    write_prp(root, "PRP-47.1.1", name="PRP-47.1.1-base.md", deps=None, gates=["true"])
    write_prp(root, "PRP-47.2.1", deps=["PRP-47.1.1"], gates=["true"])
    write_prp(root, "PRP-47.2.2", deps="PRP-47.1.1", gates=["true"])
    write_prp(root, "PRP-47.10.1", deps=["PRP-47.2.1", "PRP-47.2.2"], gates=["true"])
    write_prp(root, "PRP-47.9.1", deps=["PRP-47.2.1"], gates=["true"])


def test_plain_run_collects_no_prp_and_says_so(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    pytester.makepyfile(test_ordinary="def test_one():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["prp: 5 PRP files seen, not run; run them with --prp-batch N*"])


def test_a_run_of_ordinary_tests_loads_none_of_the_prp_code(pytester: pytest.Pytester) -> None:
    """PRP files seen but not run, ordinary tests run: none of the collection, planning,
    execution or reporting code is imported (it is imported where PRPs are in play)."""
    diamond(pytester.path)
    pytester.makepyfile(test_ordinary="def test_one():\n    pass\n")
    pytester.makeconftest(
        """
        import sys
        from pathlib import Path

        def pytest_sessionfinish(session):
            Path("loaded.txt").write_text("\\n".join(sorted(sys.modules)))
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    loaded = set((pytester.path / "loaded.txt").read_text().split())
    assert {"pytest_prp.plugin", "pytest_prp.keys", "pytest_prp.plan.settings"} <= loaded
    # By module name, whatever the layer's folder (names are unique across the folders).
    names = {name.rsplit(".", 1)[-1] for name in loaded if name.startswith("pytest_prp.")}
    later = ["frontmatter", "body", "body_cache", "collect", "plan_view", "plan_output"]
    later += ["runner", "execution", "executors", "gates", "hook_context", "defaults"]
    later += ["results", "heartbeat", "item_reports", "report_plugin", "scheduler", "prp_info"]
    later += ["record", "processes", "stream_json", "timestamps", "remote", "git_command"]
    assert names & set(later) == set()
    assert loaded & {"yaml", "markdown_it"} == set()


def test_batch_collects_one_item_per_prp_in_plan_order(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    (pytester.path / "PRPs" / "PRP-47-BATCH-PLAN.md").write_text("# plan\n\n---\n\n| a |\n|---|\n")
    result = pytester.runpytest("--prp-batch", "47", "--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "PRPs/PRP-47.1.1-base.md::PRP-47.1.1",
            "PRPs/PRP-47.2.1.md::PRP-47.2.1",
            "PRPs/PRP-47.2.2.md::PRP-47.2.2",
            "PRPs/PRP-47.9.1.md::PRP-47.9.1",
            "PRPs/PRP-47.10.1.md::PRP-47.10.1",
            "5 tests collected*",
        ]
    )


def test_k_selects_by_id_prefix(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    result = pytester.runpytest("--prp-batch", "47", "--collect-only", "-q", "-k", "PRP-47.2")
    result.stdout.fnmatch_lines(["*::PRP-47.2.1", "*::PRP-47.2.2", "2/5 tests collected*"])


def test_stage_and_batch_markers_select(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    result = pytester.runpytest(
        "--prp-all",
        "--collect-only",
        "-q",
        "-m",
        "prp_stage_3 and prp_batch_47",
        "--strict-markers",
    )
    result.stdout.fnmatch_lines(["*::PRP-47.9.1", "*::PRP-47.10.1", "2/5 tests collected*"])


def test_stage_start_and_id_options(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    stage = pytester.runpytest("--prp-batch", "47", "--prp-stage", "2", "--co", "-q")
    stage.stdout.fnmatch_lines(["*::PRP-47.2.1", "*::PRP-47.2.2", "2/5 tests collected*"])
    start = pytester.runpytest("--prp-batch", "47", "--prp-start", "47.2.2", "--co", "-q")
    start.stdout.fnmatch_lines(["*::PRP-47.2.2", "*::PRP-47.9.1", "*::PRP-47.10.1", "3/5*"])
    ids = pytester.runpytest("--prp-id", "47.9.1,PRP-47.1.1", "--co", "-q")
    ids.stdout.fnmatch_lines(["*::PRP-47.1.1", "*::PRP-47.9.1", "2/5 tests collected*"])


def test_ini_enabled_and_file_pattern(pytester: pytest.Pytester) -> None:
    prps = pytester.path / "specs"
    prps.mkdir()
    (prps / "user-auth.md").write_text("---\nprp_id: PRP-5.1.1\ndependencies: []\n---\n# x\n")
    (prps / "notes.md").write_text("# just notes\n\n---\n\nmore\n")
    pytester.makeini("[pytest]\nprp_enabled = true\nprp_file_pattern = *.md\n")
    result = pytester.runpytest("specs", "--co", "-q")
    result.stdout.fnmatch_lines(["specs/user-auth.md::PRP-5.1.1", "1 test collected*"])


def test_plan_json_is_the_whole_stdout(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    result = pytester.runpytest_subprocess("--prp-batch", "47", "--prp-plan=json")
    assert result.ret == 0
    plan = json.loads(result.stdout.str())
    assert plan["stages"] == {
        "1": ["PRP-47.1.1"],
        "2": ["PRP-47.2.1", "PRP-47.2.2"],
        "3": ["PRP-47.9.1", "PRP-47.10.1"],
    }
    first = plan["prps"][0]
    assert first["id"] == "PRP-47.1.1" and first["batch"] == "47"
    assert first["gates"] == {"executable": 1, "unverified": 0}
    assert plan["critical_path"][0] == "PRP-47.1.1" and len(plan["critical_path"]) == 3


def test_plan_text_and_mermaid(pytester: pytest.Pytester) -> None:
    diamond(pytester.path)
    text = pytester.runpytest("--prp-batch", "47", "--prp-plan")
    assert text.ret == 0
    text.stdout.fnmatch_lines(["*Stage 1*", "*PRP-47.1.1*", "*Stage 3*", "*Critical path*"])
    assert "passed" not in text.stdout.str()
    mermaid = pytester.runpytest_subprocess("--prp-batch", "47", "--prp-plan=mermaid")
    assert mermaid.ret == 0
    out = mermaid.stdout.str()
    assert out.lstrip().startswith("flowchart") and "subgraph" in out


def test_plan_problems_are_collection_errors_without_traceback(
    pytester: pytest.Pytester,
) -> None:
    write_prp(pytester.path, "PRP-1.1.1", deps=["PRP-1.2.1"])
    write_prp(pytester.path, "PRP-1.2.1", deps=["PRP-1.1.1"])
    write_prp(pytester.path, "PRP-1.3.1", deps=["PRP-9.9.9"])
    write_prp(pytester.path, "PRP-1.4.1", name="PRP-1.4.1-copy.md")
    write_prp(pytester.path, "PRP-1.4.1")
    write_prp(pytester.path, "PRP-1.5.1", deps=["PRP-1.5.1"])
    (pytester.path / "PRPs" / "PRP-1.6.1.md").write_text("---\nprp_id: [unclosed\n---\n# x\n")
    result = pytester.runpytest("--prp-batch", "1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out
    assert (
        "PRP-1.1.1 -> PRP-1.2.1 -> PRP-1.1.1" in out or "PRP-1.2.1 -> PRP-1.1.1 -> PRP-1.2.1" in out
    )
    assert "PRP-9.9.9" in out
    assert "PRP-1.4.1-copy.md" in out and "PRP-1.4.1.md" in out
    result.stdout.fnmatch_lines(["PRPs/PRP-1.6.1.md:[23]: invalid YAML*"])
    result.stdout.fnmatch_lines(["*PRP-1.5.1*"])
    assert "passed" not in out


def test_non_utf8_file_is_a_clear_error(pytester: pytest.Pytester) -> None:
    prps = pytester.path / "PRPs"
    prps.mkdir()
    (prps / "PRP-2.1.1.md").write_bytes(b"---\nprp_id: PRP-2.1.1\ntitle: caf\xe9\n---\n")
    result = pytester.runpytest("--prp-all")
    assert result.ret != 0
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*PRP-2.1.1.md:3*UTF-8*"])


def test_real_corpus_batch_43_plans(pytester: pytest.Pytester, corpus: Path) -> None:
    copy_corpus(corpus, "ctx-eng-plus-batch-43", pytester.path)
    result = pytester.runpytest_subprocess("PRPs", "--prp-batch", "43", "--prp-plan=json")
    assert result.ret == 0, result.stderr.str()
    plan = json.loads(result.stdout.str())
    assert plan["stages"] == {
        "1": ["PRP-43.1.1"],
        "2": ["PRP-43.2.1", "PRP-43.2.2", "PRP-43.2.3"],
        "3": ["PRP-43.3.1"],
        "4": ["PRP-43.4.1"],
    }
    by_id = {p["id"]: p for p in plan["prps"]}
    assert by_id["PRP-43.2.1"]["steps"] >= 4
    assert by_id["PRP-43.1.1"]["gates"]["executable"] >= 1


def test_example_batch_plans(pytester: pytest.Pytester) -> None:
    from conftest import EXAMPLE_PRPS

    for path in EXAMPLE_PRPS.glob("*.md"):
        (pytester.path / "PRPs").mkdir(exist_ok=True)
        (pytester.path / "PRPs" / path.name).write_text(path.read_text())
    result = pytester.runpytest_subprocess("PRPs", "--prp-batch", "7", "--prp-plan=json")
    plan = json.loads(result.stdout.str())
    assert plan["stages"] == {
        "1": ["PRP-7.1.1"],
        "2": ["PRP-7.2.1", "PRP-7.2.2"],
        "3": ["PRP-7.3.1"],
    }
    assert plan["warnings"] == []


def plan_with_errors(root: Path) -> None:
    """One PRP with a warning, one whose YAML is broken, one with a missing dependency."""
    write_prp(root, "PRP-8.1.1", deps=None, gates=["true"], extra="stage: two")
    write_prp(root, "PRP-8.2.1", deps=["PRP-9.9.9"], gates=["true"])
    (root / "PRPs" / "PRP-8.3.1.md").write_text("---\nprp_id: [unclosed\n---\n# x\n")


def test_plan_json_with_errors_is_still_a_document(pytester: pytest.Pytester) -> None:
    plan_with_errors(pytester.path)
    result = pytester.runpytest_subprocess("PRPs", "--prp-batch", "8", "--prp-plan=json")
    assert result.ret != 0
    plan = json.loads(result.stdout.str())
    assert [p["id"] for p in plan["prps"]] == ["PRP-8.1.1", "PRP-8.2.1"]
    errors = {(e["file"], e["line"]): e["message"] for e in plan["errors"]}
    assert errors[("PRPs/PRP-8.3.1.md", 3)].startswith("invalid YAML")
    assert "PRP-9.9.9" in errors[("PRPs/PRP-8.2.1.md", 4)]  # its dependencies line
    assert any("stage 'two'" in w for w in plan["warnings"])
    err = result.stderr.str()
    assert "PRPs/PRP-8.3.1.md:3: invalid YAML" in err and "PRP-9.9.9" in err
    assert "Traceback" not in err


def test_plan_mermaid_with_errors_prints_the_chart_and_the_errors(
    pytester: pytest.Pytester,
) -> None:
    plan_with_errors(pytester.path)
    result = pytester.runpytest_subprocess("PRPs", "--prp-batch", "8", "--prp-plan=mermaid")
    assert result.ret != 0
    assert result.stdout.str().startswith("flowchart TD")
    assert "PRP_8_1_1" in result.stdout.str()
    result.stderr.fnmatch_lines(["prp: error: PRPs/PRP-8.3.1.md:3: invalid YAML*", "*PRP-9.9.9*"])


def test_plan_text_shows_warnings_and_errors_together(pytester: pytest.Pytester) -> None:
    plan_with_errors(pytester.path)
    result = pytester.runpytest("PRPs", "--prp-batch", "8", "--prp-plan")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "PRP plan: 2 PRPs*",
            "Warnings:",
            "*stage 'two' is not a stage number*",
            "Errors (nothing will run):",
            "*PRP-8.3.1.md:3: invalid YAML*",
            "*PRP-9.9.9*",
        ]
    )


def test_zero_prps_found_says_what_was_seen_and_why_it_was_not_taken(
    pytester: pytest.Pytester,
) -> None:
    prps = pytester.path / "PRPs"
    prps.mkdir()
    (prps / "PRP-1-notes.md").write_text("# Notes\n\nNo metadata here.\n")
    (prps / "PRP-2-draft.md").write_text("Status: draft: maybe\n\nprose\n\n---\n")
    (prps / "PRP-3-title.md").write_text("# PRP-3\n\n---\n\n| table |\n|---|\n")
    hidden = pytester.path / ".ce" / "PRPs"
    hidden.mkdir(parents=True)
    write_prp(hidden.parent, "PRP-7.1.1", gates=["true"])
    write_prp(hidden.parent, "PRP-7.2.1", gates=["true"])
    result = pytester.runpytest("--prp-batch", "7")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(
        [
            "prp: no PRP found",
            "prp: PRPs/PRP-1-notes.md: not a PRP: no frontmatter*",
            "prp: PRPs/PRP-2-draft.md: not a PRP: the lines before '---' are not YAML*",
            "prp: PRPs/PRP-3-title.md: not a PRP: no frontmatter*",
            "prp: .ce/PRPs: 2 files named PRP-[*].md not collected: pytest does not enter "
            "directories whose name starts with '.'; name it: pytest .ce/PRPs ...",
            "prp: --prp-batch 7: no PRP of that batch under the given paths",
        ]
    )
    named = pytester.runpytest(".ce/PRPs", "--prp-batch", "7", "--co", "-q")
    named.stdout.fnmatch_lines(["*PRP-7.1.1", "*PRP-7.2.1", "2 tests collected*"])


def test_zero_prps_with_a_json_plan_explains_on_stderr(pytester: pytest.Pytester) -> None:
    (pytester.path / "PRPs").mkdir()
    (pytester.path / "PRPs" / "PRP-1.md").write_text("# Notes\n")
    result = pytester.runpytest_subprocess("PRPs", "--prp-plan=json")
    plan = json.loads(result.stdout.str())
    assert plan["prps"] == []
    result.stderr.fnmatch_lines(["prp: no PRP found", "prp: PRPs/PRP-1.md: not a PRP: *"])


def test_zero_prps_under_prp_enabled_with_ordinary_tests_stays_quiet(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nprp_enabled = true\n")
    pytester.makepyfile(test_ordinary="def test_one():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "prp:" not in result.stdout.str()


def test_plan_keeps_body_summaries_in_pytests_cache(pytester: pytest.Pytester) -> None:
    path = write_prp(pytester.path, "PRP-3.1.1", deps=None, gates=["true", "false"])
    first = pytester.runpytest_subprocess("PRPs", "--prp-all", "--prp-plan=json")
    assert json.loads(first.stdout.str())["prps"][0]["gates"]["executable"] == 2
    cache_file = pytester.path / ".pytest_cache" / "v" / "prp" / "body-summaries"
    entries = json.loads(cache_file.read_text())
    [(key, entry)] = entries.items()
    assert entry[:3] == [0, 2, 0]  # no step (an empty section), 2 gates, none unverified

    # The second plan reads the cache: a (forged) entry under the same key is what it shows.
    cache_file.write_text(json.dumps({key: [7, 5, 3, [[4, "from the cache"]]]}))
    second = pytester.runpytest_subprocess("PRPs", "--prp-all", "--prp-plan=json")
    plan = json.loads(second.stdout.str())
    assert plan["prps"][0]["steps"] == 7 and plan["prps"][0]["gates"]["unverified"] == 3
    assert "PRPs/PRP-3.1.1.md:4: from the cache" in plan["warnings"]

    # An edited file has a new key: parsed again, never a stale summary.
    path.write_text(path.read_text() + "\n- [ ] reviewed\n")
    third = pytester.runpytest_subprocess("PRPs", "--prp-all", "--prp-plan=json")
    assert json.loads(third.stdout.str())["prps"][0]["gates"] == {
        "executable": 2,
        "unverified": 1,
    }

    # A cache that is not what it should be is ignored.
    cache_file.write_text(json.dumps({"x": "garbage"}))
    fourth = pytester.runpytest_subprocess("PRPs", "--prp-all", "--prp-plan=json")
    assert json.loads(fourth.stdout.str())["prps"][0]["gates"]["unverified"] == 1
