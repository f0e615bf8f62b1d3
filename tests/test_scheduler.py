"""PrpScheduling driven through xdist's Scheduling protocol by mock nodes (no workers started).

``Sim`` plays out whole batches: its nodes behave like xdist workers (a queued item starts only
once its successor or the shutdown signal has arrived), collections arrive and events are
handled one at a time in time order like the DSession does, and durations are simulated (no
sleeping).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from xdist.dsession import TerminalDistReporter, WorkerStatus
from xdist.scheduler import LoadScheduling

from pytest_prp.base.ids import natural_key
from pytest_prp.plan.prp_info import PrpInfo, file_graph_loader
from pytest_prp.scheduler import FILLER_NODEID, PrpScheduling

# --- mock nodes and a harness --------------------------------------------------------------------


class MockGateway:
    def __init__(self, gid: str) -> None:
        self.id = gid


class MockNode:
    """Records what the scheduler sends, like xdist's own test_dsession.MockNode."""

    def __init__(self, gid: str) -> None:
        self.gateway = MockGateway(gid)
        self.sent: list[int] = []
        self.batches: list[list[int]] = []  # one entry per send_runtest_some call
        self._shutdown = False

    def send_runtest_some(self, indices: Sequence[int]) -> None:
        self.sent.extend(indices)
        self.batches.append(list(indices))

    def shutdown(self) -> None:
        self._shutdown = True

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def __repr__(self) -> str:
        return f"<node {self.gateway.id}>"


def prp(prp_id: str, *deps: str, hours: float | None = None, files: Iterable[str] = ()) -> PrpInfo:
    return PrpInfo(prp_id, tuple(deps), hours, tuple(files))


def prp_nodeid(prp_id: str) -> str:
    return f"PRPs/{prp_id}.md::{prp_id}"


class Harness:
    """A scheduler with its mock nodes after collection, plus readable views of what was sent."""

    def __init__(
        self,
        config: pytest.Config,
        nodes: list[MockNode],
        prps: Sequence[PrpInfo],
        tests: int,
        filler: bool,
        order: Sequence[str] | None = None,
        schedule: bool = True,
        collect: bool = True,
    ) -> None:
        by_nodeid = {prp_nodeid(p.id): p for p in prps}
        # As on a worker: ordinary tests, then the PRPs in plan order, then the filler.
        self.collection = [f"tests/test_x.py::test_{i}" for i in range(tests)]
        self.collection += [prp_nodeid(i) for i in (order or [p.id for p in prps])]
        if filler:
            self.collection.append(FILLER_NODEID)
        self.sched = PrpScheduling(config, graph_loader=by_nodeid.get)
        self.nodes = nodes
        self.announced = 0  # "scheduling tests via PrpScheduling" lines printed (with -v)
        for node in nodes:
            self.sched.add_node(node)
        if not collect:  # the collections arrive one by one: see arrive()
            return
        for node in nodes:
            self.sched.add_node_collection(node, self.collection)
        if schedule:
            self.sched.schedule()

    def arrive(self, node: MockNode, collection: Sequence[str] | None = None) -> None:
        """DSession.worker_collectionfinish: one worker's collection, then schedule()."""
        self.sched.add_node_collection(node, self.collection if collection is None else collection)
        if self.sched.collection_is_completed:
            if not self.sched.has_pending:  # the DSession prints the line only then
                self.announced += 1
            self.sched.schedule()

    def index(self, name: str) -> int:
        if name == "next":
            return self.collection.index(FILLER_NODEID)
        if name.startswith("PRP-"):
            return self.collection.index(prp_nodeid(name))
        return self.collection.index(f"tests/test_x.py::{name}")

    def name(self, index: int) -> str:
        nodeid = self.collection[index]
        return "next" if nodeid == FILLER_NODEID else nodeid.split("::")[1]

    def sent(self, node: MockNode) -> list[str]:
        return [self.name(i) for i in node.sent]

    def prps_sent(self, node: MockNode) -> list[str]:
        return [n for n in self.sent(node) if n.startswith("PRP-")]

    def where(self, name: str) -> MockNode:
        index = self.index(name)
        (node,) = [n for n in self.nodes if index in self.sched.node2pending.get(n, [])]
        return node

    def complete(self, name: str) -> None:
        """The worker reports ``name`` done (passed, failed or skipped: all the same here)."""
        self.sched.mark_test_complete(self.where(name), self.index(name))

    def run_filler(self, node: MockNode) -> None:
        self.sched.mark_test_complete(node, self.index("next"))

    def all_prps_sent(self) -> list[str]:
        return sorted((n for node in self.nodes for n in self.prps_sent(node)), key=natural_key)


@pytest.fixture
def make_config(pytester: pytest.Pytester) -> Callable[..., pytest.Config]:
    def make(workers: int, serialize: bool = False) -> pytest.Config:
        config = pytester.parseconfig(f"--tx={workers}*popen", "-p", "no:prp")
        config.option.prp_serialize_conflicts = serialize
        return config

    return make


@pytest.fixture
def harness(make_config: Callable[..., pytest.Config]) -> Callable[..., Harness]:
    def make(
        workers: int,
        prps: Sequence[PrpInfo],
        tests: int = 0,
        filler: bool = True,
        serialize: bool = False,
        order: Sequence[str] | None = None,
        schedule: bool = True,
        collect: bool = True,
    ) -> Harness:
        nodes = [MockNode(f"gw{i}") for i in range(workers)]
        config = make_config(workers, serialize)
        return Harness(config, nodes, prps, tests, filler, order, schedule, collect)

    return make


# --- dependencies ---------------------------------------------------------------------------------


def test_chain_runs_each_prp_after_its_dependency(harness: Callable[..., Harness]) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2", "PRP-1"), prp("PRP-3", "PRP-2")])
    gw0, gw1 = h.nodes
    assert h.sent(gw0) == ["PRP-1", "next"]
    assert h.sent(gw1) == []
    assert not gw0.shutting_down and not gw1.shutting_down  # PRP-2 and PRP-3 still to come
    assert not h.sched.tests_finished

    h.complete("PRP-1")
    assert h.all_prps_sent() == ["PRP-1", "PRP-2"]
    assert not any(n.shutting_down for n in h.nodes)
    h.complete("PRP-2")
    assert h.all_prps_sent() == ["PRP-1", "PRP-2", "PRP-3"]
    # Everything is sent: the nodes are told to finish, as LoadScheduling does.
    assert all(n.shutting_down for n in h.nodes)


def test_diamond_runs_both_middles_at_once_and_the_join_last(
    harness: Callable[..., Harness],
) -> None:
    h = harness(
        3,
        [
            prp("PRP-1"),
            prp("PRP-2", "PRP-1"),
            prp("PRP-3", "PRP-1"),
            prp("PRP-4", "PRP-2", "PRP-3"),
        ],
    )
    assert h.all_prps_sent() == ["PRP-1"]
    h.complete("PRP-1")
    assert h.all_prps_sent() == ["PRP-1", "PRP-2", "PRP-3"]
    assert h.where("PRP-2") is not h.where("PRP-3")
    h.complete("PRP-3")
    assert "PRP-4" not in h.all_prps_sent()  # PRP-2 still runs
    h.complete("PRP-2")
    assert h.all_prps_sent() == ["PRP-1", "PRP-2", "PRP-3", "PRP-4"]


def test_wide_fan_out_fills_every_worker_one_prp_each(harness: Callable[..., Harness]) -> None:
    leaves = [prp(f"PRP-1.{i}", "PRP-1") for i in range(1, 7)]
    h = harness(3, [prp("PRP-1"), *leaves])
    h.complete("PRP-1")
    assert [h.prps_sent(n)[-1] for n in h.nodes] == ["PRP-1.1", "PRP-1.2", "PRP-1.3"]
    for node in h.nodes:  # one PRP at a time per worker
        assert sum(1 for i in h.sched.node2pending[node] if i in h.sched.prps) == 1
    h.complete("PRP-1.2")
    assert h.prps_sent(h.nodes[1])[-1] == "PRP-1.4"
    assert h.all_prps_sent() == ["PRP-1", *[f"PRP-1.{i}" for i in range(1, 5)]]


def test_dependencies_outside_the_session_are_not_waited_for(
    harness: Callable[..., Harness],
) -> None:
    # PRP-1 is not collected (deselected, or completed in an earlier run): the worker checks
    # the git ledger for it; the scheduler does not wait.
    h = harness(2, [prp("PRP-2", "PRP-1"), prp("PRP-3", "PRP-2", "PRP-0")])
    assert h.all_prps_sent() == ["PRP-2"]
    h.complete("PRP-2")
    assert h.all_prps_sent() == ["PRP-2", "PRP-3"]


def test_a_failed_dependency_still_releases_its_dependents(
    harness: Callable[..., Harness],
) -> None:
    # xdist reports completion whatever the outcome; the dependent is sent and its worker
    # reports it blocked (the ledger only holds PRPs that passed).
    h = harness(1, [prp("PRP-1"), prp("PRP-2", "PRP-1")])
    h.complete("PRP-1")  # failed on the worker
    assert h.prps_sent(h.nodes[0]) == ["PRP-1", "PRP-2"]


def test_a_dependency_cycle_does_not_hang_the_batch(harness: Callable[..., Harness]) -> None:
    # Planning rejects cycles before anything runs; should one get here, nothing waits forever.
    h = harness(1, [prp("PRP-1", "PRP-2"), prp("PRP-2", "PRP-1")])
    h.complete(h.prps_sent(h.nodes[0])[0])
    assert h.all_prps_sent() == ["PRP-1", "PRP-2"]


# --- priority -------------------------------------------------------------------------------------


def test_longest_chain_in_hours_goes_first(harness: Callable[..., Harness]) -> None:
    h = harness(1, [prp("PRP-1", hours=10), prp("PRP-2", hours=1), prp("PRP-3", "PRP-2", hours=1)])
    h.complete("PRP-1")
    h.complete("PRP-2")
    assert h.prps_sent(h.nodes[0]) == ["PRP-1", "PRP-2", "PRP-3"]


def test_longest_chain_counts_prps_when_an_estimate_is_missing(
    harness: Callable[..., Harness],
) -> None:
    # Same graph, PRP-3 without hours: the two-PRP chain PRP-2 -> PRP-3 is now the longer.
    h = harness(1, [prp("PRP-1", hours=10), prp("PRP-2", hours=1), prp("PRP-3", "PRP-2")])
    h.complete("PRP-2")
    h.complete("PRP-1")
    assert h.prps_sent(h.nodes[0]) == ["PRP-2", "PRP-1", "PRP-3"]


def test_equal_chains_go_in_natural_id_order(harness: Callable[..., Harness]) -> None:
    h = harness(
        1, [prp("PRP-10"), prp("PRP-9"), prp("PRP-9.1")], order=["PRP-10", "PRP-9.1", "PRP-9"]
    )
    h.complete("PRP-9")
    h.complete("PRP-9.1")
    assert h.prps_sent(h.nodes[0]) == ["PRP-9", "PRP-9.1", "PRP-10"]


# --- the filler -----------------------------------------------------------------------------------


def test_each_prp_is_sent_with_the_filler_so_it_starts_at_once(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2"), prp("PRP-3", "PRP-1")])
    gw0, gw1 = h.nodes
    assert gw0.batches == [[h.index("PRP-1"), h.index("next")]]
    assert gw1.batches == [[h.index("PRP-2"), h.index("next")]]
    h.complete("PRP-1")
    assert gw0.batches[-1] == [h.index("PRP-3"), h.index("next")]


def test_filler_runs_are_tolerated_and_never_count_as_work(
    harness: Callable[..., Harness],
) -> None:
    h = harness(1, [prp("PRP-1"), prp("PRP-2", "PRP-1")])
    (gw0,) = h.nodes
    h.complete("PRP-1")  # the worker now holds [filler, PRP-2, filler]
    assert h.sent(gw0) == ["PRP-1", "next", "PRP-2", "next"]
    h.run_filler(gw0)  # the first filler runs as PRP-2 arrives
    assert h.sched.has_pending
    h.run_filler(gw0)  # a stray report is harmless too
    h.complete("PRP-2")
    h.run_filler(gw0)
    assert gw0.shutting_down
    assert h.sched.tests_finished and not h.sched.has_pending
    assert h.sched.remove_node(gw0) is None


def test_without_a_filler_each_prp_gets_a_successor_or_a_shutdown(
    harness: Callable[..., Harness],
) -> None:
    # Workers without the filler (plugin not active there): a queue never ends in a PRP that
    # would wait for a successor forever.
    h = harness(1, [prp("PRP-1"), prp("PRP-2", "PRP-1"), prp("PRP-3", "PRP-2")], filler=False)
    (gw0,) = h.nodes
    assert h.sent(gw0) == ["PRP-1", "PRP-2"]  # PRP-1 starts; PRP-2 runs after it
    h.complete("PRP-1")
    assert h.sent(gw0) == ["PRP-1", "PRP-2", "PRP-3"]
    assert gw0.shutting_down  # all sent: the shutdown lets PRP-3 start


def test_without_a_filler_a_stuck_worker_is_shut_down_to_make_progress(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2"), prp("PRP-3", "PRP-1", "PRP-2")], filler=False)
    gw0, gw1 = h.nodes
    # Neither worker can start its PRP without a successor, and PRP-3 needs both: one node
    # is shut down so that its PRP runs.
    assert (h.sent(gw0), h.sent(gw1)) == (["PRP-1"], ["PRP-2"])
    assert gw0.shutting_down and not gw1.shutting_down
    h.complete("PRP-1")
    assert h.sent(gw1) == ["PRP-2", "PRP-3"]  # queued behind its other dependency
    assert gw1.shutting_down


# --- workers are never idle -----------------------------------------------------------------------


def test_a_prp_made_ready_elsewhere_goes_to_the_idle_worker_at_once(
    harness: Callable[..., Harness],
) -> None:
    h = harness(
        3,
        [
            prp("PRP-1", hours=5),
            prp("PRP-2", hours=1),
            prp("PRP-3", hours=1),
            prp("PRP-4", "PRP-2", hours=1),
        ],
    )
    gw0, gw1, gw2 = h.nodes
    assert [h.prps_sent(n) for n in h.nodes] == [["PRP-1"], ["PRP-2"], ["PRP-3"]]
    h.complete("PRP-3")  # gw2 is idle now, but nothing is ready for it
    assert h.prps_sent(gw2) == ["PRP-3"] and not gw2.shutting_down
    h.complete("PRP-2")  # PRP-4 is ready: gw1 (just freed) takes it
    assert h.prps_sent(gw1) == ["PRP-2", "PRP-4"]


def test_ordinary_tests_run_on_workers_without_a_prp(harness: Callable[..., Harness]) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2", "PRP-1")], tests=12)
    gw0, gw1 = h.nodes
    assert h.sent(gw0) == ["PRP-1", "next"]
    assert h.sent(gw1) == ["test_0", "test_1", "test_2"]  # LoadScheduling's chunk: 12 // 4
    h.complete("test_0")
    h.complete("test_1")
    assert h.sent(gw1)[3:] == ["test_3", "test_4", "test_5"]  # refilled, 3 queued again
    assert h.sent(gw0) == ["PRP-1", "next"]  # busy with a PRP: no tests
    h.complete("PRP-1")
    # The idle worker takes PRP-2; the tests stay with the other one.
    assert h.sent(gw0) == ["PRP-1", "next", "PRP-2", "next"]
    h.complete("PRP-2")
    assert h.sent(gw0)[4:] == ["test_6", "test_7"]  # free again: it helps with the tests
    while h.sched.has_pending:
        node = next(n for n in h.nodes if h.sched._real_count(n))
        first = next(i for i in h.sched.node2pending[node] if i < 12)
        h.sched.mark_test_complete(node, first)
    assert all(n.shutting_down for n in h.nodes)
    sent_tests = sorted(i for n in h.nodes for i in n.sent if i < 12)
    assert sent_tests == list(range(12))  # each test sent exactly once


def test_a_last_test_is_followed_by_the_filler_while_prps_wait(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2", "PRP-1")], tests=1)
    gw0, gw1 = h.nodes
    # test_0 would wait for a successor that may come hours later: the filler follows it.
    assert h.sent(gw1) == ["test_0", "next"]
    assert not gw1.shutting_down


def test_only_ordinary_tests_are_scheduled_exactly_like_loadscheduling(
    make_config: Callable[..., pytest.Config],
) -> None:
    collection = [f"tests/test_x.py::test_{i}" for i in range(40)]
    ours = [MockNode("gw0"), MockNode("gw1"), MockNode("gw2")]
    theirs = [MockNode("gw0"), MockNode("gw1"), MockNode("gw2")]
    prp_sched = PrpScheduling(make_config(3), graph_loader=lambda nodeid: None)
    load_sched = LoadScheduling(make_config(3))
    for sched, nodes in ((prp_sched, ours), (load_sched, theirs)):
        for node in nodes:
            sched.add_node(node)
            sched.add_node_collection(node, collection)
        sched.schedule()
    rng = random.Random(7)
    while load_sched.has_pending:
        assert [n.sent for n in ours] == [n.sent for n in theirs]
        busy = [i for i, n in enumerate(theirs) if load_sched.node2pending[n]]
        k = rng.choice(busy)
        item = load_sched.node2pending[theirs[k]][0]
        duration = rng.choice([0.01, 0.5])
        load_sched.mark_test_complete(theirs[k], item, duration)
        prp_sched.mark_test_complete(ours[k], item, duration)
    assert [n.sent for n in ours] == [n.sent for n in theirs]
    assert [n.shutting_down for n in ours] == [n.shutting_down for n in theirs] == [True] * 3
    assert prp_sched.tests_finished and not prp_sched.has_pending


# --- --prp-serialize-conflicts --------------------------------------------------------------------


CONFLICTING = [
    prp("PRP-1", hours=3, files=["src/app.py", "README.md"]),
    prp("PRP-2", hours=2, files=["./src/app.py"]),
    prp("PRP-3", hours=1, files=["docs/guide.md"]),
]


def test_conflicting_prps_never_run_at_the_same_time_when_asked(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, CONFLICTING, serialize=True)
    gw0, gw1 = h.nodes
    # PRP-2 ranks above PRP-3 but shares src/app.py with the running PRP-1.
    assert (h.prps_sent(gw0), h.prps_sent(gw1)) == (["PRP-1"], ["PRP-3"])
    h.complete("PRP-3")
    assert h.prps_sent(gw1) == ["PRP-3"]
    h.complete("PRP-1")
    assert "PRP-2" in h.all_prps_sent()


def test_conflicting_prps_run_side_by_side_by_default(harness: Callable[..., Harness]) -> None:
    h = harness(2, CONFLICTING)
    assert [h.prps_sent(n) for n in h.nodes] == [["PRP-1"], ["PRP-2"]]


# --- crashes, -x, shutdown ------------------------------------------------------------------------


def test_a_crashed_worker_fails_only_its_prp_and_dependents_go_on(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1", hours=5), prp("PRP-2", hours=1), prp("PRP-3", "PRP-1", hours=1)])
    gw0, gw1 = h.nodes
    assert h.prps_sent(gw0) == ["PRP-1"]
    crashed = h.sched.remove_node(gw0)
    assert crashed == prp_nodeid("PRP-1")  # xdist reports this one as failed
    assert gw0 not in h.sched.nodes
    h.complete("PRP-2")
    assert h.prps_sent(gw1) == ["PRP-2", "PRP-3"]  # sent on: its worker reports it blocked


def test_a_crash_requeues_the_other_items_of_that_worker(harness: Callable[..., Harness]) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2", "PRP-1")], tests=8)
    gw0, gw1 = h.nodes
    assert h.sent(gw1) == ["test_0", "test_1"]
    assert h.sched.remove_node(gw1) == "tests/test_x.py::test_0"  # the one it was running
    # A replacement worker comes up (xdist replaces crashed workers) and takes the rest.
    gw2 = MockNode("gw2")
    h.nodes.append(gw2)
    h.sched.add_node(gw2)
    h.sched.add_node_collection(gw2, h.collection)
    h.sched.schedule()
    assert h.sent(gw2) == ["test_1", "test_2", "test_3"]
    assert h.sent(gw0) == ["PRP-1", "next"]


def test_a_worker_that_dies_while_idle_fails_nothing(harness: Callable[..., Harness]) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2"), prp("PRP-3", "PRP-1")])
    gw0, gw1 = h.nodes
    h.complete("PRP-2")  # gw1 holds only the filler now
    assert h.sched.remove_node(gw1) is None
    h.complete("PRP-1")
    assert h.prps_sent(gw0) == ["PRP-1", "PRP-3"]


def test_a_prp_not_started_when_its_worker_died_runs_elsewhere(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2"), prp("PRP-3", "PRP-2"), prp("PRP-4", "PRP-1")])
    gw0, gw1 = h.nodes
    h.complete("PRP-2")  # gw1 now holds [filler, PRP-3, filler]: the filler has not run yet
    assert h.prps_sent(gw1) == ["PRP-2", "PRP-3"]
    assert h.sched.remove_node(gw1) is None  # PRP-3 never started: nothing failed
    h.complete("PRP-1")
    assert h.prps_sent(gw0) == ["PRP-1", "PRP-3"]  # best first; PRP-4 waits for a worker


def test_a_crashed_prp_marked_pending_again_is_rerun(harness: Callable[..., Harness]) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2")])
    gw0, gw1 = h.nodes
    crashed = h.sched.remove_node(gw0)
    assert crashed == prp_nodeid("PRP-1")
    h.sched.mark_test_pending(crashed)  # what pytest-rerunfailures does with a crash
    gw2 = MockNode("gw2")  # the replacement worker
    h.nodes.append(gw2)
    h.sched.add_node(gw2)
    h.sched.add_node_collection(gw2, h.collection)
    h.sched.schedule()
    assert h.prps_sent(gw2) == ["PRP-1"]


def test_items_taken_back_from_a_worker_are_sent_again(harness: Callable[..., Harness]) -> None:
    h = harness(2, [], tests=20)
    gw0, gw1 = h.nodes
    assert h.sent(gw0) == ["test_0", "test_1"]
    h.sched.remove_pending_tests_from_node(gw0, [1])
    assert h.sched.node2pending[gw0][0] == 0
    assert sum(n.sent.count(1) for n in h.nodes) == 2  # taken back, then sent again


def test_maxfail_shutdown_stops_all_dispatching(harness: Callable[..., Harness]) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2"), prp("PRP-3", "PRP-1"), prp("PRP-4", "PRP-2")])
    gw0, gw1 = h.nodes
    # -x: a failure makes the DSession shut every node down (DSession.triggershutdown).
    for node in h.sched.nodes:
        node.shutdown()
    h.complete("PRP-1")
    h.complete("PRP-2")
    assert h.all_prps_sent() == ["PRP-1", "PRP-2"]  # PRP-3 and PRP-4 never start
    h.run_filler(gw1)
    assert h.sched.remove_node(gw1) is None  # the worker that finished normally
    assert h.sched.has_pending  # nothing more is sent: the session ends with the workers


def test_shutdown_only_once_everything_is_sent(harness: Callable[..., Harness]) -> None:
    h = harness(3, [prp("PRP-1"), prp("PRP-2", "PRP-1")])
    assert not any(n.shutting_down for n in h.nodes)
    assert not h.sched.tests_finished and h.sched.has_pending
    h.complete("PRP-1")
    assert all(n.shutting_down for n in h.nodes)
    assert h.sched.tests_finished  # the DSession may shut down too: PRP-2 still runs
    assert h.sched.has_pending
    h.complete("PRP-2")
    assert not h.sched.has_pending


def test_the_filler_is_not_counted_as_a_test(harness: Callable[..., Harness]) -> None:
    h = harness(1, [prp("PRP-1")], tests=2, schedule=False)
    session = pytest.Session.from_config(h.sched.config)
    session.testscollected = len(h.collection)  # what the DSession sets: 2 tests, 1 PRP, filler
    h.sched.schedule()
    assert session.testscollected == 3  # terminal progress reaches 100% after 3 reports


def test_an_empty_collection_is_finished_at_once(harness: Callable[..., Harness]) -> None:
    h = harness(2, [], filler=False)
    assert h.sched.tests_finished and not h.sched.has_pending
    assert [n.sent for n in h.nodes] == [[], []]


# --- workers join as their collections arrive -----------------------------------------------------


def record_collect_errors(h: Harness) -> list[pytest.CollectReport]:
    reports: list[pytest.CollectReport] = []

    class Recorder:
        def pytest_collectreport(self, report: pytest.CollectReport) -> None:
            reports.append(report)

    h.sched.config.pluginmanager.register(Recorder(), "recorder")
    return reports


JOINING = [prp("PRP-1", hours=3), prp("PRP-2", hours=1), prp("PRP-3", "PRP-2", hours=1)]


def test_dispatch_starts_with_the_first_worker_to_collect(harness: Callable[..., Harness]) -> None:
    h = harness(3, JOINING, collect=False)
    gw0, gw1, gw2 = h.nodes
    assert not h.sched.collection_is_completed
    h.arrive(gw1)  # the others are still collecting
    assert h.sched.collection_is_completed
    assert h.sent(gw1) == ["PRP-1", "next"]
    assert h.sent(gw0) == h.sent(gw2) == []
    # PRP-2 is ready but waits for a worker: nobody is shut down, the session goes on.
    assert not any(n.shutting_down for n in h.nodes)
    assert h.sched.has_pending and not h.sched.tests_finished
    assert h.announced == 1


def test_a_late_worker_joins_and_takes_work(harness: Callable[..., Harness]) -> None:
    h = harness(3, JOINING, collect=False)
    gw0, gw1, gw2 = h.nodes
    h.arrive(gw0)
    h.arrive(gw2)
    assert h.sent(gw2) == ["PRP-2", "next"]  # the next best ready PRP, at once
    h.complete("PRP-2")
    assert h.sent(gw2)[2:] == ["PRP-3", "next"]
    assert all(n.shutting_down for n in h.nodes)  # all sent, gw1 included: it is not needed
    h.arrive(gw1)  # its collection comes in anyway: checked, and it gets nothing
    assert h.sent(gw1) == []
    assert h.announced == 1  # the DSession printed its "scheduling tests via" line once


def test_a_late_worker_takes_ordinary_tests_when_no_prp_is_ready(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2", "PRP-1")], tests=12, collect=False)
    gw0, gw1 = h.nodes
    h.arrive(gw0)
    assert h.sent(gw0) == ["PRP-1", "next"]
    h.arrive(gw1)
    assert h.sent(gw1) == [f"test_{i}" for i in range(6)]  # LoadScheduling's refill: 12 // 2
    assert not gw1.shutting_down


def test_a_late_worker_with_a_different_collection_is_reported_and_never_used(
    harness: Callable[..., Harness],
) -> None:
    h = harness(3, [prp("PRP-1"), prp("PRP-2"), prp("PRP-3")], tests=2, collect=False)
    errors = record_collect_errors(h)
    session = pytest.Session.from_config(h.sched.config)
    gw0, gw1, gw2 = h.nodes
    h.arrive(gw0)
    other = [nodeid for nodeid in h.collection if nodeid != prp_nodeid("PRP-3")]
    session.testscollected = len(other)  # the DSession counts the latest collection
    h.arrive(gw1, other)
    # Reported as xdist's LoadScheduling does: a failed collection, so the run fails.
    (error,) = errors
    assert error.failed and error.nodeid == "gw1"
    assert "Different tests were collected between gw0 and gw1" in str(error.longrepr)
    assert "-PRPs/PRP-3.md::PRP-3" in str(error.longrepr)
    assert gw1.sent == [] and gw1.shutting_down
    assert session.testscollected == 5  # still the first collection's: 2 tests and 3 PRPs
    # The batch goes on with the workers that collected the same.
    h.arrive(gw2)
    assert h.sent(gw2) == ["PRP-2", "next"]
    assert len(errors) == 1
    assert h.sched.remove_node(gw1) is None  # it ends without having run anything
    h.complete("PRP-1")
    assert h.all_prps_sent() == ["PRP-1", "PRP-2", "PRP-3"]


def test_a_worker_that_collects_after_everything_was_sent_is_shut_down(
    harness: Callable[..., Harness],
) -> None:
    h = harness(3, [prp("PRP-1")], collect=False)
    gw0, gw1, gw2 = h.nodes
    h.arrive(gw0)
    # Nothing else to send: every worker is told to finish, those still collecting too.
    assert all(n.shutting_down for n in h.nodes)
    assert h.sched.tests_finished  # the DSession shuts down and ignores later collections
    h.arrive(gw1)  # had it not, the collection comes in: nothing is sent
    assert gw1.sent == []
    h.complete("PRP-1")
    assert not h.sched.has_pending and h.sched.tests_finished
    # A replacement worker started after all was done: told to finish once it has collected.
    gw3 = MockNode("gw3")
    h.nodes.append(gw3)
    h.sched.add_node(gw3)
    assert not gw3.shutting_down
    h.arrive(gw3)
    assert gw3.sent == [] and gw3.shutting_down
    for node in (gw1, gw2, gw3):
        assert h.sched.remove_node(node) is None


def test_workers_collecting_later_do_not_overwrite_output_on_a_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pytester.parseconfigure("--tx=3*popen", "-p", "no:prp")
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    monkeypatch.setattr(terminal, "isatty", True)
    rewritten: list[str] = []
    monkeypatch.setattr(terminal, "rewrite", lambda line, **markup: rewritten.append(line))
    status = TerminalDistReporter(config)  # the DSession's worker status line
    config.pluginmanager.register(status, "terminaldistreporter")
    nodes = [MockNode(f"gw{i}") for i in range(3)]
    h = Harness(config, list(nodes), JOINING, 0, True, collect=False)

    specs = {node: type("Spec", (), {"id": node.gateway.id})() for node in nodes}
    for spec in specs.values():  # as pytest_xdist_setupnodes
        status.setstatus(spec, WorkerStatus.Created, tests_collected=0, show=False)

    def collected(node: MockNode) -> None:  # as DSession.worker_collectionfinish
        status.setstatus(specs[node], WorkerStatus.CollectionDone, tests_collected=4)
        h.arrive(node)

    collected(nodes[0])
    assert rewritten[-1].strip() == "collecting: 1/3 workers"
    assert h.sent(nodes[0]) == ["PRP-1", "next"]  # its line may be on the terminal now
    collected(nodes[1])
    collected(nodes[2])
    assert len(rewritten) == 1  # nothing written over it
    assert h.sent(nodes[1]) == ["PRP-2", "next"]


def test_a_worker_lost_before_it_collected_changes_nothing(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [prp("PRP-1"), prp("PRP-2")], collect=False)
    gw0, gw1 = h.nodes
    h.arrive(gw0)
    assert h.sched.remove_node(gw1) is None  # crashed while collecting
    h.complete("PRP-1")
    assert h.prps_sent(gw0) == ["PRP-1", "PRP-2"]


def test_without_a_filler_dispatch_waits_for_every_worker(
    harness: Callable[..., Harness],
) -> None:
    # A lone worker would be handed the whole chain as followers: wait, as LoadScheduling does.
    h = harness(2, [prp("PRP-1"), prp("PRP-2")], filler=False, collect=False)
    gw0, gw1 = h.nodes
    h.arrive(gw0)
    assert not h.sched.collection_is_completed
    assert not h.sched.tests_finished and not h.sched.has_pending
    h.arrive(gw1)
    assert (h.prps_sent(gw0), h.prps_sent(gw1)) == (["PRP-1"], ["PRP-2"])


def test_without_a_filler_the_first_collection_is_the_reference(
    harness: Callable[..., Harness],
) -> None:
    h = harness(2, [], tests=1, filler=False, collect=False)
    errors = record_collect_errors(h)
    gw0, gw1 = h.nodes
    h.sched.add_node_collection(gw0, h.collection)
    h.sched.add_node_collection(gw1, ["tests/test_x.py::test_other"])
    h.sched.schedule()
    assert len(errors) == 1 and errors[0].nodeid == "gw1"
    assert (h.sent(gw0), gw1.sent) == (["test_0"], [])


# --- reading the graph from the PRP files ---------------------------------------------------------


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_graph_is_read_from_the_prp_files(
    pytester: pytest.Pytester, make_config: Callable[..., pytest.Config]
) -> None:
    write(
        pytester.path,
        "PRPs/PRP-1-base.md",
        "---\nprp_id: PRP-1\nestimated_hours: 2-4\nfiles_modified: [src/a.py]\n---\n# base\n",
    )
    write(
        pytester.path,
        "PRPs/PRP-2-next.md",
        "---\nprp_id: PRP-2\ndependencies: [PRP-1 (needs base)]\nstage: 2\n---\n# next\n",
    )
    load = file_graph_loader(pytester.path)
    assert load("PRPs/PRP-1-base.md::PRP-1") == PrpInfo("PRP-1", (), 3.0, ("src/a.py",))
    assert load("PRPs/PRP-2-next.md::PRP-2") == PrpInfo("PRP-2", ("PRP-1",), None, (), 2)
    assert load("tests/test_a.py::test_one") is None  # not a PRP id: the file is not read
    assert load("PRPs/PRP-1-base.md::PRP-7") is None  # another id than the file's
    assert load("PRPs/missing.md::PRP-5") is None

    # Without a loader the scheduler reads the files under the rootdir itself.
    sched = PrpScheduling(make_config(1))
    node = MockNode("gw0")
    sched.add_node(node)
    collection = [
        "tests/test_a.py::test_one",
        "PRPs/PRP-2-next.md::PRP-2",
        "PRPs/PRP-1-base.md::PRP-1",
        FILLER_NODEID,
    ]
    sched.add_node_collection(node, collection)
    sched.schedule()
    assert node.sent == [2, 3]  # PRP-1 first: PRP-2 depends on it
    sched.mark_test_complete(node, 2)
    assert node.sent == [2, 3, 1, 3]

    # Read once per file: later edits do not change a running batch's graph.
    write(pytester.path, "PRPs/PRP-1-base.md", "---\nprp_id: PRP-1\ndependencies: [PRP-2]\n---\n")
    assert load("PRPs/PRP-1-base.md::PRP-1") == PrpInfo("PRP-1", (), 3.0, ("src/a.py",))


# --- whole batches, simulated ---------------------------------------------------------------------

SHUTDOWN = -1


class SimNode(MockNode):
    """A mock node that runs its queue like xdist's WorkerInteractor (remote.py)."""

    def __init__(self, gid: str) -> None:
        super().__init__(gid)
        self.queue: deque[int] = deque()
        self.current: int | None = None  # taken from the queue
        self.running = False  # current has its successor, so it runs
        self.finished = False
        self.collected = False  # a worker runs nothing before it has collected

    def send_runtest_some(self, indices: Sequence[int]) -> None:
        super().send_runtest_some(indices)
        self.queue.extend(indices)

    def shutdown(self) -> None:
        if not self._shutdown:
            self.queue.append(SHUTDOWN)
        super().shutdown()


@dataclass
class Batch:
    prps: dict[str, PrpInfo]
    durations: dict[str, float]
    tests: int = 0

    def chain(self) -> dict[str, float]:
        """Longest remaining chain per PRP, computed independently of the scheduler."""
        by_hours = all(p.estimated_hours is not None for p in self.prps.values())
        memo: dict[str, float] = {}

        def length(prp_id: str) -> float:
            if prp_id not in memo:
                own = (self.prps[prp_id].estimated_hours or 0.0) if by_hours else 1.0
                after = [d for d, p in self.prps.items() if prp_id in p.dependencies]
                memo[prp_id] = own + max((length(d) for d in after), default=0.0)
            return memo[prp_id]

        return {i: length(i) for i in self.prps}

    def critical_path(self) -> float:
        memo: dict[str, float] = {}

        def finish(prp_id: str) -> float:
            if prp_id not in memo:
                deps = [d for d in self.prps[prp_id].dependencies if d in self.prps]
                memo[prp_id] = self.durations[prp_id] + max(map(finish, deps), default=0.0)
            return memo[prp_id]

        return max(map(finish, self.prps), default=0.0)

    def list_schedule(self, workers: int) -> float:
        """Ideal list scheduling: a free worker always takes the best ready PRP."""
        chain = self.chain()
        best = sorted(self.prps, key=lambda i: (-chain[i], natural_key(i)))
        done: set[str] = set()
        started: set[str] = set()
        running: list[tuple[float, int, str]] = []
        now, seq, free = 0.0, 0, workers
        while len(done) < len(self.prps):
            for prp_id in best:
                deps = {d for d in self.prps[prp_id].dependencies if d in self.prps}
                if free and prp_id not in started and deps <= done:
                    started.add(prp_id)
                    heapq.heappush(running, (now + self.durations[prp_id], seq, prp_id))
                    seq += 1
                    free -= 1
            now, _, finished = heapq.heappop(running)
            done.add(finished)
            free += 1
        return now


@dataclass
class Sim:
    """Plays a batch out over mock xdist workers and checks the scheduling rules throughout."""

    harness: Harness
    batch: Batch
    serialize: bool = False
    strict: bool = True  # one PRP per worker, never idle: the rules when workers have the filler
    now: float = 0.0
    events: list[tuple[float, int, SimNode, str]] = field(default_factory=list)
    seq: int = 0
    shutting_down = False  # DSession.shuttingdown
    start: dict[str, float] = field(default_factory=dict)
    end: dict[str, float] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    @property
    def sched(self) -> PrpScheduling:
        return self.harness.sched

    def duration(self, name: str) -> float:
        return self.batch.durations.get(name, 0.0)  # tests and the filler take no time

    def push(self, at: float, node: SimNode, kind: str) -> None:
        heapq.heappush(self.events, (at, self.seq, node, kind))
        self.seq += 1

    def advance(self, node: SimNode) -> None:
        """WorkerInteractor.pytest_runtestloop: an item runs once its successor is known."""
        if node.finished or node.running or not node.collected:
            return
        if node.current is None and node.queue:
            node.current = node.queue.popleft()
        if node.current == SHUTDOWN:
            node.finished = True
            # DSession.worker_workerfinished: a normal end leaves nothing pending.
            assert self.sched.remove_node(node) is None
            return
        if node.current is None or not node.queue:
            return
        node.running = True
        name = self.harness.name(node.current)
        if name != "next":
            assert name not in self.start, f"{name} ran twice"
            self.start[name] = self.now
            self.runs.append(name)
        self.push(self.now + self.duration(name), node, "done")

    def after_event(self) -> None:
        if self.sched.tests_finished:  # DSession.loop_once -> triggershutdown
            self.shutting_down = True
            for node in self.sched.nodes:
                node.shutdown()
        for node in self.harness.nodes:
            assert isinstance(node, SimNode)
            self.advance(node)
        self.check_rules()

    def run(self, joins: Sequence[float]) -> float:
        """Play the batch; worker i's collection arrives at ``joins[i]``."""
        for node, at in zip(self.harness.nodes, joins, strict=True):
            assert isinstance(node, SimNode)
            self.push(at, node, "collected")
        while self.events:
            self.now, _, node, kind = heapq.heappop(self.events)
            if kind == "collected":
                node.collected = True
                if not self.shutting_down:  # DSession.worker_collectionfinish ignores it then
                    self.harness.arrive(node)
                self.after_event()
                continue
            assert node.current is not None
            index, name = node.current, self.harness.name(node.current)
            if name != "next":
                self.end[name] = self.now
            node.current = node.queue.popleft()
            node.running = False
            self.sched.mark_test_complete(node, index, self.duration(name))
            self.after_event()
        assert all(isinstance(n, SimNode) and n.finished for n in self.harness.nodes), "hung"
        expected = set(self.batch.prps) | {f"test_{i}" for i in range(self.batch.tests)}
        assert set(self.runs) == expected
        return max(self.end.values(), default=0.0)

    def check_rules(self) -> None:
        prps = self.batch.prps
        running = {i for i in self.start if i in prps and i not in self.end}
        for prp_id in running:  # dependencies in the session finished before it started
            for dep in prps[prp_id].dependencies:
                if dep in prps:
                    assert self.end[dep] <= self.start[prp_id]
        if self.serialize:
            for a in running:
                for b in running - {a}:
                    assert not set(prps[a].files_modified) & set(prps[b].files_modified)
        if not self.strict:
            return
        for node in self.harness.nodes:  # no item waits on a worker for a successor
            assert isinstance(node, SimNode)
            if node.current not in (None, SHUTDOWN) and not node.running:
                assert self.harness.name(node.current) == "next", (node, self.now)
        live = [
            n
            for n in self.sched.nodes
            if isinstance(n, SimNode) and n.collected and not n.shutting_down
        ]
        queued = {n: [i for i in self.sched.node2pending[n] if i in self.sched.prps] for n in live}
        assert all(len(q) <= 1 for q in queued.values()), "one PRP at a time per worker"
        sent = {self.harness.name(i) for n in self.harness.nodes for i in n.sent}
        busy = {p for p in sent if p in prps and p not in self.end}  # maybe behind tests
        ready = [
            p
            for p in prps
            if p not in sent
            and all(d in self.end for d in prps[p].dependencies if d in prps)
            and not (
                self.serialize
                and any(set(prps[p].files_modified) & set(prps[b].files_modified) for b in busy)
            )
        ]
        if ready:  # no worker sits idle while a ready PRP waits
            assert all(queued[n] for n in live), (ready, self.now)


@pytest.fixture
def simulate(make_config: Callable[..., pytest.Config]) -> Callable[..., float]:
    def play(
        batch: Batch,
        workers: int,
        serialize: bool = False,
        filler: bool = True,
        joins: Sequence[float] | None = None,
    ) -> float:
        """The makespan; worker i collects at ``joins[i]`` (all at 0, one by one, if None)."""
        nodes: list[MockNode] = [SimNode(f"gw{i}") for i in range(workers)]
        config = make_config(workers, serialize)
        h = Harness(config, nodes, list(batch.prps.values()), batch.tests, filler, collect=False)
        sim = Sim(h, batch, serialize, strict=filler)
        makespan = sim.run(joins or [0.0] * workers)
        assert h.announced == 1  # the DSession's "scheduling tests via" line: printed once
        if filler and batch.prps:  # dispatching starts with the first collection
            assert min(sim.start[p] for p in batch.prps) == min(joins or [0.0])
        return makespan

    return play


def batch_of(spec: dict[str, tuple[float, Sequence[str]]], hours: bool = True) -> Batch:
    prps = {i: PrpInfo(i, tuple(deps), dur if hours else None) for i, (dur, deps) in spec.items()}
    return Batch(prps, {i: dur for i, (dur, _) in spec.items()})


def test_sim_longest_chain_first_beats_id_order(simulate: Callable[..., float]) -> None:
    # In id order PRP-1 and PRP-2 would go first and PRP-4 would end at 6.
    batch = batch_of(
        {"PRP-1": (2, []), "PRP-2": (2, []), "PRP-3": (2, []), "PRP-4": (2, ["PRP-3"])}
    )
    assert simulate(batch, 2) == 4 == batch.list_schedule(2)


def test_sim_chain_and_diamond_take_their_critical_path(simulate: Callable[..., float]) -> None:
    chain = batch_of({"PRP-1": (3, []), "PRP-2": (2, ["PRP-1"]), "PRP-3": (1, ["PRP-2"])})
    assert simulate(chain, 3) == 6
    diamond = batch_of(
        {
            "PRP-1": (1, []),
            "PRP-2": (5, ["PRP-1"]),
            "PRP-3": (2, ["PRP-1"]),
            "PRP-4": (1, ["PRP-2", "PRP-3"]),
        }
    )
    assert simulate(diamond, 2) == 7 == diamond.critical_path()


def test_sim_wide_fan_out_on_few_workers(simulate: Callable[..., float]) -> None:
    spec: dict[str, tuple[float, Sequence[str]]] = {"PRP-1": (1, [])}
    spec.update({f"PRP-2.{i}": (float(i), ["PRP-1"]) for i in range(1, 9)})
    batch = batch_of(spec)
    # Longest first over 3 workers: 8,7,6 | 5 (6), 4 (7), 3 (8)... ends at 1 + 13 = 14.
    assert simulate(batch, 3) == batch.list_schedule(3) == 14
    assert simulate(batch, 8) == batch.critical_path() == 9


def random_batch(seed: int, size: int, hours: bool = True, files: bool = False) -> Batch:
    rng = random.Random(seed)
    ids = [f"PRP-{seed}.{i}" for i in range(1, size + 1)]
    prps: dict[str, PrpInfo] = {}
    durations: dict[str, float] = {}
    for n, prp_id in enumerate(ids):
        deps = tuple(rng.sample(ids[:n], k=min(n, rng.randint(0, 3))))
        durations[prp_id] = round(rng.uniform(0.5, 9.5), 6)  # distinct: no ties in time
        touched = tuple(rng.sample(["a.py", "b.py", "c.py", "d.py", "e.py"], k=1)) if files else ()
        est = durations[prp_id] if hours else None
        prps[prp_id] = PrpInfo(prp_id, deps, est, touched)
    return Batch(prps, durations, tests=rng.randint(0, 12))


@pytest.mark.parametrize("seed", range(1, 9))
def test_sim_random_batches_match_ideal_list_scheduling(
    simulate: Callable[..., float], seed: int
) -> None:
    batch = random_batch(seed, size=14, hours=seed % 2 == 0)
    for workers in (1, 2, 3, 5):
        assert simulate(batch, workers) == pytest.approx(batch.list_schedule(workers))
    # With a worker per PRP nothing ever waits for a worker: the critical path.
    assert simulate(batch, 14) == pytest.approx(batch.critical_path())


@pytest.mark.parametrize("seed", range(40, 46))
def test_sim_random_batches_with_workers_joining_as_they_collect(
    simulate: Callable[..., float], seed: int
) -> None:
    batch = random_batch(seed, size=14, hours=seed % 2 == 0)
    rng = random.Random(seed)
    work = sum(batch.durations.values())
    for workers in (2, 3, 5, 8):
        # Collections arrive over up to 3 time units, some after the whole batch has run.
        joins = sorted(round(rng.uniform(0, 3), 6) for _ in range(workers))
        if workers == 8:
            joins[-1] = work + 1
        makespan = simulate(batch, workers, joins=joins)
        # Graham's bound from the last join on, over the workers that joined in time: no
        # worker is ever idle while a PRP is ready.
        joined = [at for at in joins if at < makespan]
        bound = joined[-1] + work / len(joined) + batch.critical_path()
        assert makespan <= bound + 1e-9


@pytest.mark.parametrize("seed", range(20, 24))
def test_sim_random_batches_with_serialized_conflicts(
    simulate: Callable[..., float], seed: int
) -> None:
    batch = random_batch(seed, size=12, files=True)
    # The rules (no conflicting PRPs together, no idle worker) are checked at every event.
    assert simulate(batch, 3, serialize=True) >= batch.critical_path()


@pytest.mark.parametrize("seed", range(30, 34))
def test_sim_random_batches_without_a_filler_still_finish(
    simulate: Callable[..., float], seed: int
) -> None:
    batch = random_batch(seed, size=10)
    assert simulate(batch, 3, filler=False) >= batch.critical_path()
