"""The wider merge check (issue 14, ``--prp-merge-check siblings``): a merge that is not a
fast-forward also runs the gates of the PRPs merged since the PRP's base on the merged tree.
Breaking a sibling's gate is a conflict; a dependent breaking its dependency's gate is
superseded. Real git, real pytest runs, serial and under -n 2.

Serially, a sibling merged while a PRP runs is simulated the way test_merge_queue does: the
PRP's step commits the sibling's work with its PRP-Id trailer and moves the integration branch
(as another worker's merge would), the sibling's file declared complete so that it is a PRP of
the run that does not run again."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import entries, git, result_json, write_prp
from tests.test_merge_stack import gate_logging, merged_runs

MODE_IS_FAST = "import conf\nassert conf.MODE == 'fast', conf.MODE\n"
OWN_GATE = "python3 -c 'import conf; assert conf.MODE == \"slow\"'"
SLOW = "sed -i s/fast/slow/ conf.py"


def records(repo: Path, batch: str) -> dict[str, dict[str, Any]]:
    return entries(result_json(repo, batch))


def merged_ids(repo: Path, branch: str) -> list[str]:
    out = git(repo, "log", "--no-merges", "--format=%(trailers:key=PRP-Id,valueonly)", branch)
    return [line for line in out.splitlines() if line.strip()]


def with_conf(repo: Path) -> None:
    (repo / "conf.py").write_text("MODE = 'fast'\n")
    git(repo, "add", "conf.py")
    git(repo, "commit", "-qm", "conf")


def simulated_merge(batch: str, sibling: str, path: str, content: str) -> str:
    """A step that lands ``sibling``'s commit (``path``) on the integration branch, once: a
    redo on the new tip finds it there and leaves it."""
    quoted = content.replace("\n", "\\n")
    return (
        f"if [ ! -e {path} ]; then\n"
        f'  printf "{quoted}" > {path} && git add {path}\n'
        f"  git commit -qm '{sibling} work' --trailer PRP-Id={sibling}\n"
        f"  git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-{batch} HEAD\n"
        "  git reset -q --hard HEAD~1\n"
        "fi"
    )


def status_line(repo: Path, prp_id: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", ".ce/orchestration"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return next(x for x in done.stdout.splitlines() if x.startswith(prp_id))


def junit_properties(path: Path, prp_id: str) -> dict[str, str]:
    for case in ET.parse(path).iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        if props.get("prp_id") == prp_id:
            return props
    raise AssertionError(f"no testcase of {prp_id}")


@pytest.mark.parametrize("scope", ["siblings", "own"])
def test_breaking_a_sibling_s_gate_serial(
    pytester: pytest.Pytester, repo: Path, scope: str
) -> None:
    """PRP-70.1.1 (whose gate needs MODE fast) merges while PRP-70.1.2 runs; 70.1.2 sets MODE
    slow, its own gate passes. With sibling checks it fails naming 70.1.1, redone once on the
    tip (a fast-forward there, checked all the same), the branch green; with own checks it
    merges and breaks 70.1.1's gate."""
    with_conf(repo)
    write_prp(repo, "PRP-70.1.1", extra="status: completed", gates=["python3 a.py"])
    write_prp(
        repo,
        "PRP-70.1.2",
        steps=[simulated_merge("70", "PRP-70.1.1", "a.py", MODE_IS_FAST) + "\n" + SLOW],
        gates=[OWN_GATE],
    )
    junit = repo.parent / "junit-70.xml"
    result = pytester.runpytest(
        "--prp-batch", "70", "--prp-merge-check", scope, f"--junitxml={junit}"
    )
    entry = records(repo, "70")["PRP-70.1.2"]
    branch = "prp/batch-70"
    if scope == "own":
        assert result.ret == 0, result.stdout.str()
        assert entry["status"] == "success"
        assert entry["sibling_gates"] is None
        assert git(repo, "show", f"{branch}:conf.py") == "MODE = 'slow'"  # 70.1.1 broken
        return
    assert result.ret == 1
    assert entry["status"] == "failed_integration", entry
    assert entry["collides_with"] == ["PRP-70.1.1"]
    assert entry["redos"] == 1
    culprit = entry["sibling_gates"]["culprit"]
    assert (culprit["prp_id"], culprit["gate_index"]) == ("PRP-70.1.1", 1)
    assert entry["sibling_gates"]["ran"] == ["PRP-70.1.1 gate 1 'Gate 1: check 1'"]
    assert [f["failed_gates"] for f in entry["merge_failures"]] == [
        ["PRP-70.1.1 gate 1 'Gate 1: check 1'"]
    ] * 2
    # The branch is unchanged: 70.1.1's work, and its gate passes there.
    assert merged_ids(repo, branch) == ["PRP-70.1.1"]
    assert git(repo, "show", f"{branch}:conf.py") == "MODE = 'fast'"
    result.stdout.fnmatch_lines(
        ["*PRP-70.1.2*breaks PRP-70.1.1 gate 1 'Gate 1: check 1'*collides with PRP-70.1.1*"]
    )
    props = junit_properties(junit, "PRP-70.1.2")
    assert props["breaks_sibling_gate"] == "PRP-70.1.1 gate 1"
    assert props["collides_with"] == "PRP-70.1.1"
    assert "breaks PRP-70.1.1 gate 1" in status_line(repo, "PRP-70.1.2")


def test_breaking_a_sibling_s_gate_under_xdist(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """Two real siblings under -n 2, both cut from the same tip; the second waits for the
    first to merge, then breaks the first's gate (not its own): failed_integration naming the
    first, the integration branch green."""
    with_conf(repo)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # Bounded waits (60 s): a sibling that never comes fails the test instead of hanging it.
    meet = (
        "touch {b}/{n}; for i in $(seq 1200); do [ -e {b}/1 ] && [ -e {b}/2 ] && break;"
        " sleep 0.05; done"
    )
    write_prp(
        repo,
        "PRP-71.1.1",
        creates={"a.py": MODE_IS_FAST},
        steps=[meet.format(b=barrier, n=1)],
        gates=["python3 a.py"],
    )
    first_merged = (
        "for i in $(seq 1200); do git log prp/batch-71"
        " --format=%\\(trailers:key=PRP-Id,valueonly\\) | grep -q PRP-71.1.1 && break;"
        " sleep 0.05; done"
    )
    write_prp(
        repo,
        "PRP-71.1.2",
        steps=[meet.format(b=barrier, n=2) + "\n" + first_merged + "\n" + SLOW],
        gates=[OWN_GATE],
    )
    write_prp(repo, "PRP-71.2.1", deps=["PRP-71.1.2"], gates=["true"])
    result = pytester.runpytest_subprocess(
        "--prp-batch", "71", "-n", "2", "--prp-merge-check", "siblings"
    )
    assert result.ret == 1, result.stdout.str()
    found = records(repo, "71")
    assert found["PRP-71.1.1"]["status"] == "success"
    second = found["PRP-71.1.2"]
    assert second["status"] == "failed_integration", second
    assert second["collides_with"] == ["PRP-71.1.1"]
    assert second["sibling_gates"]["culprit"]["prp_id"] == "PRP-71.1.1"
    assert found["PRP-71.2.1"]["status"] == "blocked"
    assert merged_ids(repo, "prp/batch-71") == ["PRP-71.1.1"]
    assert git(repo, "show", "prp/batch-71:conf.py") == "MODE = 'fast'"
    result.stdout.fnmatch_lines(["*PRP-71.1.2*breaks PRP-71.1.1 gate 1*"])


def test_sibling_checks_with_batched_merges_under_xdist(
    pytester: pytest.Pytester, repo: Path, tmp_path: Path
) -> None:
    """``--prp-merge-check siblings`` with ``--prp-merge-batch`` and an integration gate, -n 2:
    the siblings' gates run with the PRP's own (before it joins a stack), the integration gate
    once per stack. PRP-77.1.1's merge is not a fast-forward (the branch moved during its run):
    it merges through the queue, the integration gate run once on its merge. PRP-77.1.2, cut
    from the same tip, passes alone but breaks 77.1.1's gate: failed_integration naming it, on
    its first merge (in the queue) and on its redo (a fast-forward, checked before it), the
    integration gate never run on a tree holding its work, the branch green."""
    with_conf(repo)
    barrier, runs = tmp_path / "barrier", tmp_path / "runs"
    barrier.mkdir()
    meet = (
        "touch {b}/{n}; for i in $(seq 1200); do [ -e {b}/1 ] && [ -e {b}/2 ] && break;"
        " sleep 0.05; done"
    )
    write_prp(
        repo,
        "PRP-77.1.1",
        creates={"a.py": MODE_IS_FAST},
        steps=[
            meet.format(b=barrier, n=1) + "\n"
            "echo other >> other.txt && git add other.txt && git commit -qm other\n"
            "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-77 HEAD\n"
            "git reset -q --hard HEAD~1"
        ],
        gates=["python3 a.py"],
    )
    first_merged = (
        "for i in $(seq 1200); do git log prp/batch-77"
        " --format=%\\(trailers:key=PRP-Id,valueonly\\) | grep -q PRP-77.1.1 && break;"
        " sleep 0.05; done"
    )
    write_prp(
        repo,
        "PRP-77.1.2",
        steps=[meet.format(b=barrier, n=2) + "\n" + first_merged + "\n" + SLOW],
        gates=[OWN_GATE],
    )
    result = pytester.runpytest_subprocess(
        "--prp-batch", "77", "-n", "2", "--prp-merge-check", "siblings", "--prp-merge-batch",
        "--prp-integration-gate", gate_logging(runs),
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    found = records(repo, "77")
    first, second = found["PRP-77.1.1"], found["PRP-77.1.2"]
    tip = git(repo, "rev-parse", "prp/batch-77")
    assert first["status"] == "success", first
    assert first["merged_commit"] == tip
    assert first["merge_stack"] == {"size": 1, "gate_commit": tip, "gate_runs": 1}
    assert first["sibling_gates"]["ran"] == []  # "other" is no PRP: no sibling gate
    assert second["status"] == "failed_integration", second
    assert second["collides_with"] == ["PRP-77.1.1"]
    assert second["redos"] == 1
    assert second["sibling_gates"]["culprit"]["prp_id"] == "PRP-77.1.1"
    assert [f["failed_gates"] for f in second["merge_failures"]] == [
        ["PRP-77.1.1 gate 1 'Gate 1: check 1'"]
    ] * 2
    assert "merge_stack" not in second
    # The integration gate ran on merged trees once: 77.1.1's merge, the branch's tip.
    assert merged_runs(runs) == [tip]
    assert merged_ids(repo, "prp/batch-77") == ["PRP-77.1.1"]
    assert git(repo, "show", "prp/batch-77:conf.py") == "MODE = 'fast'"
    git(repo, "cat-file", "-e", f"{tip}:other.txt")
    result.stdout.fnmatch_lines(
        [f"*PRP-77.1.1*merged in a stack of 1, integration gate run once on {tip[:12]}*"]
    )
    result.stdout.fnmatch_lines(["*PRP-77.1.2*breaks PRP-77.1.1 gate 1*collides with PRP-77.1.1*"])


def test_a_dependent_that_breaks_its_dependency_s_gate_is_superseded(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """PRP-72.2.1 depends on PRP-72.1.1, whose merge lands while it runs, and changes what
    72.1.1's gate checks on purpose: merged, the sibling gate reported superseded."""
    with_conf(repo)
    write_prp(repo, "PRP-72.1.1", extra="status: completed", gates=["python3 a.py"])
    write_prp(
        repo,
        "PRP-72.2.1",
        deps=["PRP-72.1.1"],
        steps=[simulated_merge("72", "PRP-72.1.1", "a.py", MODE_IS_FAST) + "\n" + SLOW],
        gates=[OWN_GATE],
    )
    junit = repo.parent / "junit-72.xml"
    result = pytester.runpytest(
        "--prp-batch", "72", "--prp-merge-check", "siblings", f"--junitxml={junit}"
    )
    assert result.ret == 0, result.stdout.str()
    entry = records(repo, "72")["PRP-72.2.1"]
    assert entry["status"] == "success"
    assert entry["redos"] == 0
    assert entry["sibling_gates"]["superseded"] == ["PRP-72.1.1 gate 1 'Gate 1: check 1'"]
    assert entry["sibling_gates"]["culprit"] is None
    assert git(repo, "show", "prp/batch-72:conf.py") == "MODE = 'slow'"
    result.stdout.fnmatch_lines(["*PRP-72.2.1*supersedes PRP-72.1.1 gate 1 'Gate 1: check 1'*"])
    props = junit_properties(junit, "PRP-72.2.1")
    assert props["sibling_gates_superseded"] == "PRP-72.1.1 gate 1 'Gate 1: check 1'"
    assert "supersedes PRP-72.1.1" in status_line(repo, "PRP-72.2.1")


def test_fast_forward_runs_no_sibling_gate(pytester: pytest.Pytester, repo: Path) -> None:
    runs = repo.parent / "gate-runs-73"
    for n in (1, 2, 3):
        write_prp(repo, f"PRP-73.1.{n}", creates={f"{n}.txt": "x"}, gates=[f"echo {n} >> {runs}"])
    result = pytester.runpytest("--prp-batch", "73", "--prp-merge-check", "siblings")
    assert result.ret == 0, result.stdout.str()
    assert sorted(runs.read_text().split()) == ["1", "2", "3"]
    for entry in records(repo, "73").values():
        assert entry["merge_checks"] == 0
        assert entry["sibling_gates"] == {
            "runs": 0,
            "ran": [],
            "superseded": [],
            "broken_before": [],
            "culprit": None,
        }


def test_gate_runs_counted(pytester: pytest.Pytester, repo: Path) -> None:
    """Two siblings land while PRP-74.2.1 runs; one sibling's gate was broken before (it fails
    on the tip without 74.2.1's work): 74.2.1's gate runs twice (its tree, the merged tree),
    each sibling gate once on the merged tree, the broken one once more on the tip; merged."""
    runs = repo.parent / "gate-runs-74"
    log = f"echo $PRP_ID:{{}} >> {runs}"
    write_prp(
        repo, "PRP-74.1.1", extra="status: completed", gates=[log.format("s1") + "; test -e s1"]
    )
    write_prp(repo, "PRP-74.1.2", extra="status: completed", gates=[log.format("s2") + "; false"])
    # Two merges in a row: the second on the first (the tip), then back to the base.
    steps = [
        "echo one > s1 && git add s1 && git commit -qm s1 --trailer PRP-Id=PRP-74.1.1\n"
        "echo two > s2 && git add s2 && git commit -qm s2 --trailer PRP-Id=PRP-74.1.2\n"
        "git update-ref -m 'prp: merge (simulated)' refs/heads/prp/batch-74 HEAD\n"
        "git reset -q --hard HEAD~2\n"
        "echo mine > mine.txt"
    ]
    write_prp(repo, "PRP-74.2.1", steps=steps, gates=[log.format("own")])
    result = pytester.runpytest("--prp-batch", "74", "--prp-merge-check", "siblings")
    assert result.ret == 0, result.stdout.str()
    entry = records(repo, "74")["PRP-74.2.1"]
    assert entry["status"] == "success"
    assert entry["merge_checks"] == 1
    found = entry["sibling_gates"]
    assert found["ran"] == [f"PRP-74.1.{n} gate 1 'Gate 1: check 1'" for n in (1, 2)]
    assert found["broken_before"] == ["PRP-74.1.2 gate 1 'Gate 1: check 1'"]
    assert found["runs"] == 3
    assert sorted(runs.read_text().split()) == sorted(
        ["PRP-74.2.1:own"] * 2 + ["PRP-74.2.1:s1", "PRP-74.2.1:s2", "PRP-74.2.1:s2"]
    )
    result.stdout.fnmatch_lines(["*PRP-74.2.1*broken before*2 sibling gate(s) checked*"])


def test_merge_check_option_is_checked(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-75.1.1", gates=["true"])
    result = pytester.runpytest("--prp-batch", "75", "--prp-merge-check", "all")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--prp-merge-check*'all' is not one of own, siblings*"])
    pytester.makeini("[pytest]\nprp_merge_check = everything\n")
    result = pytester.runpytest("--prp-batch", "75")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*prp_merge_check*'everything' is not one of own, siblings*"])
