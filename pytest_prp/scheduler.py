"""Scheduling PRPs over pytest-xdist workers (``pytest -n N``). Pure: no git, no subprocesses.

xdist drives it through its Scheduling protocol (``xdist/scheduler/protocol.py``). The controller
never collects, so the dependency graph is read from the PRP files named by the node ids.

Rules: one PRP at a time per worker; a PRP starts once every dependency that is in the session
has finished (passed or not: the worker's own ledger check reports it blocked); among ready
PRPs the longest remaining chain goes first; no worker sits idle while a ready PRP waits;
ordinary tests go, LoadScheduling style, to workers that run no PRP.

An xdist worker starts the last item of its queue only once it holds the next one (it needs it
for teardown). So every PRP is sent followed by ``FILLER_NODEID``, an item collected on every
worker that does nothing: the PRP starts at once and the worker then waits on the filler.

Workers join as they finish collecting: dispatching starts with the first collection (it holds
the filler), and the DSession calls ``schedule()`` again for each later one. The first
collection is the reference; a worker that collected anything else is reported as xdist's
LoadScheduling does (a failed collection report naming both workers, so the run fails), gets
no item and is shut down, while the batch goes on with the workers that match. A worker still
collecting when everything has been sent is shut down with the others and never checked.
Without the filler a lone worker would be handed a chain of followers, so dispatching then
waits for every worker, as LoadScheduling does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter
from itertools import cycle
from typing import Any, Protocol

import pytest
from xdist.remote import Producer
from xdist.report import report_collection_diff
from xdist.workermanage import parse_tx_spec_config

from pytest_prp.base.ids import natural_key
from pytest_prp.keys import GRAPH_LOADER
from pytest_prp.plan.planning import break_cycles, chain_weights, normalise_path
from pytest_prp.plan.prp_info import GraphLoader, PrpInfo, file_graph_loader

FILLER_NODEID = "pytest-prp::next"


class WorkerNode(Protocol):
    """The part of xdist's WorkerController the scheduler uses (mock nodes in tests)."""

    gateway: Any

    @property
    def shutting_down(self) -> bool: ...

    def send_runtest_some(self, indices: Sequence[int]) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class _Prp:
    index: int
    info: PrpInfo
    deps: set[int]  # indices of the dependencies that are in this session
    files: frozenset[str]
    chain: float = 0.0  # longest remaining chain, this PRP included

    def key(self) -> tuple[float, tuple[tuple[int, int, str], ...], int]:
        return (-self.chain, natural_key(self.info.id), self.index)


def _order(prps: dict[int, _Prp]) -> list[int]:
    """Topological order (dependencies first). Cycles are cut so that nothing waits forever.

    Planning rejects cycles before anything runs; this only keeps a bad graph from hanging.
    """
    _, acyclic = break_cycles({i: p.deps for i, p in prps.items()}, order=lambda i: i)
    for index, prp in prps.items():
        prp.deps = set(acyclic[index])
    return list(TopologicalSorter(acyclic).static_order())


def _set_chains(prps: dict[int, _Prp], order: list[int]) -> None:
    """Longest path to a sink: in hours when every PRP has an estimate, else in PRPs."""
    weight, _ = chain_weights({i: p.info.estimated_hours for i, p in prps.items()})
    dependents: dict[int, list[int]] = {i: [] for i in prps}
    for prp in prps.values():
        for dep in prp.deps:
            dependents[dep].append(prp.index)
    for index in reversed(order):
        prp = prps[index]
        prp.chain = weight[index] + max((prps[d].chain for d in dependents[index]), default=0.0)


class PrpScheduling:
    """xdist Scheduling for a session holding PRP items (and, possibly, ordinary tests)."""

    def __init__(
        self,
        config: pytest.Config,
        log: Producer | None = None,
        graph_loader: GraphLoader | None = None,
    ) -> None:
        self.numnodes = len(parse_tx_spec_config(config))
        self.config = config
        self.log: Producer = (
            log.prpsched if log is not None else Producer("prpsched", enabled=False)
        )
        self.maxschedchunk: int | None = config.getoption("maxschedchunk", None)
        self.serialize_conflicts = bool(getattr(config.option, "prp_serialize_conflicts", False))
        # The controller's one loader and its cache: the batch result and the HTML report
        # read the files the scheduler has read (PRPs no worker reported).
        self._loader = graph_loader or config.stash.setdefault(
            GRAPH_LOADER, file_graph_loader(config.rootpath)
        )
        self.node2collection: dict[WorkerNode, list[str]] = {}  # every collection received
        self.node2pending: dict[WorkerNode, list[int]] = {}  # sent, not complete, in run order
        self.collection: list[str] | None = None  # the reference: the first collection
        self._reference = ""  # the worker that sent it
        self.filler: int | None = None  # index of FILLER_NODEID, None if not collected
        self.tests: list[int] = []  # ordinary tests not sent yet
        self.waiting: list[int] = []  # PRPs not sent yet, best first
        self.running: dict[int, WorkerNode] = {}  # PRPs sent and not finished
        self.done: set[int] = set()  # PRPs finished, whatever the outcome (crashes included)
        self.prps: dict[int, _Prp] = {}
        self._joined: set[WorkerNode] = set()  # collected the reference: may get items
        self._rejected: set[WorkerNode] = set()  # collected something else: never used

    # --- the Scheduling protocol ------------------------------------------------------------

    @property
    def nodes(self) -> list[WorkerNode]:
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        """Whether ``schedule()`` may run: from the first collection when it holds the filler."""
        if not self.node2collection:
            return False
        if FILLER_NODEID in next(iter(self.node2collection.values())):
            return True
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        """Everything sent, and no node holds more than the item it will end with.

        Workers still collecting hold nothing: once all is sent the DSession may shut them down.
        """
        if self.collection is None:
            return False
        if self.waiting or self.tests:
            return False
        return all(self._real_count(node) < 2 for node in self.node2pending)

    @property
    def has_pending(self) -> bool:
        if self.waiting or self.tests:
            return True
        return any(self._real_count(node) for node in self.node2pending)

    def add_node(self, node: WorkerNode) -> None:
        assert node not in self.node2pending
        self.node2pending[node] = []

    def add_node_collection(self, node: WorkerNode, collection: Sequence[str]) -> None:
        """Record it; the next ``schedule()`` checks it against the reference and uses the node."""
        assert node in self.node2pending
        self.node2collection[node] = list(collection)

    def mark_test_complete(self, node: WorkerNode, item_index: int, duration: float = 0) -> None:
        pending = self.node2pending.get(node)
        if pending is not None and item_index in pending:
            pending.remove(item_index)
        if item_index in self.prps:
            self.done.add(item_index)
            self.running.pop(item_index, None)
        # The filler is never done: it runs once per use and may be used again.
        self._pass([node], duration)

    def mark_test_pending(self, item: str) -> None:
        """Run ``item`` again (pytest-rerunfailures does this for the item a crash killed)."""
        assert self.collection is not None
        index = self.collection.index(item)
        self.done.discard(index)
        self._requeue([index])
        self._pass(self.nodes)

    def remove_pending_tests_from_node(self, node: WorkerNode, indices: Sequence[int]) -> None:
        pending = self.node2pending[node]
        taken = [index for index in indices if index in pending]
        for index in taken:
            pending.remove(index)
        self._requeue(taken)
        self._pass(self.nodes)

    def remove_node(self, node: WorkerNode) -> str | None:
        """Forget a node; return the item it crashed in, if any. Its other items run elsewhere.

        A crashed PRP counts as finished, so its dependents start (and are reported blocked).
        """
        pending = self.node2pending.pop(node)
        self._joined.discard(node)
        self._rejected.discard(node)
        if not any(index != self.filler for index in pending):
            return None
        assert self.collection is not None
        crashed: int | None = None
        if pending[0] != self.filler:  # the worker only ever runs its first item
            crashed = pending.pop(0)
        self._requeue(index for index in pending if index != self.filler)
        if crashed is not None and crashed in self.prps:
            self.running.pop(crashed, None)
            self.done.add(crashed)
        self._pass(self.nodes)
        return self.collection[crashed] if crashed is not None else None

    def schedule(self) -> None:
        """Called again after every collection that arrives, so incremental: the first call
        builds the graph from the first collection; each call checks the nodes collected since
        and sends work to those that match."""
        assert self.collection_is_completed
        initial = self.collection is None
        if self.collection is None:
            node, collection = next(iter(self.node2collection.items()))
            self.collection, self._reference = collection, node.gateway.id
            self._build_graph(collection)
            if self.maxschedchunk is None:
                self.maxschedchunk = len(collection)
            self._freeze_worker_status()
        for node, collection in self.node2collection.items():
            new = node not in self._joined and node not in self._rejected
            if new and node in self.node2pending:  # not gone (crashed) since
                self._join(node, collection)
        self._count_tests()
        self._pass(self.nodes, initial=initial)

    def _join(self, node: WorkerNode, collection: list[str]) -> None:
        """Use a node from now on, or report its different collection and never use it."""
        assert self.collection is not None
        msg = report_collection_diff(self.collection, collection, self._reference, node.gateway.id)
        if msg is None:
            self._joined.add(node)
            return
        # As LoadScheduling: logged and reported as a collection error (the run fails).
        self.log(msg)
        self.log(f"**Different tests collected on {node.gateway.id}: it gets no items**")
        report = pytest.CollectReport(
            nodeid=node.gateway.id, outcome="failed", longrepr=msg, result=[]
        )
        self.config.hook.pytest_collectreport(report=report)
        self._rejected.add(node)
        node.shutdown()

    def _freeze_worker_status(self) -> None:
        """Stop xdist rewriting its worker status line ("collecting: 3/8 workers") in place.

        The DSession ends that line as scheduling starts, taking every worker to have collected
        by then; here the lines of PRPs already running follow it, and each worker collecting
        later would overwrite one on a terminal. The attribute is xdist's own: hence the guard.
        """
        status = self.config.pluginmanager.get_plugin("terminaldistreporter")
        if status is not None and hasattr(status, "_isatty"):
            status._isatty = False

    def _count_tests(self) -> None:
        """The DSession counts every id of the latest collection as a test; the filler is none.

        Without this the progress ("[ 75%]") would never reach 100%. Done on every schedule():
        the DSession sets the count again whenever a worker finishes collecting, whatever it
        collected.
        """
        session = self.config.pluginmanager.get_plugin("session")
        if self.collection is not None and isinstance(session, pytest.Session):
            session.testscollected = len(self.collection) - (self.filler is not None)

    # --- the graph ----------------------------------------------------------------------------

    def _build_graph(self, collection: list[str]) -> None:
        by_id: dict[str, list[int]] = {}
        for index, nodeid in enumerate(collection):
            if nodeid == FILLER_NODEID:
                if self.filler is None:
                    self.filler = index
                continue
            info = self._loader(nodeid)
            if info is None:
                self.tests.append(index)
                continue
            files = frozenset(normalise_path(f) for f in info.files_modified if f.strip())
            self.prps[index] = _Prp(index, info, set(), files)
            by_id.setdefault(info.id, []).append(index)
        for prp in self.prps.values():
            for dep in prp.info.dependencies:
                # Dependencies outside the session are the worker's business (the ledger).
                prp.deps.update(i for i in by_id.get(dep, ()) if i != prp.index)
        _set_chains(self.prps, _order(self.prps))
        self.waiting = sorted(self.prps, key=lambda i: self.prps[i].key())
        self.log(f"{len(self.prps)} PRPs, {len(self.tests)} other tests, filler={self.filler}")

    # --- dispatching --------------------------------------------------------------------------

    def _pass(
        self, refill: Iterable[WorkerNode], duration: float = 0.0, initial: bool = False
    ) -> None:
        """One scheduling round after any event: PRPs first, then tests, then followers."""
        if self.collection is None:
            return
        self._send_ready_prps()
        if initial:
            self._initial_tests()
        else:
            for node in refill:
                self._refill_tests(node, duration)
        self._follow_up()

    def _usable(self, node: WorkerNode) -> bool:
        return node in self._joined and not node.shutting_down

    def _real_count(self, node: WorkerNode) -> int:
        return sum(1 for index in self.node2pending[node] if index != self.filler)

    def _send(self, node: WorkerNode, indices: list[int]) -> None:
        self.node2pending[node].extend(indices)
        node.send_runtest_some(indices)

    def _conflicts(self, index: int, ignore: WorkerNode | None = None) -> bool:
        if not self.serialize_conflicts:
            return False
        files = self.prps[index].files
        return any(
            files & self.prps[other].files
            for other, node in self.running.items()
            if node is not ignore
        )

    def _is_ready(self, index: int) -> bool:
        return self.prps[index].deps <= self.done and not self._conflicts(index)

    def _send_ready_prps(self) -> None:
        busy = set(self.running.values())
        free = [n for n in self.node2pending if self._usable(n) and n not in busy]
        for index in list(self.waiting):
            if not free:
                return
            if not self._is_ready(index):
                continue
            node = min(free, key=self._real_count)  # an idle node before one running tests
            free.remove(node)
            self.waiting.remove(index)
            self.running[index] = node
            self.log(f"{self.prps[index].info.id} -> {node.gateway.id}")
            self._send(node, [index] if self.filler is None else [index, self.filler])

    def _test_nodes(self) -> list[WorkerNode]:
        busy = set(self.running.values())
        return [n for n in self.node2pending if self._usable(n) and n not in busy]

    def _send_tests(self, node: WorkerNode, num: int) -> None:
        chunk = self.tests[:num]
        if chunk:
            del self.tests[:num]
            self._send(node, chunk)

    def _initial_tests(self) -> None:
        """LoadScheduling's first distribution, over the nodes that got no PRP."""
        nodes = self._test_nodes()
        if not self.tests or not nodes:
            return
        if len(self.tests) < 2 * len(nodes):
            ring = cycle(nodes)
            for _ in range(len(self.tests)):
                self._send_tests(next(ring), 1)
            return
        assert self.maxschedchunk is not None
        items_per_node = len(self.tests) // len(nodes)
        chunk = max(2, min(items_per_node // 4, self.maxschedchunk))
        for node in nodes:
            self._send_tests(node, chunk)

    def _refill_tests(self, node: WorkerNode, duration: float) -> None:
        """LoadScheduling.check_schedule for a node that runs no PRP."""
        if not self.tests or node not in self._test_nodes():
            return
        assert self.maxschedchunk is not None
        num_nodes = len(self._test_nodes())
        low = max(2, len(self.tests) // num_nodes // 4)
        high = max(2, len(self.tests) // num_nodes // 2)
        have = self._real_count(node)
        if have >= low:
            return
        if duration >= 0.1 and have >= 2:
            return  # long-running tests and enough queued: wait
        self._send_tests(node, min(high - have, max(2 - have, self.maxschedchunk)))

    def _follow_up(self) -> None:
        """Shut nodes down once all is sent; else never leave a real item last in a queue."""
        if self.filler is None and (self.waiting or self.tests):
            self._unstall()
        if not (self.waiting or self.tests):
            for node in self.node2pending:
                if not node.shutting_down:
                    node.shutdown()
            return
        if self.filler is None:
            return
        for node, pending in self.node2pending.items():
            if self._usable(node) and len(pending) == 1 and pending[0] != self.filler:
                self._send(node, [self.filler])

    # --- without a filler ---------------------------------------------------------------------

    def _unstall(self) -> None:
        """Give each stalled node (one item, waiting for a successor) a next item.

        Only used when the workers did not collect the filler. The next item is an ordinary
        test or a PRP whose dependencies are done or queued ahead of it on the same node. When
        no node can move at all, one stalled node is shut down: its last item then runs.
        """
        for node in self.node2pending:
            if self._usable(node) and len(self.node2pending[node]) == 1:
                follower = self._follower(node)
                if follower is not None:
                    self._send(node, [follower])
        moving = any(
            len(pending) >= 2 or (pending and node.shutting_down)
            for node, pending in self.node2pending.items()
            if node not in self._rejected
        )
        if moving:
            return
        for node in self.node2pending:
            if self._usable(node) and len(self.node2pending[node]) == 1:
                self.log(f"nothing can follow on {node.gateway.id}: shutting it down")
                node.shutdown()
                return

    def _follower(self, node: WorkerNode) -> int | None:
        if self.tests:
            return self.tests.pop(0)
        ahead = self.done | {i for i, n in self.running.items() if n is node}
        for index in self.waiting:
            # A worker runs its queue in order: what is queued ahead has finished by then.
            if self.prps[index].deps <= ahead and not self._conflicts(index, ignore=node):
                self.waiting.remove(index)
                self.running[index] = node
                return index
        return None

    # --- re-queueing and collections --------------------------------------------------------

    def _requeue(self, indices: Iterable[int]) -> None:
        tests: list[int] = []
        for index in indices:
            if index == self.filler:
                continue
            if index in self.prps:
                self.running.pop(index, None)
                if index not in self.waiting:
                    self.waiting.append(index)
            else:
                tests.append(index)
        self.tests[:0] = tests
        self.waiting.sort(key=lambda i: self.prps[i].key())
