"""Plan views: terminal text, JSON and Mermaid."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from pytest_prp.plan.plan_view import plan_to_dict, render_json, render_mermaid, render_text
from pytest_prp.plan.planning import Plan, Selection, build_plan
from pytest_prp.spec.frontmatter import load_prp
from pytest_prp.spec.model import GATE_CHECKLIST, GATE_SHELL, Body, Gate, Problem, Prp, Step


def body(steps: int, shell: int, checklist: int = 0) -> Body:
    gates = [Gate(i + 1, f"gate {i + 1}", GATE_SHELL, "true", 10 + i) for i in range(shell)]
    gates += [
        Gate(shell + i + 1, f"check {i + 1}", GATE_CHECKLIST, None, 20 + i)
        for i in range(checklist)
    ]
    return Body(
        steps=tuple(Step(i + 1, f"step {i + 1}", "", i + 1) for i in range(steps)),
        gates=tuple(gates),
    )


def prp(
    prp_id: str,
    title: str,
    *deps: str,
    stage: int | None = None,
    hours: float | None = None,
    files: list[str] | None = None,
    counts: tuple[int, int, int] = (1, 1, 0),
    batch: str | None = "47",
) -> Prp:
    made = Prp(
        id=prp_id,
        path=Path(f"PRPs/{prp_id}.md"),
        line=4,
        title=title,
        batch=batch,
        dependencies=list(deps),
        declared_stage=stage,
        estimated_hours=hours,
        files_modified=files or [],
        frontmatter={"created": dt.date(2024, 5, 1), "id": prp_id},
    )
    made._body = body(*counts)
    return made


def batch_47() -> Plan:
    known = [
        prp("PRP-47.1.1", "Parse the config", stage=1, hours=2, counts=(3, 2, 1)),
        prp("PRP-47.2.1", "Load plugins", "PRP-47.1.1", stage=2, hours=3, files=["src/app.py"]),
        prp("PRP-47.2.2", "Add CLI", "PRP-47.1.1", stage=2, hours=1, files=["src/app.py"]),
        prp("PRP-47.3.1", 'Say "hello"', "PRP-47.2.1", stage=2, hours=2.5),
        prp("PRP-47.10.1", "Docs", "PRP-47.3.1", "PRP-47.2.2", stage=4, hours=1),
    ]
    return build_plan(known, Selection(batches=("47",)))


# --- text --------------------------------------------------------------------------------------


def test_text_shows_stages_prps_and_counts() -> None:
    text = render_text(batch_47())
    lines = text.splitlines()
    assert lines[0] == "PRP plan: 5 PRPs in 4 stages (batch 47)"
    assert lines[1] == "Stage 1"
    assert re.fullmatch(
        r"  PRP-47\.1\.1 +Parse the config +steps 3, gates 2 \(\+1 unverified\)", lines[2]
    )
    assert lines[3] == "Stage 2"
    assert re.fullmatch(
        r"  PRP-47\.2\.1 +Load plugins +steps 1, gates 1; after PRP-47\.1\.1", lines[4]
    )
    assert lines[5].startswith("  PRP-47.2.2 ")
    assert lines[6] == "Stage 3"
    assert lines[7].endswith("after PRP-47.2.1; declared stage 2")
    assert lines[8] == "Stage 4"
    assert lines[9].endswith("after PRP-47.3.1, PRP-47.2.2")
    # Columns line up: titles start at one place, step counts at another.
    rows = [line for line in lines if line.startswith("  PRP-")]
    titles = ["Parse the config", "Load plugins", "Add CLI", 'Say "hello"', "Docs"]
    assert len({row.index(title) for row, title in zip(rows, titles, strict=True)}) == 1
    assert len({row.index("steps") for row in rows}) == 1


def test_text_shows_critical_path_conflicts_and_warnings() -> None:
    text = render_text(batch_47())
    assert (
        "Critical path (8.5 hours): PRP-47.1.1 -> PRP-47.2.1 -> PRP-47.3.1 -> PRP-47.10.1\n" in text
    )
    assert "Potential conflicts:\n  stage 2: src/app.py changed by PRP-47.2.1, PRP-47.2.2\n" in text
    assert text.endswith(
        "Warnings:\n  PRPs/PRP-47.3.1.md:4: PRP-47.3.1 is declared stage 2 but runs in "
        "stage 3: it depends on PRP-47.2.1 (stage 2)\n"
    )


def test_text_counts_prps_on_the_critical_path_without_estimates() -> None:
    plan = build_plan([prp("PRP-1", "One"), prp("PRP-2", "Two", "PRP-1")], Selection(all=True))
    assert "Critical path (2 PRPs): PRP-1 -> PRP-2\n" in render_text(plan)


def test_text_marks_dependencies_outside_the_plan() -> None:
    known = [prp("PRP-46.1.1", "Old", batch="46"), prp("PRP-47.1.1", "New", "PRP-46.1.1")]
    text = render_text(build_plan(known, Selection(batches=("47",))))
    assert text.startswith("PRP plan: 1 PRP in 1 stage (batch 47)\n")
    assert "after PRP-46.1.1 (not in this plan)" in text


def test_text_counts_prps_without_a_batch_in_a_mixed_selection() -> None:
    known = [
        prp("PRP-15.1.1", "Batched", batch="15"),
        prp("PRP-A", "Loose", batch=None),
        prp("PRP-B", "Loose too", batch=None),
    ]
    text = render_text(build_plan(known, Selection(all=True)))
    assert text.startswith("PRP plan: 3 PRPs in 1 stage (batch 15 and 2 PRPs without a batch)\n")


def test_text_lists_errors() -> None:
    plan = build_plan([prp("PRP-1", "One", "PRP-9")], Selection(all=True))
    text = render_text(plan)
    assert text.endswith(
        "Errors (nothing will run):\n  PRPs/PRP-1.md:4: PRP-1 depends on PRP-9, which is not "
        "found under the given paths and not completed\n"
    )


def test_text_of_an_empty_plan() -> None:
    assert render_text(build_plan([], Selection())) == "PRP plan: no PRPs selected\n"


def test_text_shortens_long_titles() -> None:
    plan = build_plan([prp("PRP-1", "word " * 40)], Selection(all=True))
    line = render_text(plan).splitlines()[2]
    assert "word word..." in line
    assert len(line) < 100


# --- JSON --------------------------------------------------------------------------------------


def test_json_shape() -> None:
    data = json.loads(render_json(batch_47()))
    assert set(data) == {"prps", "stages", "critical_path", "warnings", "errors", "conflicts"}
    assert data["errors"] == []
    first = data["prps"][0]
    assert first == {
        "id": "PRP-47.1.1",
        "file": "PRPs/PRP-47.1.1.md",
        "batch": "47",
        "stage": 1,
        "declared_stage": 1,
        "dependencies": [],
        "title": "Parse the config",
        "steps": 3,
        "gates": {"executable": 2, "unverified": 1},
    }
    assert [p["id"] for p in data["prps"]] == [
        "PRP-47.1.1", "PRP-47.2.1", "PRP-47.2.2", "PRP-47.3.1", "PRP-47.10.1"
    ]  # fmt: skip
    assert data["prps"][3]["stage"] == 3
    assert data["prps"][3]["declared_stage"] == 2
    assert data["prps"][4]["dependencies"] == ["PRP-47.3.1", "PRP-47.2.2"]
    assert data["stages"] == {
        "1": ["PRP-47.1.1"],
        "2": ["PRP-47.2.1", "PRP-47.2.2"],
        "3": ["PRP-47.3.1"],
        "4": ["PRP-47.10.1"],
    }
    assert data["critical_path"] == ["PRP-47.1.1", "PRP-47.2.1", "PRP-47.3.1", "PRP-47.10.1"]
    assert data["conflicts"] == [
        {"stage": 2, "path": "src/app.py", "prps": ["PRP-47.2.1", "PRP-47.2.2"]}
    ]
    assert data["warnings"] == [
        "PRPs/PRP-47.3.1.md:4: PRP-47.3.1 is declared stage 2 but runs in stage 3: "
        "it depends on PRP-47.2.1 (stage 2)"
    ]


def test_plan_to_dict_matches_the_json() -> None:
    plan = batch_47()
    assert json.loads(render_json(plan)) == plan_to_dict(plan)


# --- Mermaid -----------------------------------------------------------------------------------


def test_mermaid_has_a_subgraph_per_stage_and_an_edge_per_dependency() -> None:
    text = render_mermaid(batch_47())
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert [line.strip() for line in lines if "subgraph" in line] == [
        'subgraph stage_1["Stage 1"]',
        'subgraph stage_2["Stage 2"]',
        'subgraph stage_3["Stage 3"]',
        'subgraph stage_4["Stage 4"]',
    ]
    assert lines.count("  end") == 4
    assert '    PRP_47_1_1["PRP-47.1.1: Parse the config"]' in lines
    edges = [line.strip() for line in lines if "-->" in line]
    assert edges == [
        "PRP_47_1_1 --> PRP_47_2_1",
        "PRP_47_1_1 --> PRP_47_2_2",
        "PRP_47_2_1 --> PRP_47_3_1",
        "PRP_47_3_1 --> PRP_47_10_1",
        "PRP_47_2_2 --> PRP_47_10_1",
    ]
    assert "  class PRP_47_1_1,PRP_47_2_1,PRP_47_3_1,PRP_47_10_1 critical" in lines


def test_mermaid_escapes_labels_and_makes_safe_unique_node_ids() -> None:
    known = [
        prp("PRP-1.2", 'Quote " and <b>#1</b>'),
        prp("PRP_1_2", "Same id once sanitised", batch="9"),
        prp("PRP-end", "Keyword", batch="9"),
    ]
    text = render_mermaid(build_plan(known, Selection(all=True)))
    assert '["PRP-1.2: Quote #quot; and #60;b#62;#35;1#60;/b#62;"]' in text
    node_ids = re.findall(r"^    (\S+)\[", text, flags=re.MULTILINE)
    assert len(set(node_ids)) == 3
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n) for n in node_ids)
    # Every label is one quoted string: no raw quote inside.
    for label in re.findall(r'\["(.*)"\]$', text, flags=re.MULTILINE):
        assert '"' not in label


def test_mermaid_leaves_out_edges_to_prps_outside_the_plan() -> None:
    known = [prp("PRP-46.1.1", "Old", batch="46"), prp("PRP-47.1.1", "New", "PRP-46.1.1")]
    text = render_mermaid(build_plan(known, Selection(batches=("47",))))
    assert "-->" not in text
    assert "PRP_47_1_1" in text


def test_views_show_warnings_from_the_prp_itself() -> None:
    made = prp("PRP-1", "One")
    made.warnings.append(Problem(made.path, 7, "estimated_hours 'soon' is not a number"))
    plan = build_plan([made], Selection(all=True))
    assert "  PRPs/PRP-1.md:7: estimated_hours 'soon' is not a number\n" in render_text(plan)
    assert json.loads(render_json(plan))["warnings"] == [
        "PRPs/PRP-1.md:7: estimated_hours 'soon' is not a number"
    ]


# --- real files --------------------------------------------------------------------------------

PRP_FILE = """\
---
id: PRP-47.1.1
title: Parse the config
---
# Parse the config

## Implementation Steps

### Step 1: Read the file

### Step 2: Validate it

## Validation Gates

```bash
pytest tests/test_config.py
```

- [ ] The error messages read well
"""


def test_counts_come_from_the_prp_file(tmp_path: Path) -> None:
    path = tmp_path / "PRP-47.1.1.md"
    path.write_text(PRP_FILE, encoding="utf-8")
    made = Prp(id="PRP-47.1.1", path=path, line=2, title="Parse the config", batch="47",
               dependencies=[], body_line=5)  # fmt: skip
    plan = build_plan([made], Selection(all=True))
    assert "steps 2, gates 1 (+1 unverified)" in render_text(plan)
    entry = json.loads(render_json(plan))["prps"][0]
    assert (entry["file"], entry["steps"]) == (str(path), 2)
    assert entry["gates"] == {"executable": 1, "unverified": 1}


def test_a_vanished_file_does_not_break_the_views(tmp_path: Path) -> None:
    made = Prp(id="PRP-1", path=tmp_path / "gone.md", line=2, title="Gone", batch=None,
               dependencies=[])  # fmt: skip
    plan = build_plan([made], Selection(all=True))
    assert "  PRP-1  Gone  file unreadable\n" in render_text(plan)
    entry = json.loads(render_json(plan))["prps"][0]
    assert (entry["steps"], entry["gates"]) == (None, {"executable": None, "unverified": None})


def test_plan_of_a_real_batch(corpus: Path) -> None:
    from pytest_prp.spec.frontmatter import load_prp

    files = sorted((corpus / "ctx-eng-plus-batch-43").glob("*.md"))
    known = [p for p in (load_prp(f).prp for f in files) if p is not None]
    plan = build_plan(known, Selection(batches=("43",)))
    assert (plan.errors, plan.warnings) == ([], [])
    text = render_text(plan)
    assert text.startswith("PRP plan: 6 PRPs in 4 stages (batch 43)\nStage 1\n  PRP-43.1.1  ")
    assert (
        "Critical path (25 hours): PRP-43.1.1 -> PRP-43.2.2 -> PRP-43.3.1 -> PRP-43.4.1\n" in text
    )
    assert json.loads(render_json(plan))["stages"] == {
        "1": ["PRP-43.1.1"],
        "2": ["PRP-43.2.1", "PRP-43.2.2", "PRP-43.2.3"],
        "3": ["PRP-43.3.1"],
        "4": ["PRP-43.4.1"],
    }
    assert "  PRP_43_2_2 --> PRP_43_3_1\n" in render_mermaid(plan)


def test_views_show_body_warnings(tmp_path: Path) -> None:
    path = tmp_path / "PRP-3.1.1.md"
    path.write_text("---\nprp_id: PRP-3.1.1\n---\n## Validation Gates\n\n```bash\npytest\n")
    loaded = load_prp(path).prp
    assert loaded is not None
    plan = build_plan([loaded], Selection(all=True))
    text = render_text(plan)
    assert "Warnings:" in text and ":6: code block opened here (```bash) is never closed" in text
    assert any("never closed" in w for w in plan_to_dict(plan)["warnings"])
