"""A remote xdist worker's side (``remote``): its link to the controller, the tip it fetches
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
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_prp.base.naming import batch_folder
from pytest_prp.base.safepath import inside
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace
from pytest_prp.workspace.merge_check import tip_of
from pytest_prp.workspace.merge_queue import (
    Check,
    MergeOutcome,
    merge_until_moved,
)

if TYPE_CHECKING:
    from pytest_prp.plan.settings import Settings

from pytest_prp.remote import HANDED_BACK, RELAY, machine, prp_files, remote_name


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
    relay = None
    if channel is not None:
        relay = ProgressRelay(channel, settings.results_dir, settings.heartbeat)
    config.pluginmanager.register(RemoteWorker(link, relay), "prp-remote-worker")
    return link


# A fetch per PRP: git's own upkeep after each (``maintenance run --auto``, FETCH_HEAD) is not
# ours to pay every time.
_QUIET_FETCH = ("fetch", "--quiet", "--no-tags", "--no-auto-maintenance", "--no-write-fetch-head")


def sync_tip(git: GitWorkspace, link: RemoteLink, branch: str) -> str:
    """The integration branch as the controller last published it (GitError if unreachable)."""
    assert link.remote is not None
    git.run(
        *_QUIET_FETCH,
        "--refmap=",
        link.remote,
        f"+refs/heads/{branch}:refs/heads/{branch}",
        # A ``prp:`` reflog entry: another worker's steps on this clone see a move of ours
        # (``ref_watch.foreign_moves``), not one of their own.
        env={"GIT_REFLOG_ACTION": "prp: sync"},
    )
    return tip_of(git, branch)


def handed_back_ref(run_id: str, prp_id: str) -> str:
    return f"{HANDED_BACK}/{run_id}/{prp_id}"


class MergeFunction(Protocol):
    """A checked merge, as ``merge_queue.checked_merge`` is."""

    def __call__(
        self,
        git: GitWorkspace,
        branch: str,
        commit: str,
        base: str,
        worktree: Path,
        message: str,
        check: Check,
        delete_branch: str | None,
    ) -> MergeOutcome: ...


def remote_merge(link: RemoteLink, run_id: str, prp_id: str) -> MergeFunction:
    """The merge queue's checked merge for a worker on another machine: the same rule and the
    same outcome as ``checked_merge``, with the branch held by the controller. The worker builds
    the merge on the tip it knows (first the PRP's base: no fetch when nothing merged
    meanwhile), checks the merged tree in the PRP's worktree unless that very tree already
    passed, and asks the controller to move the branch from that tip to it; when the tip moved,
    it fetches the new one and does it again. The branch so only moves to a tree checked here."""

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
        ref = handed_back_ref(run_id, prp_id)

        def move(new: str, tip: str, held: bool) -> bool:
            if not ask_to_merge(git, link, branch, new, tip, ref):
                return False  # moved: the controller published the new tip
            if delete_branch is not None:
                git.run("update-ref", "-d", f"refs/heads/{delete_branch}", codes=None)
            return True

        # First the base: a fast-forward needs no fetch.
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
            next_tip=lambda: sync_tip(git, link, branch),
        )

    return merge


def ask_to_merge(
    git: GitWorkspace, link: RemoteLink, branch: str, commit: str, tip: str, ref: str
) -> bool:
    """Worker: send ``commit`` (a bundle of what ``tip`` lacks: the controller published
    ``tip``, so it holds it) and ask the controller to move ``branch`` from ``tip`` to it.
    True when it did; False when the tip had moved (the controller published the new one)."""
    if link.channel is None:
        raise GitError("no channel to the controller (an xdist too old or too new?)")
    path = git.common_dir / "prp" / f"hand-back-{commit[:12]}.bundle"
    path.parent.mkdir(parents=True, exist_ok=True)
    git.run("update-ref", ref, commit)  # a bundle names its tips by ref
    try:
        git.run("bundle", "create", "--quiet", str(path), f"^{tip}", ref)
        data = {"branch": branch, "tip": tip, "commit": commit, "bundle": path.read_bytes()}
    finally:
        path.unlink(missing_ok=True)
        git.run("update-ref", "-d", ref, codes=None)
    answer = link.channel.ask(("merge", ref.rsplit("/", 1)[-1], data))
    kind, detail = answer if isinstance(answer, (tuple, list)) and len(answer) == 2 else ("", "")
    if kind == "merged":
        return True
    if kind == "moved":
        return False
    raise GitError(f"the controller did not merge it: {detail or answer!r}")


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
