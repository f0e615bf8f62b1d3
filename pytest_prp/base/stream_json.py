"""Read agent CLIs' JSON-lines output: Claude Code's ``stream-json`` and Codex's ``exec --json``.

Claude Code (``claude -p --output-format stream-json --verbose``), one JSON object a line:
``{"type": "system", "subtype": "init", ...}``, ``{"type": "assistant", "message": {"content":
[...]}}``, ``{"type": "user", ...}`` (tool results), ``{"type": "system", "subtype":
"permission_denied", "tool_use_id": .., "message": ..}`` for each refused tool call, and a final
``{"type": "result", "subtype": "success", "is_error": false, "total_cost_usd": 0.01,
"modelUsage": {"<model>": {"inputTokens": .., ...}}, "usage": {..}, "permission_denials":
[{"tool_name", "tool_use_id", "tool_input"}], "num_turns": 3, "session_id": "...", "result":
"..."}``. ``modelUsage`` counts every request of the run (side requests, sub-agents), like the
cost; ``usage`` only the main conversation, so tokens come from ``modelUsage`` when present.

Codex (``codex exec --json``): ``thread.started``, ``item.started``/``item.completed`` (items:
``agent_message``, ``command_execution``, ``file_change``, ``error``...), and per turn
``turn.completed`` with ``usage`` or ``turn.failed`` with ``error.message``.

Parsing is tolerant: a line that is not a JSON object is plain text, so an agent printing plain
text (or a wrapper script mixing both) is fine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_SHORT = 200
_CODEX_EVENTS = ("thread.", "turn.", "item.")


@dataclass(frozen=True)
class Refusal:
    """A tool call the CLI refused to run (Claude Code's ``permission_denials``)."""

    tool: str
    target: str  # the command, path or other input that was refused (shortened)
    reason: str  # what the CLI told the model, or "" when it said nothing

    def to_dict(self) -> dict[str, str]:
        return {"tool": self.tool, "target": self.target, "reason": self.reason}

    def describe(self) -> str:
        return f"{self.tool} {self.target}" + (f": {self.reason}" if self.reason else "")


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
    tokens_by_model: dict[str, dict[str, int]] | None = None  # Claude's modelUsage
    refusals: list[Refusal] = field(default_factory=list)

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


# Claude Code's modelUsage (camelCase), and Codex's turn usage.
_MODEL_USAGE_FIELDS = {
    "input": "inputTokens",
    "output": "outputTokens",
    "cache_read": "cacheReadInputTokens",
    "cache_creation": "cacheCreationInputTokens",
}
_CODEX_FIELDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cached_input_tokens",
    "reasoning": "reasoning_output_tokens",
}


def _tokens(usage: object, fields: dict[str, str] = _TOKEN_FIELDS) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    tokens = {}
    for name, key in fields.items():
        count = _integer(usage.get(key))
        if count is not None:
            tokens[name] = count
    return tokens or None


def add_tokens(total: dict[str, int] | None, more: dict[str, int] | None) -> dict[str, int] | None:
    """Two token counts added up, key by key (None is nothing)."""
    if not more:
        return total
    summed = dict(total or {})
    for key, value in more.items():
        summed[key] = summed.get(key, 0) + value
    return summed


def _model_usage(value: object) -> dict[str, dict[str, int]] | None:
    if not isinstance(value, dict):
        return None
    models = {}
    for model, usage in value.items():
        tokens = _tokens(usage, _MODEL_USAGE_FIELDS)
        if tokens:
            models[str(model)] = tokens
    return models or None


def parse_stream(lines: str | Iterable[str]) -> AgentReport:
    """Sum up a whole stdout (a string, or its lines). The last ``result`` object wins."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    report = AgentReport()
    reasons: dict[str, str] = {}  # tool_use_id -> why it was refused
    denials: list[object] = []
    for line in lines:
        event = parse_event(line)
        if event is None:
            continue
        report.events += 1
        kind = event.get("type")
        if kind == "system":
            if report.session_id is None:
                report.session_id = _string(event.get("session_id"))
            if event.get("subtype") == "permission_denied":
                why = _string(event.get("message")) or _string(event.get("decision_reason"))
                use_id = _string(event.get("tool_use_id"))
                if use_id and why:
                    reasons[use_id] = why
        elif kind == "user":
            for block in _content(event):
                use_id = _string(block.get("tool_use_id"))
                if block.get("type") == "tool_result" and block.get("is_error") is True and use_id:
                    reasons.setdefault(use_id, _tool_result_text(block))
        elif kind == "result":
            _read_result(report, event)
            found = event.get("permission_denials")
            denials = list(found) if isinstance(found, list) else []
        elif isinstance(kind, str) and kind.startswith(_CODEX_EVENTS):
            _read_codex(report, event)
    report.refusals = [r for d in denials if (r := _refusal(d, reasons)) is not None]
    return report


def _refusal(denial: object, reasons: dict[str, str]) -> Refusal | None:
    if not isinstance(denial, dict):
        return None
    use_id = _string(denial.get("tool_use_id")) or ""
    reason = " ".join(reasons.get(use_id, "").split())
    return Refusal(
        tool=_string(denial.get("tool_name")) or "?",
        target=_tool_input(denial.get("tool_input")),
        reason=reason[:_SHORT] + (" ..." if len(reason) > _SHORT else ""),
    )


def _read_codex(report: AgentReport, event: dict[str, Any]) -> None:
    """Codex ``exec --json``: the thread id, each turn's usage, a failed turn's message."""
    kind = event.get("type")
    if kind == "thread.started":
        report.session_id = _string(event.get("thread_id")) or report.session_id
    elif kind == "turn.completed":
        report.saw_result = True
        report.num_turns = (report.num_turns or 0) + 1
        report.tokens = add_tokens(report.tokens, _tokens(event.get("usage"), _CODEX_FIELDS))
    elif kind == "turn.failed":
        report.saw_result = True
        report.is_error = True
        report.subtype = "turn.failed"
        error = event.get("error")
        message = _string(error.get("message")) if isinstance(error, dict) else None
        report.result_text = message or "turn failed"


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
    # modelUsage counts what the cost counts (side requests, sub-agents); usage does not.
    report.tokens_by_model = _model_usage(event.get("modelUsage"))
    if report.tokens_by_model:
        report.tokens = None
        for tokens in report.tokens_by_model.values():
            report.tokens = add_tokens(report.tokens, tokens)
    else:
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
    if kind == "error" or (isinstance(kind, str) and kind.startswith(_CODEX_EVENTS)):
        return _render_codex(event)
    if kind == "system":
        if event.get("subtype") == "permission_denied":
            tool = _string(event.get("tool_name")) or "?"
            return f"[refused] {tool}: {_shorten(_string(event.get('message')) or '')}"
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


def _render_codex(event: dict[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "turn.failed":
        error = event.get("error")
        message = _string(error.get("message")) if isinstance(error, dict) else None
        return f"[result] error: {_shorten(message or 'turn failed')}"
    if kind == "error":
        return f"[error] {_shorten(_string(event.get('message')) or '')}"
    if kind == "turn.completed":
        tokens = _tokens(event.get("usage"), _CODEX_FIELDS) or {}
        return f"[result] done ({tokens.get('input', 0)} in, {tokens.get('output', 0)} out tokens)"
    item = event.get("item")
    if kind != "item.completed" or not isinstance(item, dict):
        return None
    part = item.get("type")
    if part == "agent_message":
        return f"[assistant] {_shorten(_string(item.get('text')) or '')}"
    if part == "command_execution":
        output = _shorten(_string(item.get("aggregated_output")) or "")
        status = f"exit {item.get('exit_code')}"
        return f"[tool] exec: {_shorten(_string(item.get('command')) or '')} -> {status}: {output}"
    if part == "file_change":
        changes = item.get("changes")
        paths = [c.get("path") for c in changes if isinstance(c, dict)] if changes else []
        return f"[tool] edit: {', '.join(str(p) for p in paths)}"
    if part == "error":
        return f"[error] {_shorten(_string(item.get('message')) or '')}"
    return None
