"""build_plan: selection, stages, order, validation, critical path and conflicts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pytest_prp.plan.planning import HOURS, PRPS, Conflict, Plan, Selection, build_plan
from pytest_prp.spec.model import Problem, Prp

ALL = Selection(all=True)


def prp(
    prp_id: str,
    *deps: str,
    batch: str | None = "47",
    stage: int | None = None,
    hours: float | None = None,
    files: Iterable[str] = (),
    path: str | None = None,
    line: int = 2,
    warnings: Iterable[Problem] = (),
) -> Prp:
    return Prp(
        id=prp_id,
        path=Path(path or f"PRPs/{prp_id}.md"),
        line=line,
        title=f"Title of {prp_id}",
        batch=batch,
        dependencies=list(deps),
        declared_stage=stage,
        estimated_hours=hours,
        files_modified=list(files),
        warnings=list(warnings),
    )


def ids(plan: Plan) -> list[str]:
    return [p.id for p in plan.prps]


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


# --- stages and order --------------------------------------------------------------------------


def test_chain_gets_one_stage_per_link() -> None:
    plan = build_plan([prp("PRP-47.3.1", "PRP-47.2.1"), prp("PRP-47.2.1", "PRP-47.1.1"),
                       prp("PRP-47.1.1")], ALL)  # fmt: skip
    assert plan.errors == []
    assert ids(plan) == ["PRP-47.1.1", "PRP-47.2.1", "PRP-47.3.1"]
    assert plan.stages == {"PRP-47.1.1": 1, "PRP-47.2.1": 2, "PRP-47.3.1": 3}


def test_diamond_runs_both_branches_in_one_stage() -> None:
    known = [
        prp("PRP-47.4.1", "PRP-47.2.2", "PRP-47.2.1"),
        prp("PRP-47.2.2", "PRP-47.1.1"),
        prp("PRP-47.2.1", "PRP-47.1.1"),
        prp("PRP-47.1.1"),
    ]
    plan = build_plan(known, ALL)
    assert plan.errors == []
    assert ids(plan) == ["PRP-47.1.1", "PRP-47.2.1", "PRP-47.2.2", "PRP-47.4.1"]
    assert plan.stages == {"PRP-47.1.1": 1, "PRP-47.2.1": 2, "PRP-47.2.2": 2, "PRP-47.4.1": 3}
    assert plan.stage_groups() == {1: [known[3]], 2: [known[2], known[1]], 3: [known[0]]}


def test_stage_is_one_more_than_the_latest_dependency() -> None:
    # PRP-C depends on a stage-1 and a stage-2 PRP: it must wait for the later one.
    known = [prp("PRP-A"), prp("PRP-B", "PRP-A"), prp("PRP-C", "PRP-A", "PRP-B")]
    assert build_plan(known, ALL).stages == {"PRP-A": 1, "PRP-B": 2, "PRP-C": 3}


def test_ids_sort_naturally_within_a_stage() -> None:
    known = [prp("PRP-47.10.1"), prp("PRP-47.9.1"), prp("PRP-47.2.1"), prp("PRP-47.1.10")]
    plan = build_plan(known, ALL)
    assert ids(plan) == ["PRP-47.1.10", "PRP-47.2.1", "PRP-47.9.1", "PRP-47.10.1"]


def test_stage_comes_before_id_order() -> None:
    plan = build_plan([prp("PRP-47.1.1", "PRP-47.9.1"), prp("PRP-47.9.1")], ALL)
    assert ids(plan) == ["PRP-47.9.1", "PRP-47.1.1"]


# --- selection ---------------------------------------------------------------------------------


KNOWN = [
    prp("PRP-47.1.1"),
    prp("PRP-47.2.1", "PRP-47.1.1"),
    prp("PRP-48.1.1", batch="48"),
    prp("PRP-49.1.1", batch="49"),
    prp("PRP-50", batch=None),
]


def test_batch_selects_only_that_batch() -> None:
    plan = build_plan(KNOWN, Selection(batches=("47",)))
    assert plan.errors == []
    assert ids(plan) == ["PRP-47.1.1", "PRP-47.2.1"]


def test_batches_and_ids_are_a_union_and_comma_lists_are_split() -> None:
    plan = build_plan(KNOWN, Selection(batches=("48, 49",), ids=("PRP-50", "PRP-48.1.1")))
    assert plan.errors == []
    assert ids(plan) == ["PRP-48.1.1", "PRP-49.1.1", "PRP-50"]


def test_all_takes_every_known_prp() -> None:
    assert len(build_plan(KNOWN, ALL).prps) == len(KNOWN)


def test_empty_selection_is_an_empty_plan() -> None:
    plan = build_plan(KNOWN, Selection())
    assert (plan.prps, plan.errors, plan.critical_path) == ([], [], [])


def test_empty_batch_is_an_error_naming_the_batches_that_exist() -> None:
    plan = build_plan(KNOWN, Selection(batches=("47", "51")))
    assert messages(plan.errors) == [
        "--prp-batch 51: no PRPs in that batch under the given paths (batches found: 47, 48, 49)"
    ]


def test_empty_batch_without_any_prp() -> None:
    plan = build_plan([], Selection(batches=("47",)))
    assert messages(plan.errors) == [
        "--prp-batch 47: no PRPs in that batch under the given paths (no PRPs found)"
    ]


def test_unknown_id_is_an_error() -> None:
    plan = build_plan(KNOWN, Selection(ids=("PRP-47.7.7",)))
    assert messages(plan.errors) == [
        "--prp-id PRP-47.7.7: no PRP with that id under the given paths (batches found: 47, 48, 49)"
    ]


# --- validation --------------------------------------------------------------------------------


def test_duplicate_id_is_one_problem_naming_both_files() -> None:
    known = [prp("PRP-47.1.1", path="PRPs/a.md", line=3), prp("PRP-47.1.1", path="PRPs/b.md")]
    plan = build_plan(known, Selection(batches=("47",)))
    assert messages(plan.errors) == [
        "PRPs/a.md:3: PRP id PRP-47.1.1 is used by: PRPs/a.md:3, PRPs/b.md:2"
    ]
    assert ids(plan) == ["PRP-47.1.1"]


def test_duplicate_id_outside_the_selection_is_not_an_error() -> None:
    known = [
        prp("PRP-47.1.1"),
        prp("PRP-48.1.1", batch="48", path="a.md"),
        prp("PRP-48.1.1", batch="48", path="b.md"),
    ]
    assert build_plan(known, Selection(batches=("47",))).errors == []


def test_unknown_dependency_is_an_error_at_the_prp() -> None:
    plan = build_plan([prp("PRP-47.2.1", "PRP-99.1.1", line=4)], ALL)
    assert messages(plan.errors) == [
        "PRPs/PRP-47.2.1.md:4: PRP-47.2.1 depends on PRP-99.1.1, which is not found under the "
        "given paths and not completed"
    ]
    assert plan.errors[0].path == Path("PRPs/PRP-47.2.1.md")


def test_completed_dependency_is_satisfied_and_kept_for_the_ledger() -> None:
    asked: list[str] = []

    def completed(prp_id: str) -> bool:
        asked.append(prp_id)
        return prp_id == "PRP-99.1.1"

    plan = build_plan([prp("PRP-47.2.1", "PRP-99.1.1"), prp("PRP-47.1.1")], ALL, completed)
    assert plan.errors == []
    assert plan.external_deps == {"PRP-47.2.1": ["PRP-99.1.1"]}
    assert plan.stages["PRP-47.2.1"] == 1
    assert asked == ["PRP-99.1.1"]  # known or selected ids never need the ledger


def test_known_but_unselected_dependency_is_external_not_an_error() -> None:
    plan = build_plan(KNOWN, Selection(ids=("PRP-47.2.1",)))
    assert plan.errors == []
    assert ids(plan) == ["PRP-47.2.1"]
    assert plan.stages == {"PRP-47.2.1": 1}
    assert plan.external_deps == {"PRP-47.2.1": ["PRP-47.1.1"]}


def test_self_dependency_is_an_error_not_a_cycle() -> None:
    plan = build_plan([prp("PRP-47.1.1", "PRP-47.1.1")], ALL)
    assert messages(plan.errors) == ["PRPs/PRP-47.1.1.md:2: PRP-47.1.1 depends on itself"]
    assert plan.stages == {"PRP-47.1.1": 1}
    assert plan.external_deps == {}


def test_two_prp_cycle_prints_the_cycle_path() -> None:
    plan = build_plan([prp("PRP-2", "PRP-1"), prp("PRP-1", "PRP-2"), prp("PRP-3")], ALL)
    assert messages(plan.errors) == [
        "PRPs/PRP-1.md:2: dependency cycle: PRP-1 -> PRP-2 -> PRP-1 (each PRP depends on the next)"
    ]
    # The rest of the plan is still computed so the plan view can show it.
    assert set(ids(plan)) == {"PRP-1", "PRP-2", "PRP-3"}


def test_longer_cycle_is_printed_in_depends_on_order() -> None:
    # 1 depends on 3, 3 on 2, 2 on 1; PRP-4 hangs off the cycle and is not part of it.
    known = [prp("PRP-1", "PRP-3"), prp("PRP-2", "PRP-1"), prp("PRP-3", "PRP-2"),
             prp("PRP-4", "PRP-3")]  # fmt: skip
    plan = build_plan(known, ALL)
    assert [p.message for p in plan.errors] == [
        "dependency cycle: PRP-1 -> PRP-3 -> PRP-2 -> PRP-1 (each PRP depends on the next)"
    ]


def test_every_cycle_and_every_problem_is_reported_at_once() -> None:
    known = [
        prp("PRP-1", "PRP-2"),
        prp("PRP-2", "PRP-1"),
        prp("PRP-5", "PRP-6"),
        prp("PRP-6", "PRP-5"),
        prp("PRP-7", "PRP-404"),
    ]
    plan = build_plan(known, Selection(batches=("47", "12")))
    assert sorted(p.message for p in plan.errors) == [
        "--prp-batch 12: no PRPs in that batch under the given paths (batches found: 47)",
        "PRP-7 depends on PRP-404, which is not found under the given paths and not completed",
        "dependency cycle: PRP-1 -> PRP-2 -> PRP-1 (each PRP depends on the next)",
        "dependency cycle: PRP-5 -> PRP-6 -> PRP-5 (each PRP depends on the next)",
    ]


def test_repeated_dependency_counts_once() -> None:
    plan = build_plan([prp("PRP-B", "PRP-A", "PRP-A"), prp("PRP-A")], ALL)
    assert plan.errors == []
    assert plan.stages == {"PRP-A": 1, "PRP-B": 2}


# --- stage and start filters -------------------------------------------------------------------

CHAIN = [
    prp("PRP-47.1.1"),
    prp("PRP-47.1.2"),
    prp("PRP-47.2.1", "PRP-47.1.1"),
    prp("PRP-47.2.2", "PRP-47.1.2"),
    prp("PRP-47.3.1", "PRP-47.2.1", "PRP-47.2.2"),
    prp("PRP-48.1.1", batch="48"),
]


def test_stage_filter_keeps_the_computed_stage_of_the_batch() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), stage=2))
    assert plan.errors == []
    assert ids(plan) == ["PRP-47.2.1", "PRP-47.2.2"]
    assert plan.stages == {"PRP-47.2.1": 2, "PRP-47.2.2": 2}
    assert plan.external_deps == {"PRP-47.2.1": ["PRP-47.1.1"], "PRP-47.2.2": ["PRP-47.1.2"]}


def test_stage_beyond_the_plan_is_an_error() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), stage=4))
    assert messages(plan.errors) == ["--prp-stage 4: the selected PRPs have stages 1-3"]


def test_start_takes_that_prp_and_everything_after_it() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), start="PRP-47.1.2"))
    assert plan.errors == []
    assert ids(plan) == ["PRP-47.1.2", "PRP-47.2.1", "PRP-47.2.2", "PRP-47.3.1"]
    assert plan.stages["PRP-47.3.1"] == 3
    assert plan.external_deps == {"PRP-47.2.1": ["PRP-47.1.1"]}


def test_start_and_stage_combine() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), stage=2, start="PRP-47.2.2"))
    assert ids(plan) == ["PRP-47.2.2"]


def test_start_after_the_stage_is_an_error() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), stage=1, start="PRP-47.3.1"))
    assert messages(plan.errors) == [
        "--prp-start PRP-47.3.1 (stage 3) comes after every PRP of --prp-stage 1: nothing to run"
    ]


def test_unknown_start_is_an_error() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), start="PRP-47.9.9"))
    assert messages(plan.errors) == [
        "--prp-start PRP-47.9.9: no PRP with that id under the given paths (batches found: 47, 48)"
    ]


def test_start_outside_the_selection_is_an_error() -> None:
    plan = build_plan(CHAIN, Selection(batches=("47",), start="PRP-48.1.1"))
    assert messages(plan.errors) == [
        "--prp-start PRP-48.1.1 is not among the selected PRPs (batch 47)"
    ]


# --- declared stages and warnings --------------------------------------------------------------


def test_declared_stage_contradicting_the_graph_warns_and_the_graph_wins() -> None:
    known = [
        prp("PRP-47.1.1", stage=1),
        prp("PRP-47.2.1", "PRP-47.1.1", stage=2),
        prp("PRP-47.3.1", "PRP-47.2.1", stage=2, line=4),
    ]
    plan = build_plan(known, ALL)
    assert plan.errors == []
    assert plan.stages["PRP-47.3.1"] == 3
    assert messages(plan.warnings) == [
        "PRPs/PRP-47.3.1.md:4: PRP-47.3.1 is declared stage 2 but runs in stage 3: "
        "it depends on PRP-47.2.1 (stage 2)"
    ]


def test_declared_stage_against_an_undeclared_dependency_uses_its_computed_stage() -> None:
    plan = build_plan([prp("PRP-A"), prp("PRP-B", "PRP-A", stage=1)], ALL)
    assert [w.message for w in plan.warnings] == [
        "PRP-B is declared stage 1 but runs in stage 2: it depends on PRP-A (stage 1)"
    ]


def test_a_dependency_declared_in_the_same_stage_is_no_contradiction_when_it_runs_earlier() -> None:
    # PRP-C declares stage 3 and runs in stage 3; that PRP-B also declares 3 (it runs in 2)
    # changes nothing a user must act on: no warning saying "stage 3, using stage 3".
    known = [
        prp("PRP-A", stage=1),
        prp("PRP-B", "PRP-A", stage=3),
        prp("PRP-C", "PRP-B", stage=3),
    ]
    plan = build_plan(known, ALL)
    assert plan.stages == {"PRP-A": 1, "PRP-B": 2, "PRP-C": 3}
    assert plan.warnings == []


def test_declared_stage_that_is_merely_different_does_not_warn() -> None:
    # Declared later than needed is not a contradiction: no flood of warnings.
    known = [prp("PRP-A", stage=1), prp("PRP-B", "PRP-A", stage=4), prp("PRP-C", stage=3)]
    assert build_plan(known, ALL).warnings == []


def test_prp_warnings_of_the_plan_are_included() -> None:
    note = Problem(Path("PRPs/PRP-47.1.1.md"), 5, "unknown status 'wip'")
    plan = build_plan([prp("PRP-47.1.1", warnings=[note]), prp("PRP-48.1.1", batch="48")], ALL)
    assert plan.warnings == [note]


# --- critical path -----------------------------------------------------------------------------


def test_critical_path_by_hours_prefers_the_heavier_chain() -> None:
    known = [
        prp("PRP-A", hours=1),
        prp("PRP-B", "PRP-A", hours=1),
        prp("PRP-C", "PRP-B", hours=1),  # A-B-C: 3 PRPs, 3 hours
        prp("PRP-D", hours=2.5),
        prp("PRP-E", "PRP-D", hours=5),  # D-E: 2 PRPs, 7.5 hours
    ]
    plan = build_plan(known, ALL)
    assert plan.critical_path == ["PRP-D", "PRP-E"]
    assert (plan.critical_length, plan.critical_unit) == (7.5, HOURS)


def test_critical_path_by_count_when_any_estimate_is_missing() -> None:
    known = [
        prp("PRP-A", hours=1),
        prp("PRP-B", "PRP-A", hours=1),
        prp("PRP-C", "PRP-B"),
        prp("PRP-D", hours=20),
        prp("PRP-E", "PRP-D", hours=50),
    ]
    plan = build_plan(known, ALL)
    assert plan.critical_path == ["PRP-A", "PRP-B", "PRP-C"]
    assert (plan.critical_length, plan.critical_unit) == (3, PRPS)


def test_critical_path_through_a_diamond() -> None:
    known = [
        prp("PRP-1", hours=1),
        prp("PRP-2", "PRP-1", hours=2),
        prp("PRP-3", "PRP-1", hours=4),
        prp("PRP-4", "PRP-2", "PRP-3", hours=0.5),
    ]
    plan = build_plan(known, ALL)
    assert plan.critical_path == ["PRP-1", "PRP-3", "PRP-4"]
    assert plan.critical_length == 5.5


def test_critical_path_of_an_empty_plan() -> None:
    plan = build_plan([], ALL)
    assert (plan.critical_path, plan.critical_length, plan.critical_unit) == ([], 0, PRPS)


# --- conflicts ---------------------------------------------------------------------------------


def test_same_file_in_the_same_stage_is_a_conflict() -> None:
    known = [
        prp("PRP-47.1.1", files=["src/app.py", "README.md"]),
        prp("PRP-47.2.1", "PRP-47.1.1", files=["src/app.py", "src/a.py"]),
        prp("PRP-47.2.2", "PRP-47.1.1", files=["./src/app.py", "src/b.py"]),
        prp("PRP-47.2.3", "PRP-47.1.1", files=["src/b.py"]),
    ]
    plan = build_plan(known, ALL)
    assert plan.conflicts == [
        Conflict(2, "src/app.py", ["PRP-47.2.1", "PRP-47.2.2"]),
        Conflict(2, "src/b.py", ["PRP-47.2.2", "PRP-47.2.3"]),
    ]


def test_same_file_in_different_stages_is_not_a_conflict() -> None:
    known = [prp("PRP-A", files=["x.py"]), prp("PRP-B", "PRP-A", files=["x.py", "x.py"])]
    assert build_plan(known, ALL).conflicts == []


def test_a_missing_dependency_points_at_its_own_line(tmp_path: Path) -> None:
    from pytest_prp.spec.frontmatter import load_prp

    lines = [
        "---",
        "prp_id: PRP-5.2",
        "title: Second",
        "dependencies:",
        "  - PRP-5.10",
        "  - PRP-5.1",
        "  - PRP-5.404  # gone",
        "depends_on: ignored",
        "---",
        "# PRP-5.2",
    ]
    (tmp_path / "PRP-5.2.md").write_text("\n".join(lines) + "\n")
    inline = "---\nprp_id: PRP-5.3\ntitle: Third\n\ndependencies: [PRP-5.1, PRP-5.405]\n---\n"
    (tmp_path / "PRP-5.3.md").write_text(inline)
    loaded = [load_prp(tmp_path / name).prp for name in ("PRP-5.2.md", "PRP-5.3.md")]
    known = [p for p in loaded if p is not None] + [prp("PRP-5.1", batch="5")]
    known.append(prp("PRP-5.10", batch="5"))
    plan = build_plan(known, ALL)
    found = sorted((p.path.name, p.line, p.message.split(",")[0]) for p in plan.errors)
    assert found == [
        ("PRP-5.2.md", 7, "PRP-5.2 depends on PRP-5.404"),
        ("PRP-5.3.md", 5, "PRP-5.3 depends on PRP-5.405"),
    ]
