"""The fake agent's retry behaviour, run the way pytest-prp runs it (run_agent, real process)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from pytest_prp.execute.executors import StepsOutcome, run_agent
from pytest_prp.spec.model import Body, Prp
from pytest_prp.supervise.limits import Limits

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_AGENT_", "PRP_"))}
AGENT = (
    f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).with_name('fake_agent.py')))}"
)
RETRY_PROMPT = "Implement PRP-7.\n\nYour previous attempt left failed gates:\ngate 1 exit 1\n"


def make_prp(tmp_path: Path) -> Prp:
    path = tmp_path / "PRP-7.md"
    path.write_text("---\nprp_id: PRP-7\ntitle: Seven\n---\n# Seven\n")
    return Prp("PRP-7", path, 2, "Seven", None, [], _body=Body(steps=(), gates=()))


def attempt(tmp_path: Path, number: int, options: str, prompt: str) -> StepsOutcome:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return run_agent(
        make_prp(tmp_path),
        command=f"{AGENT} {options}",
        prompt=prompt,
        workdir=work,
        env={**ENV, "PRP_ID": "PRP-7", "PRP_ATTEMPT": str(number)},
        limits=Limits.starting_now(30),
    )


def test_fix_on_attempt_writes_wrong_content_until_that_attempt(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    options = f"--fix-on-attempt 2 --write out.txt=right --record {record}"
    first = attempt(tmp_path, 1, options, "Implement PRP-7.")
    assert first.ok and (tmp_path / "work" / "out.txt").read_text() == "WRONG"
    second = attempt(tmp_path, 2, options, RETRY_PROMPT)
    assert second.ok and (tmp_path / "work" / "out.txt").read_text() == "right"
    third = attempt(tmp_path, 3, options, RETRY_PROMPT)
    assert third.ok and (tmp_path / "work" / "out.txt").read_text() == "right"
    seen = json.loads(record.read_text())
    assert seen["attempt"] == 3 and seen["retry_context"] is True
    assert seen["env"]["PRP_ATTEMPT"] == "3"
    history = [(h["attempt"], h["retry_context"]) for h in seen["history"]]
    assert history == [(1, False), (2, True), (3, True)]
    assert seen["history"][1]["prompt"] == RETRY_PROMPT


def test_the_variable_works_like_the_option(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    outcome = run_agent(
        make_prp(tmp_path),
        command=f"{AGENT} --write out.txt=right",
        prompt="Implement PRP-7.",
        workdir=work,
        env={**ENV, "PRP_ATTEMPT": "1", "FAKE_AGENT_FIX_ON_ATTEMPT": "3"},
        limits=Limits.starting_now(30),
    )
    assert outcome.ok and (work / "out.txt").read_text() == "WRONG"


def test_a_retry_prompt_without_the_failed_gates_is_a_protocol_error(tmp_path: Path) -> None:
    options = "--require-retry-context --write out.txt=right"
    assert attempt(tmp_path, 1, options, "Implement PRP-7.").ok  # the first attempt needs none
    outcome = attempt(tmp_path, 2, options, "Implement PRP-7 again.")
    assert outcome.error == "agent command failed (exit 3)"
    assert outcome.tail[-1] == (
        "fake_agent: protocol error: attempt 2: the prompt does not mention 'failed gates'"
    )
    assert attempt(tmp_path, 2, options, RETRY_PROMPT).ok


def test_model_and_extra_words_are_accepted(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    outcome = attempt(tmp_path, 1, f"--model haiku --record {record} token-123", "Do it.")
    assert outcome.ok
    assert outcome.tail[0] == "[agent] session started (model haiku)"
    argv = json.loads(record.read_text())["argv"]
    assert argv[argv.index("--model") + 1] == "haiku" and argv[-1] == "token-123"


def test_refused_runs_are_rate_limits_then_the_agent_works(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    options = f"--limit overload --limit-runs 1 --counter {counter} --write out.txt=done"
    first = attempt(tmp_path, 1, options, "Implement PRP-7.")
    assert not first.ok and first.rate_limit is not None
    assert "529" in first.rate_limit.reason and first.rate_limit.until is None
    assert not (tmp_path / "work" / "out.txt").exists()
    second = attempt(tmp_path, 1, options, "Implement PRP-7.")
    assert second.ok and second.rate_limit is None
    assert (tmp_path / "work" / "out.txt").read_text() == "done"


def test_usage_limit_names_its_reset_even_in_plain_text(tmp_path: Path) -> None:
    for plain in ("", "--plain"):
        outcome = attempt(tmp_path, 1, f"--limit usage_limit --reset-in 60 {plain}", "Do it.")
        assert outcome.rate_limit is not None and outcome.rate_limit.until is not None
        assert "usage limit reached" in outcome.rate_limit.reason


def test_other_failures_are_no_rate_limit(tmp_path: Path) -> None:
    for mode in ("fail", "is_error", "crash", "max_turns"):
        outcome = attempt(tmp_path, 1, f"--mode {mode}", "Do it.")
        assert not outcome.ok and outcome.rate_limit is None, mode
