"""The packs commits travel in between a remote worker and the controller (``remote``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_prp.remote import pack_for, parents_in_pack, unpack
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace
from tests.conftest import git, init_repo
from tests.loopback import clone


def commit_files(repo: Path, count: int, tag: str) -> str:
    for n in range(count):
        (repo / f"{tag}{n}.txt").write_text(f"{tag} {n}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", tag)
    return git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("files", [3, 150])  # loose objects, or a pack kept (as git fetch)
def test_a_pack_brings_what_the_other_clone_lacks(tmp_path: Path, files: int) -> None:
    source = init_repo(tmp_path / "source")
    base = git(source, "rev-parse", "HEAD")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    other = clone(bare, tmp_path / "other")
    tip = commit_files(source, files, "new")
    sender, receiver = GitWorkspace.open(source), GitWorkspace.open(other)
    with pytest.raises(subprocess.CalledProcessError):
        git(other, "cat-file", "-e", tip)
    packs_before = len(list((other / ".git/objects/pack").glob("*.pack")))
    unpack(receiver, pack_for(sender, tip, [base]))
    assert git(other, "cat-file", "-t", tip) == "commit"
    assert git(other, "ls-tree", "--name-only", tip).split().count(f"new{files - 1}.txt") == 1
    kept = len(list((other / ".git/objects/pack").glob("*.pack"))) - packs_before
    assert kept == (1 if files > 100 else 0)
    assert pack_for(sender, tip, [tip]) == b""  # it has it: nothing to send
    with pytest.raises(GitError):  # a commit this clone never saw: the worker must fetch
        pack_for(receiver, tip, ["1" * 40])


def test_the_parents_of_a_handed_back_commit_are_read_from_its_pack(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    tip = git(repo, "rev-parse", "HEAD")
    own = commit_files(repo, 2, "own")  # a PRP's commit on the tip: a fast-forward
    git(repo, "checkout", "-q", "-b", "other", tip)
    other = commit_files(repo, 1, "other")
    git(repo, "merge", "-q", "--no-edit", own)  # a merge: the tip first, then the PRP's
    merge = git(repo, "rev-parse", "HEAD")
    ours = GitWorkspace.open(repo)
    assert parents_in_pack(pack_for(ours, own, [tip]), own) == [tip]
    assert parents_in_pack(pack_for(ours, merge, [other]), merge) == [other, own]
    assert parents_in_pack(pack_for(ours, merge, [tip]), merge) == [other, own]  # 3 commits
    # What the pack does not say (not in it, not a pack, a corrupt one): git is asked.
    assert parents_in_pack(pack_for(ours, own, [tip]), merge) is None
    assert parents_in_pack(b"", own) is None
    broken = bytearray(pack_for(ours, own, [tip]))
    broken[20:40] = bytes(20)
    assert parents_in_pack(bytes(broken), own) is None
    # A commit whose content does not match its name is not believed.
    assert parents_in_pack(pack_for(ours, own, [tip]), "0" * 40) is None


def test_a_parent_header_git_does_not_read_as_one_is_none(tmp_path: Path) -> None:
    # A worker is not trusted to say where its commit descends from: a "parent" line after
    # the author is no parent to git, so it is none here either (git is asked instead).
    repo = init_repo(tmp_path / "repo")
    tip = git(repo, "rev-parse", "HEAD")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    who = "A U Thor <a@example.com> 1700000000 +0000"
    body = f"tree {tree}\nauthor {who}\nparent {tip}\ncommitter {who}\n\nsneaky\n"
    forged = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin"],
        cwd=repo,
        input=body,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = GitWorkspace.open(repo)
    assert parents_in_pack(pack_for(ours, forged, [tip]), forged) == []
