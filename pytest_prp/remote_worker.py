"""A remote xdist worker's side (``remote``): its link to the controller, the tip it asks for
before each PRP, its half of the checked merge (``remote_merge``: build, check, ask the
controller to move the branch), and the relay of what it writes on its disk (heartbeat, log)
to the controller on a channel of its own.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.base.naming import batch_folder
from pytest_prp.base.safepath import inside
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace
from pytest_prp.workspace.merge_check import tip_of
from pytest_prp.workspace.merge_queue import (
    Check,
    MergeFunction,
    MergeOutcome,
    merge_until_moved,
)

if TYPE_CHECKING:
    from pytest_prp.plan.settings import Settings

from pytest_prp.remote import (
    RELAY,
    forget_handed_back,
    machine,
    pack_for,
    prp_files,
    remote_name,
    unpack,
)


@dataclass
class RemoteLink:
    """A worker on another machine than its controller: how it reaches the integration branch."""

    remote: str | None
    host: str
    commit: str  # this clone's HEAD, named when its PRP files differ
    differing: list[str] = field(default_factory=list)
    channel: ControllerChannel | None = None  # progress out, merge requests and answers

    def where(self) -> str:
        return f"{self.host} (commit {self.commit[:12]})"

    def refusal(self) -> str | None:
        """Why this worker runs no PRP, or None."""
        if self.differing:
            shown = ", ".join(self.differing[:5]) + (" ..." if len(self.differing) > 5 else "")
            return (
                f"the PRP files on machine {self.where()} differ from the controller's: "
                f"{shown}; check out the controller's commit on every machine"
            )
        if self.remote is None:
            return (
                f"machine {self.where()} is a remote worker (another clone): give --prp-remote "
                "NAME, a git remote both the controller and the worker can fetch and push"
            )
        return None


def worker_link(config: pytest.Config, git: GitWorkspace, settings: Settings) -> RemoteLink | None:
    """In an xdist worker on another machine than the controller: its link, and the plugin
    that hands commits back and relays what it writes on its disk (RemoteWorker); else None."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput or "prp_machine" not in workerinput:
        return None
    if workerinput["prp_machine"] == machine(git):
        return None  # a local worker: same repository, it merges itself
    theirs: dict[str, str] = workerinput.get("prp_files", {})
    ours = prp_files(git, list(config.args), config.invocation_params.dir) if theirs else {}
    # Only files both name or the controller names: a worker may hold more of the tree.
    differing = sorted(path for path, digest in theirs.items() if ours.get(path) != digest)
    relayed = workerinput.get(RELAY)
    channel = ControllerChannel(relayed) if relayed is not None else None
    link = RemoteLink(
        remote=remote_name(config),
        host=socket.gethostname() + ":" + str(git.root),
        commit=git.resolve("HEAD"),
        differing=differing,
        channel=channel,
    )
    forget_handed_back(git)
    relay = None
    if channel is not None:
        relay = ProgressRelay(channel, settings.results_dir, settings.heartbeat)
    config.pluginmanager.register(RemoteWorker(link, relay), "prp-remote-worker")
    return link


# The fallback when the controller cannot tell what this clone lacks (its copy of the branch
# is from elsewhere): the tip it published, fetched. Git's own upkeep after a fetch
# (``maintenance run --auto``, FETCH_HEAD) is not ours to pay.
_QUIET_FETCH = ("fetch", "--quiet", "--no-tags", "--no-auto-maintenance", "--no-write-fetch-head")
# ``prp:`` reflog entries: another worker's steps on this clone see a move of ours
# (``ref_watch.foreign_moves``), not one of their own.
_SYNC = "prp: sync"
_ABSENT = "0" * 40  # update-ref's old value for "no such ref yet"
_ATTEMPTS = 20  # another worker on this clone keeps moving the branch: give up after


def sync_tip(git: GitWorkspace, link: RemoteLink, branch: str) -> str:
    """The integration branch as the controller holds it now, in this clone (GitError if the
    controller cannot be asked or the tip cannot be had). One question on the channel: the
    answer carries what this clone lacks, nothing when it has the tip already."""
    channel = link.channel
    if channel is None:
        raise GitError("no channel to the controller (an xdist too old or too new?)")
    for _ in range(_ATTEMPTS):
        mine = git.branch_sha(branch)
        have = [mine] if mine else [link.commit]
        answer = channel.ask(("tip", branch, {"have": have}))
        kind, tip, pack = _parts(answer)
        if kind == "fetch":  # the controller published ``tip`` for it
            assert link.remote is not None
            git.run(
                *_QUIET_FETCH,
                "--refmap=",
                link.remote,
                f"+refs/heads/{branch}:refs/heads/{branch}",
                env={"GIT_REFLOG_ACTION": _SYNC},
            )
            return tip_of(git, branch)
        if kind != "tip":
            raise GitError(f"the controller did not say the tip: {tip or answer!r}")
        if advance(git, branch, tip, mine, pack):
            return tip
    raise GitError(f"{branch} kept moving in this clone (other workers on it)")


def advance(git: GitWorkspace, branch: str, tip: str, mine: str | None, pack: bytes) -> bool:
    """This clone's copy of ``branch`` moved from ``mine`` to the controller's ``tip`` (its
    objects from ``pack``). False when another worker on this clone moved it meanwhile:
    compare-and-swap, so the copy never goes back to an older tip (ask again)."""
    unpack(git, pack)
    if tip == mine:
        return True
    ref = f"refs/heads/{branch}"
    status = git.run("update-ref", "-m", _SYNC, ref, tip, mine or _ABSENT, codes=None)[0]
    return status == 0


def _parts(answer: Any) -> tuple[str, str, bytes]:
    """A controller's answer ``(kind, detail[, pack])``, whatever came."""
    if not isinstance(answer, (tuple, list)) or len(answer) not in (2, 3):
        return "", repr(answer), b""
    pack = answer[2] if len(answer) == 3 and isinstance(answer[2], bytes) else b""
    return str(answer[0]), str(answer[1]), pack


def remote_merge(link: RemoteLink, prp_id: str) -> MergeFunction:
    """The merge queue's checked merge for a worker on another machine: the same rule and the
    same outcome as ``checked_merge``, with the branch held by the controller. The worker builds
    the merge on the tip it knows (first the PRP's base: a fast-forward needs nothing more),
    checks the merged tree in the PRP's worktree unless that very tree already passed, and asks
    the controller to move the branch from that tip to it; when the tip moved, the answer
    brings the new one, and it does it again. The branch so only moves to a tree checked here."""

    def merge(
        git: GitWorkspace,
        branch: str,
        commit: str,
        base: str,
        worktree: Path,
        message: str,
        check: Check,
        delete_branch: str | None,
    ) -> MergeOutcome:
        moved: list[str] = []  # the tip the controller's last "moved" answer brought

        def move(new: str, tip: str, held: bool) -> bool:
            kind, detail, pack = ask_to_merge(git, link, prp_id, branch, new, tip)
            if kind == "moved":
                # Its objects here, this clone's copy of the branch there when nothing
                # else moved it (else the next sync does).
                advance(git, branch, detail, git.branch_sha(branch), pack)
                moved[:] = [detail]
                return False
            # Merged: this clone's copy of the branch follows (the next PRP's question then
            # needs no pack), and the PRP's branch goes, in one transaction.
            ref = f"refs/heads/{branch}"
            if git.compare_and_swap(ref, new, tip, _SYNC, delete_branch)[0] != 0:
                if delete_branch is not None:  # another worker here moved the copy: fine
                    git.run("update-ref", "-d", f"refs/heads/{delete_branch}", codes=None)
            return True

        def next_tip() -> str:
            return moved.pop() if moved else sync_tip(git, link, branch)

        # First the base: a fast-forward needs no tip from the controller.
        return merge_until_moved(
            git,
            branch,
            commit,
            base,
            worktree,
            message,
            check,
            tip=base,
            move=move,
            next_tip=next_tip,
        )

    return merge


def ask_to_merge(
    git: GitWorkspace, link: RemoteLink, prp_id: str, branch: str, commit: str, tip: str
) -> tuple[str, str, bytes]:
    """Worker: send ``commit`` (a pack of what ``tip`` lacks: the controller holds ``tip``)
    and ask the controller to move ``branch`` from ``tip`` to it. ``("merged", commit, b"")``
    when it did; ``("moved", new tip, pack of what this clone lacks of it)`` when the tip had
    moved. GitError when it refused."""
    if link.channel is None:
        raise GitError("no channel to the controller (an xdist too old or too new?)")
    data = {"branch": branch, "tip": tip, "commit": commit, "pack": pack_for(git, commit, [tip])}
    kind, detail, pack = _parts(link.channel.ask(("merge", prp_id, data)))
    if kind in ("merged", "moved"):
        return kind, detail, pack
    raise GitError(f"the controller did not merge it: {detail}")


_CLOSED = ("closed", "")  # what the channel's end looks like to ``ask``


class ControllerChannel:
    """Worker: its end of the channel to the controller. Out: progress (ProgressRelay) and
    merge requests; in: their answers, and ``interrupt``. A PRP running when the controller
    is interrupted (Ctrl-C, SIGTERM) or gone (the channel closed: killed, network lost) ends
    at once, as on a local worker: SIGINT to this process, whose supervisor then ends the
    step's processes. Without it only execnet ends a socket or ssh worker: 5 s after the
    controller left, and 10 s later by ``os._exit``, which ends nothing the worker started."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.running = False  # a PRP is being run (between its logstart and logfinish)
        self._answers: queue.Queue[Any] = queue.Queue()
        channel.setcallback(self._received, endmarker=_CLOSED)

    def send(self, message: Any) -> None:
        self.channel.send(message)

    def isclosed(self) -> bool:
        return bool(self.channel.isclosed())

    def ask(self, message: Any) -> Any:
        """Send ``message`` and wait for the controller's answer (GitError if it is gone)."""
        try:
            self.channel.send(message)
        except (OSError, EOFError, ValueError) as exc:
            raise GitError(f"the controller is gone: {exc}") from None
        except Exception as exc:  # execnet's own errors: the channel is closed
            raise GitError(f"the controller is gone: {type(exc).__name__}: {exc}") from None
        answer = self._answers.get()
        if answer == _CLOSED:
            raise GitError("the controller is gone: its channel closed before it answered")
        return answer

    def _received(self, message: Any) -> None:
        """execnet's receiver thread: quick, never raises."""
        if message == _CLOSED or message == ("interrupt", ""):
            if message == _CLOSED:
                self._answers.put(_CLOSED)
            if self.running:
                os.kill(os.getpid(), signal.SIGINT)
            return
        self._answers.put(message)


class RemoteWorker:
    """Worker on another machine: what it writes on this disk for the PRP reaches the
    controller (ProgressRelay)."""

    def __init__(self, link: RemoteLink, relay: ProgressRelay | None) -> None:
        self.link = link
        self.relay = relay

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        if ".md::" not in nodeid:
            return
        if self.link.channel is not None:
            self.link.channel.running = True
        if self.relay is not None:
            self.relay.watch(nodeid.rsplit("::", 1)[-1])

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        if self.link.channel is not None:
            self.link.channel.running = False

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: after the PRP's record is made
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "teardown" and self.relay is not None:
            # Its final heartbeat and the whole log, sent before the report that ends it.
            self.relay.watch(None)
        return report

    def pytest_sessionfinish(self) -> None:
        if self.relay is not None:
            self.relay.stop()


class ProgressRelay:
    """Worker on another machine: the heartbeat file and the log of the PRP it runs, as they
    are on this disk, go to the controller on a channel of their own (the controller writes
    them into its results directory), every heartbeat interval and once more as the PRP ends.
    Messages: ``("beat", id, snapshot)`` and ``("log", id, {"at": offset, "data": bytes})``."""

    def __init__(self, channel: ControllerChannel, results_dir: Path, interval: float) -> None:
        self.channel = channel
        self.results_dir = results_dir
        self.interval = interval
        self._lock = threading.Lock()
        self._prp: str | None = None
        self._since = 0.0
        self._beat_sent: object = None
        self._log_at = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prp-relay", daemon=True)
        self._thread.start()

    def watch(self, prp_id: str | None) -> None:
        """Relay ``prp_id`` from now on (None: none); what the one before left is sent first."""
        with self._lock:
            self._send_quietly()
            self._prp, self._since = prp_id, time.time() - 1.0
            self._beat_sent, self._log_at = None, 0

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._send_quietly()

    def _send_quietly(self) -> None:
        """Best effort, as heartbeats are: a closed channel (the run ends) or an unreadable
        file never fails the PRP."""
        try:
            self._send()
        except (OSError, EOFError, ValueError):
            pass

    def _send(self) -> None:
        prp_id = self._prp
        if prp_id is None or self.channel.isclosed():
            return
        from pytest_prp.base.ids import batch_of
        from pytest_prp.base.jsonfile import read_json
        from pytest_prp.records.heartbeat import heartbeat_path

        batch = batch_folder(batch_of(prp_id))
        try:
            beat = read_json(heartbeat_path(self.results_dir, batch, prp_id))
        except (OSError, ValueError):
            beat = None
        if isinstance(beat, dict) and beat.get("updated_at") != self._beat_sent:
            self._beat_sent = beat.get("updated_at")
            self.channel.send(("beat", prp_id, beat))
        log = inside(self.results_dir / "logs", batch, f"{prp_id}.log")
        try:
            if log.stat().st_mtime < self._since:
                return  # an earlier run's log, not yet started again
            with log.open("rb") as stream:
                stream.seek(self._log_at if log.stat().st_size >= self._log_at else 0)
                at, data = stream.tell(), stream.read()
        except OSError:
            return
        if data or at < self._log_at:
            self.channel.send(("log", prp_id, {"at": at, "data": data}))
            self._log_at = at + len(data)
