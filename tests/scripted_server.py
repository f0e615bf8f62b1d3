#!/usr/bin/env python3
"""A scripted model server for the contract tests: genuine agent CLIs, canned model turns.

It listens on 127.0.0.1 only (an ephemeral port) and speaks just enough of three APIs:

* Anthropic Messages, ``POST /v1/messages`` (Claude Code): SSE when ``stream`` is true
  (message_start, content_block_start/delta/stop, message_delta with usage, message_stop),
  else one JSON message; ``POST /v1/messages/count_tokens`` too.
* OpenAI Responses, ``POST /v1/responses`` (Codex): SSE (response.created,
  response.output_item.done per item, response.completed with usage).
* OpenAI chat completions, ``POST /v1/chat/completions`` (aider): streaming or not.

A scenario (a JSON file, see ``tests/scenarios/``) is a list of scripts::

    {"scripts": [{"when": "Attempt 2:", "turns": [...]}, {"when": "PRP-ID", "turns": [...]}]}

A request is answered by the first script whose ``when`` occurs in its user text (so concurrent
conversations, retries with another prompt, and CLIs' side requests each get their own script);
a request no script matches gets a plain "OK." (Claude Code's side requests: titles, quota).
Which turn of the script is next comes from the conversation itself, so the server keeps no
per-conversation state: tool call ids carry their turn's number (``toolu_t3_0``, ``call_t3_0``),
and for chat completions (text only) it is the number of assistant messages after the first
message that matched. A turn (all keys optional)::

    {"text": "...", "tools": [{"name": "Write", "input": {"file_path": "{cwd}/a.txt", ...}}],
     "usage": {"input_tokens": 1000, "output_tokens": 50},
     "errors": [529, 429],  # the first requests for this turn get these HTTP errors
     "hang": true}          # never answer (until the server stops)

``{cwd}`` in tool inputs and text becomes the CLI's working directory, read from the request
(Claude Code's "Primary working directory:", Codex's ``<cwd>``). A tool whose ``input`` is a
string is a free-form (custom) tool call for the Responses API (Codex's ``apply_patch``).

Every request is recorded (``ScriptedServer.requests``; with ``record=PATH`` also appended to a
JSON-lines file) so tests can assert what the CLI sent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_USAGE = {"input_tokens": 1000, "output_tokens": 50}
SIDE_USAGE = {"input_tokens": 10, "output_tokens": 2}
_TURN_ID = re.compile(r"\b(?:toolu|call)_t(\d+)_\d+\b")
_CWD = (
    re.compile(r"<cwd>([^<]+)</cwd>"),
    re.compile(r"[Pp]rimary working directory: (\S+)"),
    re.compile(r"[Ww]orking directory: (\S+)"),
)
_ERRORS = {
    429: ("rate_limit_error", "Rate limited (scripted)"),
    500: ("api_error", "Internal server error (scripted)"),
    529: ("overloaded_error", "Overloaded (scripted)"),
}


@dataclass
class Turn:
    text: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    errors: list[int] = field(default_factory=list)
    hang: bool = False


@dataclass
class Script:
    when: str
    turns: list[Turn]


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    script: str | None  # the ``when`` of the script that answered, None for a side request
    turn: int | None
    status: int


def load_scenario(data: dict[str, Any]) -> list[Script]:
    scripts = []
    for raw in data["scripts"]:
        turns = [
            Turn(
                text=str(t.get("text", "")),
                tools=list(t.get("tools", [])),
                usage={**DEFAULT_USAGE, **t.get("usage", {})},
                errors=[int(e) for e in t.get("errors", [])],
                hang=bool(t.get("hang", False)),
            )
            for t in raw["turns"]
        ]
        scripts.append(Script(str(raw["when"]), turns))
    return scripts


def _texts(value: object) -> list[str]:
    """Every string inside a JSON value (message contents come in many shapes)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _texts(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _texts(v)]
    return []


def _messages(body: dict[str, Any]) -> list[Any]:
    for key in ("messages", "input"):
        if isinstance(body.get(key), list):
            return list(body[key])
    return []


def _user_text(body: dict[str, Any]) -> str:
    """The text of the user's messages (not the system prompt, not tool definitions)."""
    parts = []
    for message in _messages(body):
        if isinstance(message, dict) and message.get("role") == "user":
            parts.extend(_texts(message.get("content")))
    return "\n".join(parts)


def _cwd(body: dict[str, Any]) -> str:
    text = "\n".join(_texts(body.get("system"))) + "\n" + "\n".join(_texts(_messages(body)))
    text += "\n" + "\n".join(_texts(body.get("instructions")))
    for pattern in _CWD:
        found = pattern.search(text)
        if found:
            return found.group(1).strip()
    return "."


def next_turn(script: Script, body: dict[str, Any], chat: bool) -> int:
    """The index of the turn to answer with, read from the conversation so far."""
    if chat:
        messages = [m for m in _messages(body) if isinstance(m, dict)]
        first = next(
            (i for i, m in enumerate(messages) if script.when in "\n".join(_texts(m))),
            len(messages),
        )
        return sum(1 for m in messages[first:] if m.get("role") == "assistant")
    seen = [int(n) for n in _TURN_ID.findall(json.dumps(_messages(body)))]
    return max(seen) + 1 if seen else 0


def _fill(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, list):
        return [_fill(v, cwd) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, cwd) for k, v in value.items()}
    return value


class ScriptedServer:
    """``with ScriptedServer(scripts) as server: server.url`` -- runs in a daemon thread."""

    def __init__(self, scripts: list[Script], *, record: Path | None = None) -> None:
        self.scripts = scripts
        self.record = record
        self.requests: list[Recorded] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._asked: dict[tuple[int, int], int] = {}  # (script, turn) -> requests so far
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def choose(self, body: dict[str, Any], chat: bool) -> tuple[int, Script, int, int] | None:
        """(script index, script, turn index, times this turn was asked before) or None."""
        text = _user_text(body)
        for index, script in enumerate(self.scripts):
            if script.when in text:
                turn = min(next_turn(script, body, chat), len(script.turns) - 1)
                with self._lock:
                    asked = self._asked.get((index, turn), 0)
                    self._asked[(index, turn)] = asked + 1
                return index, script, turn, asked
        return None

    def log(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.record is not None:
                with self.record.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry.__dict__) + "\n")

    def answered(self, when: str) -> list[Recorded]:
        """The requests a script answered (errors included)."""
        return [r for r in self.requests if r.script == when]


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": []})
            else:
                self._json(404, {"error": {"message": f"no such path {self.path}"}})

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?")[0]
            if path.endswith("/messages/count_tokens"):
                self._json(200, {"input_tokens": 100})
                return
            api = (
                "anthropic"
                if path.endswith("/messages")
                else "responses"
                if path.endswith("/responses")
                else "chat"
                if path.endswith("/chat/completions")
                else None
            )
            if api is None:
                self._json(404, {"error": {"message": f"no such path {path}"}})
                return
            chosen = server.choose(body, chat=api == "chat")
            if chosen is None:  # a side request: title, quota check, summary
                server.log(Recorded(path, body, None, None, 200))
                self._answer(api, body, Turn(text="OK.", usage=dict(SIDE_USAGE)), 0, "side")
                return
            _, script, index, asked = chosen
            turn = script.turns[index]
            if asked < len(turn.errors):
                status = turn.errors[asked]
                server.log(Recorded(path, body, script.when, index, status))
                kind, message = _ERRORS.get(status, ("api_error", f"HTTP {status} (scripted)"))
                self._json(
                    status,
                    {"type": "error", "error": {"type": kind, "message": message}},
                    {"retry-after": "1"},
                )
                return
            server.log(Recorded(path, body, script.when, index, 200))
            if turn.hang:
                server.stopping.wait(3600)
                return
            self._answer(api, body, turn, index, script.when)

        def _answer(self, api: str, body: dict[str, Any], turn: Turn, index: int, tag: str) -> None:
            cwd = _cwd(body)
            text = _fill(turn.text, cwd)
            tools = [_fill(t, cwd) for t in turn.tools]
            model = str(body.get("model") or "scripted-model")
            stream = body.get("stream") is True or api == "responses"
            if api == "anthropic":
                events = _anthropic(model, text, tools, turn.usage, index)
                if stream:
                    self._sse(events)
                else:
                    self._json(200, _anthropic_message(events))
            elif api == "responses":
                self._sse(_responses(model, text, tools, turn.usage, index))
            else:
                self._chat(model, text, turn.usage, stream)

        def _json(self, status: int, value: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, header in (headers or {}).items():
                self.send_header(name, header)
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, events: list[dict[str, Any]], *, named: bool = True) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in events:
                head = f"event: {event['type']}\n" if named and "type" in event else ""
                self.wfile.write(f"{head}data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

        def _chat(self, model: str, text: str, usage: dict[str, int], stream: bool) -> None:
            counts = {
                "prompt_tokens": usage["input_tokens"],
                "completion_tokens": usage["output_tokens"],
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            }
            base = {"id": "chatcmpl-scripted", "created": int(time.time()), "model": model}
            if not stream:
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                self._json(
                    200, {**base, "object": "chat.completion", "choices": [choice], "usage": counts}
                )
                return
            chunk = {**base, "object": "chat.completion.chunk"}
            delta = {"role": "assistant", "content": text}
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for piece in (
                {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {**chunk, "choices": [], "usage": counts},
            ):
                self.wfile.write(f"data: {json.dumps(piece)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def _anthropic(
    model: str, text: str, tools: list[dict[str, Any]], usage: dict[str, int], turn: int
) -> list[dict[str, Any]]:
    message: dict[str, Any] = {
        "id": f"msg_scripted_{turn}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    blocks: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if text:
        blocks.append(({"type": "text", "text": ""}, {"type": "text_delta", "text": text}))
    for k, tool in enumerate(tools):
        start = {"type": "tool_use", "id": f"toolu_t{turn}_{k}", "name": tool["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(tool.get("input", {}))}
        blocks.append((start, delta))
    for index, (start, delta) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    stop = "tool_use" if tools else "end_turn"
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return events


def _anthropic_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The same turn as one non-streamed message."""
    message: dict[str, Any] = dict(events[0]["message"])
    content = []
    for event in events:
        if event["type"] == "content_block_start":
            content.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                content[-1]["text"] = delta["text"]
            else:
                content[-1]["input"] = json.loads(delta["partial_json"])
        elif event["type"] == "message_delta":
            message["stop_reason"] = event["delta"]["stop_reason"]
            message["usage"] = {**message["usage"], **event["usage"]}
    message["content"] = content
    return message


def _responses(
    model: str, text: str, tools: list[dict[str, Any]], usage: dict[str, int], turn: int
) -> list[dict[str, Any]]:
    rid = f"resp_scripted_{turn}"
    items: list[dict[str, Any]] = []
    if text:
        items.append(
            {
                "type": "message",
                "id": f"msg_t{turn}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    for k, tool in enumerate(tools):
        call_id = f"call_t{turn}_{k}"
        raw = tool.get("input", {})
        if isinstance(raw, str):  # free-form tool (apply_patch)
            items.append(
                {
                    "type": "custom_tool_call",
                    "id": f"ctc_t{turn}_{k}",
                    "call_id": call_id,
                    "name": tool["name"],
                    "input": raw,
                    "status": "completed",
                }
            )
        else:
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_t{turn}_{k}",
                    "call_id": call_id,
                    "name": tool["name"],
                    "arguments": json.dumps(raw),
                    "status": "completed",
                }
            )
    response = {"id": rid, "object": "response", "model": model, "status": "in_progress"}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": response}]
    for index, item in enumerate(items):
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    done = {
        **response,
        "status": "completed",
        "output": items,
        "usage": {
            "input_tokens": usage["input_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        },
    }
    events.append({"type": "response.completed", "response": done})
    return events


def main(argv: list[str] | None = None) -> int:
    """Serve a scenario file by hand: prints the URL, runs until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args(argv)
    scripts = load_scenario(json.loads(args.scenario.read_text(encoding="utf-8")))
    with ScriptedServer(scripts, record=args.record) as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
