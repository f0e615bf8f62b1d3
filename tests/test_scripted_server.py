"""The scripted model server of the contract tests, spoken to over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from contract import scenario_file, scripted

PROMPT = "You are implementing PRP PRP-1.1.1"


def post(url: str, body: dict[str, Any], timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_anthropic_turns_follow_the_conversation_and_errors_come_first() -> None:
    with scripted(scenario_file("claude_overloaded_then_done")) as server:
        url = f"{server.url}/v1/messages?beta=true"
        first = {"stream": True, "messages": [{"role": "user", "content": PROMPT}]}
        first["system"] = "Primary working directory: /w/tree"
        status, body = post(url, first)
        assert status == 529 and "overloaded_error" in body
        status, body = post(url, first)
        assert status == 200
        events = sse(body)
        assert [e["type"] for e in events] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert events[1]["content_block"]["id"] == "toolu_t0_0"
        assert json.loads(events[2]["delta"]["partial_json"])["file_path"] == "/w/tree/greeting.txt"
        assert events[4]["usage"] == {"output_tokens": 50}
        # The tool result goes back: the next turn is the final text.
        tool_use = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_t0_0"}]}
        second = {**first, "messages": [*first["messages"], tool_use]}
        assert sse(post(url, second)[1])[2]["delta"] == {"type": "text_delta", "text": "Done."}
        # A request no script matches (a side request) gets a short answer of its own.
        side = post(url, {"messages": [{"role": "user", "content": "title?"}]})
        assert json.loads(side[1])["content"] == [{"type": "text", "text": "OK."}]
    assert [(r.status, r.turn) for r in server.requests] == [
        (529, 0),
        (200, 0),
        (200, 1),
        (200, None),
    ]


def test_responses_and_chat_completions() -> None:
    shell = {"tools": [{"name": "exec_command", "input": {"cmd": "ls"}}]}
    scenario = {
        "scripts": [
            {"when": "PRP-1.1.1", "turns": [shell]},
            {"when": "PRP-2.2.2", "turns": [{"text": "a.txt\n```\nA\n```\n"}, {"text": "again"}]},
        ]
    }
    with scripted(scenario) as server:
        body = {"input": [{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]}
        events = sse(post(f"{server.url}/v1/responses", body)[1])
        assert events[1]["item"]["arguments"] == '{"cmd": "ls"}'
        assert events[-1]["response"]["usage"]["input_tokens"] == 1000
        # Few-shot examples before the matching message do not count as turns.
        chat = {
            "messages": [
                {"role": "user", "content": "example"},
                {"role": "assistant", "content": "example answer"},
                {"role": "user", "content": "do PRP-2.2.2"},
            ]
        }
        answer = json.loads(post(f"{server.url}/v1/chat/completions", chat)[1])
        assert answer["choices"][0]["message"]["content"].startswith("a.txt")
        chat["messages"].append({"role": "assistant", "content": "x"})
        streamed = post(f"{server.url}/v1/chat/completions", {**chat, "stream": True})[1]
        assert sse(streamed)[0]["choices"][0]["delta"]["content"] == "again"


def test_a_hanging_turn_never_answers() -> None:
    with scripted({"scripts": [{"when": "PRP-1.1.1", "turns": [{"hang": True}]}]}) as server:
        with pytest.raises(TimeoutError):
            post(
                f"{server.url}/v1/messages",
                {"messages": [{"role": "user", "content": PROMPT}]},
                0.5,
            )


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_a_missing_cli_skips_its_contract_tests_except_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    pytester.makepyfile(
        "from contract import require_cli\ndef test_it():\n    require_cli('no-such-agent-cli')\n"
    )
    result = pytester.runpytest("-rsf")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*no-such-agent-cli is not installed (run .ci/install-agents)*"])
