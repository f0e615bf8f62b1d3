"""Hostile steps and gates against the integration branch (deleting it, resetting it, in the
steps, the gates, a merge check's gates or a redo): no merge may be lost from it, and no PRP
may claim a merge that is not on it. Also: what no_changes claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import entries, git, init_repo, result_json, write_prp


def test_a_passing_gate_that_deletes_the_integration_branch_fails_its_prp(
    pytester: pytest.Pytester, repo: Path
) -> None:
    gone = "git branch -D prp/batch-6"
    write_prp(repo, "PRP-6.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-6.2", steps=["sleep 3"], creates={"b.txt": "b"}, gates=[gone])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess("--prp-batch", "6", "-n", "2", "-p", "no:randomly")
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "6")).items()}
    assert statuses == {"PRP-6.1": "success", "PRP-6.2": "failed"}, statuses
    result.stdout.fnmatch_lines(
        ["*PRP-6.2: its steps or gates deleted the integration branch prp/batch-6; *restored at*"]
    )
    # What was merged before the deletion is on the branch again.
    merged = entries(result_json(repo, "6"))["PRP-6.1"]["merged_commit"]
    tip = git(repo, "rev-parse", "prp/batch-6").strip()
    assert tip == merged, (tip, merged)
    assert git(repo, "show", "prp/batch-6:a.txt") == "a"


def test_a_failing_gate_that_deletes_the_integration_branch_gets_it_restored(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-6.1", creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-6.2", creates={"b.txt": "b"}, gates=["git branch -D prp/batch-6\nfalse"])
    write_prp(repo, "PRP-6.3", creates={"c.txt": "c"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    stale = repo / ".git" / "prp" / "reflogs" / "999999999-0"  # of a process killed earlier
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    result = pytester.runpytest_subprocess("--prp-batch", "6", "-n", "1", "-p", "no:randomly")
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "6")).items()}
    assert statuses == {"PRP-6.1": "success", "PRP-6.2": "failed_gates", "PRP-6.3": "success"}
    result.stdout.fnmatch_lines(["*PRP-6.2: the integration branch was deleted; *restored at*"])
    # PRP-6.1's merge, made before the deletion, is still on the branch, under PRP-6.3's.
    assert git(repo, "show", "prp/batch-6:a.txt") == "a"
    assert git(repo, "show", "prp/batch-6:c.txt") == "c"
    common = Path(git(repo, "rev-parse", "--git-common-dir").strip())
    assert not list((repo / common / "prp" / "reflogs").iterdir())  # the links are released


@pytest.mark.parametrize("check", ["own", "siblings"])
def test_a_gate_that_deletes_the_branch_only_in_the_merge_check_loses_no_merge(
    pytester: pytest.Pytester, repo: Path, check: str
) -> None:
    # PRP-7.1's gate is harmless on its own tree; on the merged tree (b.txt from PRP-7.2,
    # merged while 7.1's steps slept) it deletes the integration branch.
    gate = "if [ -e b.txt ]; then git branch -D prp/batch-7; fi\ntrue"
    write_prp(repo, "PRP-7.1", steps=["sleep 3"], creates={"a.txt": "a"}, gates=[gate])
    write_prp(repo, "PRP-7.2", creates={"b.txt": "b"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess(
        "--prp-batch", "7", "-n", "2", "-p", "no:randomly", "--prp-merge-check", check
    )
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    doc = result_json(repo, "7")
    statuses = {pid: e["status"] for pid, e in entries(doc).items()}
    assert statuses == {"PRP-7.1": "failed", "PRP-7.2": "success"}
    result.stdout.fnmatch_lines(["*PRP-7.1: the integration branch was deleted; *restored at*"])
    # PRP-7.2's merge is still on the branch, whatever became of PRP-7.1.
    assert git(repo, "show", "prp/batch-7:b.txt") == "b"


@pytest.mark.parametrize("check", ["own", "siblings"])
def test_a_gate_that_resets_the_branch_only_in_the_merge_check_loses_no_merge(
    pytester: pytest.Pytester, repo: Path, check: str
) -> None:
    # On the merged tree (b.txt from PRP-8.2), PRP-8.1's gate puts the integration branch back
    # on the first commit, off PRP-8.2's merge.
    reset = (
        "if [ -e b.txt ]; then git update-ref refs/heads/prp/batch-8 "
        "$(git rev-list --max-parents=0 HEAD); fi\ntrue"
    )
    write_prp(repo, "PRP-8.1", steps=["sleep 3"], creates={"a.txt": "a"}, gates=[reset])
    write_prp(repo, "PRP-8.2", creates={"b.txt": "b"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess(
        "--prp-batch", "8", "-n", "2", "-p", "no:randomly", "--prp-merge-check", check
    )
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    doc = result_json(repo, "8")
    statuses = {pid: e["status"] for pid, e in entries(doc).items()}
    assert statuses["PRP-8.2"] == "success", out
    # PRP-8.2's merge is still on the branch, whatever became of PRP-8.1.
    assert git(repo, "show", "prp/batch-8:b.txt") == "b", out
    if statuses["PRP-8.1"] == "success":
        assert git(repo, "show", "prp/batch-8:a.txt") == "a", out
    if statuses["PRP-8.1"] == "failed" and "PRP-8.1: its steps moved the integration" in out:
        # PRP-8.2 merged before PRP-8.1 was cut (a worker slow to start): its gate then reset
        # the branch in its own gate phase, where that fails it (and the branch is restored).
        return
    result.stdout.fnmatch_lines(
        [
            "*PRP-8.1: while it merged, prp/batch-8 was moved from * by something other than a "
            "checked merge*: put back at *"
        ]
    )


def test_no_changes_claims_nothing_for_steps_that_undo_themselves(
    pytester: pytest.Pytester, repo: Path
) -> None:
    (repo / "keep.txt").write_text("k\n")
    write_prp(
        repo, "PRP-10.1", steps=["echo x > keep.txt", "echo k > keep.txt", "mkdir -p empty/dir"]
    )
    write_prp(repo, "PRP-10.2", steps=["chmod +x keep.txt"], gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess("--prp-batch", "10", "-p", "no:randomly")
    out = result.stdout.str()
    doc = entries(result_json(repo, "10"))
    one, two = doc["PRP-10.1"], doc["PRP-10.2"]
    assert one["status"] == "no_changes", out
    assert (one["files_created"], one["files_modified"], one["commits"]) == ([], [], []), one
    assert two["status"] == "success", out
    assert two["files_modified"] == ["keep.txt"], two


def test_a_redos_steps_that_move_the_integration_branch_fail_it(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # PRP-11.1 conflicts with PRP-11.2 (both create x.txt) and is redone on the new tip; only
    # there (PRP-11.2's commit in its history) do its steps force the branch back off it.
    sneaky = (
        "if git log --format=%s HEAD -- | grep PRP-11.2 >/dev/null; then "
        "git branch -f prp/batch-11 HEAD~1; fi"
    )
    write_prp(repo, "PRP-11.1", steps=["sleep 3", sneaky], creates={"x.txt": "1"}, gates=["true"])
    write_prp(repo, "PRP-11.2", creates={"x.txt": "2"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess("--prp-batch", "11", "-n", "2", "-p", "no:randomly")
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    doc = entries(result_json(repo, "11"))
    assert doc["PRP-11.1"]["redos"] == 1, out
    statuses = {p: e["status"] for p, e in doc.items()}
    assert statuses == {"PRP-11.1": "failed", "PRP-11.2": "success"}, out
    result.stdout.fnmatch_lines(["*PRP-11.1: its steps moved the integration branch prp/batch-11*"])
    assert git(repo, "show", "prp/batch-11:x.txt") == "2"


def test_undo_foreign_tail_only_undoes_this_runs_moves(tmp_path: Path) -> None:

    from pytest_prp.workspace.git_workspace import GitWorkspace

    repo = init_repo(tmp_path / "r")
    first = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "prp/batch-1", first)
    git(repo, "branch", "-f", "prp/batch-1", second)  # by hand, before the run: left alone
    ws = GitWorkspace.open(repo)
    assert ws.ensure_branch("prp/batch-1") == second
    ws.undo_foreign_tail("prp/batch-1", held=False)
    assert ws.undone == [] and git(repo, "rev-parse", "prp/batch-1").strip() == second
    git(repo, "update-ref", "refs/heads/prp/batch-1", first)  # during the run: a gate, say
    ws.undo_foreign_tail("prp/batch-1", held=False)
    assert git(repo, "rev-parse", "prp/batch-1").strip() == second
    assert len(ws.undone) == 1 and ws.undone[0].endswith(f"put back at {second[:12]}")
    ws.undo_foreign_tail("prp/batch-1", held=False)  # its own undo is not undone
    assert git(repo, "rev-parse", "prp/batch-1").strip() == second and len(ws.undone) == 1


def test_an_integration_gate_that_resets_the_branch_in_a_stack_loses_no_merge(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """--prp-merge-batch: the stack's integration gate (run on the merged tree, which holds
    both PRPs' files) puts the branch back on the first commit; the stack's move puts it back
    where it was first and merges on top, so neither PRP's work is lost."""
    reset = (
        "if [ -e a.txt ] && [ -e b.txt ]; then git update-ref refs/heads/prp/batch-8 "
        "$(git rev-list --max-parents=0 HEAD); fi; true"
    )
    write_prp(repo, "PRP-8.1", steps=["sleep 3"], creates={"a.txt": "a"}, gates=["true"])
    write_prp(repo, "PRP-8.2", creates={"b.txt": "b"}, gates=["true"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    result = pytester.runpytest_subprocess(
        "--prp-batch", "8", "-n", "2", "-p", "no:randomly", "--prp-merge-batch",
        "--prp-integration-gate", reset,
    )  # fmt: skip
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    statuses = {pid: e["status"] for pid, e in entries(result_json(repo, "8")).items()}
    assert statuses == {"PRP-8.1": "success", "PRP-8.2": "success"}, out
    assert git(repo, "show", "prp/batch-8:a.txt") == "a", out
    assert git(repo, "show", "prp/batch-8:b.txt") == "b", out
    result.stdout.fnmatch_lines(["*PRP-8.1: while it merged, prp/batch-8 was moved from *"])
