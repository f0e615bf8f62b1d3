"""The two default executors of a PRP's steps: literal (run the PRP as written) and agent (CLI).

Literal: for each step in order, a code block under ``**Create**: `path` `` is written to that
path; shell blocks (``body.shell_commands``: the rule the gates are read by) run with bash
(errexit, pipefail) in the worktree, each in its own bash; other blocks are documentation.
The first failure stops the run.

Agent: a configured command line runs through bash in the worktree with the prompt on stdin and
in a file (``PRP_PROMPT_FILE``); Claude Code's stream-json or Codex's ``--json`` output, if
any, gives the cost, tokens, turns, session, the tool calls the CLI refused and why a run
failed.

Both run under the PRP's ``Limits``: a process that runs out of the PRP's time or goes idle (no
output and no file changed in the worktree for that long) is stopped.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pytest_prp.base.stream_json import Refusal, parse_stream, render_line
from pytest_prp.spec.body import shell_commands
from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.model import CodeBlock, Prp, Step, display_path
from pytest_prp.supervise.limits import Limits
from pytest_prp.supervise.output import LogSink
from pytest_prp.supervise.processes import (
    DEFAULT_TAIL_LINES,
    ProcessResult,
    run_bash,
    timeout_message,
)
from pytest_prp.supervise.ratelimit_signs import RateLimit, detect


@dataclass
class StepsOutcome:
    ok: bool
    error: str | None  # one line (or a few) for the user
    failed_step: str | None  # the failing step's title; "agent" for the agent executor
    tail: list[str]
    cost_usd: float | None = None
    tokens: dict[str, int] | None = None  # {"input": n, "output": m, ...}
    num_turns: int | None = None
    session_id: str | None = None
    duration: float = 0.0
    timed_out: bool = False  # stopped by a limit: the wall clock, or idleness
    idle_timed_out: bool = False  # stopped by the idle limit
    rate_limit: RateLimit | None = None  # the API refused (429/529, usage limit): wait, rerun
    tokens_by_model: dict[str, dict[str, int]] | None = None
    refusals: list[Refusal] = field(default_factory=list)  # tool calls the CLI refused
    # What the user should know although nothing failed (a step that ran nothing): warnings.
    notes: list[str] = field(default_factory=list)


class UnsafePath(Exception):
    """A ``**Create**`` path that would write outside the worktree."""


def safe_create_path(workdir: Path, raw: str) -> Path:
    """Where ``raw`` (relative to ``workdir``) really is; UnsafePath if it is not inside it.

    Refused: empty and absolute paths, ``..`` climbing out, anything inside ``.git``, and
    paths going through a symlink that leads outside the worktree.
    """
    text = raw.strip()
    if not text:
        raise UnsafePath("the path is empty")
    if text.startswith("~") or PurePosixPath(text).is_absolute() or Path(text).is_absolute():
        raise UnsafePath(f"{text} is an absolute path; use a path relative to the worktree")
    depth = 0
    for part in PurePosixPath(text).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise UnsafePath(f"{text} climbs out of the worktree with '..'")
    root = workdir.resolve()
    target = (root / text).resolve()
    if not target.is_relative_to(root):
        raise UnsafePath(f"{text} goes through a symlink that leads outside the worktree")
    inside = target.relative_to(root).parts
    if not inside:
        raise UnsafePath(f"{text} names the worktree itself, not a file")
    if inside[0] == ".git":
        raise UnsafePath(f"{text} is inside .git")
    return target


def _step_label(step: Step, total: int) -> str:
    return f'step {step.index}/{total} "{step.title}"'


def run_literal_steps(
    prp: Prp,
    *,
    workdir: Path,
    env: Mapping[str, str],
    limits: Limits,
    on_step: Callable[[Step, int], None] | None = None,
) -> StepsOutcome:
    """Carry out the PRP's steps as written, all of them before ``limits.deadline``.

    The idle limit applies to each shell block. ``on_step(step, total)`` is called as each
    step starts.
    """
    start = time.monotonic()
    log = limits.log
    steps = body_of(prp).steps
    total = len(steps)
    tail: list[str] = []

    def failed(
        step: Step, error: str, tail: list[str], *, timed_out: bool = False, idle: bool = False
    ) -> StepsOutcome:
        if log is not None:
            log.lines(f"FAILED: {error}")
        duration = time.monotonic() - start
        return StepsOutcome(
            False,
            error,
            step.title,
            tail,
            duration=duration,
            timed_out=timed_out,
            idle_timed_out=idle,
        )

    notes: list[str] = []
    for step in steps:
        label = _step_label(step, total)
        if on_step is not None:
            on_step(step, total)
        if log is not None:
            log.section(f"step {step.index}/{total}: {step.title}")
        skipped: list[CodeBlock] = []
        for block in step.code_blocks:
            if block.create_path is not None:
                problem = _create(workdir, block, log)
                if problem is not None:
                    where = f"{display_path(prp.path)}:{block.line}"
                    return failed(step, f"{where}: {label}: {problem}", [problem])
                continue
            script = shell_commands(block.info, block.code)
            if script is None:
                if log is not None:
                    log.line(f"(line {block.line}: {block.language or 'text'} block not run)")
                skipped.append(block)
                continue
            if not script.strip():
                continue
            if limits.remaining() <= 0:
                error = f"{label} {timeout_message(limits.stated, limits.source)}"
                return failed(step, error, tail, timed_out=True)
            if log is not None:
                log.line(f"(line {block.line}: running {block.language or 'shell'} block)")
            result = run_bash(script, cwd=workdir, env=env, limits=limits)
            tail = result.tail
            if result.timed_out:
                error = f"{label} {result.describe()}"
                return failed(step, error, tail, timed_out=True, idle=result.idle_timed_out)
            if not result.ok:
                return failed(step, f"{label} failed ({result.describe()})", tail)
        if skipped and len(skipped) == len(step.code_blocks):
            # Its blocks were all read as documentation: say so, or the step silently did
            # nothing (an unlabelled block runs only when it starts like shell).
            first = skipped[0]
            notes.append(
                f"{display_path(prp.path)}:{first.line}: {label} ran nothing: its "
                f"{first.language or 'unlabelled'} block{'s are' if len(skipped) > 1 else ' is'} "
                "not shell to the literal executor (label it ```bash, or start it with a "
                "well-known command)"
            )
    return StepsOutcome(True, None, None, tail, duration=time.monotonic() - start, notes=notes)


def _create(workdir: Path, block: CodeBlock, log: LogSink | None) -> str | None:
    """Write a Create block; why it was refused or failed, or None."""
    raw = block.create_path
    assert raw is not None
    try:
        target = safe_create_path(workdir, raw)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
    except UnsafePath as exc:
        return f"refused **Create** `{raw}`: {exc}"
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"could not **Create** `{raw}`: {exc.strerror or exc}{where}"
    if log is not None:
        log.line(f"created {block.create_path} ({len(block.code.encode('utf-8'))} bytes)")
    return None


# --- agent -------------------------------------------------------------------------------


def agent_command(command: str, prompt_file: Path, prp_id: str) -> str:
    """The agent command line with ``{prompt_file}`` and ``{prp_id}`` filled in, shell-quoted."""
    return command.replace("{prompt_file}", shlex.quote(str(prompt_file))).replace(
        "{prp_id}", shlex.quote(prp_id)
    )


def _prompt_name(prp_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", prp_id) + ".prompt.md"


def run_agent(
    prp: Prp,
    *,
    command: str,
    prompt: str,
    workdir: Path,
    env: Mapping[str, str],
    limits: Limits,
    prompt_dir: Path | None = None,
) -> StepsOutcome:
    """Run the agent command line (bash, in ``workdir``) under ``limits``; exit 0 means the
    steps are done.

    The prompt goes to stdin and to a file named by ``PRP_PROMPT_FILE``: kept in ``prompt_dir``
    when given (say, the results directory), else in a temporary directory removed afterwards.
    """
    start = time.monotonic()
    log = limits.log
    with _prompt_location(prompt_dir) as where:
        prompt_file = where / _prompt_name(prp.id)
        prompt_file.write_text(prompt, encoding="utf-8")
        line = agent_command(command, prompt_file, prp.id)
        if log is not None:
            log.section(f"agent: {prp.id}")
            log.lines(f"$ {line}")
        result = run_bash(
            line,
            cwd=workdir,
            env={**env, "PRP_PROMPT_FILE": str(prompt_file)},
            limits=limits,
            stdin_text=prompt,
            # Rendered stream-json drops some lines: read more to show the usual number.
            tail_lines=DEFAULT_TAIL_LINES * 5,
            capture_stdout=True,
            tail_transform=render_line,
        )
    outcome = agent_outcome(result)
    outcome.duration = time.monotonic() - start
    if log is not None and outcome.error:
        log.lines(f"FAILED: {outcome.error}")
    return outcome


@contextmanager
def _prompt_location(prompt_dir: Path | None) -> Iterator[Path]:
    if prompt_dir is not None:
        prompt_dir.mkdir(parents=True, exist_ok=True)
        yield prompt_dir
        return
    with tempfile.TemporaryDirectory(prefix="pytest-prp-prompt-") as tmp:
        yield Path(tmp)


_RESULT_CHARS = 500


def agent_outcome(result: ProcessResult) -> StepsOutcome:
    """Judge an agent run from its exit status and, when present, its stream-json result."""
    report = parse_stream(result.stdout or "")
    tail = result.tail[-DEFAULT_TAIL_LINES:]
    said = (report.result_text or "").strip()
    if len(said) > _RESULT_CHARS:
        said = said[:_RESULT_CHARS] + " ..."
    error: str | None = None
    if result.timed_out:
        error = f"agent {result.describe()}"
    elif not result.ok:
        error = f"agent command failed ({result.describe()})"
        if report.failed and said:
            error += f": {said}"
    elif report.is_error:
        error = f"agent reported is_error: {said or report.subtype or 'no message'}"
    elif report.failed:
        error = f"agent stopped early ({report.subtype}){f': {said}' if said else ''}"
    limit = None
    if error is not None and not result.timed_out:
        limit = detect(result.stdout or "", result.tail)
    return StepsOutcome(
        ok=error is None,
        error=error,
        failed_step=None if error is None else "agent",
        rate_limit=limit,
        tail=tail,
        cost_usd=report.cost_usd,
        tokens=report.tokens,
        num_turns=report.num_turns,
        session_id=report.session_id,
        duration=result.duration,
        timed_out=result.timed_out,
        idle_timed_out=result.idle_timed_out,
        tokens_by_model=report.tokens_by_model,
        refusals=report.refusals,
    )
