#!/usr/bin/env python3
"""A stand-in for a coding agent CLI (Claude Code headless), for pytest-prp's tests.

Run it as ``python tests/fake_agent.py [options]`` from the PRP's worktree, the way pytest-prp
runs an agent: the prompt arrives on stdin and in the file named by ``PRP_PROMPT_FILE``.

Protocol checks (exit 3 with a message on stderr when one fails):
  * stdin holds a non-empty prompt;
  * ``PRP_PROMPT_FILE`` is set, the file exists and holds exactly the stdin text;
  * ``--prompt-file PATH``, when given, names a file holding that text too.

Then, in the ``ok`` and ``garbage`` modes, it "implements" the PRP: every fenced block that
directly follows a ``**Create**: `path` `` line in the prompt is written to that path
(relative to the current directory), then every ``--write`` / ``FAKE_AGENT_WRITE`` edit is
applied. Paths that are absolute or climb out with ``..`` are refused (exit 4).

Retries: the attempt number is ``PRP_ATTEMPT`` (default 1). With ``--fix-on-attempt N``, the
``--write`` edits of attempts before N write ``WRONG`` instead of their content (so the gates
fail); from attempt N on they write the real content. A retry's prompt (attempt > 1) should
tell the agent what failed: whether it contains "failed gates" (any case) is recorded, and
with ``--require-retry-context`` its absence is a protocol error.

Options (each flag overrides its environment variable):
  --mode MODE        FAKE_AGENT_MODE     ok (default) | fail | crash | is_error | max_turns |
                                         garbage | hang
      ok         implement, print a success result, exit 0
      fail       write nothing, result with is_error true (error_during_execution), a
                 message on stderr, exit 1
      crash      print the init event and a message, then die of an uncaught exception
                 (traceback on stderr, exit 1, no result object)
      is_error   write nothing, result "success" with is_error true and an API error text,
                 exit 0 (tests that is_error alone fails the step)
      max_turns  write nothing, result subtype error_max_turns with is_error false, exit 0
      garbage    like ok, with non-JSON lines mixed into stdout
      hang       print the init event, then sleep for an hour, silent (idle timeout tests)
      hang_printing  print the init event, then a line every 0.1 s forever (wall-clock tests:
                 never idle)
  --plain            FAKE_AGENT_PLAIN=1  plain text output instead of stream-json (no result)
  --cost USD         FAKE_AGENT_COST     total_cost_usd of the result (default 0.0123)
  --write P=CONTENT  FAKE_AGENT_WRITE    write CONTENT to P; repeatable (in the variable: one
                                         edit a line); ``\\n`` in CONTENT is a newline
  --sleep SECONDS    FAKE_AGENT_SLEEP    sleep before doing anything
  --exit CODE        FAKE_AGENT_EXIT     exit status to end with, whatever the mode
  --record PATH      FAKE_AGENT_RECORD   write JSON: argv, cwd, prompt, prompt_file, the
                                         PRP_* environment variables it saw, attempt,
                                         retry_context (the prompt mentions failed gates), and
                                         history: one {attempt, retry_context, prompt} per run
                                         (kept across runs with the same PATH)
  --deny TOOL=TARGET                     in the ok mode, one tool call the CLI refused, as
                                         Claude Code reports it: a ``system``
                                         ``permission_denied`` event, an error tool result and
                                         an entry of the result's ``permission_denials``;
                                         repeatable
  --fix-on-attempt N FAKE_AGENT_FIX_ON_ATTEMPT  --write edits are "WRONG" before attempt N
  --require-retry-context  FAKE_AGENT_REQUIRE_RETRY_CONTEXT=1  exit 3 when attempt > 1 and the
                                         prompt does not mention "failed gates"
  --limit KIND       FAKE_AGENT_LIMIT    the API refuses the run: write nothing, print a failed
                                         result and exit 1, as Claude Code does after its own
                                         retries. KIND:
      overload     api_error_status 529, "API Error: Repeated 529 Overloaded errors"
      rate_limit   api_error_status 429, "API Error: Rate limit reached"
      usage_limit  a rate_limit_event "rejected" and the result text
                   "Claude AI usage limit reached|<unix time>" (now + --reset-in)
  --limit-runs N     FAKE_AGENT_LIMIT_RUNS  only the first N runs are refused (counted in
                                         --counter); later runs behave as --mode says
  --counter PATH     FAKE_AGENT_COUNTER  file counting the runs (pass one per PRP: {prp_id})
  --reset-in SECONDS FAKE_AGENT_RESET_IN  usage_limit: the reset time, from now (default 3)
  --starts PATH      FAKE_AGENT_STARTS   append "<time.time()> <prp id> start" as the run
                                         starts and "<time> <prp id> refused" before a refused
                                         run exits (one file for all PRPs)
  --prp-id ID                            the PRP id (default: $PRP_ID); used in session_id
  --prompt-file PATH                     check this file too (pass ``{prompt_file}``)
  --model NAME                           the model, shown in the init event (default
                                         fake-model), as ``claude --model`` takes it
  WORD ...                               extra words are ignored (tests put a token on the
                                         command line to find the process afterwards)

stream-json output (one JSON object a line, as ``claude -p --output-format stream-json
--verbose`` prints): a ``system``/``init`` event, an ``assistant`` text message, for each file
an ``assistant`` ``tool_use`` (Write) and a ``user`` ``tool_result``, and a final ``result``
with ``total_cost_usd``, ``usage`` (input/output tokens), ``num_turns`` and ``session_id``
(``fake-session-<prp id>``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import time
from pathlib import Path, PurePosixPath

LIMITS = ("overload", "rate_limit", "usage_limit")
MODES = ("ok", "fail", "crash", "is_error", "max_turns", "garbage", "hang", "hang_printing")
WRONG = "WRONG"
RETRY_MARKER = "failed gates"
_CREATE = re.compile(r"^\s*(?:[-*+]\s+|\d+\.\s+)?\*\*Create:?\*\*:?\s*`([^`]+)`")
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="fake coding agent for pytest-prp tests")
    parser.add_argument("--mode", choices=MODES, default=env.get("FAKE_AGENT_MODE") or "ok")
    parser.add_argument("--plain", action="store_true", default=env.get("FAKE_AGENT_PLAIN") == "1")
    parser.add_argument("--cost", type=float, default=float(env.get("FAKE_AGENT_COST") or 0.0123))
    parser.add_argument("--write", action="append", default=[])
    parser.add_argument("--deny", action="append", default=[])
    parser.add_argument("--sleep", type=float, default=float(env.get("FAKE_AGENT_SLEEP") or 0))
    parser.add_argument("--exit", type=int, default=None)
    parser.add_argument("--record", default=env.get("FAKE_AGENT_RECORD"))
    parser.add_argument("--prp-id", default=env.get("PRP_ID"))
    parser.add_argument("--prompt-file", default=None)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--limit", choices=LIMITS, default=env.get("FAKE_AGENT_LIMIT") or None)
    runs = env.get("FAKE_AGENT_LIMIT_RUNS")
    parser.add_argument("--limit-runs", type=int, default=int(runs) if runs else None)
    parser.add_argument("--counter", default=env.get("FAKE_AGENT_COUNTER"))
    reset = env.get("FAKE_AGENT_RESET_IN")
    parser.add_argument("--reset-in", type=float, default=float(reset) if reset else 3.0)
    parser.add_argument("--starts", default=env.get("FAKE_AGENT_STARTS"))
    parser.add_argument("words", nargs="*")
    fix = env.get("FAKE_AGENT_FIX_ON_ATTEMPT")
    parser.add_argument("--fix-on-attempt", type=int, default=int(fix) if fix else None)
    parser.add_argument(
        "--require-retry-context",
        action="store_true",
        default=env.get("FAKE_AGENT_REQUIRE_RETRY_CONTEXT") == "1",
    )
    args = parser.parse_args(argv)
    if args.exit is None and env.get("FAKE_AGENT_EXIT"):
        args.exit = int(env["FAKE_AGENT_EXIT"])
    if not args.write and env.get("FAKE_AGENT_WRITE"):
        args.write = [line for line in env["FAKE_AGENT_WRITE"].splitlines() if line.strip()]
    return args


def protocol_error(message: str) -> None:
    print(f"fake_agent: protocol error: {message}", file=sys.stderr)
    sys.exit(3)


def check_protocol(prompt: str, args: argparse.Namespace) -> str:
    if not prompt.strip():
        protocol_error("no prompt on stdin")
    name = os.environ.get("PRP_PROMPT_FILE")
    if not name:
        protocol_error("PRP_PROMPT_FILE is not set")
    assert name is not None
    for label, path in (("PRP_PROMPT_FILE", name), ("--prompt-file", args.prompt_file)):
        if path is None:
            continue
        if not Path(path).is_file():
            protocol_error(f"{label} {path} does not exist")
        if Path(path).read_text(encoding="utf-8") != prompt:
            protocol_error(f"{label} {path} does not hold the prompt given on stdin")
    return name


def create_blocks(prompt: str) -> list[tuple[str, str]]:
    """(path, content) of each fenced block right after a ``**Create**: `path` `` line."""
    lines = prompt.splitlines()
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        match = _CREATE.match(lines[i])
        i += 1
        if not match:
            continue
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        fence = _FENCE.match(lines[j]) if j < len(lines) else None
        if not fence:
            continue
        indent, marks = len(fence.group(1)), fence.group(2)
        body: list[str] = []
        j += 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(marks) and set(stripped) == {marks[0]}:
                break
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            j += 1
        found.append((match.group(1).strip(), "".join(f"{line}\n" for line in body)))
        i = j + 1
    return found


def requested_writes(entries: list[str], wrong: bool = False) -> list[tuple[str, str]]:
    """The --write edits; with ``wrong``, each writes ``WRONG`` instead of its content."""
    writes = []
    for entry in entries:
        path, sep, content = entry.partition("=")
        if not sep:
            print(f"fake_agent: --write needs PATH=CONTENT, got {entry!r}", file=sys.stderr)
            sys.exit(2)
        writes.append((path.strip(), WRONG if wrong else content.replace("\\n", "\n")))
    return writes


def attempt_number() -> int:
    try:
        return max(int(os.environ.get("PRP_ATTEMPT") or 1), 1)
    except ValueError:
        return 1


def record_run(path: str, argv: list[str], prompt: str, prompt_file: str, attempt: int) -> None:
    """What this run saw; ``history`` keeps one entry per run recorded to the same file."""
    target = Path(path)
    history: list[object] = []
    if target.is_file():
        try:
            earlier = json.loads(target.read_text(encoding="utf-8"))
            history = list(earlier.get("history", [])) if isinstance(earlier, dict) else []
        except ValueError:
            history = []
    retry_context = RETRY_MARKER in prompt.lower()
    history.append({"attempt": attempt, "retry_context": retry_context, "prompt": prompt})
    seen = {k: v for k, v in os.environ.items() if k.startswith("PRP_")}
    record: dict[str, object] = {"argv": argv, "cwd": os.getcwd(), "prompt": prompt}
    record.update({"prompt_file": prompt_file, "env": seen, "attempt": attempt})
    record.update({"retry_context": retry_context, "history": history})
    target.write_text(json.dumps(record, indent=2), encoding="utf-8")


def write_file(path: str, content: str) -> None:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        print(f"fake_agent: refusing to write outside the directory: {path}", file=sys.stderr)
        sys.exit(4)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")


class Output:
    """Prints stream-json events, or plain text with --plain."""

    def __init__(self, plain: bool, session_id: str, model: str = "fake-model") -> None:
        self.plain = plain
        self.session_id = session_id
        self.model = model
        self.denials: list[dict[str, object]] = []

    def event(self, event: dict[str, object], plain_text: str | None) -> None:
        if self.plain:
            if plain_text is not None:
                print(plain_text, flush=True)
            return
        event.setdefault("session_id", self.session_id)
        print(json.dumps(event), flush=True)

    def raw(self, text: str) -> None:
        print(text, flush=True)

    def init(self) -> None:
        event: dict[str, object] = {
            "type": "system",
            "subtype": "init",
            "cwd": os.getcwd(),
            "model": self.model,
            "permissionMode": "bypassPermissions",
            "apiKeySource": "none",
            "tools": ["Bash", "Read", "Write", "Edit"],
            "mcp_servers": [],
        }
        self.event(event, "fake agent: starting")

    def say(self, text: str) -> None:
        message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
        self.event({"type": "assistant", "message": message}, text)

    def wrote(self, number: int, path: str, content: str) -> None:
        tool_id = f"toolu_fake_{number}"
        use: dict[str, object] = {"type": "tool_use", "id": tool_id, "name": "Write"}
        use["input"] = {"file_path": path, "content": content}
        self.event(
            {"type": "assistant", "message": {"role": "assistant", "content": [use]}},
            f"fake agent: wrote {path}",
        )
        done = {"type": "tool_result", "tool_use_id": tool_id}
        done["content"] = f"File created successfully at: {path}"
        self.event({"type": "user", "message": {"role": "user", "content": [done]}}, None)

    def denied(self, number: int, tool: str, target: str) -> None:
        tool_id = f"toolu_denied_{number}"
        key = "command" if tool == "Bash" else "file_path"
        use = {"type": "tool_use", "id": tool_id, "name": tool, "input": {key: target}}
        self.event({"type": "assistant", "message": {"role": "assistant", "content": [use]}}, None)
        why = f"fake agent: {tool} on {target} needs approval"
        denial = {"type": "system", "subtype": "permission_denied", "tool_name": tool}
        self.event({**denial, "tool_use_id": tool_id, "message": why}, why)
        error = {"type": "tool_result", "tool_use_id": tool_id, "content": why, "is_error": True}
        self.event({"type": "user", "message": {"role": "user", "content": [error]}}, None)
        self.denials.append({"tool_name": tool, "tool_use_id": tool_id, "tool_input": use["input"]})

    def result(
        self,
        *,
        subtype: str,
        is_error: bool,
        text: str,
        turns: int,
        cost: float,
        tokens_in: int,
        tokens_out: int,
    ) -> None:
        event = {
            "type": "result",
            "subtype": subtype,
            "is_error": is_error,
            "duration_ms": 12,
            "duration_api_ms": 10,
            "num_turns": turns,
            "result": text,
            "total_cost_usd": cost,
            "usage": {
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
            "permission_denials": self.denials,
        }
        self.event(event, f"fake agent: {text}")


def count_run(path: str | None) -> int:
    """This run's number (1 for the first) in the counter file, which it updates."""
    if path is None:
        return 1
    target = Path(path)
    try:
        runs = int(target.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        runs = 0
    target.write_text(f"{runs + 1}\n", encoding="utf-8")
    return runs + 1


def note_start(path: str | None, prp_id: str | None, what: str) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.3f} {prp_id or 'none'} {what}\n")


def refuse(out: Output, kind: str, reset_in: float, tokens_in: int) -> None:
    """Claude Code's output when the API refused every try: a failed result, no work."""
    status, text = 529, "API Error: Repeated 529 Overloaded errors"
    if kind == "rate_limit":
        status, text = 429, "API Error: Rate limit reached"
    elif kind == "usage_limit":
        reset = int(time.time() + reset_in)
        info = {"status": "rejected", "resetsAt": reset, "rateLimitType": "five_hour"}
        out.event({"type": "rate_limit_event", "rate_limit_info": info}, None)
        status, text = 429, f"Claude AI usage limit reached|{reset}"
    event = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "api_error_status": status,
        "duration_ms": 5,
        "duration_api_ms": 0,
        "num_turns": 1,
        "result": text,
        "total_cost_usd": 0,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    out.event(event, text)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    prompt = sys.stdin.read()
    prompt_file = check_protocol(prompt, args)
    attempt = attempt_number()
    if args.record:
        record_run(args.record, argv, prompt, prompt_file, attempt)
    if args.require_retry_context and attempt > 1 and RETRY_MARKER not in prompt.lower():
        protocol_error(f"attempt {attempt}: the prompt does not mention {RETRY_MARKER!r}")
    note_start(args.starts, args.prp_id, "start")
    if args.sleep:
        time.sleep(args.sleep)

    out = Output(args.plain, f"fake-session-{args.prp_id or 'none'}", args.model)
    out.init()
    tokens_in = len(prompt) // 4 + 1
    status = 0
    run = count_run(args.counter) if args.limit else 1
    if args.limit and (args.limit_runs is None or run <= args.limit_runs):
        refuse(out, args.limit, args.reset_in, tokens_in)
        note_start(args.starts, args.prp_id, "refused")
        return 1
    if args.mode == "hang":
        time.sleep(3600)
    elif args.mode == "hang_printing":
        for tick in itertools.count(1):
            out.say(f"still working ({tick})")
            time.sleep(0.1)
    elif args.mode == "crash":
        out.say("Starting; something is about to go wrong.")
        raise RuntimeError("fake agent crashed as asked")
    elif args.mode in ("ok", "garbage"):
        out.say(f"I will implement PRP {args.prp_id or '(unknown)'}.")
        if args.mode == "garbage":
            out.raw("Loading plugins... done")
            out.raw("{this is not json")
        wrong = args.fix_on_attempt is not None and attempt < args.fix_on_attempt
        edits = create_blocks(prompt) + requested_writes(args.write, wrong)
        for number, (path, content) in enumerate(edits, 1):
            write_file(path, content)
            out.wrote(number, path, content)
        for number, denied in enumerate(args.deny, 1):
            tool, _, target = denied.partition("=")
            out.denied(number, tool, target)
        if args.mode == "garbage":
            out.raw('["a", "json", "list", "is", "not", "an", "event"]')
        written = sum(len(content) for _, content in edits)
        out.result(
            subtype="success",
            is_error=False,
            text=f"Wrote {len(edits)} files.",
            turns=1 + len(edits),
            cost=args.cost,
            tokens_in=tokens_in,
            tokens_out=written // 4 + 10,
        )
    elif args.mode == "fail":
        out.say("I cannot do this.")
        print("fake agent: failing as asked", file=sys.stderr, flush=True)
        out.result(
            subtype="error_during_execution",
            is_error=True,
            text="fake agent failed as asked",
            turns=1,
            cost=args.cost,
            tokens_in=tokens_in,
            tokens_out=5,
        )
        status = 1
    elif args.mode == "is_error":
        out.result(
            subtype="success",
            is_error=True,
            text="API Error: fake is_error as asked",
            turns=1,
            cost=args.cost,
            tokens_in=tokens_in,
            tokens_out=5,
        )
    elif args.mode == "max_turns":
        out.say("Still working on it...")
        out.result(
            subtype="error_max_turns",
            is_error=False,
            text="",
            turns=50,
            cost=args.cost,
            tokens_in=tokens_in,
            tokens_out=50,
        )
    return status if args.exit is None else args.exit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
