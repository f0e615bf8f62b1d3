"""Every piece of state pytest-prp keeps on pytest's objects between hooks: the stash keys.

One module, so that what a run holds, and who may read it, is found in one place, and so that a
module reads what it needs here instead of from the module that happens to write it (that is
how results came to import the plugin, and execution the collector).

Keys, not one plugin-state object (as junitxml keeps its ``LogXML``): each value has one writer
and a moment it appears (the settings at configure, the collected PRPs during collection, the
plan after it, a PRP's heartbeat during its setup), and its readers need that value alone. One
object holding them all would make every reader depend on all of them, and would need fields
that are "not yet" for most of the run. ``config.stash.get(KEY, None)`` says "not yet" plainly.

The module is part of the pytest glue, the only layer that reads or writes the stash (see
tests/test_layers.py). One key is declared by its owner: ``execution.EXECUTION`` (the process's
execution state), since execution reads the collected PRPs from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Types only: the values are made elsewhere, and a run without PRPs imports nothing for them.
if TYPE_CHECKING:
    from pytest_prp.execute.hook_context import PrpContext
    from pytest_prp.plan.planning import Plan
    from pytest_prp.plan.prp_info import GraphLoader
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.heartbeat import Heartbeat
    from pytest_prp.records.record import PrpRun
    from pytest_prp.spec.model import Problem, Prp
    from pytest_prp.supervise.ratelimit import RateLimitWaiter

# --- on the config: the run ------------------------------------------------------------------

# What the run was asked to do (plugin, at configure; every process).
SETTINGS: pytest.StashKey[Settings] = pytest.StashKey()
# PRP files seen while pytest-prp is not enabled: the hint at the end of collection.
SEEN_FILES: pytest.StashKey[list[Path]] = pytest.StashKey()
# Every PRP collected, also of files other plugins skipped (--lf): what the plan is made of.
KNOWN_PRPS: pytest.StashKey[list[Prp]] = pytest.StashKey()
# Errors of files that could not be loaded (reported by pytest as collection errors too).
LOAD_ERRORS: pytest.StashKey[list[Problem]] = pytest.StashKey()
# Files named like PRPs that are not PRPs, and why: said when a run finds no PRP at all.
NOT_PRPS: pytest.StashKey[list[tuple[Path, str]]] = pytest.StashKey()
# The lines saying why nothing was found, shown when collection ends.
NOTHING_FOUND: pytest.StashKey[list[str]] = pytest.StashKey()
# The plan of the collected PRPs (plugin, after collection; absent on an xdist controller).
PLAN: pytest.StashKey[Plan] = pytest.StashKey()
# The plan view was printed: a run with no test item then succeeds.
PLAN_SHOWN: pytest.StashKey[bool] = pytest.StashKey()
# Marker names registered so far (each once: pytest re-reads the list for every new name).
REGISTERED_MARKERS: pytest.StashKey[set[str]] = pytest.StashKey()
# The xdist controller's one loader of PRP frontmatter by node id, and its cache.
GRAPH_LOADER: pytest.StashKey[GraphLoader] = pytest.StashKey()
# What the controller tells every worker (remote.controller_input), worked out once.
CONTROLLER_INPUT: pytest.StashKey[dict[str, Any]] = pytest.StashKey()

# --- on a PRP item: its run in this process ----------------------------------------------------

# The PRP's heartbeat file writer, from setup to teardown.
HEARTBEAT: pytest.StashKey[Heartbeat] = pytest.StashKey()
# The PRP's rate-limit waiter, made on its first rate limit.
WAITER: pytest.StashKey[RateLimitWaiter] = pytest.StashKey()
# The PRP's record in this process (runner, from setup; read by the report hooks).
RUN: pytest.StashKey[PrpRun] = pytest.StashKey()
# What the hooks of the PRP's item are given (runner, from setup to teardown).
CONTEXT: pytest.StashKey[PrpContext] = pytest.StashKey()
