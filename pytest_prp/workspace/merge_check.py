"""The git side of checked merges: build the merged commit of a PRP on the integration tip,
check it out in the PRP's worktree, move the branch by compare-and-swap, and read what moved
the tip since the PRP's base. Decisions (what to check, what to name) are in ``merge_queue``;
the unchecked merge, the merge turn and the compare-and-swap used here are ``git_merge``'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_prp.base.naming import earlier_branch
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_merge import Merging

# The earlier diff handed to an agent that redoes a PRP: enough to see what it did.
DIFF_LINES = 400


@dataclass(frozen=True)
class Built:
    """The merge of a PRP's commit onto a tip: ``sha`` (the PRP's commit itself when the tip
    is its ancestor, a fast-forward) or the conflicting paths."""

    tip: str
    sha: str | None
    conflicts: tuple[str, ...] = ()
    fast_forward: bool = False


@dataclass(frozen=True)
class Merged:
    """A commit that moved the integration tip since a PRP's base: its PRP id (None for a
    commit made by hand) and the paths it touched."""

    sha: str
    prp_id: str | None
    paths: tuple[str, ...]


def tip_of(git: Merging, branch: str) -> str:
    sha = git.branch_sha(branch)
    if sha is None:
        raise GitError(f"branch {branch} does not exist")
    return sha


def tree_of(git: Merging, commit: str) -> str:
    return git.run("rev-parse", "--verify", f"{commit}^{{tree}}")[1].strip()


def build(git: Merging, tip: str, commit: str, message: str) -> Built:
    """Merge ``commit`` onto ``tip`` without touching any worktree (``merge-tree``)."""
    status, _, _ = git.run("merge-base", "--is-ancestor", tip, commit, codes=(0, 1))
    if status == 0:
        return Built(tip, commit, (), True)
    status, out, _ = git.run(
        "merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", tip, commit,
        codes=(0, 1),
    )  # fmt: skip
    fields = out.split("\x00")
    if status == 1:
        return Built(tip, None, tuple(dict.fromkeys(f for f in fields[1:] if f)))
    sha = git.run(
        "commit-tree", fields[0].strip(), "-p", tip, "-p", commit, "-m", message,
        env=git.commit_env(),
    )[1].strip()  # fmt: skip
    return Built(tip, sha)


def head_of(git: Merging, worktree: Path) -> str:
    return git.run("rev-parse", "--verify", "HEAD", cwd=worktree)[1].strip()


def parents_of(git: Merging, commit: str) -> list[str]:
    return git.run("rev-list", "--parents", "-n", "1", commit)[1].split()[1:]


def check_out(git: Merging, worktree: Path, commit: str, branch: str | None = None) -> None:
    """``commit`` into ``worktree`` (files and index), detached, or on ``branch`` reset there:
    the merged state is checked where the PRP ran, and its own commit put back after.
    Ignored files (build output, caches) stay, as in any checkout."""
    target = ("-B", branch) if branch is not None else ("--detach",)
    git.run("checkout", "-q", "-f", *target, commit, cwd=worktree)


def swap(
    git: Merging, branch: str, new: str, old: str, delete_branch: str | None, hold: bool
) -> bool:
    """Move ``branch`` from ``old`` to ``new`` if it is still at ``old`` (compare-and-swap),
    deleting ``delete_branch`` in the same transaction. The merge turn is taken here, for the
    ref update alone, unless the caller already ``hold``s it."""
    reflog = f"prp: merge {new[:12]} (checked)"
    git.undo_foreign_tail(branch, hold)  # a merge check's gate that reset it, say
    if hold:
        return git.compare_and_swap(f"refs/heads/{branch}", new, old, reflog, delete_branch)[0] == 0
    with git.merge_turn(branch):
        return git.compare_and_swap(f"refs/heads/{branch}", new, old, reflog, delete_branch)[0] == 0


def merged_since(git: Merging, base: str, tip: str) -> list[Merged]:
    """The commits that moved the tip from ``base`` (merge commits left out: the PRP commits
    they bring in are listed), oldest first."""
    out = git.run(
        "log", "--reverse", "--no-merges", "-z", "--name-only",
        "--format=%x1e%H%x00%(trailers:key=PRP-Id,valueonly,unfold)", f"{base}..{tip}", "--",
    )[1]  # fmt: skip
    found = []
    for record in out.split("\x1e"):
        if not record.strip("\x00\n"):
            continue
        sha, _, rest = record.partition("\x00")
        head, _, files = rest.partition("\n")
        prp_id = head.strip("\x00\n ") or None
        paths = tuple(p.strip("\n") for p in files.split("\x00") if p.strip("\n"))
        found.append(Merged(sha.strip(), prp_id, paths))
    return found


def diff_text(git: Merging, base: str, commit: str) -> str:
    """What the PRP's commit changed on its base, bounded to ``DIFF_LINES`` lines."""
    out = git.run("diff", "--no-color", "--no-ext-diff", base, commit, "--")[1]
    lines = out.splitlines()
    if len(lines) > DIFF_LINES:
        lines = lines[:DIFF_LINES] + [f"... ({len(lines) - DIFF_LINES} more lines)"]
    return "\n".join(lines)


def keep_earlier(git: Merging, prp_branch: str, commit: str) -> None:
    ref = f"refs/heads/{earlier_branch(prp_branch)}"
    git.run("update-ref", "-m", "prp: before redo", ref, commit)


def drop_earlier(git: Merging, prp_branch: str) -> None:
    git.run("update-ref", "-d", f"refs/heads/{earlier_branch(prp_branch)}", codes=None)
