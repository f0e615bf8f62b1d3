"""Parsing Claude Code's stream-json output (tolerant of plain text mixed in)."""

from __future__ import annotations

import json

from pytest_prp.base.stream_json import parse_stream, render_line

INIT = {"type": "system", "subtype": "init", "session_id": "s-init", "model": "sonnet"}
TEXT = {
    "type": "assistant",
    "session_id": "s-init",
    "message": {"role": "assistant", "content": [{"type": "text", "text": "Planning.\nMore."}]},
}
TOOL = {
    "type": "assistant",
    "message": {
        "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]
    },
}
TOOL_RESULT = {
    "type": "user",
    "message": {
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.py\nb.py\n"}]
    },
}
RESULT = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "duration_ms": 1234,
    "num_turns": 3,
    "result": "All done.",
    "session_id": "s-final",
    "total_cost_usd": 0.0123,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_input_tokens": 5000,
        "cache_creation_input_tokens": 300,
    },
}


def stream(*events: object) -> str:
    return "\n".join(e if isinstance(e, str) else json.dumps(e) for e in events) + "\n"


def test_a_successful_run_gives_cost_tokens_turns_and_session() -> None:
    report = parse_stream(stream(INIT, TEXT, TOOL, TOOL_RESULT, RESULT))
    assert report.saw_result and not report.is_error and not report.failed
    assert report.cost_usd == 0.0123
    assert report.tokens == {"input": 100, "output": 20, "cache_read": 5000, "cache_creation": 300}
    assert report.num_turns == 3
    assert report.session_id == "s-final"
    assert report.result_text == "All done."
    assert report.events == 5


def test_is_error_and_error_subtypes_are_failures() -> None:
    is_error = parse_stream(stream(INIT, {**RESULT, "is_error": True, "result": "API Error"}))
    assert is_error.is_error and is_error.failed and is_error.result_text == "API Error"
    max_turns = parse_stream(stream({**RESULT, "subtype": "error_max_turns", "result": None}))
    assert not max_turns.is_error and max_turns.failed and max_turns.subtype == "error_max_turns"


def test_garbage_lines_are_plain_text() -> None:
    text = stream("Loading...", "{not json", "[1, 2]", "", INIT, '{"no": "type"}', RESULT, "bye")
    report = parse_stream(text)
    assert report.saw_result and report.cost_usd == 0.0123 and report.num_turns == 3


def test_plain_text_has_no_result() -> None:
    report = parse_stream("I changed hello.py\nDone.\n")
    assert not report.saw_result and not report.failed
    assert report.cost_usd is None and report.tokens is None and report.session_id is None


def test_session_from_init_when_the_run_was_cut_short() -> None:
    assert parse_stream(stream(INIT, TEXT)).session_id == "s-init"


def test_older_cost_field_and_odd_values_are_tolerated() -> None:
    odd = {"type": "result", "subtype": "success", "cost_usd": 0.5, "usage": "n/a"}
    report = parse_stream(stream({**odd, "num_turns": "3", "is_error": "yes"}))
    assert report.cost_usd == 0.5 and report.tokens is None and report.num_turns is None
    assert not report.is_error


def test_render_line_makes_events_readable() -> None:
    assert render_line("plain text") == "plain text"
    assert render_line("{broken") == "{broken"
    assert render_line(json.dumps(INIT)) == "[agent] session started (model sonnet)"
    assert render_line(json.dumps(TEXT)) == "[assistant] Planning. ..."
    assert render_line(json.dumps(TOOL)) == "[tool] Bash: ls"
    assert render_line(json.dumps(TOOL_RESULT)) == "  -> result: a.py ..."
    assert render_line(json.dumps(RESULT)) == "[result] done (3 turns, $0.0123): All done."
    assert render_line(json.dumps({"type": "stream_event", "event": {}})) is None


# Shapes as Claude Code 2.1.x prints them (captured against the scripted server).
DENIED_EVENT = {
    "type": "system",
    "subtype": "permission_denied",
    "tool_name": "Bash",
    "tool_use_id": "toolu_1",
    "message": "This command requires approval",
}
DENIED_RESULT = {
    "type": "user",
    "message": {
        "content": [
            {
                "type": "tool_result",
                "content": "Claude requested permissions to write to /x/out.txt, but you haven't "
                "granted it yet.",
                "is_error": True,
                "tool_use_id": "toolu_2",
            }
        ]
    },
}
RESULT_WITH_DENIALS = {
    **RESULT,
    "total_cost_usd": 0.02,
    "usage": {"input_tokens": 100, "output_tokens": 20},
    "modelUsage": {
        "claude-sonnet-4-5": {"inputTokens": 300, "outputTokens": 40, "cacheReadInputTokens": 7},
        "claude-haiku-4-5": {"inputTokens": 10, "outputTokens": 2},
    },
    "permission_denials": [
        {"tool_name": "Bash", "tool_use_id": "toolu_1", "tool_input": {"command": "pytest -q"}},
        {"tool_name": "Write", "tool_use_id": "toolu_2", "tool_input": {"file_path": "/x/out.txt"}},
    ],
}


def test_refused_tool_calls_come_with_their_target_and_the_clis_reason() -> None:
    report = parse_stream(stream(INIT, DENIED_EVENT, DENIED_RESULT, RESULT_WITH_DENIALS))
    assert [r.to_dict() for r in report.refusals] == [
        {"tool": "Bash", "target": "pytest -q", "reason": "This command requires approval"},
        {
            "tool": "Write",
            "target": "/x/out.txt",
            "reason": "Claude requested permissions to write to /x/out.txt, but you haven't "
            "granted it yet.",
        },
    ]
    assert not report.failed  # Claude exits 0 with is_error false: the gates judge the work
    assert render_line(json.dumps(DENIED_EVENT)) == (
        "[refused] Bash: This command requires approval"
    )


def test_tokens_come_from_model_usage_which_counts_what_the_cost_counts() -> None:
    report = parse_stream(stream(RESULT_WITH_DENIALS))
    assert report.tokens == {"input": 310, "output": 42, "cache_read": 7}
    assert report.tokens_by_model == {
        "claude-sonnet-4-5": {"input": 300, "output": 40, "cache_read": 7},
        "claude-haiku-4-5": {"input": 10, "output": 2},
    }


# Shapes as Codex 0.171 prints them with `codex exec --json`.
CODEX_OK = [
    {"type": "thread.started", "thread_id": "thread-1"},
    {"type": "item.completed", "item": {"id": "i0", "type": "error", "message": "metadata"}},
    {"type": "turn.started"},
    {
        "type": "item.completed",
        "item": {
            "id": "i1",
            "type": "command_execution",
            "command": "/bin/bash -lc 'echo hi > a.txt'",
            "aggregated_output": "",
            "exit_code": 0,
            "status": "completed",
        },
    },
    {"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "Done."}},
    {
        "type": "turn.completed",
        "usage": {"input_tokens": 2000, "cached_input_tokens": 50, "output_tokens": 100},
    },
]
CODEX_FAILED = [
    {"type": "thread.started", "thread_id": "thread-2"},
    {"type": "turn.started"},
    {"type": "error", "message": "unexpected status 400 Bad Request"},
    {"type": "turn.failed", "error": {"message": "unexpected status 400 Bad Request"}},
]


def test_codex_json_gives_tokens_turns_and_thread() -> None:
    report = parse_stream(stream(*CODEX_OK))
    assert report.saw_result and not report.failed
    assert report.tokens == {"input": 2000, "cache_read": 50, "output": 100}
    assert report.num_turns == 1 and report.session_id == "thread-1"
    rendered = [render_line(json.dumps(e)) for e in CODEX_OK]
    assert "[tool] exec: /bin/bash -lc 'echo hi > a.txt' -> exit 0: " in rendered
    assert "[assistant] Done." in rendered


def test_a_failed_codex_turn_is_a_failure_with_its_message() -> None:
    report = parse_stream(stream(*CODEX_FAILED))
    assert report.failed and report.result_text == "unexpected status 400 Bad Request"
    assert render_line(json.dumps(CODEX_FAILED[-1])) == (
        "[result] error: unexpected status 400 Bad Request"
    )
