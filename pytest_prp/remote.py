"""PRPs on remote pytest-xdist workers (``--tx ssh=…`` / ``--tx socket=…``): code moves by git.

A worker on another machine (its own clone: another host, or another repository on this one)
never moves the integration branch. Before each PRP it fetches the branch the controller
published to the shared remote (``--prp-remote NAME``). After the gates pass it merges under
the merge queue's rule, split between the two sides (``remote_merge``): the worker builds the
merge on the tip it holds and checks the merged tree in the PRP's worktree (where the PRP ran,
with the tools its gates need), then sends the candidate, as a git bundle, on an execnet
channel of its own; the controller, the one holder of the branch, moves it by compare-and-swap
from that tip and publishes it, or answers that the tip moved (the worker fetches, builds and
checks again). The PRP files are read by both sides from their own clones: a worker whose files
differ from the controller's runs none of them.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_prp.base.naming import batch_folder, known_integration_branch
from pytest_prp.base.safepath import inside
from pytest_prp.keys import CONTROLLER_INPUT
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
    from pytest_prp.records.heartbeat import Heartbeat

HANDED_BACK = "refs/prp/handed-back"


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


def _open(config: pytest.Config, settings: Settings) -> GitWorkspace:
    from pytest_prp.base.where import start_path  # as execution.repository_start: no cycle

    start = start_path(config.args, config.invocation_params.dir, config.rootpath)
    return GitWorkspace.open(start, settings.worktree_dir)


def controller_input(config: pytest.Config, settings: Settings) -> dict[str, Any]:
    """What every worker is told at start (xdist's ``workerinput``): plain JSON values. Worked
    out once per run; the PRP files are hashed only for a run with ``--prp-remote``."""
    if CONTROLLER_INPUT not in config.stash:
        found: dict[str, Any] = {}
        try:
            git = _open(config, settings)
            found["prp_machine"] = machine(git)
            if remote_name(config):
                args = list(config.args)
                found["prp_files"] = prp_files(git, args, config.invocation_params.dir)
        except GitError:
            pass
        config.stash[CONTROLLER_INPUT] = found
    return config.stash[CONTROLLER_INPUT]


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


RELAY = "prp_relay"  # workerinput key: the execnet channel a remote worker relays on


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
        git = _open(config, settings)
        git.ensure_branch(branch, settings.base)
        git.run("push", "--quiet", name, f"refs/heads/{branch}:refs/heads/{branch}")
    except GitError as exc:
        raise pytest.UsageError(f"prp: cannot publish {branch} to remote {name}: {exc}") from None


class ControllerMerges:
    """Controller: merge what remote workers hand back, before the PRP's dependents start."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._git: GitWorkspace | None = None
        # Merge requests come on execnet's receiver threads (one per worker), local merges are
        # published from the main thread: one at a time, in this process and (merge_turn) with
        # local workers merging into the same clone.
        self._lock = threading.Lock()
        self.channels: list[Any] = []  # to each worker (RELAY)
        self._published: str | None = None  # the tip last pushed to the shared remote
        self.beats: dict[str, Heartbeat] = {}  # remote PRPs running, by id
        self.logs: dict[str, Path] = {}  # remote PRPs' logs relayed here, by id
        self.statuses: dict[str, str] = {}  # every PRP reported, by id (what ``stranded`` needs)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Each worker gets a channel to relay on, used if it is on another machine."""
        channel = node.gateway.newchannel()
        channel.setcallback(lambda message: self._relayed(message, channel), endmarker=None)
        self.channels.append(channel)
        node.workerinput[RELAY] = channel

    def pytest_keyboard_interrupt(self) -> None:
        """Ctrl-C (or SIGTERM) here: every remote worker ends the PRP it runs now, as local
        workers do (they got the signal too), before xdist ends the workers."""
        for channel in self.channels:
            try:
                if not channel.isclosed():
                    channel.send(("interrupt", ""))
            except (OSError, EOFError, ValueError):
                pass

    def _relayed(self, message: Any, channel: Any = None) -> None:
        """From a worker's ProgressRelay, or its merge request (execnet's receiver thread:
        never raises; a merge request is answered on the channel it came on)."""
        if not isinstance(message, (tuple, list)) or len(message) != 3:
            return
        kind, prp_id, data = message
        if kind == "merge":
            self._answer_merge(channel, str(prp_id), data)
            return
        try:
            if kind == "beat" and isinstance(data, dict):
                self._relayed_beat(str(prp_id), data)
            elif kind == "log" and isinstance(data, dict):
                self._relayed_log(str(prp_id), int(data["at"]), bytes(data["data"]))
        except (OSError, KeyError, TypeError, ValueError):
            pass  # best effort, as heartbeats are: the PRP's own report is what counts

    def _relayed_beat(self, prp_id: str, data: dict[str, Any]) -> None:
        from pytest_prp.records.heartbeat import parse_time

        beat = self.beats.get(prp_id)
        if beat is None or data.get("phase") in (None, "done"):
            return  # the controller's own report ends it, with the merge's outcome
        if "@" in str(data.get("worker") or ""):  # gw0@<host>:<clone>: the machine by name
            beat.worker = str(data["worker"])
        known = (beat.phase_name, beat.current, beat.index, beat.total, beat.attempt)
        now = (data["phase"], data.get("current"), data.get("index"), data.get("total"))
        if known[:4] != now or data.get("attempt") != beat.attempt:
            beat.phase(
                str(now[0]), current=now[1], index=now[2], total=now[3], attempt=data.get("attempt")
            )
        if data.get("last_output"):
            beat.output(str(data["last_output"]))
        beat.cost(data.get("cost_usd"))
        until = parse_time(data.get("rate_limit_until"))
        if until != beat.rate_limit_until:
            beat.waiting(until)

    def _relayed_log(self, prp_id: str, at: int, data: bytes) -> None:
        from pytest_prp.base.ids import batch_of, normalize_id

        if normalize_id(prp_id) != prp_id:
            return  # only a PRP's log, under its own name (a worker is trusted no further)
        path = self.logs.get(prp_id)
        if path is None:
            logs = self.settings.results_dir / "logs"
            path = inside(logs, batch_folder(batch_of(prp_id)), f"{prp_id}.log")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")  # this run's log, not an earlier one's
            self.logs[prp_id] = path
        with path.open("r+b") as stream:
            stream.seek(at)
            stream.write(data)
            stream.truncate()

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        """A PRP starts on a worker: its heartbeat, in the controller's results directory
        (the worker's own stays on its disk), so ``prp-status`` here shows it running."""
        if ".md::" not in nodeid:
            return
        from pytest_prp.base.ids import batch_of
        from pytest_prp.records.heartbeat import Heartbeat, heartbeat_path

        prp_id = nodeid.rsplit("::", 1)[-1]
        batch = batch_folder(batch_of(prp_id))
        beat = Heartbeat(
            heartbeat_path(self.settings.results_dir, batch, prp_id),
            prp_id=prp_id,
            batch=batch,
            worker=self._machine_of(nodeid),
            interval=self.settings.heartbeat,
            run_id=str(getattr(self.config.option, "testrunuid", "") or "") or None,
        )
        self.beats[prp_id] = beat.start()

    def pytest_sessionfinish(self) -> None:
        from pytest_prp.records.record import INTERRUPTED  # late: every pytest run imports remote

        for beat in self.beats.values():  # cut short (Ctrl-C): no report ended them
            beat.finish(INTERRUPTED)
        self.beats.clear()

    def _machine_of(self, nodeid: str) -> str:
        """The worker (``gw1@<its --tx>``) the scheduler gave ``nodeid`` to."""
        dsession = self.config.pluginmanager.get_plugin("dsession")
        sched = getattr(dsession, "sched", None)
        collection = getattr(sched, "collection", None) or []
        for node, pending in getattr(sched, "node2pending", {}).items():
            if pending and pending[0] < len(collection) and collection[pending[0]] == nodeid:
                spec = node.gateway.spec
                where = spec.ssh or spec.socket or "remote"
                return f"{node.gateway.id}@{where}"
        return "remote"

    @property
    def git(self) -> GitWorkspace:
        if self._git is None:
            self._git = _open(self.config, self.settings)
        return self._git

    @pytest.hookimpl(tryfirst=True)  # before the result JSON, the terminal and the scheduler
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from pytest_prp.records.record import FAILED

        prp = getattr(report, "prp", None)
        if not prp:
            if report.failed and ".md::" in report.nodeid:  # its worker died
                self.statuses[report.nodeid.rsplit("::", 1)[-1]] = "failed"
            beat = self.beats.pop(report.nodeid.rsplit("::", 1)[-1], None)
            if beat is not None and report.failed:  # its worker died: no PRP data came
                beat.finish(FAILED)
                # What the batch result says of it: where its work is (the worktree stays).
                report.longrepr = (
                    f"{report.longrepr}\nmachine {beat.worker} died while running it; its work "
                    "stays in that machine's clone (git worktree list there)"
                )
            return
        self._beat(report, prp)
        if prp["prp_id"] in self.logs:  # its log, as relayed into this results directory
            prp["log"] = str(self.logs[prp["prp_id"]])
        if report.when == "call" and prp.get("merged_commit") and "@" not in str(prp["worker"]):
            # A local worker (``--tx popen`` next to remote ones) merged into this clone: the
            # remote workers fetch the tip from the shared remote, so it goes there now, before
            # xdist hands the PRP's dependents to any worker.
            self._publish_quietly()
        self.statuses[prp["prp_id"]] = str(prp["status"])

    def _beat(self, report: pytest.TestReport, prp: dict[str, Any]) -> None:
        beat = self.beats.get(prp["prp_id"])
        if beat is None:
            return
        beat.worker = str(prp.get("worker") or beat.worker)
        if report.when == "setup" and report.passed:
            beat.phase("gates")
        elif report.when == "call":
            beat.phase("merge")
        elif report.when == "teardown":
            worktree = prp.get("worktree")
            beat.finish(str(prp["status"]), Path(worktree) if worktree else None)
            del self.beats[prp["prp_id"]]

    @property
    def branch(self) -> str | None:
        return known_integration_branch(self.settings.branch, self.settings.selection.batches)

    def _publish(self, branch: str, tip: str | None = None) -> None:
        """Push the branch (at ``tip`` when known) to the shared remote, unless it is there."""
        if tip is not None and tip == self._published:
            return
        name = remote_name(self.config)
        ref = f"refs/heads/{branch}"
        self.git.run("push", "--quiet", str(name), f"{tip or ref}:{ref}")
        self._published = tip

    def _publish_quietly(self) -> None:
        branch = self.branch
        if branch is None:
            return
        with self._lock:
            try:
                self._publish(branch, tip_of(self.git, branch))
            except GitError:
                pass  # the next merge publishes it; a remote worker's fetch meanwhile is stale

    def _answer_merge(self, channel: Any, prp_id: str, data: Any) -> None:
        """A worker asks to move the branch from ``tip`` to ``commit``, a merge whose tree it
        checked (or the PRP's own commit, whose gates passed, on ``tip``): done by
        compare-and-swap, then published; ``moved`` (the new tip published) when the branch is
        no longer at ``tip``. Workers are trusted to run the PRPs' gates, not to move the
        branch anywhere: ``commit`` must descend from the tip, on this run's branch."""
        try:
            answer: tuple[str, str] = self._merge_request(prp_id, data)
        except GitError as exc:
            answer = ("failed", str(exc).splitlines()[0] if str(exc) else "git failed")
        except Exception as exc:  # a malformed request: said to the worker, never raised here
            answer = ("failed", f"{type(exc).__name__}: {exc}")
        if channel is not None and not channel.isclosed():
            try:
                channel.send(answer)
            except (OSError, EOFError, ValueError):
                pass  # the worker is gone: its PRP is reported failed by xdist

    def _merge_request(self, prp_id: str, data: dict[str, Any]) -> tuple[str, str]:
        from pytest_prp.base.ids import normalize_id
        from pytest_prp.workspace.repository import FULL_SHA

        branch, tip, commit = str(data["branch"]), str(data["tip"]), str(data["commit"])
        if normalize_id(prp_id) != prp_id or branch != self.branch:
            return ("failed", f"not this run's PRP or branch: {prp_id} {branch}")
        if not (FULL_SHA.fullmatch(tip) and FULL_SHA.fullmatch(commit)):
            return ("failed", "not a commit")
        git = self.git
        with self._lock, git.merge_turn(branch):
            current = tip_of(git, branch)
            if current != tip:
                self._publish(branch, current)  # what the worker fetches next
                return ("moved", current)
            self._unbundle(prp_id, bytes(data["bundle"]))
            descends = git.run("merge-base", "--is-ancestor", tip, commit, codes=(0, 1))[0]
            if descends != 0:
                return ("failed", f"{commit[:12]} does not descend from {tip[:12]}")
            reflog = f"prp: merge {commit[:12]} (checked on a remote worker)"
            if git.compare_and_swap(f"refs/heads/{branch}", commit, tip, reflog)[0] != 0:
                return ("moved", tip_of(git, branch))
            try:
                self._publish(branch, commit)
            except GitError as exc:
                # Not published: not merged either (a worker's next fetch would miss it).
                git.compare_and_swap(f"refs/heads/{branch}", tip, commit, "prp: not published")
                return ("failed", f"merged, not published to {remote_name(self.config)}: {exc}")
        return ("merged", commit)

    def _unbundle(self, prp_id: str, bundle: bytes) -> None:
        """The commit's objects into this clone (no ref: the compare-and-swap holds it)."""
        path = self.git.common_dir / "prp" / f"handed-back-{prp_id}.bundle"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_bytes(bundle)
            self.git.run("bundle", "unbundle", str(path))
        finally:
            path.unlink(missing_ok=True)


def keep_going_without_dead_machines(config: pytest.Config) -> None:
    """xdist replaces a crashed worker by starting a new one on the same ``--tx`` spec; for a
    machine that died or is unreachable that fails (an INTERNALERROR that ends the batch). A
    machine that cannot be reached is left out instead: its PRP failed, the others go on, and
    the same command, once the machine is back, resumes. When none is left, the batch stops
    with one line, each PRP that never ran reported (``stranded``), instead of xdist's
    "no active workers" error. (xdist has no hook for this: its ``_clone_node`` is wrapped;
    the wrapper does nothing when xdist changes that name.)"""
    dsession = config.pluginmanager.get_plugin("dsession")
    clone = getattr(dsession, "_clone_node", None)
    if clone is None:
        return

    def clone_or_leave_out(node: Any) -> Any:
        try:
            return clone(node)
        except (OSError, EOFError) as exc:
            spec = getattr(node.gateway, "spec", node.gateway)
            dsession.report_line(  # type: ignore[union-attr]
                f"prp: machine {spec} is unreachable ({exc}): left out, the batch goes on "
                "on the others"
            )
            left = [n for n in getattr(dsession, "_active_nodes", ()) if n is not node]
            if not left:
                count = stranded(config, getattr(dsession, "sched", None))
                dsession.shouldstop = (  # type: ignore[union-attr]
                    f"prp: no machine left (every remote worker died or is unreachable): "
                    f"{count} PRP(s) did not run; the same command resumes once they are back"
                )
            return None

    dsession._clone_node = clone_or_leave_out  # type: ignore[union-attr]


NOT_STARTED_REASON = (
    "not started: no machine left to run it (every remote worker died or is unreachable)"
)


def stranded(config: pytest.Config, sched: Any) -> int:
    """The PRPs the scheduler still holds when no worker is left: each reported, as a skipped
    setup, ``blocked`` when a dependency failed or was blocked in this run, else
    ``not_started``; so the terminal, the result JSON and ``--lf`` see them. Their count."""
    results = config.pluginmanager.get_plugin("prp-results")
    merges = config.pluginmanager.get_plugin("prp-remote")
    waiting = list(getattr(sched, "waiting", []))
    if results is None or not isinstance(merges, ControllerMerges) or not waiting:
        return len(waiting)
    known = dict(merges.statuses)
    pending = {sched.prps[i].info.id: (i, sched.prps[i].info) for i in waiting}
    # A dependency that merely did not start leaves its dependents not started too (the same
    # command runs them all); one that failed, or is blocked, blocks them.
    from pytest_prp.records.record import BLOCKED, COMPLETED_EARLIER, NOT_STARTED, PASSED, mark

    fine = (*PASSED, COMPLETED_EARLIER, NOT_STARTED)
    while pending:  # dependencies first: a PRP blocked by a blocked one is blocked too
        ready = [
            pid
            for pid, (_, info) in pending.items()
            if not any(dep in pending for dep in info.dependencies)
        ] or list(pending)
        for prp_id in ready:
            index, info = pending.pop(prp_id)
            failed = [d for d in info.dependencies if d in known and known[d] not in fine]
            record = results.never_started(prp_id)
            if failed:
                mark(record, BLOCKED, [f"blocked: {', '.join(failed)} not completed"])
                record["blocked_by"] = failed
            else:
                record["errors"] = [NOT_STARTED_REASON]
            known[prp_id] = record["status"]
            nodeid = sched.collection[index]
            reason = record["errors"][0]
            report = pytest.TestReport(
                nodeid=nodeid,
                location=(nodeid.split("::", 1)[0], 0, prp_id),
                keywords={},
                outcome="skipped",
                longrepr=(nodeid.split("::", 1)[0], 1, f"Skipped: {reason}"),
                when="setup",
            )
            report.prp = record  # type: ignore[attr-defined]
            config.hook.pytest_runtest_logreport(report=report)
    sched.waiting.clear()  # reported: nothing is left to send
    return len(waiting)
