"""PRPs on remote pytest-xdist workers (``--tx ssh=…`` / ``--tx socket=…``): code moves by git.

A worker on another machine (its own clone: another host, or another repository on this one)
never moves the integration branch. Before each PRP it asks the controller, on an execnet
channel of pytest-prp's own, for the branch's tip; the answer carries the commits the worker
lacks as a thin git pack (nothing when it has the tip already): no git round trip to a shared
remote on the batch's critical path. After the gates pass it merges under the merge queue's
rule, split between the two sides (``remote_merge``): the worker builds the merge on the tip it
holds and checks the merged tree in the PRP's worktree (where the PRP ran, with the tools its
gates need), then sends the candidate, as a pack, on the same channel; the controller, the one
holder of the branch, moves it by compare-and-swap from that tip, or answers that the tip
moved (with the new tip's pack: the worker builds and checks again). The controller publishes
the branch to the shared remote (``--prp-remote NAME``) off the critical path, and once more
at the end. The PRP files are read by both sides from their own clones: a worker whose files
differ from the controller's runs none of them.

This module holds what both sides share (the option's remote, the machine and its PRP files,
what the controller tells every worker at start, the first publication of the branch, the
packs); the worker's side is ``remote_worker``, the controller's ``remote_controller``.
"""

from __future__ import annotations

import hashlib
import re
import socket
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.base.naming import known_integration_branch
from pytest_prp.keys import CONTROLLER_INPUT
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace

if TYPE_CHECKING:
    from pytest_prp.plan.settings import Settings

# Where an earlier version kept a worker's commit while handing it back (a crash could leave
# one behind): no ref is made any more, and a run on a clone removes what is left there.
HANDED_BACK = "refs/prp/handed-back/"
# As ``git fetch`` (``fetch.unpackLimit``): a pack of fewer objects is unpacked into loose
# objects, a larger one kept as a pack (index-pack: no thousands of loose files).
UNPACK_LIMIT = 100
RELAY = "prp_relay"  # workerinput key: the execnet channel a remote worker relays on


def local_and_remote_workers(config: pytest.Config) -> str | None:
    """``-n N`` next to ``--tx``: xdist alone would replace the ``--tx`` specs by N local
    workers (the remote machines silently unused); here the run gets both, as
    ``--tx N*popen --tx …`` would. Why it cannot be done (``-n auto``), or None. Only for a
    run with ``--prp-remote`` (remote workers need it): other pytest runs are xdist's alone."""
    count = getattr(config.option, "numprocesses", None)
    specs = list(getattr(config.option, "tx", None) or [])
    if not count or not specs or hasattr(config, "workerinput") or not remote_name(config):
        return None
    if not isinstance(count, int):
        return (
            f"prp: -n {count} with --tx: give the local workers as --tx specs too "
            "(e.g. --tx 2*popen --tx ssh=...)"
        )
    config.option.tx = [f"{count}*popen", *specs]
    config.option.numprocesses = None
    if config.option.dist == "no":
        config.option.dist = "load"
    return None


def remote_name(config: pytest.Config) -> str | None:
    value = config.getoption("prp_remote", None)
    return str(value) if value else None


def machine(git: GitWorkspace) -> str:
    """Who a process is: its host and its repository (two clones on one host are two machines)."""
    return f"{socket.gethostname()}:{git.common_dir.resolve()}"


def prp_files(git: GitWorkspace, args: Sequence[str], invocation_dir: Path) -> dict[str, str]:
    """The markdown files under the paths pytest was given (tracked or not, not ignored), by
    path in the repository: their sha256 (what the controller and a worker compare)."""
    top = git.root.resolve()
    wanted: list[str] = []
    for arg in args or ["."]:
        path = Path(arg.split("::", 1)[0])
        path = (path if path.is_absolute() else invocation_dir / path).resolve()
        try:
            wanted.append(path.relative_to(top).as_posix() or ".")
        except ValueError:
            continue
    if not wanted:
        return {}
    listed = git.run(
        "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *wanted, cwd=top
    )[1]
    found: dict[str, str] = {}
    for rel in sorted(set(listed.split("\0"))):
        if rel.endswith(".md") and (top / rel).is_file():
            found[rel] = hashlib.sha256((top / rel).read_bytes()).hexdigest()
    return found


def pack_for(git: GitWorkspace, want: str, have: Sequence[str]) -> bytes:
    """The objects of commit ``want`` that a clone holding the commits ``have`` lacks, as a
    thin pack (what a fetch would send, without its round trips); empty when it has ``want``.
    GitError when one of ``have`` is not in this clone (then the other side fetches)."""
    if want in have:
        return b""
    revs = "".join(f"^{sha}\n" for sha in have)
    return git.pipe(
        "pack-objects", "--revs", "--thin", "--stdout", "-q", data=f"{want}\n{revs}".encode()
    )


def unpack(git: GitWorkspace, pack: bytes) -> None:
    """A pack from ``pack_for`` into this clone's objects (no ref: the caller moves one)."""
    if len(pack) < 12:
        return  # nothing was sent
    count = int.from_bytes(pack[8:12], "big")  # the pack header's object count
    if count > UNPACK_LIMIT:
        git.pipe("index-pack", "--stdin", "--fix-thin", data=pack)
    elif count:
        git.pipe("unpack-objects", "-q", data=pack)


_COMMIT = 1  # a pack entry's type: a whole commit object (not a delta)
_COMMIT_MAX = 1 << 20  # a commit object larger than this is left to git
_TREE = re.compile(rb"tree [0-9a-f]{40}")
_PARENT = re.compile(rb"parent ([0-9a-f]{40})")


def parents_in_pack(pack: bytes, commit: str) -> list[str] | None:
    """The parents of ``commit`` as its object in ``pack`` (from ``pack_for``) says, its
    content checked against its name; what the controller needs to know a handed-back commit
    descends from the tip, without starting git. Only the commits at the pack's head are read
    (``pack-objects`` writes commits first); None when it is not among them (then ask git)."""
    if len(pack) < 12 or pack[:4] != b"PACK":
        return None
    view = memoryview(pack)
    at = 12
    try:
        for _ in range(int.from_bytes(pack[8:12], "big")):
            byte = pack[at]
            kind, size, shift = (byte >> 4) & 7, byte & 15, 4
            at += 1
            while byte & 0x80:  # the entry's size, 7 bits a byte, low bits first
                byte = pack[at]
                size |= (byte & 0x7F) << shift
                shift, at = shift + 7, at + 1
            if kind != _COMMIT or size > _COMMIT_MAX:
                return None  # past the commits, a commit stored as a delta, or a huge one
            stream = zlib.decompressobj()
            data = stream.decompress(view[at:], size + 1)  # no more than it says it is
            if not stream.eof or len(data) != size:
                return None
            at = len(pack) - len(stream.unused_data)
            if hashlib.sha1(b"commit %d\0" % size + data).hexdigest() != commit:
                continue
            return _parents(data)
    except (IndexError, zlib.error, UnicodeDecodeError):
        return None
    return None


def _parents(data: bytes) -> list[str] | None:
    """A commit object's parents as git reads them: the ``parent`` lines right after its
    ``tree`` line (a ``parent`` header anywhere else is no parent to git, nor here)."""
    lines = data.split(b"\n")
    if not _TREE.fullmatch(lines[0]):
        return None
    parents: list[str] = []
    for line in lines[1:]:
        found = _PARENT.fullmatch(line)
        if found is None:
            break
        parents.append(found.group(1).decode("ascii"))
    return parents


def forget_handed_back(git: GitWorkspace) -> None:
    """Remove the hand-back refs an earlier version's run left in this clone (any branch)."""
    listed = git.run("for-each-ref", "--format=%(refname)", HANDED_BACK)[1].split()
    if listed:
        git.run("update-ref", "--stdin", stdin="".join(f"delete {ref}\n" for ref in listed))


def open_repository(config: pytest.Config, settings: Settings) -> GitWorkspace:
    from pytest_prp.base.where import start_path  # as execution.repository_start: no cycle

    start = start_path(config.args, config.invocation_params.dir, config.rootpath)
    return GitWorkspace.open(start, settings.worktree_dir)


def controller_input(config: pytest.Config, settings: Settings) -> dict[str, Any]:
    """What every worker is told at start (xdist's ``workerinput``): plain JSON values. Worked
    out once per run; the PRP files are hashed only for a run with ``--prp-remote``."""
    if CONTROLLER_INPUT not in config.stash:
        found: dict[str, Any] = {}
        try:
            git = open_repository(config, settings)
            found["prp_machine"] = machine(git)
            if remote_name(config):
                args = list(config.args)
                found["prp_files"] = prp_files(git, args, config.invocation_params.dir)
        except GitError:
            pass
        config.stash[CONTROLLER_INPUT] = found
    return config.stash[CONTROLLER_INPUT]


def publish_start(config: pytest.Config, settings: Settings) -> None:
    """Controller, before workers start: the integration branch exists on the shared remote."""
    name = remote_name(config)
    if name is None or settings.verify:
        return
    batches = settings.selection.batches
    branch = known_integration_branch(settings.branch, batches)
    if branch is None:
        raise pytest.UsageError("prp: --prp-remote needs one --prp-batch or --prp-branch")
    try:
        git = open_repository(config, settings)
        git.ensure_branch(branch, settings.base)
        forget_handed_back(git)
        git.run("push", "--quiet", name, f"refs/heads/{branch}:refs/heads/{branch}")
    except GitError as exc:
        raise pytest.UsageError(f"prp: cannot publish {branch} to remote {name}: {exc}") from None
