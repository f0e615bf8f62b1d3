"""pytest's reports of PRP items: the PRP's result on every report, its status word, its JUnit
properties, its pytest-html extra. Runs in every process; ``results`` turns reports into the
batch result on the controller.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from pytest_prp.collect import PrpItem
from pytest_prp.records.record import (
    BLOCKED,
    COMPLETED_EARLIER,
    FAILED,
    NOT_STARTED,
    RATE_LIMITED,
    RUNNING,
    SKIPPED_BUDGET,
    SUCCESS,
    UNVERIFIED,
)
from pytest_prp.workspace.merge_stack import stack_note


class ReportHooks:
    """Hooks that run in every process: put the PRP's result on its reports."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if not isinstance(item, PrpItem):
            return report
        from pytest_prp.execution import EXECUTION
        from pytest_prp.keys import RUN

        run = item.stash.get(RUN, None)
        if run is None:
            if EXECUTION not in item.config.stash:
                return report
            from pytest_prp.runner import new_run

            # Another plugin's setup ended it before pytest-prp's own: a record all the same.
            run = new_run(item)
        if report.failed and run.status == RUNNING:
            # An error of our own or of a plugin: the PRP failed all the same. The record
            # says what it was (``OSError: ...``), not where the traceback ended.
            if call.excinfo is not None:
                last = (call.excinfo.exconly().strip().splitlines() or [""])[0]
            else:
                last = str(report.longrepr).splitlines()[-1] if report.longrepr else ""
            run.set_status(FAILED, last)
        if report.when == "call" and report.passed and run.status == RUNNING:
            run.set_status(SUCCESS)
        if report.skipped:
            reason = _skip_reason(report)
            if run.status == RUNNING:
                # Skipped by another plugin or a conftest hook (not by pytest-prp): it did
                # not run, and the record says so and why.
                run.set_status(NOT_STARTED, f"skipped: {reason}")
            # Where it was skipped is the PRP, not the line of whichever code said so.
            path, line, _ = item.reportinfo()
            where = os.path.relpath(path, item.config.rootpath)
            report.longrepr = (where, (line or 0) + 1, f"Skipped: {reason}")
        data = run.to_dict()
        report.prp = data  # type: ignore[attr-defined]
        if report.when == "teardown":
            from pytest_prp.runner import finish_heartbeat

            finish_heartbeat(item, run.status)
            report.user_properties = list(report.user_properties) + junit_properties(data)
            if _pytest_html_used(item.config):
                extras = [*getattr(report, "extras", []), _html_extra(data)]
                report.extras = extras  # type: ignore[attr-defined]
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(
        self, config: pytest.Config, report: pytest.TestReport
    ) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
        data = yield
        prp = getattr(report, "prp", None)
        if data is not None and prp is not None:
            data["prp"] = prp
        return data

    @pytest.hookimpl(wrapper=True)
    def pytest_report_from_serializable(
        self, config: pytest.Config, data: dict[str, Any]
    ) -> Generator[None, Any, Any]:
        report = yield
        if report is not None and "prp" in data:
            report.prp = data["prp"]
        return report

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        prp = getattr(report, "prp", None)
        if not prp:
            return None
        status = prp.get("status")
        if report.skipped and status == BLOCKED:
            return "blocked", "b", ("BLOCKED", {"yellow": True})
        if report.skipped and status == SKIPPED_BUDGET:
            return "over budget", "$", ("SKIPPED (BUDGET)", {"yellow": True})
        if report.skipped and status == RATE_LIMITED:
            return "rate limited", "R", ("RATE LIMITED", {"yellow": True})
        if report.skipped and status == COMPLETED_EARLIER:
            return "completed earlier", "c", ("COMPLETED EARLIER", {"green": True})
        if report.when == "call" and report.passed and status == UNVERIFIED:
            return "unverified", "u", ("UNVERIFIED", {"yellow": True})
        return None


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "skipped")


def _pytest_html_used(config: pytest.Config) -> bool:
    """pytest-html (optional) is installed and writing a page: ``--html``."""
    return config.pluginmanager.hasplugin("html") and bool(getattr(config.option, "htmlpath", None))


def _html_extra(data: dict[str, Any]) -> dict[str, str | None]:
    """The PRP's details as a pytest-html extra (its ``extras.html``, built here so that
    pytest-html stays optional); it travels on the report, through xdist too."""
    from pytest_prp.records.report_data import prp_view_of
    from pytest_prp.records.report_html import prp_fragment

    content = prp_fragment(prp_view_of(data))
    return {
        "name": "PRP",
        "format_type": "html",
        "content": content,
        "mime_type": None,
        "extension": None,
    }


def junit_properties(data: dict[str, Any]) -> list[tuple[str, object]]:
    gates = f"{data['gates_passed']}/{data['gates_executable']}"
    props: list[tuple[str, object]] = [
        ("prp_id", data["prp_id"]),
        ("batch", data["batch"] or ""),
        ("stage", data["stage"]),
        ("status", data["status"]),
        ("gates", gates),
        ("gates_unverified", data["gates_unverified"]),
        ("commit", (data["commits"] or [""])[-1]),
        ("elapsed", data["elapsed_seconds"]),
    ]
    if data.get("cost_usd") is not None:
        props.append(("cost", data["cost_usd"]))
    for key, value in (data.get("tokens") or {}).items():
        props.append((f"tokens_{key}", value))
    if data.get("model"):
        props.append(("model", data["model"]))
    if len(data.get("attempts") or []) > 1:
        props.append(("attempts", len(data["attempts"])))
    for key in ("merge_checks", "redos"):
        if data.get(key):
            props.append((key, data[key]))
    if data.get("merged_commit"):
        props.append(("merged_commit", data["merged_commit"]))
    if data.get("collides_with"):
        props.append(("collides_with", " ".join(data["collides_with"])))
    siblings = data.get("sibling_gates") or {}
    if siblings.get("runs"):
        props.append(("sibling_gate_runs", siblings["runs"]))
    for key in ("superseded", "broken_before"):
        if siblings.get(key):
            props.append((f"sibling_gates_{key}", "; ".join(siblings[key])))
    if siblings.get("culprit") and not data.get("merged_commit"):
        culprit = siblings["culprit"]
        props.append(("breaks_sibling_gate", f"{culprit['prp_id']} gate {culprit['gate_index']}"))
    if data.get("merge_stack"):
        props.append(("merge_stack", stack_note(data) or ""))
    return props
