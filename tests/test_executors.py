"""The literal and agent executors with real files and processes (agent: tests/fake_agent.py)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from pytest_prp.execute.executors import (
    StepsOutcome,
    UnsafePath,
    run_agent,
    run_literal_steps,
    safe_create_path,
)
from pytest_prp.execute.prompt import default_prompt, render_prompt_template
from pytest_prp.spec.body import parse_body, shell_commands
from pytest_prp.spec.model import (
    GATE_CHECKLIST,
    GATE_SHELL,
    Body,
    CodeBlock,
    Gate,
    Prp,
    Step,
    display_path,
)
from pytest_prp.supervise.limits import Limits
from pytest_prp.supervise.output import LogSink
from pytest_prp.supervise.processes import run_process

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_AGENT_", "PRP_"))}
FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
AGENT = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_AGENT))}"

PRP_TEXT = """\
---
prp_id: PRP-7
title: Hello world
---
# Hello world

## Step 1: Create the script

**Create**: `src/hello.py`

```python
print("hello")
```

## Validation Gates

```bash
python3 src/hello.py
# Expected: prints hello
```

- [ ] The code is readable
"""

GATES = (
    Gate(1, "Runs", GATE_SHELL, "python3 src/hello.py", 17, ("prints hello",)),
    Gate(2, "The code is readable", GATE_CHECKLIST, None, 22),
)


def make_prp(tmp_path: Path, *steps: Step, gates: tuple[Gate, ...] = GATES) -> Prp:
    path = tmp_path / "PRPs" / "PRP-7-hello.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text(PRP_TEXT)
    return Prp(
        id="PRP-7",
        path=path,
        line=2,
        title="Hello world",
        batch="b1",
        dependencies=[],
        _body=Body(steps=tuple(steps), gates=gates),
    )


def step(index: int, title: str, *blocks: CodeBlock) -> Step:
    return Step(index=index, title=title, text="", line=10 * index, code_blocks=blocks)


def block(info: str, code: str, line: int = 1, create: str | None = None) -> CodeBlock:
    return CodeBlock(info=info, code=code, line=line, create_path=create)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def literal(
    prp: Prp, workdir: Path, timeout: float = 30, log: LogSink | None = None
) -> StepsOutcome:
    return run_literal_steps(
        prp, workdir=workdir, env=ENV, limits=Limits.starting_now(timeout, log=log)
    )


# --- literal executor -----------------------------------------------------------------------


def test_literal_writes_create_files_and_runs_shell_blocks(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(1, "Create the script", block("python", 'print("hello")\n', 12, "src/hello.py")),
        step(2, "Run it", block("bash", "python3 src/hello.py | tee out.txt\n", 20)),
    )
    with LogSink(tmp_path / "PRP-7.log") as log:
        outcome = literal(prp, workdir, log=log)
    assert outcome.ok and outcome.error is None and outcome.failed_step is None
    assert (workdir / "src" / "hello.py").read_text() == 'print("hello")\n'
    assert (workdir / "out.txt").read_text() == "hello\n"
    assert outcome.tail == ["hello"]
    log_text = (tmp_path / "PRP-7.log").read_text()
    assert "=== step 1/2: Create the script ===\ncreated src/hello.py (15 bytes)" in log_text
    assert "=== step 2/2: Run it ===" in log_text


def test_literal_skips_documentation_blocks(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(
            1,
            "Mixed",
            block("python", "open('python-ran', 'w')\n"),
            block("yaml", "key: value\n"),
            block("", "Expected output: something\n"),
            block("json", "{}\n"),
            block("sh", "touch sh-ran\n"),
        ),
    )
    assert literal(prp, workdir).ok
    assert sorted(p.name for p in workdir.iterdir()) == ["sh-ran"]


def test_console_blocks_run_only_their_dollar_lines(tmp_path: Path, workdir: Path) -> None:
    console = "$ echo one > a.txt\nsome output they showed\n$ echo two >> a.txt\n"
    unlabelled = "$ echo three >> a.txt\nmore output\n"
    prp = make_prp(tmp_path, step(1, "Console", block("console", console), block("", unlabelled)))
    assert literal(prp, workdir).ok
    assert (workdir / "a.txt").read_text() == "one\ntwo\nthree\n"


def test_unlabelled_blocks_run_when_they_read_as_shell(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(1, "Plain", block("", "mkdir -p docs\necho hi > docs/x.txt\n"), block("", "cd docs")),
    )
    assert literal(prp, workdir).ok
    assert (workdir / "docs" / "x.txt").read_text() == "hi\n"


def test_steps_and_gates_tell_shell_blocks_by_one_rule(tmp_path: Path, workdir: Path) -> None:
    # Read from the block alone, never from the PATH: `date` is a program here, but a block
    # starting with it is documentation in a step, as it is no gate in a validation section.
    output = "date > when.txt\n"
    shell = "export X=1\nwhile false; do :; done\ntouch ran.txt\n"
    prp = make_prp(tmp_path, step(1, "Mixed", block("", output), block("", shell)))
    assert literal(prp, workdir).ok
    assert sorted(p.name for p in workdir.iterdir()) == ["ran.txt"]
    fence = "```"
    body = parse_body(
        f"# P\n\n## Validation\n\n{fence}\n{output}{fence}\n\n{fence}\n{shell}{fence}\n",
        tmp_path / "PRP-7.md",
        1,
    )
    assert [g.command for g in body.executable_gates] == [shell.rstrip("\n")]
    assert shell_commands("", output) is None and shell_commands("", shell) == shell


def test_literal_stops_at_the_first_failing_step(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(1, "Phase 1: Prepare", block("bash", "echo prepared\n")),
        step(
            2,
            "Phase 2: Build",
            block(
                "bash", "echo building\necho 'error: no compiler' >&2\nfalse\necho not reached\n"
            ),
        ),
        step(3, "Phase 3: Ship", block("bash", "touch shipped\n")),
    )
    with LogSink(tmp_path / "PRP-7.log") as log:
        outcome = literal(prp, workdir, log=log)
    assert not outcome.ok
    assert outcome.error == 'step 2/3 "Phase 2: Build" failed (exit 1)'
    assert outcome.failed_step == "Phase 2: Build"
    assert outcome.tail == ["building", "error: no compiler"]
    assert not (workdir / "shipped").exists()
    assert "=== step 3/3" not in (tmp_path / "PRP-7.log").read_text()


def test_each_shell_block_runs_in_the_workdir(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(1, "Two blocks", block("bash", "mkdir sub && cd sub\n"), block("bash", "pwd\n")),
    )
    outcome = literal(prp, workdir)
    assert outcome.ok and outcome.tail == [str(workdir)]


def test_literal_steps_share_one_time_budget(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(1, "Quick", block("bash", "sleep 0.3\n")),
        step(2, "Wait", block("bash", "echo waiting; sleep 100\n")),
    )
    start = time.monotonic()
    outcome = literal(prp, workdir, timeout=1)
    assert time.monotonic() - start < 4
    assert outcome.error == 'step 2/2 "Wait" timed out after 1 s'
    assert outcome.tail == ["waiting"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{outside}/abs.txt", "is an absolute path"),
        ("../outside/escape.txt", "climbs out of the worktree with '..'"),
        ("link/evil.txt", "goes through a symlink that leads outside the worktree"),
        (".git/hooks/pre-commit", "is inside .git"),
    ],
)
def test_unsafe_create_paths_are_refused(
    tmp_path: Path, workdir: Path, raw: str, reason: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (workdir / "link").symlink_to(outside)
    raw = raw.format(outside=outside)
    prp = make_prp(
        tmp_path,
        step(1, "Fine", block("bash", "touch first\n")),
        step(2, "Sneaky", block("python", "bad\n", 33, raw)),
        step(3, "Never", block("bash", "touch third\n")),
    )
    outcome = literal(prp, workdir)
    assert not outcome.ok and outcome.failed_step == "Sneaky"
    assert outcome.error == (
        f'{display_path(prp.path)}:33: step 2/3 "Sneaky": refused **Create** `{raw}`: '
        f"{raw} {reason}"
        + ("; use a path relative to the worktree" if "absolute" in reason else "")
    )
    assert list(outside.iterdir()) == []
    assert (workdir / "first").exists() and not (workdir / "third").exists()


def test_safe_create_path_accepts_paths_inside(workdir: Path) -> None:
    (workdir / "pkg").mkdir()
    (workdir / "alias").symlink_to(workdir / "pkg")
    root = workdir.resolve()
    assert safe_create_path(workdir, "src/a/b.py") == root / "src" / "a" / "b.py"
    assert safe_create_path(workdir, "src/../b.txt") == root / "b.txt"
    assert safe_create_path(workdir, "alias/mod.py") == root / "pkg" / "mod.py"
    for bad in ("", ".", "~/x"):
        with pytest.raises(UnsafePath):
            safe_create_path(workdir, bad)


def test_a_create_that_cannot_be_written_fails_the_step(tmp_path: Path, workdir: Path) -> None:
    (workdir / "taken").write_text("a file, not a directory\n")
    prp = make_prp(tmp_path, step(1, "Write", block("text", "x\n", 5, "taken/inner.txt")))
    outcome = literal(prp, workdir)
    assert not outcome.ok
    where = f"{display_path(prp.path)}:5"
    assert outcome.error is not None and outcome.error == (
        f'{where}: step 1/1 "Write": could not **Create** `taken/inner.txt`: File exists '
        f"({workdir.resolve() / 'taken'})"
    )


def test_a_prp_without_steps_succeeds_doing_nothing(tmp_path: Path, workdir: Path) -> None:
    assert literal(make_prp(tmp_path), workdir).ok


# --- agent executor ----------------------------------------------------------------------


def agent(
    prp: Prp,
    workdir: Path,
    command: str = AGENT,
    timeout: float = 30,
    env: dict[str, str] | None = None,
    log: LogSink | None = None,
    prompt_dir: Path | None = None,
) -> StepsOutcome:
    return run_agent(
        prp,
        command=command,
        prompt=default_prompt(prp, prp.path.read_text()),
        workdir=workdir,
        env={**ENV, "PRP_ID": prp.id, **(env or {})},
        limits=Limits.starting_now(timeout, log=log),
        prompt_dir=prompt_dir,
    )


def test_the_fake_agent_implements_create_blocks(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(tmp_path)
    with LogSink(tmp_path / "PRP-7.log") as log:
        outcome = agent(prp, workdir, env={"FAKE_AGENT_COST": "0.05"}, log=log)
    assert outcome.ok and outcome.error is None
    assert (workdir / "src" / "hello.py").read_text() == 'print("hello")\n'
    assert outcome.cost_usd == 0.05
    assert outcome.tokens is not None and outcome.tokens["input"] > 100
    assert outcome.tokens["output"] > 0
    assert outcome.num_turns == 2
    assert outcome.session_id == "fake-session-PRP-7"
    assert outcome.tail[0] == "[agent] session started (model fake-model)"
    assert outcome.tail[-1] == "[result] done (2 turns, $0.0500): Wrote 1 files."
    log_lines = (tmp_path / "PRP-7.log").read_text().splitlines()
    assert log_lines[0] == "=== agent: PRP-7 ==="
    assert log_lines[1].startswith(f"$ {AGENT}")
    assert json.loads(log_lines[2])["type"] == "system"  # the log keeps the raw stream


def test_prompt_reaches_stdin_and_the_prompt_file(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(tmp_path)
    prompts = tmp_path / "results dir"  # a space: the substitution must quote it
    command = f"{AGENT} --prompt-file {{prompt_file}} --prp-id {{prp_id}} --record ../rec.json"
    outcome = agent(prp, workdir, command=command, prompt_dir=prompts)
    assert outcome.ok, outcome.tail
    record = json.loads((tmp_path / "rec.json").read_text())
    prompt_file = prompts / "PRP-7.prompt.md"
    assert record["argv"] == [
        "--prompt-file",
        str(prompt_file),
        "--prp-id",
        "PRP-7",
        "--record",
        "../rec.json",
    ]
    assert record["cwd"] == str(workdir)
    assert record["env"]["PRP_PROMPT_FILE"] == str(prompt_file)
    assert record["env"]["PRP_ID"] == "PRP-7"
    assert record["prompt"] == default_prompt(prp, PRP_TEXT)
    assert prompt_file.read_text() == record["prompt"]  # kept in the results dir


def test_without_a_prompt_dir_the_prompt_file_is_temporary(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(tmp_path)
    outcome = agent(prp, workdir, command=f"{AGENT} --record ../rec.json")
    assert outcome.ok
    prompt_file = Path(json.loads((tmp_path / "rec.json").read_text())["prompt_file"])
    assert not prompt_file.is_relative_to(workdir)
    assert not prompt_file.exists()
    assert sorted(p.name for p in workdir.rglob("*")) == ["hello.py", "src"]


def test_fake_agent_write_edits_a_file(tmp_path: Path, workdir: Path) -> None:
    edit = {"FAKE_AGENT_WRITE": r"notes/todo.txt=line 1\nline 2"}
    assert agent(make_prp(tmp_path), workdir, env=edit).ok
    assert (workdir / "notes" / "todo.txt").read_text() == "line 1\nline 2"


def test_agent_fail_mode(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, env={"FAKE_AGENT_MODE": "fail"})
    assert not outcome.ok and outcome.failed_step == "agent"
    assert outcome.error == "agent command failed (exit 1): fake agent failed as asked"
    assert "fake agent: failing as asked" in outcome.tail
    assert outcome.cost_usd == 0.0123
    assert not (workdir / "src").exists()


def test_agent_crash_mode(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, env={"FAKE_AGENT_MODE": "crash"})
    assert not outcome.ok
    assert outcome.error == "agent command failed (exit 1)"
    assert outcome.tail[-1] == "RuntimeError: fake agent crashed as asked"
    assert outcome.cost_usd is None and outcome.session_id == "fake-session-PRP-7"


def test_agent_is_error_fails_even_with_exit_0(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, env={"FAKE_AGENT_MODE": "is_error"})
    assert not outcome.ok
    assert outcome.error == "agent reported is_error: API Error: fake is_error as asked"


def test_agent_max_turns_is_a_failure(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, env={"FAKE_AGENT_MODE": "max_turns"})
    assert outcome.error == "agent stopped early (error_max_turns)"
    assert outcome.num_turns == 50


def test_agent_garbage_lines_are_tolerated(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, env={"FAKE_AGENT_MODE": "garbage"})
    assert outcome.ok and outcome.cost_usd == 0.0123 and outcome.num_turns == 2
    assert "{this is not json" in outcome.tail


def test_agent_plain_text_output_is_judged_by_exit_status(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, command=f"{AGENT} --plain")
    assert outcome.ok and outcome.cost_usd is None and outcome.session_id is None
    assert outcome.tail == [
        "fake agent: starting",
        "I will implement PRP PRP-7.",
        "fake agent: wrote src/hello.py",
        "fake agent: Wrote 1 files.",
    ]
    failing = agent(make_prp(tmp_path), workdir, command=f"{AGENT} --plain --exit 5")
    assert failing.error == "agent command failed (exit 5)"


def test_agent_timeout(tmp_path: Path, workdir: Path) -> None:
    start = time.monotonic()
    outcome = agent(make_prp(tmp_path), workdir, env={"FAKE_AGENT_MODE": "hang"}, timeout=1)
    assert time.monotonic() - start < 4
    assert outcome.error == "agent timed out after 1 s"
    assert outcome.tail == ["[agent] session started (model fake-model)"]


def test_a_missing_agent_command_is_reported(tmp_path: Path, workdir: Path) -> None:
    outcome = agent(make_prp(tmp_path), workdir, command="no-such-agent-cli -p")
    assert outcome.error == "agent command failed (exit 127)"
    assert "no-such-agent-cli: command not found" in outcome.tail[-1]


def test_fake_agent_insists_on_the_prompt_file(tmp_path: Path) -> None:
    result = run_process(
        [sys.executable, str(FAKE_AGENT)],
        cwd=tmp_path,
        env=ENV,
        limits=Limits.starting_now(30),
        stdin_text="a prompt",
    )
    assert result.returncode == 3
    assert result.tail == ["fake_agent: protocol error: PRP_PROMPT_FILE is not set"]


# --- prompts -------------------------------------------------------------------------------


def test_default_prompt_holds_the_prp_instructions_and_gates(tmp_path: Path) -> None:
    prp = make_prp(tmp_path)
    prompt = default_prompt(prp, PRP_TEXT)
    assert 'PRP PRP-7: "Hello world"' in prompt
    assert PRP_TEXT.rstrip() in prompt
    assert "Do not commit" in prompt
    assert "current working directory" in prompt
    assert "1. Runs\n       python3 src/hello.py\n   Expected: prints hello" in prompt
    assert (
        "Checklist items (not run automatically; make them true):\n- The code is readable" in prompt
    )


def test_default_prompt_without_gates(tmp_path: Path) -> None:
    prompt = default_prompt(make_prp(tmp_path, gates=()), PRP_TEXT)
    assert "This PRP declares no validation gates." in prompt


def test_prompt_template_placeholders(tmp_path: Path) -> None:
    prp = make_prp(tmp_path)
    template = "Do {prp_id} ({title}).\n{gates}\n---\n{prp_text}\n"
    template += 'Keep {"json": 1} and ${HOME} and {other}.'
    text = render_prompt_template(template, prp, PRP_TEXT)
    assert text.startswith("Do PRP-7 (Hello world).\nValidation gates")
    assert "- The code is readable\n---\n" + PRP_TEXT in text
    assert text.endswith('Keep {"json": 1} and ${HOME} and {other}.')


# --- limits: idle and wall clock ------------------------------------------------------------


def test_a_silent_literal_step_is_stopped_as_idle(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(
        tmp_path,
        step(1, "Quick", block("bash", "echo done quickly\n")),
        step(2, "Phase 2", block("bash", "echo 'Running the build'; sleep 100\n")),
    )
    started: list[tuple[int, int]] = []
    start = time.monotonic()
    outcome = run_literal_steps(
        prp,
        workdir=workdir,
        env=ENV,
        limits=Limits.starting_now(30, idle=0.5, activity_dir=workdir),
        on_step=lambda s, total: started.append((s.index, total)),
    )
    assert time.monotonic() - start < 4
    assert outcome.error == 'step 2/2 "Phase 2" idle for 0.5 s (last output: "Running the build")'
    assert outcome.timed_out and outcome.idle_timed_out and outcome.failed_step == "Phase 2"
    assert started == [(1, 2), (2, 2)]


def test_a_literal_step_writing_files_silently_is_not_idle(tmp_path: Path, workdir: Path) -> None:
    script = "for i in $(seq 12); do echo $i > build.log; sleep 0.1; done\n"
    prp = make_prp(tmp_path, step(1, "Build", block("bash", script)))
    limits = Limits.starting_now(30, idle=0.5, activity_dir=workdir)
    outcome = run_literal_steps(prp, workdir=workdir, env=ENV, limits=limits)
    assert outcome.ok and not outcome.timed_out


def test_the_wall_clock_limit_of_literal_steps_sets_timed_out(
    tmp_path: Path, workdir: Path
) -> None:
    prp = make_prp(tmp_path, step(1, "Wait", block("bash", "sleep 100\n")))
    limits = Limits.starting_now(0.5, idle=60, activity_dir=workdir)
    outcome = run_literal_steps(prp, workdir=workdir, env=ENV, limits=limits)
    assert outcome.error == 'step 1/1 "Wait" timed out after 0.5 s'
    assert outcome.timed_out and not outcome.idle_timed_out


def test_a_failing_step_is_not_a_timeout(tmp_path: Path, workdir: Path) -> None:
    prp = make_prp(tmp_path, step(1, "Fail", block("bash", "exit 3\n")))
    outcome = literal(prp, workdir)
    assert outcome.error == 'step 1/1 "Fail" failed (exit 3)' and not outcome.timed_out


def test_a_silent_agent_is_stopped_as_idle(tmp_path: Path, workdir: Path) -> None:
    start = time.monotonic()
    outcome = run_agent(
        make_prp(tmp_path),
        command=f"{AGENT} --mode hang",
        prompt="Implement PRP-7",
        workdir=workdir,
        env=ENV,
        limits=Limits.starting_now(30, idle=0.5, activity_dir=workdir),
    )
    assert time.monotonic() - start < 4
    # The last output as the tail shows it: stream-json rendered.
    assert outcome.error == (
        'agent idle for 0.5 s (last output: "[agent] session started (model fake-model)")'
    )
    assert outcome.timed_out and outcome.idle_timed_out and outcome.failed_step == "agent"


def test_an_agent_printing_forever_is_not_idle_but_times_out(tmp_path: Path, workdir: Path) -> None:
    seen: list[str] = []
    outcome = run_agent(
        make_prp(tmp_path),
        command=f"{AGENT} --mode hang_printing",
        prompt="Implement PRP-7",
        workdir=workdir,
        env=ENV,
        limits=Limits.starting_now(1.5, idle=0.5, activity_dir=workdir, on_line=seen.append),
    )
    assert outcome.error == "agent timed out after 1.5 s"
    assert outcome.timed_out and not outcome.idle_timed_out
    assert outcome.tail[-1].startswith("[assistant] still working (")
    # on_line gets the latest raw line of each chunk of output: a line about every 0.1 s.
    assert len(seen) >= 5 and all('"still working (' in line for line in seen[-4:])


def test_a_timeout_names_the_limit_as_the_user_set_it(tmp_path: Path, workdir: Path) -> None:
    # The PRP had 3600 s in all; its steps got what was left of them.
    prp = make_prp(tmp_path, step(1, "Wait", block("bash", "sleep 100\n")))
    nearly_spent = Limits(time.monotonic() + 0.4, 3600)
    steps = run_literal_steps(prp, workdir=workdir, env=ENV, limits=nearly_spent)
    assert steps.error == 'step 1/1 "Wait" timed out after 3600 s'
    hung = run_agent(
        prp,
        command=f"{AGENT} --mode hang",
        prompt="Implement PRP-7",
        workdir=workdir,
        env=ENV,
        limits=Limits(time.monotonic() + 0.4, 3600),
    )
    assert hung.error == "agent timed out after 3600 s"
    spent = run_literal_steps(prp, workdir=workdir, env=ENV, limits=nearly_spent)
    assert spent.error == 'step 1/1 "Wait" timed out after 3600 s'  # before it started
    unnamed = Limits.starting_now(0.41234)
    assert run_literal_steps(prp, workdir=workdir, env=ENV, limits=unnamed).error == (
        'step 1/1 "Wait" timed out after 0.41 s'
    )
