"""pytest glue of the final check (``--prp-final-check``, ini ``prp_final_check``): once every
PRP has ended, the gates of every PRP merged in this run run again on the integration branch's
final tip (``workspace.final_check``), before the result JSON, the JUnit XML and the summary
are written.

Where it runs: in the process that writes the results (the only pytest process, or the xdist
controller), on as many slots at once as the run had local workers (``-n N``: N; a serial run:
1), each a thread with a worktree of its own (``workspace.final_check_slots``). Not on the
xdist workers themselves: by the time the last PRP has ended, xdist is shutting them down, and
handing them work of another kind would need items of its own in the DAG scheduler. Remote
workers (``--tx ssh=``/``socket=``) do not count: their machines are not this one.

What its outcome does: the PRPs keep their own statuses (each passed its gates when it
merged). The batch result gets a ``final_check`` block, the terminal summary, ``prp-status``
and the HTML report a line per broken gate, JUnit a property on the PRPs concerned, and the run
exits non-zero (1, as a failed test) when a gate is broken and not superseded, or when the
check could not run: CI sees it.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.records.record import SUCCESS

if TYPE_CHECKING:
    from pytest_prp.plan.settings import Settings
    from pytest_prp.records.results import BatchResults
    from pytest_prp.spec.model import Gate
    from pytest_prp.supervise.output import LogSink
    from pytest_prp.supervise.processes import ProcessResult
    from pytest_prp.workspace.final_check import FinalCheckOutcome, MergedPrp
    from pytest_prp.workspace.final_check_slots import RunGate

# The name of the check's log, beside the PRPs' logs (PRP ids start with ``PRP-``).
LOG_NAME = "final-check"


class FinalCheck:
    """Controller-only, registered with the batch result it adds its block to."""

    def __init__(self, config: pytest.Config, settings: Settings, results: BatchResults) -> None:
        self.config = config
        self.settings = settings
        self.results = results

    # First: the result JSON (trylast) and JUnit XML are written after it, with its findings.
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.INTERRUPTED or not self.results.started_prps:
            return  # a run cut short is resumed, not judged
        finishing = self.config.pluginmanager.get_plugin("prp-quiet-finish")
        if getattr(finishing, "caught", None) is not None:
            return  # stopped as the run was ending: the check is not started
        from pytest_prp.workspace.final_check import FinalCheckOutcome

        started = time.monotonic()
        try:
            with _interruptible():
                outcome = self.check()
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM during the check: its gate was ended with it and its worktree
            # removed; the batch's results are still written (after this hook), and say so.
            outcome = FinalCheckOutcome(error="interrupted (Ctrl-C or SIGTERM)")
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        except Exception as exc:  # a check that cannot run must not cost the batch's results
            outcome = FinalCheckOutcome(error=f"{type(exc).__name__}: {exc}")
        outcome.seconds = time.monotonic() - started
        self.results.final_check = outcome.as_json()
        _junit_properties(self.config, outcome)
        if (outcome.broken or outcome.error) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def check(self) -> FinalCheckOutcome:
        from pytest_prp.execution import repository_start
        from pytest_prp.workspace.final_check import FinalCheckOutcome, run_final_check
        from pytest_prp.workspace.git_command import GitError
        from pytest_prp.workspace.repository import Repository

        merged = self.merged()
        if not merged:
            return FinalCheckOutcome()
        try:
            git = Repository.open(repository_start(self.config), self.settings.worktree_dir)
        except GitError as exc:
            return FinalCheckOutcome(error=str(exc))
        graph = {
            prp_id: list(entry.get("dependencies") or [])
            for prp_id, entry in self.results.records().items()
        }
        from pytest_prp.base.naming import log_path
        from pytest_prp.supervise.output import LogSink

        log = LogSink(log_path(self.settings.results_dir, self.results.label, LOG_NAME))
        slots = local_workers(self.config)
        try:
            run_gate = _gate_runner(self.settings, self.results.results, log, slots > 1)
            owners = {
                str(entry["merged_commit"]): prp_id
                for prp_id, entry in self.results.results.items()
                if entry.get("merged_commit")
            }
            return run_final_check(git, self.results.branch, merged, graph, run_gate, slots, owners)
        finally:
            log.close()

    def merged(self) -> list[MergedPrp]:
        """The PRPs this run merged, with their executable shell gates (read from their files
        as the run read them; the integration gate is left out: it ran on the final tip
        already, as the last merge's check)."""
        from pytest_prp.spec.body_cache import body_of
        from pytest_prp.spec.frontmatter import load_prp
        from pytest_prp.spec.model import GATE_SHELL
        from pytest_prp.workspace.final_check import MergedPrp

        found: list[MergedPrp] = []
        for prp_id, entry in self.results.results.items():
            commit = entry.get("merged_commit")
            nodeid = self.results.started_prps.get(prp_id)
            if entry.get("status") != SUCCESS or not commit or nodeid is None:
                continue
            prp = load_prp(self.config.rootpath / nodeid.split("::", 1)[0]).prp
            if prp is None or prp.id != prp_id:
                continue
            gates = tuple(g for g in body_of(prp).executable_gates if g.kind == GATE_SHELL)
            if gates:
                found.append(MergedPrp(prp_id, str(commit), gates))
        return found


def local_workers(config: pytest.Config) -> int:
    """How many workers the run had on this machine: xdist's ``popen`` ones (``-n N``, or
    ``--tx N*popen``); 1 for a serial run."""
    if config.getoption("dist", "no") == "no":
        return 1
    count = 0
    for spec in config.getoption("tx", None) or []:
        times, star, kind = str(spec).partition("*")
        if not star:
            times, kind = "1", str(spec)
        if kind.split("//", 1)[0] == "popen":
            count += int(times) if times.isdigit() else 1
    return max(1, count)


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the check at once: it is work, not the run's ending, during
    which ``base.stopping.QuietFinish`` only notes a first signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _gate_runner(
    settings: Settings, records: dict[str, dict[str, Any]], log: LogSink, apart: bool
) -> RunGate:
    """A gate run as the PRP's own gates run (``execute.gates``): bash, the PRP_* environment,
    ``--prp-gate-timeout``, its output in the check's log; ended at once when the check stops.
    ``apart`` (gates running side by side): each gate's output goes to the log in one piece
    when it ends, not line by line mixed with the others'."""
    from pytest_prp.execute.gates import run_shell_gate
    from pytest_prp.supervise.limits import GATE_LIMIT, Limits
    from pytest_prp.supervise.output import LogSink

    def run(
        prp_id: str, gate: Gate, workdir: Path, commit: str, stop: threading.Event
    ) -> tuple[bool, list[str]]:
        env = dict(os.environ)
        batch = (records.get(prp_id) or {}).get("batch") or ""
        env.update(
            {"PRP_ID": prp_id, "PRP_BATCH": batch, "PRP_ATTEMPT": "1", "PRP_WORKDIR": str(workdir)}
        )
        title = f"{prp_id} on {commit[:12]}"
        if not apart:
            log.section(title)
            limits = Limits.starting_now(settings.gate_timeout, log=log, source=GATE_LIMIT)
            result = run_shell_gate(gate, cwd=workdir, env=env, limits=replace(limits, cancel=stop))
            return result.passed, _tail(result.process)
        fd, name = tempfile.mkstemp(prefix="prp-final-check-", suffix=".log")
        os.close(fd)
        own = LogSink(Path(name))
        try:
            own.section(f"{title} (in {workdir.name})")
            limits = Limits.starting_now(settings.gate_timeout, log=own, source=GATE_LIMIT)
            result = run_shell_gate(gate, cwd=workdir, env=env, limits=replace(limits, cancel=stop))
            own.close()
            log.write(Path(name).read_text(encoding="utf-8", errors="replace"))
        finally:
            own.close()
            os.unlink(name)
        return result.passed, _tail(result.process)

    return run


def _tail(process: ProcessResult) -> list[str]:
    """A gate's last output, and how its limit cut it, naming the option (which its output
    does not say)."""
    tail = list(process.tail[-20:])
    if process.timed_out:
        tail.append(process.describe())
    return tail


def _junit_properties(config: pytest.Config, outcome: FinalCheckOutcome) -> None:
    """``final_check`` on the testcase of each PRP whose gate broke, ``final_check_broke`` on
    the culprit's. The testcases are already built when the run ends (pytest's junitxml
    finishes each as its PRP's last report arrives): the property is added to the element it
    keeps, before the file is written."""
    if not outcome.failures:
        return
    from _pytest.junitxml import xml_key

    from pytest_prp.records.final_check_view import failure_text

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    notes: dict[str, list[tuple[str, str]]] = {}
    for failure in outcome.failures:
        text = failure_text(failure.as_json())
        notes.setdefault(failure.prp_id, []).append(("final_check", text))
        if failure.broken_by:
            notes.setdefault(failure.broken_by, []).append(("final_check_broke", text))
    import xml.etree.ElementTree as ET

    for reporter in getattr(xml, "node_reporters_ordered", []):
        element = reporter.to_xml()
        mine = notes.get(str(element.get("name", ""))) if hasattr(element, "get") else None
        if not mine:
            continue
        properties = element.find("properties")
        if properties is None:
            properties = ET.Element("properties")
            element.insert(0, properties)
        for name, value in mine:
            ET.SubElement(properties, "property", name=name, value=value)
