"""pytest_prp.workspace.git_workspace (and the modules it is made of) against real repositories:
worktrees, commits, merges, the ledger, and the promise that the user's checkout is never
touched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import worktrees_dir
from pytest_prp.supervise.leftovers import pid_alive as alive
from pytest_prp.workspace.commit_build import parse_raw_diff
from pytest_prp.workspace.git_command import DEFAULT_EMAIL, DEFAULT_NAME, GitError, identity_env
from pytest_prp.workspace.git_workspace import GitWorkspace
from pytest_prp.workspace.ledger import trailers_message
from pytest_prp.workspace.ref_watch import RefState, describe_ref_changes
from pytest_prp.workspace.worktree_files import safe_name

PROJECT = Path(__file__).resolve().parents[1]
BATCH = "prp/batch-47"


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    # GIT_OPTIONAL_LOCKS=0: our own `git status` must not refresh (rewrite) the index we check.
    full_env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", **(env or {})}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(path: Path, identity: bool = True) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    if identity:
        git(path, "config", "user.name", "Test User")
        git(path, "config", "user.email", "test@example.com")
    (path / ".gitignore").write_text("*.log\n")
    (path / "tracked.txt").write_text("one\ntwo\nthree\n")
    (path / "staged.txt").write_text("original\n")
    git(path, "add", "-A")
    commit_env = {
        "GIT_AUTHOR_NAME": "Setup",
        "GIT_AUTHOR_EMAIL": "setup@example.com",
        "GIT_COMMITTER_NAME": "Setup",
        "GIT_COMMITTER_EMAIL": "setup@example.com",
    }
    git(path, "commit", "-q", "-m", "initial", env=commit_env)
    return path


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Neither the developer's git config nor their identity variables leak into these tests.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in (
        "GIT_CONFIG_GLOBAL",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def ws(repo: Path) -> GitWorkspace:
    return GitWorkspace.open(repo)


def make_dirty(root: Path) -> None:
    """A checkout in the middle of someone's work: every kind of state git knows."""
    (root / "tracked.txt").write_text("one\nTWO (unstaged)\nthree\n")
    (root / "staged.txt").write_text("staged change\n")
    git(root, "add", "staged.txt")
    (root / "untracked.txt").write_text("mine\n")
    (root / "debug.log").write_text("ignored\n")


def snapshot(root: Path) -> dict[str, object]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath, name)
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return {
        "status": git(root, "status", "--porcelain", "--ignored", "-uall"),
        "branch": (root / ".git" / "HEAD").read_text(),
        "head": git(root, "rev-parse", "HEAD"),
        "index": (root / ".git" / "index").read_bytes(),
        "files": files,
    }


def prp_commit(ws: GitWorkspace, prp_id: str, files: dict[str, str], start: str = BATCH) -> str:
    wt = ws.create_worktree(prp_id, f"prp/47/{prp_id}", start)
    for name, text in files.items():
        (wt / name).write_text(text)
    info = ws.commit_all(wt, trailers_message(f"{prp_id}: Complete - t", {"PRP-Id": prp_id}))
    assert info is not None
    return info.sha


# --------------------------------------------------------------------------- pure helpers


def test_trailers_message_is_read_back_by_git_as_trailers(repo: Path) -> None:
    message = trailers_message(
        "P-1: Complete - Add\nlogin", {"PRP-Id": "P-1", "PRP-Batch": "47", "PRP-Gates": "3/3"}
    )
    assert message == "P-1: Complete - Add login\n\nPRP-Id: P-1\nPRP-Batch: 47\nPRP-Gates: 3/3\n"
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
    ).stdout
    assert parsed == "PRP-Id: P-1\nPRP-Batch: 47\nPRP-Gates: 3/3\n"
    assert trailers_message("subject", {}) == "subject\n"
    with pytest.raises(ValueError):
        trailers_message("s", {"Bad Key": "v"})


def test_raw_diff_names_files_and_gitlinks() -> None:
    z = "0" * 40
    out = (
        "\x00".join(
            [
                f":000000 100644 {z} {z} A",
                "new.txt",
                f":100644 100644 {z} {z} M",
                "old.txt",
                f":100644 000000 {z} {z} D",
                "gone.txt",
                f":000000 160000 {z} {z} A",
                "nested",
                f":160000 000000 {z} {z} D",
                "removed-sub",
            ]
        )
        + "\x00"
    )
    info, gitlinks = parse_raw_diff("abc", out)
    assert (info.created, info.modified, info.deleted) == (
        ("new.txt", "nested"),
        ("old.txt",),
        ("gone.txt", "removed-sub"),
    )
    assert gitlinks == ("nested",)  # a removed submodule is recorded, not refused
    assert parse_raw_diff("abc", "") == (parse_raw_diff("abc", "")[0], ())


def test_ref_changes_are_described_one_line_each() -> None:
    a, b = "a" * 40, "b" * 40
    before = RefState("ref: refs/heads/prp/9/P-1", a, 10, {"refs/heads/main": a, "refs/tags/t": a})
    same = RefState(before.head, a, 10, dict(before.refs))
    assert describe_ref_changes(before, same, "") == []
    after = RefState(b, b, 20, {"refs/heads/main": b, "refs/heads/new": a})
    reflog = f"{a} {b} Agent <a@x> 1 +0000\tcheckout: moving from prp/9/P-1 to {b}\n"
    assert describe_ref_changes(before, after, reflog) == [
        f"HEAD detached at {b[:12]} (was prp/9/P-1)",
        f"git: checkout: moving from prp/9/P-1 to {b}",
        f"refs/heads/main moved from {a[:12]} to {b[:12]}",
        f"refs/heads/new created at {a[:12]}",
        f"refs/tags/t deleted (was {a[:12]})",
    ]
    moved = RefState(before.head, b, 10, dict(before.refs))
    assert describe_ref_changes(before, moved, "") == [f"prp/9/P-1 moved from {a[:12]} to {b[:12]}"]


def test_safe_name_keeps_plain_ids_and_separates_mangled_ones() -> None:
    assert safe_name("PRP-001.v2_x") == "PRP-001.v2_x"
    assert safe_name("a/b").startswith("a_b-")
    assert safe_name("a/b") != safe_name("a_b") != safe_name("a b")
    assert "/" not in safe_name("../../etc") and not safe_name("..").startswith(".")


def test_identity_env_only_fills_what_is_missing() -> None:
    assert identity_env({}, {"user.name": "U", "user.email": "u@x"}) == {}
    assert identity_env({}, {}) == {
        "GIT_AUTHOR_NAME": DEFAULT_NAME,
        "GIT_AUTHOR_EMAIL": DEFAULT_EMAIL,
        "GIT_COMMITTER_NAME": DEFAULT_NAME,
        "GIT_COMMITTER_EMAIL": DEFAULT_EMAIL,
    }
    assert identity_env({"EMAIL": "e@x"}, {"user.name": "U"}) == {}
    assert identity_env({"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x"}, {}) == {
        "GIT_COMMITTER_NAME": DEFAULT_NAME,
        "GIT_COMMITTER_EMAIL": DEFAULT_EMAIL,
    }


# --------------------------------------------------------------------------- opening


def test_open_outside_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError) as e:
        GitWorkspace.open(plain)
    assert str(e.value) == f"not inside a git repository: {plain}"


def test_open_without_git_on_path(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    with pytest.raises(GitError) as e:
        GitWorkspace.open(repo)
    assert str(e.value) == "git is not installed or not on PATH"


def test_open_repository_without_commits(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(GitError) as e:
        GitWorkspace.open(empty)
    assert str(e.value) == f"the repository at {empty} has no commits yet"


def test_open_inside_the_git_dir_is_not_a_checkout(repo: Path) -> None:
    with pytest.raises(GitError, match=r"^not inside a git checkout \(bare repository"):
        GitWorkspace.open(repo / ".git")


def test_open_from_a_subdirectory_finds_the_top(repo: Path) -> None:
    sub = repo / "a" / "b"
    sub.mkdir(parents=True)
    ws = GitWorkspace.open(sub)
    assert ws.root == repo
    assert ws.common_dir == repo / ".git"
    assert ws.head_sha() == git(repo, "rev-parse", "HEAD")


def test_open_refuses_hook_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_INDEX_FILE", str(repo / ".git" / "index"))
    with pytest.raises(GitError, match="GIT_INDEX_FILE set in the environment"):
        GitWorkspace.open(repo)


# --------------------------------------------------------------------------- refs


def test_resolve_and_branch_sha(ws: GitWorkspace, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert ws.resolve("main") == ws.resolve(head[:8]) == head
    assert ws.branch_sha("main") == head
    assert ws.branch_sha("nope") is None
    with pytest.raises(GitError, match=r"^unknown revision: nope$"):
        ws.resolve("nope")
    with pytest.raises(GitError, match=r"^unknown revision: --all$"):
        ws.resolve("--all")


def test_branch_sha_of_loose_and_packed_refs(ws: GitWorkspace, repo: Path) -> None:
    # A loose ref file is read without starting git; packed refs are asked of git.
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "branch", "loose")
    assert ws.branch_sha("loose") == head
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git/refs/heads/loose").exists()
    assert ws.branch_sha("loose") == head
    (repo / ".git/refs/heads/odd").write_text("not a sha\n")
    assert ws.branch_sha("odd") is None
    assert ws.branch_sha("../../HEAD") is None  # never a path outside refs/heads
    # A merge into a packed branch (its fast path cannot peek) still lands.
    ws.ensure_branch(BATCH)
    git(repo, "pack-refs", "--all")
    start = git(repo, "rev-parse", BATCH)
    wt = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    (wt / "a.txt").write_text("a")
    info = ws.commit_all(wt, "P-1: Complete - a", move_branch=False)
    assert info is not None
    result = ws.merge(BATCH, info.sha, "m", parent=start, delete_branch="prp/47/P-1")
    assert result.ok and result.fast_forward and ws.branch_sha(BATCH) == info.sha


def test_ensure_branch_creates_once_then_reuses_without_checkout(
    ws: GitWorkspace, repo: Path
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    assert ws.ensure_branch(BATCH) == base
    moved = prp_commit(ws, "P-1", {"a.txt": "a"})
    assert ws.merge(BATCH, moved, "m").ok
    assert ws.ensure_branch(BATCH, base="nonexistent-is-not-consulted") == moved
    assert git(repo, "branch", "--show-current") == "main"
    with pytest.raises(GitError, match="unknown revision: nope"):
        ws.ensure_branch("prp/other", base="nope")
    assert ws.branch_sha("prp/other") is None


def test_ensure_branch_refuses_a_checked_out_branch(ws: GitWorkspace, repo: Path) -> None:
    with pytest.raises(GitError) as e:
        ws.ensure_branch("main")
    assert str(e.value).startswith(f"integration branch main is checked out in {repo};")
    other = repo.parent / "other"
    git(repo, "worktree", "add", "-q", "-b", BATCH, str(other))
    with pytest.raises(GitError) as e:
        ws.ensure_branch(BATCH)
    assert f"integration branch {BATCH} is checked out in {other};" in str(e.value)
    assert ws.checked_out_in(BATCH) == other
    assert ws.checked_out_in("prp/unused") is None


# --------------------------------------------------------------------------- the user's checkout


def test_user_checkout_is_never_touched(ws: GitWorkspace, repo: Path) -> None:
    make_dirty(repo)
    before = snapshot(repo)
    ws.ensure_branch(BATCH)
    first = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    second = ws.create_worktree("P-2", "prp/47/P-2", BATCH)
    (first / "tracked.txt").write_text("changed by P-1\ntwo\nthree\n")
    (first / "new.txt").write_text("new\n")
    (second / "other.txt").write_text("other\n")
    (second / "staged.txt").unlink()
    assert snapshot(repo) == before  # worktrees with uncommitted work are invisible
    one = ws.commit_all(first, trailers_message("P-1: Complete - x", {"PRP-Id": "P-1"}))
    two = ws.commit_all(second, "P-2")
    assert one is not None and two is not None
    assert ws.merge(BATCH, one.sha, "merge P-1").fast_forward
    merged = ws.merge(BATCH, two.sha, "merge P-2")
    assert merged.ok and not merged.fast_forward
    assert snapshot(repo) == before
    ws.done_with_worktree(first)
    ws.done_with_worktree(second)
    assert ws.ledger(["HEAD", BATCH]) == {"P-1": one.sha}
    ws.create_worktree("P-3", "prp/47/P-3", BATCH)
    ws.clean()
    assert snapshot(repo) == before
    assert git(repo, "show", f"{BATCH}:new.txt") == "new"


def test_worktrees_live_outside_git_status(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    wt = ws.create_worktree("feature/login flow", "prp/47/login", BATCH)
    (wt / "scratch.txt").write_text("x")
    assert wt.parent == worktrees_dir(repo) == ws.worktrees_dir
    assert ".git" not in wt.parts and not wt.is_relative_to(repo)
    assert wt.name.startswith("feature_login_flow-")
    assert git(repo, "status", "--porcelain", "--ignored", "-uall") == ""
    assert git(wt, "branch", "--show-current") == "prp/47/login"  # on a branch, not detached
    assert git(wt, "status", "--porcelain") == "?? scratch.txt"
    assert ws.list_prp_worktrees() == [wt]


# --------------------------------------------------------------------------- commits


def test_commit_all_commits_everything_but_ignored_files(ws: GitWorkspace, repo: Path) -> None:
    base = ws.ensure_branch(BATCH)
    wt = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    assert ws.commit_all(wt, "nothing yet") is None
    (wt / "tracked.txt").write_text("rewritten\n")
    (wt / "staged.txt").unlink()
    (wt / "pkg").mkdir()
    (wt / "pkg" / "mod.py").write_text("x = 1\n")
    (wt / "run.log").write_text("ignored\n")
    message = trailers_message("P-1: Complete - t", {"PRP-Id": "P-1", "PRP-Batch": "47"})
    info = ws.commit_all(wt, message)
    assert info is not None
    assert (info.created, info.modified, info.deleted) == (
        ("pkg/mod.py",),
        ("tracked.txt",),
        ("staged.txt",),
    )
    assert git(repo, "rev-parse", "prp/47/P-1") == info.sha
    assert git(repo, "rev-parse", f"{info.sha}^") == base
    assert git(repo, "log", "-1", "--format=%B", info.sha) == message.strip()
    assert git(repo, "log", "-1", "--format=%an <%ae>", info.sha) == "Test User <test@example.com>"
    assert git(wt, "status", "--porcelain") == ""  # the worktree's own index is in sync
    assert (wt / "run.log").exists()
    assert ws.commit_all(wt, "again") is None
    assert ws.changed_files(info.sha) == info
    empty = ws.commit_all(
        wt, trailers_message("P-1: Complete", {"PRP-Id": "P-1"}), allow_empty=True
    )
    assert empty is not None and (empty.created, empty.modified, empty.deleted) == ((), (), ())
    assert git(repo, "rev-parse", f"{empty.sha}^", f"{empty.sha}^{{tree}}").split() == [
        info.sha,
        git(repo, "rev-parse", f"{info.sha}^{{tree}}"),
    ]
    assert ws.ledger(["prp/47/P-1"]) == {"P-1": empty.sha}
    assert ws.changed_files(empty.sha) == empty


def test_commits_run_no_hooks(ws: GitWorkspace, repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    marker = repo.parent / "hook-ran"
    for name in (
        "pre-commit",
        "commit-msg",
        "post-commit",
        "post-checkout",
        "reference-transaction",
    ):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\necho {name} >> '{marker}'\nexit 1\n")
        hook.chmod(0o755)
    ws.ensure_branch(BATCH)
    one = prp_commit(ws, "P-1", {"a.txt": "a"})
    two = prp_commit(ws, "P-2", {"b.txt": "b"})
    assert ws.merge(BATCH, one, "m1").ok and ws.merge(BATCH, two, "m2").ok
    ws.clean()
    assert not marker.exists()


def test_identity_falls_back_when_none_is_configured(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "anon", identity=False)
    ws = GitWorkspace.open(repo)
    ws.ensure_branch(BATCH)
    one = prp_commit(ws, "P-1", {"a.txt": "a"})
    two = prp_commit(ws, "P-2", {"b.txt": "b"})
    ws.merge(BATCH, one, "m1")
    merge = ws.merge(BATCH, two, "m2")
    assert merge.ok and not merge.fast_forward
    for sha in (one, merge.sha or ""):
        who = git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha)
        assert who == f"{DEFAULT_NAME} <{DEFAULT_EMAIL}>|{DEFAULT_NAME} <{DEFAULT_EMAIL}>"
    # Only our commits: nothing was written to the user's config.
    assert "user." not in git(repo, "config", "--list", "--local")


# --------------------------------------------------------------------------- merges


def test_fast_forward_merge(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    sha = prp_commit(ws, "P-1", {"a.txt": "a"})
    result = ws.merge(BATCH, "prp/47/P-1", "unused for fast-forward")  # a name is resolved
    assert result.ok and result.fast_forward and result.sha == sha and result.conflicts == ()
    assert git(repo, "rev-parse", BATCH) == sha
    again = ws.merge(BATCH, sha, "again")  # already merged: nothing new
    assert again.ok and again.sha == sha and not again.fast_forward


def test_true_merge_of_independent_commits(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    one = prp_commit(ws, "P-1", {"a.txt": "a"})
    two = prp_commit(ws, "P-2", {"b.txt": "b"})
    assert ws.merge(BATCH, one, "m1").fast_forward
    result = ws.merge(BATCH, two, "Merge P-2")
    assert result.ok and not result.fast_forward and result.sha is not None
    assert git(repo, "rev-parse", BATCH) == result.sha
    assert git(repo, "log", "-1", "--format=%P|%s", result.sha) == f"{one} {two}|Merge P-2"
    assert git(repo, "ls-tree", "--name-only", BATCH).split() == [
        ".gitignore",
        "a.txt",
        "b.txt",
        "staged.txt",
        "tracked.txt",
    ]
    merged = ws.changed_files(result.sha)  # first-parent view: what the merge brought in
    assert (merged.sha, merged.created, merged.modified) == (result.sha, ("b.txt",), ())


def test_conflict_leaves_branch_unchanged_and_names_paths(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    one = prp_commit(ws, "P-1", {"tracked.txt": "P-1 version\n", "a.txt": "a"})
    two = prp_commit(ws, "P-2", {"tracked.txt": "P-2 version\n", "b.txt": "b"})
    ws.merge(BATCH, one, "m1")
    result = ws.merge(BATCH, two, "m2")
    assert result == type(result)(ok=False, sha=None, conflicts=("tracked.txt",))
    assert git(repo, "rev-parse", BATCH) == one


def branches(repo: Path, under: str = "refs/heads/prp/47/") -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", under).split()


def test_merge_deletes_the_prp_branch_in_the_same_update(ws: GitWorkspace, repo: Path) -> None:
    start = ws.ensure_branch(BATCH)
    one = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    (one / "a.txt").write_text("a")
    a = ws.commit_all(one, "P-1: Complete - a", move_branch=False)
    assert a is not None and git(repo, "rev-parse", "prp/47/P-1") == start  # not moved
    result = ws.merge(BATCH, a.sha, "m", parent=start, delete_branch="prp/47/P-1")
    assert result.ok and result.fast_forward and git(repo, "rev-parse", BATCH) == a.sha
    assert branches(repo) == []
    # A true merge deletes it too; a conflict changes neither ref.
    two = ws.create_worktree("P-2", "prp/47/P-2", start)
    (two / "b.txt").write_text("b")
    (two / "tracked.txt").write_text("P-2\n")
    b = ws.commit_all(two, "P-2: Complete - b", move_branch=False)
    assert b is not None
    three = ws.create_worktree("P-3", "prp/47/P-3", start)
    (three / "tracked.txt").write_text("P-3\n")
    c = ws.commit_all(three, "P-3: Complete - c", move_branch=False)
    assert c is not None
    merged = ws.merge(BATCH, b.sha, "m2", parent=start, delete_branch="prp/47/P-2")
    assert merged.ok and not merged.fast_forward
    assert branches(repo) == ["prp/47/P-3"]
    tip = git(repo, "rev-parse", BATCH)
    conflict = ws.merge(BATCH, c.sha, "m3", parent=start, delete_branch="prp/47/P-3")
    assert not conflict.ok and conflict.conflicts == ("tracked.txt",)
    assert git(repo, "rev-parse", BATCH) == tip
    assert git(repo, "rev-parse", "prp/47/P-3") == start
    ws.set_branch("prp/47/P-3", c.sha, three)  # what the runner keeps for a failed merge
    assert git(repo, "rev-parse", "prp/47/P-3") == c.sha
    assert git(three, "status", "--porcelain") == ""


def test_merge_into_missing_branch(ws: GitWorkspace) -> None:
    with pytest.raises(GitError, match="branch prp/none does not exist"):
        ws.merge("prp/none", ws.head_sha(), "m")


PARALLEL_WORKER = r"""
import json, sys, time
from pathlib import Path
from pytest_prp.workspace.git_workspace import GitWorkspace
from pytest_prp.workspace.ledger import trailers_message

root, n, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
ws = GitWorkspace.open(root)
while not go.exists():
    time.sleep(0.002)
tip = ws.ensure_branch("prp/batch-par")
wt = ws.prp_worktree(f"P-{n}", f"prp/par/P-{n}", tip)
(wt / f"file-{n}.txt").write_text(n)
message = trailers_message(f"P-{n}: Complete", {"PRP-Id": f"P-{n}"})
info = ws.commit_all(wt, message, move_branch=False)
merged = f"Merge P-{n}"
result = ws.merge("prp/batch-par", info.sha, merged, parent=tip, delete_branch=f"prp/par/P-{n}")
ws.done_with_worktree(wt)
ws.release_worktree()
print(json.dumps({"ok": result.ok, "conflicts": list(result.conflicts), "worktree": wt.name}))
"""


def test_parallel_workers_merge_into_one_branch(repo: Path, tmp_path: Path) -> None:
    make_dirty(repo)
    before = snapshot(repo)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", PARALLEL_WORKER, str(repo), str(n), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    go.touch()  # all start together
    outputs = [w.communicate(timeout=60) for w in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        done = json.loads(out)
        assert (done["ok"], done["conflicts"]) == (True, [])
        assert done["worktree"].startswith("+slot-")
    files = git(repo, "ls-tree", "--name-only", "prp/batch-par").split()
    assert [f for f in files if f.startswith("file-")] == [f"file-{n}.txt" for n in range(8)]
    ids = git(repo, "log", "--format=%(trailers:key=PRP-Id,valueonly)", "prp/batch-par").split()
    assert sorted(ids) == [f"P-{n}" for n in range(8)]  # each exactly once
    ws = GitWorkspace.open(repo)
    assert sorted(ws.ledger(["prp/batch-par"])) == [f"P-{n}" for n in range(8)]
    assert ws.list_prp_worktrees() == []
    assert snapshot(repo) == before


MERGE_ONE = r"""
import sys
from pathlib import Path
from pytest_prp.workspace.git_workspace import GitWorkspace

ws = GitWorkspace.open(Path(sys.argv[1]))
print(ws.merge(sys.argv[2], sys.argv[3], "Merge").sha)
"""


def test_merges_into_a_branch_take_turns_across_processes(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    commit = prp_commit(ws, "PRP-47.1.1", {"a.txt": "a"})
    tip = ws.branch_sha(BATCH)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    with ws.merge_turn(BATCH):
        merging = subprocess.Popen(
            [sys.executable, "-c", MERGE_ONE, str(repo), BATCH, commit],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            merging.wait(timeout=1.0)  # waits for our turn to end
        assert ws.branch_sha(BATCH) == tip
    out, err = merging.communicate(timeout=30)
    assert merging.returncode == 0, err
    assert out.strip() == commit == ws.branch_sha(BATCH)  # a fast-forward once it got the turn


# --------------------------------------------------------------------------- the ledger


def test_ledger_reads_trailers_and_complete_subjects(ws: GitWorkspace, repo: Path) -> None:
    def commit(subject: str, trailers: dict[str, str] | None = None) -> str:
        message = trailers_message(subject, trailers or {})
        git(repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(repo, "rev-parse", "HEAD")

    old = commit("P-1: Complete - old style")
    trailer = commit("Implement login", {"PRP-Id": "P-2", "PRP-Batch": "47"})
    commit("P-3: Started, not finished")  # neither convention
    commit("Unrelated work mentioning PRP-Id: P-4 inline")  # not a trailer line
    git(repo, "checkout", "-q", "-b", BATCH)
    on_batch = commit("Merge", {"PRP-Id": "P-5"})
    git(repo, "checkout", "-q", "-b", "other", "main")
    commit("P-6: Complete - elsewhere")
    git(repo, "checkout", "-q", "main")
    assert ws.ledger(["HEAD"]) == {"P-1": old, "P-2": trailer}
    assert ws.ledger(["HEAD", BATCH, "prp/batch-missing"]) == {
        "P-1": old,
        "P-2": trailer,
        "P-5": on_batch,
    }
    assert ws.ledger(["prp/batch-missing"]) == {}
    assert ws.ledger([]) == {}


def test_ledger_prefers_the_newest_commit(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    first = prp_commit(ws, "P-1", {"a.txt": "a"})
    ws.merge(BATCH, first, "m1")
    redo = prp_commit(ws, "P-1", {"a.txt": "again"})
    ws.merge(BATCH, redo, "m2")
    assert ws.ledger([BATCH]) == {"P-1": redo}


# --------------------------------------------------------------------------- cleanup


def test_stale_worktree_and_branch_are_recreated(ws: GitWorkspace, repo: Path) -> None:
    base = ws.ensure_branch(BATCH)
    wt = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    (wt / "half-done.txt").write_text("killed here")
    assert ws.commit_all(wt, "partial") is not None
    (wt / "uncommitted.txt").write_text("x")
    again = ws.create_worktree("P-1", "prp/47/P-1", BATCH)  # the run was killed; start over
    assert again == wt
    assert git(repo, "rev-parse", "prp/47/P-1") == base
    assert not (wt / "half-done.txt").exists() and not (wt / "uncommitted.txt").exists()
    assert git(wt, "status", "--porcelain") == ""


def test_worktree_recreated_after_directory_vanished_or_add_was_killed(
    ws: GitWorkspace, repo: Path
) -> None:
    ws.ensure_branch(BATCH)
    wt = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    admin = Path(git(wt, "rev-parse", "--absolute-git-dir"))
    shutil.rmtree(wt)  # directory deleted, registration left behind
    assert ws.create_worktree("P-1", "prp/47/P-1", BATCH) == wt and (wt / "tracked.txt").exists()
    shutil.rmtree(wt)
    (admin / "locked").write_text("initializing")  # what a killed `worktree add` leaves
    assert ws.create_worktree("P-1", "prp/47/P-1", BATCH) == wt and (wt / "tracked.txt").exists()
    assert git(wt, "branch", "--show-current") == "prp/47/P-1"


def test_each_prp_gets_a_clean_checkout_in_the_reused_worktree(
    ws: GitWorkspace, repo: Path
) -> None:
    base = ws.ensure_branch(BATCH)
    wt = ws.prp_worktree("P-1", "prp/47/P-1", base)
    assert wt.parent == ws.worktrees_dir and wt.name == "+slot-0"
    assert git(wt, "branch", "--show-current") == "prp/47/P-1"
    # P-1 leaves every kind of leftover: changed, deleted, new and nested files (committed
    # and merged, so staged in its index), then untracked and ignored files, a nested repo.
    (wt / "tracked.txt").write_text("changed by P-1\n")
    (wt / "staged.txt").unlink()
    (wt / "deep" / "er").mkdir(parents=True)
    (wt / "deep" / "er" / "new.txt").write_text("new\n")
    info = ws.commit_all(wt, "P-1: Complete", move_branch=False)
    assert info is not None
    assert ws.merge(BATCH, info.sha, "m", parent=base, delete_branch="prp/47/P-1").ok
    (wt / "untracked.txt").write_text("after the commit\n")
    (wt / "build.log").write_text("ignored\n")
    git(wt, "init", "-q", "scratch-repo")
    ws.done_with_worktree(wt)

    again = ws.prp_worktree("P-2", "prp/47/P-2", base)  # from the old tip: nothing of P-1
    assert again == wt
    assert git(wt, "status", "--porcelain", "--ignored", "-uall") == ""
    assert sorted(p.name for p in wt.iterdir()) == [
        ".git",
        ".gitignore",
        "staged.txt",
        "tracked.txt",
    ]
    assert (wt / "tracked.txt").read_text() == "one\ntwo\nthree\n"
    assert git(wt, "branch", "--show-current") == "prp/47/P-2"
    assert git(wt, "rev-parse", "HEAD") == base
    assert ws.branch_sha("prp/47/P-1") is None  # deleted by the merge, not brought back

    detached = ws.prp_worktree("verify-P-2", None, BATCH)  # --prp-verify: no branch
    assert detached == wt and git(wt, "rev-parse", "HEAD") == ws.branch_sha(BATCH)
    assert (wt / "deep" / "er" / "new.txt").exists()
    assert git(wt, "branch", "--show-current") == ""
    ws.done_with_worktree(wt)
    ws.release_worktree()
    assert not wt.exists() and ws.list_prp_worktrees() == []
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_failed_prp_keeps_its_worktree_under_its_name(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    wt = ws.prp_worktree("P-1", "prp/47/P-1", BATCH)
    (wt / "wip.txt").write_text("work in progress\n")
    kept = ws.keep_worktree(wt, "P-1")
    assert kept == ws.worktree_path("P-1") and not wt.exists()
    assert (kept / "wip.txt").read_text() == "work in progress\n"
    assert git(kept, "branch", "--show-current") == "prp/47/P-1"
    assert git(kept, "status", "--porcelain") == "?? wip.txt"

    other = ws.prp_worktree("P-2", "prp/47/P-2", BATCH)  # a new reused worktree
    assert other != kept and not (other / "wip.txt").exists()
    assert (kept / "wip.txt").exists()
    ws.done_with_worktree(other)
    assert ws.prp_worktree("P-1", "prp/47/P-1", BATCH) == other  # P-1 again: kept one goes
    assert not kept.exists() and not (other / "wip.txt").exists()

    # Cut short (Ctrl-C: no teardown): the end of the process keeps it under P-1's name.
    (other / "half.txt").write_text("cut short\n")
    ws.release_worktree()
    assert ws.list_prp_worktrees() == [kept] and (kept / "half.txt").exists()
    assert not other.exists()


def test_processes_never_share_a_reused_worktree(repo: Path) -> None:
    # flock locks belong to open files: two workspaces in one process exclude each other
    # exactly as two xdist workers do.
    first, second = GitWorkspace.open(repo), GitWorkspace.open(repo)
    first.ensure_branch(BATCH)
    a = first.prp_worktree("P-1", "prp/47/P-1", BATCH)
    b = second.prp_worktree("P-2", "prp/47/P-2", BATCH)
    assert (a.name, b.name) == ("+slot-0", "+slot-1")
    (a / "a.txt").write_text("a")
    assert not (b / "a.txt").exists()
    first.done_with_worktree(a)
    first.release_worktree()  # slot 0 is free again
    third = GitWorkspace.open(repo)
    assert third.prp_worktree("P-3", "prp/47/P-3", BATCH).name == "+slot-0"
    for ws in (second, third):
        ws.release_worktree()  # P-2 and P-3 were "cut short": kept under their names
    assert [p.name for p in third.list_prp_worktrees()] == ["P-2", "P-3"]


def test_a_branch_left_checked_out_by_a_killed_process_does_not_block_the_prp(
    repo: Path,
) -> None:
    # A process killed while running P-1 leaves P-1's branch checked out in its worktree. On
    # the rerun another worker, in a worktree of its own, must still be able to run P-1.
    holder, rerun = GitWorkspace.open(repo), GitWorkspace.open(repo)
    holder.ensure_branch(BATCH)
    holder.prp_worktree("P-0", "prp/47/P-0", BATCH)  # slot 0: the killed one takes slot 1
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_PRP, str(repo), BATCH],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert killed.stdout is not None
    stale = Path(killed.stdout.readline().strip())
    own = rerun.prp_worktree("P-2", "prp/47/P-2", BATCH)  # slot 2, taken while it lives
    rerun.done_with_worktree(own)
    killed.kill()
    killed.wait()
    fresh = rerun.prp_worktree("P-1", "prp/47/P-1", BATCH)
    assert fresh == own != stale and not stale.exists()  # the same PRP's stale try is gone
    assert git(fresh, "branch", "--show-current") == "prp/47/P-1"
    assert git(fresh, "status", "--porcelain") == "" and not (fresh / "half.txt").exists()
    holder.release_worktree()
    rerun.release_worktree()


def test_a_prp_branch_in_use_by_a_live_process_is_never_reset(repo: Path) -> None:
    # Two processes on the same PRP (two runs of one batch): the second must not move the
    # branch the first has checked out (its HEAD would move under it).
    first, second = GitWorkspace.open(repo), GitWorkspace.open(repo)
    first.ensure_branch(BATCH)
    busy = first.prp_worktree("P-1", "prp/47/P-1", BATCH)
    (busy / "work.txt").write_text("in progress\n")
    other_start = prp_commit(first, "P-9", {"x.txt": "x"})
    with pytest.raises(GitError, match=r"prp/47/P-1 .*in use by another running process"):
        second.prp_worktree("P-1", "prp/47/P-1", other_start)
    assert git(repo, "rev-parse", "prp/47/P-1") == git(repo, "rev-parse", BATCH)
    assert (busy / "work.txt").exists() and git(busy, "branch", "--show-current") == "prp/47/P-1"
    first.release_worktree()
    second.release_worktree()


def test_a_merge_never_moves_a_branch_to_a_commit_that_drops_its_tip(
    ws: GitWorkspace, repo: Path
) -> None:
    # The caller says the commit was built on `parent` (the tip), but it was not (its worktree's
    # HEAD was moved under it): the branch must still keep the tip it had.
    ws.ensure_branch(BATCH)
    first = prp_commit(ws, "P-1", {"a.txt": "a"})
    assert ws.merge(BATCH, first, "m1").ok
    astray = prp_commit(ws, "P-2", {"b.txt": "b"}, start="main")  # not on P-1
    result = ws.merge(BATCH, astray, "m2", parent=first)
    assert result.ok
    tip = git(repo, "rev-parse", BATCH)
    for merged in (first, astray):
        git(repo, "merge-base", "--is-ancestor", merged, tip)  # raises if not
    assert git(repo, "show", f"{BATCH}:a.txt") == "a"


KILLED_MID_PRP = r"""
import sys, time
from pathlib import Path
from pytest_prp.workspace.git_workspace import GitWorkspace

ws = GitWorkspace.open(Path(sys.argv[1]))
wt = ws.prp_worktree("P-1", "prp/47/P-1", sys.argv[2])
(wt / "half.txt").write_text("cut short\n")
print(wt, flush=True)
time.sleep(60)
"""


def test_work_of_a_process_killed_mid_prp_is_kept_not_reset(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_PRP, str(repo), BATCH],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    slot = Path(proc.stdout.readline().strip())
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait(timeout=30)
    assert (slot / "half.txt").exists()
    fresh = ws.prp_worktree("P-2", "prp/47/P-2", BATCH)  # takes the dead process's slot
    assert fresh == slot and not (fresh / "half.txt").exists()
    kept = ws.worktree_path("P-1")
    assert (kept / "half.txt").read_text() == "cut short\n"
    assert git(kept, "branch", "--show-current") == "prp/47/P-1"
    ws.done_with_worktree(fresh)
    ws.release_worktree()
    assert ws.list_prp_worktrees() == [kept]


KILLED_WITH_ORPHANS = r"""
import os, subprocess, sys, time
from pathlib import Path
from pytest_prp.supervise import leftovers
from pytest_prp.workspace.git_workspace import GitWorkspace

ws = GitWorkspace.open(Path(sys.argv[1]))
wt = ws.prp_worktree("verify-P-1", None, sys.argv[2])  # detached: no branch to keep it under
(wt / "half.txt").write_text("cut short\n")
# A step's detached process (it carries this run's cookie), and one that wiped its environment.
step = {**os.environ, leftovers.COOKIE: leftovers.new_token(None)}
ours = subprocess.Popen(["sleep", "60"], cwd=wt, env=step, start_new_session=True)
scrubbed = subprocess.Popen(["sleep", "61"], cwd=wt, env={}, start_new_session=True)
print(wt, ours.pid, scrubbed.pid, flush=True)
time.sleep(60)
"""


def test_a_worktree_a_dead_run_may_still_use_is_set_aside_and_its_processes_ended(
    ws: GitWorkspace, repo: Path
) -> None:
    ws.ensure_branch(BATCH)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WITH_ORPHANS, str(repo), BATCH],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    path, ours, scrubbed = proc.stdout.readline().split()
    slot = Path(path)
    proc.kill()  # SIGKILL: its processes live on
    proc.wait(timeout=30)
    try:
        assert alive(int(ours)) and alive(int(scrubbed))
        fresh = ws.prp_worktree("P-2", "prp/47/P-2", BATCH)  # takes the dead run's slot
        assert not alive(int(ours))  # it carried the dead run's cookie
        assert alive(int(scrubbed))  # not known to be ours: left alone, but not reused
        assert fresh == slot and not (fresh / "half.txt").exists()
        aside = ws.worktrees_dir / "+orphaned-0"
        assert (aside / "half.txt").read_text() == "cut short\n"
        ws.done_with_worktree(fresh)
        ws.release_worktree()
        assert ws.list_prp_worktrees() == [aside]
    finally:
        for pid in (int(ours), int(scrubbed)):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_clean_leaves_the_worktree_of_a_running_batch_alone(repo: Path) -> None:
    running, other = GitWorkspace.open(repo), GitWorkspace.open(repo)
    running.ensure_branch(BATCH)
    live = running.prp_worktree("P-1", "prp/47/P-1", BATCH)
    (live / "work.txt").write_text("in progress\n")
    failed = other.prp_worktree("P-2", "prp/47/P-2", BATCH)
    failed = other.keep_worktree(failed, "P-2")
    other.release_worktree()
    assert GitWorkspace.open(repo).clean() == [failed]  # --prp-clean from another terminal
    assert (live / "work.txt").exists() and not failed.exists()
    running.release_worktree()
    assert GitWorkspace.open(repo).clean() == [running.worktree_path("P-1")]  # kept at exit


def test_a_damaged_or_deleted_reused_worktree_is_started_over(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    wt = ws.prp_worktree("P-1", "prp/47/P-1", BATCH)
    ws.done_with_worktree(wt)
    shutil.rmtree(wt)  # deleted by hand
    assert not wt.exists()
    assert ws.prp_worktree("P-2", "prp/47/P-2", BATCH) == wt and (wt / "tracked.txt").exists()
    ws.done_with_worktree(wt)
    (wt / ".git").write_text("gitdir: /nowhere\n")  # broken link to its admin dir
    assert ws.prp_worktree("P-3", "prp/47/P-3", BATCH) == wt
    assert git(wt, "branch", "--show-current") == "prp/47/P-3"
    assert git(wt, "status", "--porcelain") == ""


def test_clean_removes_every_prp_worktree_and_branch(ws: GitWorkspace, repo: Path) -> None:
    ws.ensure_branch(BATCH)
    a = ws.create_worktree("P-1", "prp/47/P-1", BATCH)
    b = ws.create_worktree("P-2", "prp/47/P-2", BATCH)
    (b / "wip.txt").write_text("wip")
    leftover = ws.worktrees_dir / "leftover"
    leftover.mkdir()
    assert ws.list_prp_worktrees() == sorted([a, b, leftover])
    assert ws.clean() == sorted([a, b, leftover])
    assert ws.list_prp_worktrees() == []
    assert branches(repo) == []
    assert ws.branch_sha(BATCH) is not None  # the integration branch stays
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
