"""Rate limits and API overload in real runs: the PRP waits and runs the agent again without
using up an attempt; past --prp-rate-limit-wait it is rate_limited and no new PRP starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import FAKE_AGENT, write_prp
from pytest_prp.records.heartbeat import parse_time

RESULTS = Path(".ce/orchestration")


def agent(*flags: str) -> str:
    return " ".join([sys.executable, str(FAKE_AGENT), *flags])


def entries(root: Path, batch: str) -> dict[str, dict[str, Any]]:
    doc = json.loads((root / RESULTS / "batches" / f"batch-{batch}.result.json").read_text())
    return {pid: e for stage in doc["stages"].values() for pid, e in stage.items()}


def summary(root: Path, batch: str) -> dict[str, Any]:
    doc = json.loads((root / RESULTS / "batches" / f"batch-{batch}.result.json").read_text())
    result: dict[str, Any] = doc["summary"]
    return result


def starts(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for text in path.read_text().splitlines():
        moment, prp_id, what = text.split()
        out.append((float(moment), prp_id, what))
    return out


def log_text(root: Path, batch: str, prp_id: str) -> str:
    return (root / RESULTS / "logs" / batch / f"{prp_id}.log").read_text()


def pause_until(log: str) -> list[float]:
    """The "until" times the PRP's log names (``waiting for rate limit until HH:MM:SS (iso)``)."""
    found = re.findall(r"waiting for rate limit until \d\d:\d\d:\d\d \(([^)]+)\)", log)
    times = [parse_time(text) for text in found]
    return [t for t in times if t is not None]


def test_overload_waits_and_does_not_use_up_an_attempt(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-40.1.1", gates=["grep -qx done out.txt"])
    counter = repo.parent / "runs-{prp_id}"
    command = agent(
        "--limit overload --limit-runs 1 --counter", str(counter), "--write out.txt=done"
    )
    result = pytester.runpytest(
        "--prp-batch", "40", "--prp-agent", command,
        "--prp-attempts", "1", "--prp-rate-limit-wait", "8",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    entry = entries(repo, "40")["PRP-40.1.1"]
    assert entry["status"] == "success"
    assert len(entry["attempts"]) == 1 and entry["attempts"][0]["attempt"] == 1
    assert entry["rate_limit_waits"] == 1 and entry["rate_limit_waited_seconds"] >= 0.9
    assert (repo.parent / "runs-PRP-40.1.1").read_text().strip() == "2"  # the agent ran twice
    result.stdout.fnmatch_lines(["*PRP-40.1.1*success*rate limit waits 1 (1 s)*"])
    log = log_text(repo, "40", "PRP-40.1.1")
    assert "waiting for rate limit until" in log and "529 Overloaded" in log


def test_usage_limit_waits_until_the_named_reset(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-41.1.1", gates=["true"])
    counter, record = repo.parent / "runs-{prp_id}", repo.parent / "starts-41"
    command = agent(
        "--limit usage_limit --limit-runs 1 --reset-in 2 --counter", str(counter),
        "--starts", str(record),
    )  # fmt: skip
    result = pytester.runpytest("--prp-batch", "41", "--prp-agent", command)
    assert result.ret == 0, result.stdout.str()
    runs = starts(record)
    assert [what for _, _, what in runs] == ["start", "refused", "start"]
    (until,) = pause_until(log_text(repo, "41", "PRP-41.1.1"))
    assert runs[2][0] >= until
    assert until >= runs[1][0] + 1  # the reset time the CLI named, not the first backoff


def test_past_the_bound_rate_limited_and_no_new_prp(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-42.1.1", gates=["true"])
    write_prp(repo, "PRP-42.1.2", gates=["true"])
    write_prp(repo, "PRP-42.2.1", deps=["PRP-42.1.1"], gates=["true"])
    record = repo.parent / "starts-42"
    limited = agent("--limit rate_limit --starts", str(record))
    result = pytester.runpytest(
        "--prp-batch", "42", "--prp-agent", limited, "--prp-rate-limit-wait", "2",
        "--junitxml=out.xml", "-v",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    statuses = {pid: e["status"] for pid, e in entries(repo, "42").items()}
    assert statuses == {
        "PRP-42.1.1": "rate_limited",
        "PRP-42.1.2": "rate_limited",  # not started
        "PRP-42.2.1": "blocked",  # its dependency is not done
    }
    # Backoff 0.25 + 0.5 + 1 s; the next 2 s would pass the bound of 2 s.
    assert [what for _, prp, what in starts(record) if what == "start"] == ["start"] * 4
    assert {prp for _, prp, _ in starts(record)} == {"PRP-42.1.1"}  # no other PRP started
    assert summary(repo, "42")["rate_limited"] == 2
    first = entries(repo, "42")["PRP-42.1.1"]
    assert "rate limited" in first["errors"][0] and first["rate_limit_waits"] == 4
    result.stdout.fnmatch_lines(
        ["*PRP-42.1.1 ERROR*", "*PRP-42.1.2 RATE LIMITED*", "*Totals:*2 rate limited*"]
    )
    assert "would pass --prp-rate-limit-wait 2" in result.stdout.str()
    root = ET.parse(repo / "out.xml").getroot()
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in root.iter("testcase")
    }
    assert props["PRP-42.1.2"]["status"] == "rate_limited"
    status = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", str(repo / RESULTS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "1 blocked, 2 rate_limited" in status
    assert [ln.split()[1] for ln in status.splitlines() if ln.startswith("PRP-42.1.")] == [
        "rate_limited",
        "rate_limited",
    ]
    # Later, the API is back: the batch resumes where it stopped.
    again = pytester.runpytest("--prp-batch", "42", "--prp-agent", agent())
    assert again.ret == 0, again.stdout.str()
    assert {e["status"] for e in entries(repo, "42").values()} == {"success"}


def test_a_reset_beyond_the_bound_gives_up_without_waiting(
    pytester: pytest.Pytester, repo: Path
) -> None:
    write_prp(repo, "PRP-43.1.1", gates=["true"])
    command = agent("--limit usage_limit --reset-in 3600")
    result = pytester.runpytest(
        "--prp-batch", "43", "--prp-agent", command, "--prp-rate-limit-wait", "60"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    entry = entries(repo, "43")["PRP-43.1.1"]
    assert entry["status"] == "rate_limited" and entry["elapsed_seconds"] < 30
    assert "resets at" in entry["errors"][0]


def test_workers_pause_together(pytester: pytest.Pytester, repo: Path) -> None:
    for n in range(1, 5):
        write_prp(repo, f"PRP-44.1.{n}", gates=["true"])
    record, counter = repo.parent / "starts-44", repo.parent / "runs-{prp_id}"
    # PRP-44.1.1 meets a usage limit once, after a second (both workers are busy by then);
    # the others take a while, so that the other worker has agents to start during the pause.
    command = (
        'if [ "$PRP_ID" = PRP-44.1.1 ]; then '
        + agent("--limit usage_limit --limit-runs 1 --reset-in 4 --sleep 1 --counter",
                str(counter), "--starts", str(record))
        + "; else "
        + agent("--sleep 0.8 --starts", str(record))
        + "; fi"
    )  # fmt: skip
    result = pytester.runpytest_subprocess(
        "-n", "2", "--prp-batch", "44", "--prp-agent", command, "--prp-heartbeat", "0.3"
    )
    assert result.ret == 0, result.stdout.str()
    assert {e["status"] for e in entries(repo, "44").values()} == {"success"}
    runs = starts(record)
    refused = next(moment for moment, _, what in runs if what == "refused")
    (until,) = pause_until(log_text(repo, "44", "PRP-44.1.1"))
    assert until - refused > 2.5
    # The pause is written as the refused agent ends: from then until it ends no agent starts
    # (an agent may start in the moment before the pause is written: a second of slack).
    during = [(m, prp) for m, prp, what in runs if what == "start" and refused + 1 < m < until]
    assert during == [], (refused, until, runs)
    later = {prp for m, prp, what in runs if what == "start" and m >= until}
    assert "PRP-44.1.1" in later and len(later) >= 2  # and a PRP of the other worker
    # Both workers' PRPs waited, and said so in their logs and the live progress lines.
    waited = [p for p in entries(repo, "44") if pause_until(log_text(repo, "44", p)) == [until]]
    assert len(waited) >= 2 and "PRP-44.1.1" in waited
    waiting = [ln for ln in result.stdout.lines if "waiting for rate limit until" in ln]
    shown = {ln.split()[1] for ln in waiting if ln.startswith("[prp] ")}
    assert "PRP-44.1.1" in shown and shown <= set(waited)


def test_the_bound_is_checked(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-45.1.1", gates=["true"])
    negative = pytester.runpytest("--prp-batch", "45", "--prp-rate-limit-wait=-1")
    assert negative.ret == pytest.ExitCode.USAGE_ERROR
    negative.stderr.fnmatch_lines(["*--prp-rate-limit-wait: must be a number of seconds*'-1'*"])
    pytester.makeini("[pytest]\nprp_rate_limit_wait = soon\n")
    ini = pytester.runpytest("--prp-batch", "45")
    assert ini.ret == pytest.ExitCode.USAGE_ERROR
    ini.stderr.fnmatch_lines(["ERROR: ini option prp_rate_limit_wait not a number: 'soon'"])
    assert "Traceback" not in ini.stderr.str() + negative.stderr.str()
    # 0 is a choice: a rate limit ends the PRP at once.
    pytester.makeini("[pytest]\nprp_rate_limit_wait = 0\n")
    zero = pytester.runpytest("--prp-batch", "45", "--prp-agent", agent("--limit overload"))
    assert zero.ret == pytest.ExitCode.TESTS_FAILED
    entry = entries(repo, "45")["PRP-45.1.1"]
    assert entry["status"] == "rate_limited" and entry["rate_limit_waited_seconds"] == 0
