"""The controller's side of remote workers (``remote``): it is the one holder of the
integration branch. It tells a worker the branch's tip (with the commits the worker lacks),
answers its merge requests (compare-and-swap from the tip the worker checked), publishes the
branch to the shared remote off the critical path (``Publisher``), writes what workers relay
into its results directory, and ends the batch truthfully when no machine is left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.base.naming import batch_folder, known_integration_branch
from pytest_prp.base.safepath import inside
from pytest_prp.workspace.git_command import GitError
from pytest_prp.workspace.git_workspace import GitWorkspace
from pytest_prp.workspace.merge_check import tip_of

if TYPE_CHECKING:
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.heartbeat import Heartbeat

from pytest_prp.remote import (
    RELAY,
    open_repository,
    pack_for,
    parents_in_pack,
    remote_name,
    unpack,
)

# At most one push of the branch per this many seconds while PRPs run (the newest tip each
# time): a push costs the controller's machine CPU that the PRPs' gates need, and nothing
# waits for it. A tip a worker must fetch, and the last one, are pushed at once.
PUBLISH_EVERY = 2.0
STEPS_KEPT = 32  # the last remote merges' packs kept, to answer workers one merge behind


class Publisher:
    """Pushes the integration branch to the shared remote on a thread of its own: workers get
    the tip on their channel, so no PRP waits for a push. One push at a time, of the newest
    tip asked for, at most one per ``every`` seconds unless asked ``now``; ``wait`` for a tip
    to be there (a worker that must fetch it, the end of the run). ``pushed_at``: when the
    branch was last pushed by someone else (the run's start), the pause counts from it."""

    def __init__(
        self,
        push: Callable[[str], None],
        every: float = PUBLISH_EVERY,
        pushed_at: float = float("-inf"),
    ) -> None:
        self._push = push
        self._every = every
        self._cond = threading.Condition()
        self._wanted: str | None = None
        self._asked = 0  # tips asked for so far; the newest is ``_wanted``
        self._done = 0  # of them, pushed (or failed: ``error``)
        self._now = False  # one is awaited: no pause before the next push
        self._last = pushed_at  # when the last push started (monotonic)
        self.error: str | None = None  # the last push's failure, None once one succeeds
        self.pushes = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def publish(self, tip: str, now: bool = False) -> int:
        """Have ``tip`` pushed (``now``: without the pause); its number, for ``wait``."""
        with self._cond:
            if tip != self._wanted:
                self._wanted = tip
                self._asked += 1
            self._now = self._now or (now and self._done < self._asked)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prp-publish", daemon=True)
                self._thread.start()
            return self._asked

    def wait(self, number: int) -> str | None:
        """Until tip ``number`` is pushed or its push failed (then why); asked for ``now``."""
        with self._cond:
            if self._done < number:
                self._now = True
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._done >= number)
            return self.error

    def close(self) -> None:
        """No more tips: the thread ends once what was asked for is pushed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._done < self._asked or self._closed)
                if self._done >= self._asked:
                    return
                pause = self._last + self._every - time.monotonic()
                if pause > 0:  # newer tips asked for meanwhile go in the same push
                    self._cond.wait_for(lambda: self._now, timeout=pause)
                tip, number, self._now = self._wanted, self._asked, False
                self._last = time.monotonic()
            assert tip is not None
            try:
                self._push(tip)
                error = None
            except GitError as exc:
                error = str(exc)
            except Exception as exc:  # never ends the thread: a waiter would wait forever
                error = f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._done, self.error = number, error
                self.pushes += 1
                self._cond.notify_all()


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
        # The branch is pushed as the run starts (``publish_start``): the first merge's push
        # waits the pause too, instead of taking CPU from the PRPs that merge started.
        self.publisher = Publisher(self._push, pushed_at=time.monotonic())
        self._last: tuple[str, str, int] | None = None  # the last push: branch, tip, number
        # The last remote merges, by the tip they made: the tip before and the pack a worker
        # sent, which is what a clone at the tip before lacks (no pack-objects to answer it).
        self._steps: dict[str, tuple[str, bytes]] = {}
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
        """From a worker's ProgressRelay, or its question: ``("tip", branch, {"have": ...})``
        before a PRP, ``("merge", prp_id, {...})`` after its gates (execnet's receiver thread:
        never raises; a question is answered on the channel it came on)."""
        if not isinstance(message, (tuple, list)) or len(message) != 3:
            return
        kind, name, data = message
        if kind == "merge":
            self._answer(channel, lambda: self._merge_request(str(name), data))
            return
        if kind == "tip":
            self._answer(channel, lambda: self._tip_request(str(name), data))
            return
        prp_id = name
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

    @pytest.hookimpl(tryfirst=True)  # the last push starts before xdist ends its workers
    def pytest_sessionfinish(self) -> None:
        from pytest_prp.records.record import INTERRUPTED  # late: every pytest run imports remote

        for beat in self.beats.values():  # cut short (Ctrl-C): no report ended them
            beat.finish(INTERRUPTED)
        self.beats.clear()
        branch = self.branch
        if branch is None or self.settings.verify:  # verify mode makes no branch
            return
        try:
            tip = tip_of(self.git, branch)
        except GitError:
            return
        # The branch on the shared remote as it ends here (a push, unless it is there): going
        # on while the workers end and the results are written; waited for at unconfigure.
        self._last = (branch, tip, self.publisher.publish(tip, now=True))

    def pytest_unconfigure(self) -> None:
        self.publisher.close()
        if self._last is None:
            return
        branch, tip, number = self._last
        error = self.publisher.wait(number)
        if error is not None:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            line = (
                f"prp: {branch} is not published to {remote_name(self.config)} ({error}); "
                f"it is in this clone at {tip[:12]}: push it by hand"
            )
            if reporter is not None:
                reporter.write_line(line, yellow=True, bold=True)
            else:
                print(line)

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
            self._git = open_repository(self.config, self.settings)
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

    def _push(self, tip: str) -> None:
        """The publisher's push: the branch at ``tip`` on the shared remote."""
        branch = self.branch
        assert branch is not None
        self.git.run("push", "--quiet", str(remote_name(self.config)), f"{tip}:refs/heads/{branch}")

    def _publish_quietly(self) -> None:
        branch = self.branch
        if branch is None:
            return
        try:
            self.publisher.publish(tip_of(self.git, branch))
        except GitError:
            pass  # the next merge publishes it, and the end of the run

    def _answer(
        self, channel: Any, work: Callable[[], tuple[str, str] | tuple[str, str, bytes]]
    ) -> None:
        """Answer a worker's question on the channel it came on (execnet's receiver thread:
        never raises; a failure is said to the worker)."""
        try:
            answer = work()
        except GitError as exc:
            answer = ("failed", str(exc).splitlines()[0] if str(exc) else "git failed")
        except Exception as exc:  # a malformed request: said to the worker, never raised here
            answer = ("failed", f"{type(exc).__name__}: {exc}")
        if channel is not None and not channel.isclosed():
            try:
                channel.send(answer)
            except (OSError, EOFError, ValueError):
                pass  # the worker is gone: its PRP is reported failed by xdist

    def _tip_request(
        self, branch: str, data: dict[str, Any]
    ) -> tuple[str, str] | tuple[str, str, bytes]:
        """A worker, before a PRP: the branch's tip here (its dependencies merged), with the
        objects a clone holding the commits ``have`` lacks. When one of those is not in this
        clone (its copy of the branch came from elsewhere), the tip is published and the
        worker fetches it (``fetch``)."""
        from pytest_prp.workspace.repository import FULL_SHA

        have = [str(sha) for sha in data["have"]]
        if branch != self.branch or not all(FULL_SHA.fullmatch(sha) for sha in have):
            return ("failed", f"not this run's branch, or not commits: {branch}")
        tip = tip_of(self.git, branch)
        try:
            return ("tip", tip, self._pack(tip, have))
        except GitError:
            error = self.publisher.wait(self.publisher.publish(tip, now=True))
            if error is not None:
                return ("failed", f"{branch} could not be published: {error}")
            return ("fetch", tip)

    def _merge_request(self, prp_id: str, data: dict[str, Any]) -> tuple[str, str, bytes]:
        """A worker asks to move the branch from ``tip`` to ``commit``, a merge whose tree it
        checked (or the PRP's own commit, whose gates passed, on ``tip``), its objects in
        ``pack``: done by compare-and-swap (the shared remote gets it from the publisher);
        ``moved`` with the new tip and what the worker lacks of it when the branch is no longer
        at ``tip``. Workers are trusted to run the PRPs' gates, not to move the branch
        anywhere: ``commit`` must descend from the tip, on this run's branch."""
        from pytest_prp.base.ids import normalize_id
        from pytest_prp.workspace.repository import FULL_SHA

        branch, tip, commit = str(data["branch"]), str(data["tip"]), str(data["commit"])
        if normalize_id(prp_id) != prp_id or branch != self.branch:
            return ("failed", f"not this run's PRP or branch: {prp_id} {branch}", b"")
        if not (FULL_SHA.fullmatch(tip) and FULL_SHA.fullmatch(commit)):
            return ("failed", "not a commit", b"")
        git = self.git
        # Its objects here and its descent checked first, outside the lock (no ref names
        # them yet), unless it lost already.
        sent = tip_of(git, branch) == tip
        if sent:
            pack = bytes(data["pack"])
            unpack(git, pack)
            # Its parents, read from the pack (a fast-forward's or a merge's first is the
            # tip); git is asked only when they do not say.
            if tip in (parents_in_pack(pack, commit) or ()):
                descends = 0
            else:
                descends = git.run("merge-base", "--is-ancestor", tip, commit, codes=(0, 1))[0]
            if descends != 0:
                return ("failed", f"{commit[:12]} does not descend from {tip[:12]}", b"")
        with self._lock, git.merge_turn(branch):
            current = tip_of(git, branch)
            if sent and current == tip:
                reflog = f"prp: merge {commit[:12]} (checked on a remote worker)"
                if git.compare_and_swap(f"refs/heads/{branch}", commit, tip, reflog)[0] == 0:
                    self.publisher.publish(commit)
                    self._steps[commit] = (tip, bytes(data["pack"]))
                    while len(self._steps) > STEPS_KEPT:
                        del self._steps[next(iter(self._steps))]
                    return ("merged", commit, b"")
                current = tip_of(git, branch)
        # Moved: the worker gets the new tip (it holds ``tip``, and ``commit`` if sent).
        return ("moved", current, self._pack(current, [tip, commit] if sent else [tip]))

    def _pack(self, tip: str, have: list[str]) -> bytes:
        """What a clone holding ``have`` lacks of ``tip``: the pack a worker sent for that
        very step when there is one, else ``pack_for``."""
        if tip in have:
            return b""
        step = self._steps.get(tip)
        if step is not None and step[0] in have:
            return step[1]
        return pack_for(self.git, tip, have)


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
