"""The two default executors of a PRP's steps: literal (run the PRP as written) and agent (CLI).

Literal: for each step in order, a code block under ``**Create**: `path` `` is written to that
path; shell blocks run with bash (errexit, pipefail) in the worktree, each in its own bash;
other blocks are documentation. The first failure stops the run.

Agent: a configured command line runs through bash in the worktree with the prompt on stdin and
in a file (``PRP_PROMPT_FILE``); Claude Code's stream-json or Codex's ``--json`` output, if
any, gives the cost, tokens, turns, session, the tool calls the CLI refused and why a run
failed.

Both stop a process that runs out of time (``timeout``) or goes idle (``idle_timeout``: no
output and no file changed in the worktree for that long).
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pytest_prp.body_cache import body_of
from pytest_prp.gates import command_lines
from pytest_prp.model import CodeBlock, Prp, Step, display_path
from pytest_prp.output import LogSink
from pytest_prp.processes import (
    DEFAULT_TAIL_LINES,
    ProcessResult,
    run_bash,
    timeout_message,
)
from pytest_prp.ratelimit import RateLimit, detect
from pytest_prp.stream_json import Refusal, parse_stream, render_line


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


SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "zsh"})
CONSOLE_LANGUAGES = frozenset({"console", "shell-session", "shellsession"})
# Words that start a shell line but are not programs on PATH.
_SHELL_WORDS = frozenset(
    "cd export set source . if for while case until function unset alias test [ [[ ! "
    "echo printf read eval exec exit trap wait pushd popd umask ulimit local declare".split()
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _console_commands(code: str) -> str:
    return "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))


def _looks_like_shell(code: str, path: str | None) -> bool:
    """An unlabelled block is shell when its first command is a shell word or a program."""
    lines = [ln.strip() for ln in code.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        return False
    word = lines[0].split()[0]
    if word in _SHELL_WORDS or _ASSIGNMENT.match(word) or word.startswith("./"):
        return True
    return shutil.which(word, path=path) is not None


def shell_script(block: CodeBlock, path: str | None = None) -> str | None:
    """The script a block runs in the literal executor, or None when it is documentation.

    ``bash``/``sh``/``shell``/``zsh`` blocks run whole; ``console`` blocks run their ``$ ``
    lines; a block without a language runs when it reads as shell (``$ `` lines, or a first
    command that is a shell word or a program on ``path``, the PATH to search).
    """
    language = block.language
    if language in SHELL_LANGUAGES:
        return block.code
    if language in CONSOLE_LANGUAGES:
        return _console_commands(block.code)
    if language == "":
        if any(line.startswith("$ ") for line in block.code.splitlines()):
            return _console_commands(block.code)
        if _looks_like_shell(block.code, path):
            return block.code
    return None


def _step_label(step: Step, total: int) -> str:
    return f'step {step.index}/{total} "{step.title}"'


def limit_message(result: ProcessResult, timeout: float) -> str:
    """Why a limit stopped the process: ``idle for 600 s (last output: "...")`` or
    ``timed out after 3600 s`` (``timeout``: the limit as the user set it)."""
    return result.describe() if result.idle_timed_out else timeout_message(timeout)


def run_literal_steps(
    prp: Prp,
    *,
    workdir: Path,
    env: Mapping[str, str],
    timeout: float,
    log: LogSink | None,
    on_line: Callable[[str], None] | None = None,
    idle_timeout: float | None = None,
    activity_dir: Path | None = None,
    on_step: Callable[[Step, int], None] | None = None,
    stated_timeout: float | None = None,
) -> StepsOutcome:
    """Carry out the PRP's steps as written. ``timeout`` is the budget of all steps together.

    ``idle_timeout`` applies to each shell block; file changes in ``activity_dir`` (default:
    ``workdir``) count as activity. ``on_step(step, total)`` is called as each step starts.
    ``stated_timeout`` is the limit a timeout message names when ``timeout`` is only what is
    left of it (``timed out after 3600 s``, not ``after 1712.3 s``).
    """
    start = time.monotonic()
    deadline = start + timeout
    steps = body_of(prp).steps
    total = len(steps)
    tail: list[str] = []
    watched = activity_dir if activity_dir is not None else workdir
    named = timeout if stated_timeout is None else stated_timeout

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

    for step in steps:
        label = _step_label(step, total)
        if on_step is not None:
            on_step(step, total)
        if log is not None:
            log.section(f"step {step.index}/{total}: {step.title}")
        for block in step.code_blocks:
            if block.create_path is not None:
                problem = _create(workdir, block, log)
                if problem is not None:
                    where = f"{display_path(prp.path)}:{block.line}"
                    return failed(step, f"{where}: {label}: {problem}", [problem])
                continue
            script = shell_script(block, env.get("PATH"))
            if script is None:
                if log is not None:
                    log.line(f"(line {block.line}: {block.language or 'text'} block not run)")
                continue
            if not script.strip():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return failed(step, f"{label} {timeout_message(named)}", tail, timed_out=True)
            if log is not None:
                log.line(f"(line {block.line}: running {block.language or 'shell'} block)")
            result = run_bash(
                script,
                cwd=workdir,
                env=env,
                timeout=remaining,
                log=log,
                on_line=on_line,
                idle_timeout=idle_timeout,
                activity_dir=watched,
            )
            tail = result.tail
            if result.timed_out:
                error = f"{label} {limit_message(result, named)}"
                return failed(step, error, tail, timed_out=True, idle=result.idle_timed_out)
            if not result.ok:
                return failed(step, f"{label} failed ({result.describe()})", tail)
    return StepsOutcome(True, None, None, tail, duration=time.monotonic() - start)


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


def describe_gates(prp: Prp) -> str:
    """The gates as the prompt lists them: executable commands, then checklist items."""
    gates = body_of(prp).gates
    runnable = [g for g in gates if g.executable]
    checklist = [g for g in gates if not g.executable]
    lines: list[str] = []
    if runnable:
        lines.append("Validation gates (shell commands run from this directory; each must exit 0):")
        for gate in runnable:
            lines.append(f"{gate.index}. {gate.name}")
            lines.extend(f"       {line}" for line in command_lines(gate))
            lines.extend(f"   Expected: {expected}" for expected in gate.expected)
    if checklist:
        if lines:
            lines.append("")
        lines.append("Checklist items (not run automatically; make them true):")
        lines.extend(f"- {gate.name}" for gate in checklist)
    return "\n".join(lines) if lines else "This PRP declares no validation gates."


def default_prompt(prp: Prp, text: str) -> str:
    """The agent prompt: instructions, the gates, and the PRP's whole text."""
    return f"""You are implementing PRP {prp.id}: "{prp.title}".
The complete PRP file ({prp.path.name}) is below, between the BEGIN and END markers.

What to do:
1. Implement every step of the PRP in the current working directory. It is a git worktree
   made for this PRP; create and change files only inside it.
2. Do not commit, create branches, push or rewrite git history: pytest-prp commits your work
   after the validation gates pass.
3. When you are done, pytest-prp runs the gates below from this directory. Run them yourself
   first and fix whatever fails.

{describe_gates(prp)}

===== BEGIN PRP {prp.id} ({prp.path.name}) =====
{text.rstrip()}
===== END PRP {prp.id} =====
"""


_PLACEHOLDER = re.compile(r"\{(prp_id|prp_text|gates|title)\}")


def render_prompt_template(template: str, prp: Prp, text: str) -> str:
    """Fill a prompt template (ini ``prp_prompt_template``).

    Placeholders: ``{prp_id}`` the PRP id, ``{title}`` its title, ``{prp_text}`` the whole PRP
    file, ``{gates}`` the gates as the default prompt lists them. Nothing else is touched, so
    other braces (JSON, shell ``${VAR}``) need no escaping.
    """
    values = {"prp_id": prp.id, "title": prp.title, "prp_text": text}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return describe_gates(prp) if name == "gates" else values[name]

    return _PLACEHOLDER.sub(fill, template)


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
    timeout: float,
    log: LogSink | None,
    prompt_dir: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    idle_timeout: float | None = None,
    activity_dir: Path | None = None,
    stated_timeout: float | None = None,
) -> StepsOutcome:
    """Run the agent command line (bash, in ``workdir``); exit 0 means the steps are done.

    The prompt goes to stdin and to a file named by ``PRP_PROMPT_FILE``: kept in ``prompt_dir``
    when given (say, the results directory), else in a temporary directory removed afterwards.
    ``idle_timeout`` stops an agent that printed nothing and changed no file in
    ``activity_dir`` (default: ``workdir``) for that long. ``stated_timeout``: the limit a
    timeout message names, when ``timeout`` is only what is left of it.
    """
    start = time.monotonic()
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
            timeout=timeout,
            log=log,
            stdin_text=prompt,
            # Rendered stream-json drops some lines: read more to show the usual number.
            tail_lines=DEFAULT_TAIL_LINES * 5,
            on_line=on_line,
            capture_stdout=True,
            tail_transform=render_line,
            idle_timeout=idle_timeout,
            activity_dir=activity_dir if activity_dir is not None else workdir,
        )
    outcome = agent_outcome(result, timeout if stated_timeout is None else stated_timeout)
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


def agent_outcome(result: ProcessResult, timeout: float) -> StepsOutcome:
    """Judge an agent run from its exit status and, when present, its stream-json result."""
    report = parse_stream(result.stdout or "")
    tail = result.tail[-DEFAULT_TAIL_LINES:]
    said = (report.result_text or "").strip()
    if len(said) > _RESULT_CHARS:
        said = said[:_RESULT_CHARS] + " ..."
    error: str | None = None
    if result.timed_out:
        error = f"agent {limit_message(result, timeout)}"
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
