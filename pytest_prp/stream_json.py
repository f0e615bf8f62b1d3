"""Read Claude Code's headless ``stream-json`` output (``claude -p --output-format stream-json``).

One JSON object a line: ``{"type": "system", "subtype": "init", ...}``, ``{"type": "assistant",
"message": {"content": [...]}}``, ``{"type": "user", ...}`` (tool results) and a final
``{"type": "result", "subtype": "success", "is_error": false, "total_cost_usd": 0.01,
"usage": {"input_tokens": .., "output_tokens": ..}, "num_turns": 3, "session_id": "...",
"result": "..."}``. Parsing is tolerant: a line that is not a JSON object is plain text, so an
agent printing plain text (or a wrapper script mixing both) is fine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_SHORT = 200


@dataclass
class AgentReport:
    """What the stream said about the run. ``saw_result`` is False for plain-text output."""

    saw_result: bool = False
    is_error: bool = False
    subtype: str | None = None  # "success", "error_max_turns", "error_during_execution", ...
    result_text: str | None = None
    cost_usd: float | None = None
    tokens: dict[str, int] | None = None  # {"input": n, "output": m, "cache_read": .., ...}
    num_turns: int | None = None
    session_id: str | None = None
    events: int = 0  # JSON objects seen

    @property
    def failed(self) -> bool:
        """The agent said it did not finish: ``is_error``, or an ``error_*`` subtype."""
        return self.is_error or (self.subtype or "").startswith("error")


def parse_event(line: str) -> dict[str, Any] | None:
    """The JSON object on this line, or None when it is plain text."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) else None  # NaN and Infinity are no cost


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


_TOKEN_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_creation": "cache_creation_input_tokens",
}


def _tokens(usage: object) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    tokens = {}
    for name, key in _TOKEN_FIELDS.items():
        count = _integer(usage.get(key))
        if count is not None:
            tokens[name] = count
    return tokens or None


def parse_stream(lines: str | Iterable[str]) -> AgentReport:
    """Sum up a whole stdout (a string, or its lines). The last ``result`` object wins."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    report = AgentReport()
    for line in lines:
        event = parse_event(line)
        if event is None:
            continue
        report.events += 1
        kind = event.get("type")
        if kind == "system" and report.session_id is None:
            report.session_id = _string(event.get("session_id"))
        elif kind == "result":
            _read_result(report, event)
    return report


def _read_result(report: AgentReport, event: dict[str, Any]) -> None:
    report.saw_result = True
    report.is_error = event.get("is_error") is True
    report.subtype = _string(event.get("subtype"))
    report.result_text = _string(event.get("result"))
    if report.result_text is None and isinstance(event.get("errors"), list):
        report.result_text = "; ".join(str(e) for e in event["errors"]) or None
    # Older Claude Code versions called the cost "cost_usd".
    cost = _number(event.get("total_cost_usd"))
    report.cost_usd = cost if cost is not None else _number(event.get("cost_usd"))
    report.tokens = _tokens(event.get("usage"))
    report.num_turns = _integer(event.get("num_turns"))
    report.session_id = _string(event.get("session_id")) or report.session_id


def _shorten(text: str, limit: int = _SHORT) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    more = first != text.strip()
    if len(first) > limit:
        first, more = first[:limit], True
    return first + (" ..." if more else "")


def _tool_input(value: object) -> str:
    if isinstance(value, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "description"):
            if isinstance(value.get(key), str):
                return _shorten(value[key])
        return _shorten(json.dumps(value, ensure_ascii=False))
    return ""


def _content(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        texts = [c.get("text") for c in content if isinstance(c, dict)]
        content = "\n".join(t for t in texts if isinstance(t, str))
    return content if isinstance(content, str) else ""


def render_line(line: str) -> str | None:
    """A short human-readable form of one output line, for tails and progress displays.

    Plain text comes back unchanged; a stream-json event becomes one line (the parts of a
    message joined by `` | ``); events not worth showing give None.
    """
    event = parse_event(line)
    if event is None or "type" not in event:
        return line
    kind = event.get("type")
    if kind == "system":
        if event.get("subtype") != "init":
            return None
        model = _string(event.get("model"))
        return f"[agent] session started{f' (model {model})' if model else ''}"
    if kind == "result":
        report = AgentReport()
        _read_result(report, event)
        state = "error" if report.failed else "done"
        details = []
        if report.num_turns is not None:
            details.append(f"{report.num_turns} turns")
        if report.cost_usd is not None:
            details.append(f"${report.cost_usd:.4f}")
        extra = f" ({', '.join(details)})" if details else ""
        text = _shorten(report.result_text or report.subtype or "")
        return f"[result] {state}{extra}: {text}"
    parts = []
    for block in _content(event):
        part = block.get("type")
        if part == "text" and isinstance(block.get("text"), str) and block["text"].strip():
            parts.append(f"[{kind}] {_shorten(block['text'])}")
        elif part == "tool_use":
            parts.append(f"[tool] {block.get('name', '?')}: {_tool_input(block.get('input'))}")
        elif part == "tool_result":
            flag = " (error)" if block.get("is_error") is True else ""
            parts.append(f"  -> result{flag}: {_shorten(_tool_result_text(block))}")
    return " | ".join(parts) or None
