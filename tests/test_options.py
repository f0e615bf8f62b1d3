"""Option values and ini keys: a bad value is one usage error (exit 4) before anything runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import FAKE_AGENT, git, init_repo, write_prp
from pytest_prp.base.where import repository_top, results_base, start_path
from pytest_prp.options import VALUE_OPTIONS, joined_values

BAD_OPTIONS = [
    ("--prp-timeout", "nan"),
    ("--prp-timeout", "inf"),
    ("--prp-timeout", "-5"),
    ("--prp-timeout", "0"),
    ("--prp-gate-timeout", "nan"),
    ("--prp-idle-timeout", "-inf"),
    ("--prp-heartbeat", "nan"),
    ("--prp-heartbeat", "1e999"),
    ("--prp-budget-usd", "nan"),
    ("--prp-budget-usd", "-1"),
    ("--prp-attempts", "0"),
    ("--prp-attempts", "-2"),
    ("--prp-attempts", "two"),
    ("--prp-stage", "0"),
]


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS)
def test_bad_option_value_is_a_usage_error(
    pytester: pytest.Pytester, repo: Path, option: str, value: str
) -> None:
    write_prp(repo, "PRP-1.1", creates={"a.txt": "a\n"}, gates=["test -f a.txt"])
    for args in ([option, value], [f"{option}={value}"]):
        result = pytester.runpytest("--prp-batch", "1", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, (args, result.stdout.str())
        err = result.stderr.str()
        assert option in err and "Traceback" not in err + result.stdout.str()
    assert not (repo / ".ce").exists()  # nothing ran


BAD_INI = [
    ("prp_timeout", "nan"),
    ("prp_timeout", "inf"),
    ("prp_timeout", "-1"),
    ("prp_gate_timeout", "0"),
    ("prp_idle_timeout", "nan"),
    ("prp_heartbeat", "nan"),
    ("prp_attempts", "0"),
    ("prp_attempts", "nan"),
    ("prp_attempts", "1.5"),
]


@pytest.mark.parametrize(("key", "value"), BAD_INI)
def test_bad_ini_value_is_a_usage_error(
    pytester: pytest.Pytester, repo: Path, key: str, value: str
) -> None:
    write_prp(repo, "PRP-1.1", creates={"a.txt": "a\n"}, gates=["test -f a.txt"])
    result = pytester.runpytest("--prp-batch", "1", "-o", f"{key}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: ini option {key} *{value}*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (repo / ".ce").exists()


def test_good_values_still_run(pytester: pytest.Pytester, repo: Path) -> None:
    write_prp(repo, "PRP-1.1", creates={"a.txt": "a\n"}, gates=["test -f a.txt"])
    result = pytester.runpytest(
        "--prp-batch", "1", "--prp-timeout", "60", "--prp-attempts=2", "-o", "prp_heartbeat=0.5"
    )
    assert result.ret == 0, result.stdout.str()


# --- values in both forms ----------------------------------------------------------------


def nested_layout(outer: Path) -> tuple[Path, str]:
    """An outer repository holding the project repository (with one PRP) and the agent."""
    init_repo(outer)
    tools = outer / "tools"
    tools.mkdir()
    agent = tools / "agent.py"
    shutil.copy(FAKE_AGENT, agent)
    agent.chmod(0o755)
    git(outer, "add", "-A")
    git(outer, "commit", "-qm", "tools")
    project = init_repo(outer / "project")
    write_prp(project, "PRP-1.1", creates={"hello.txt": "hi\n"}, gates=["test -f hello.txt"])
    git(project, "add", "-A")
    git(project, "commit", "-qm", "prp")
    return project, str(agent)


def assert_ran_in_project(outer: Path, project: Path, outer_head: str) -> None:
    assert git(project, "show", "prp/batch-1:hello.txt") == "hi"
    assert (project / ".ce" / "orchestration" / "batches" / "batch-1.result.json").is_file()
    # Nothing of the run in the outer repository: no branch, commit, worktree or results.
    assert git(outer, "branch", "--list", "prp/*") == ""
    assert git(outer, "rev-parse", "HEAD") == outer_head
    assert not (outer / ".ce").exists() and not (outer / ".git" / "prp").exists()
    assert git(outer, "worktree", "list").count("\n") == 0


@pytest.mark.parametrize("joined", [False, True], ids=["space", "equals"])
def test_agent_path_in_both_forms_runs_in_the_prp_repository(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, joined: bool
) -> None:
    outer = pytester.path
    project, agent = nested_layout(outer)
    outer_head = git(outer, "rev-parse", "HEAD")
    monkeypatch.chdir(project)
    value = [f"--prp-agent={agent}"] if joined else ["--prp-agent", agent]
    result = pytester.runpytest("PRPs", "--prp-batch", "1", *value, "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"rootdir: {project}", "*PRP-1.1*success*$0.0123*"])
    assert_ran_in_project(outer, project, outer_head)


def test_agent_path_space_form_with_workers_and_addopts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer = pytester.path
    project, agent = nested_layout(outer)
    outer_head = git(outer, "rev-parse", "HEAD")
    monkeypatch.chdir(project)
    # In PYTEST_ADDOPTS too, and with xdist workers in real subprocesses.
    monkeypatch.setenv("PYTEST_ADDOPTS", f"--prp-agent {agent}")
    result = pytester.runpytest_subprocess(
        "PRPs", "--prp-batch", "1", "-n", "2", "-p", "no:cacheprovider"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines([f"rootdir: {project}"])
    assert_ran_in_project(outer, project, outer_head)


def test_joined_values_joins_every_value_option_given_a_path() -> None:
    paths = {"/abs/agent", "PRPs", "main"}
    args = []
    for option in VALUE_OPTIONS:
        args += [option, "main"]
    joined = joined_values(args, paths.__contains__)
    assert joined == [f"{option}=main" for option in VALUE_OPTIONS]
    # Values that are no path cannot mislead pytest: left as they are.
    assert joined_values(["--prp-batch", "7", "--prp-timeout", "60"], paths.__contains__) is None
    # After "--" everything is a path; flags and other plugins' options are left alone.
    assert joined_values(
        ["-v", "--prp-agent", "/abs/agent", "--", "--prp-agent", "PRPs"], paths.__contains__
    ) == ["-v", "--prp-agent=/abs/agent", "--", "--prp-agent", "PRPs"]
    assert joined_values(["--prp-rerun", "PRPs", "--other", "PRPs"], paths.__contains__) is None
    assert joined_values(["--prp-agent"], paths.__contains__) is None


def test_every_option_taking_a_value_is_known_to_joined_values(pytestconfig: pytest.Config) -> None:
    parser = pytestconfig._parser  # the option definitions themselves
    group = next(g for g in parser._groups if g.name == "prp")
    taking = set()
    for option in group.options:
        # Flags take no value; --prp-plan's is optional and never a path.
        if option.attrs().get("nargs") in (0, "?"):
            continue
        taking.update(name for name in option.names() if name.startswith("--"))
    assert taking == set(VALUE_OPTIONS)


def test_run_from_the_outer_repository_uses_the_prp_repository(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest project/PRPs`` from the outer directory: the rootdir is the outer repository,
    the batch still runs in (and writes its results to) the one holding the PRPs."""
    outer = pytester.path
    project, agent = nested_layout(outer)
    outer_head = git(outer, "rev-parse", "HEAD")
    result = pytester.runpytest(
        "project/PRPs", "--prp-batch", "1", "--prp-agent", agent, "-p", "no:cacheprovider"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"rootdir: {outer}"])
    assert_ran_in_project(outer, project, outer_head)


def test_prps_of_two_repositories_are_one_usage_error(pytester: pytest.Pytester) -> None:
    outer = pytester.path
    project, _ = nested_layout(outer)
    write_prp(outer, "PRP-1.2", creates={"b.txt": "b\n"}, gates=["test -f b.txt"])
    git(outer, "add", "-A")
    git(outer, "commit", "-qm", "outer prp")
    result = pytester.runpytest("PRPs", "project/PRPs", "--prp-batch", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    result.stderr.fnmatch_lines(["ERROR: prp: *PRP-1.1.md is not in the repository*"])
    assert git(outer, "branch", "--list", "prp/*") == ""
    assert git(project, "branch", "--list", "prp/*") == ""


def test_where_the_repository_and_results_are(tmp_path: Path) -> None:
    outer = init_repo(tmp_path / "outer")
    project = init_repo(outer / "project")
    (project / "PRPs").mkdir()
    (project / "PRPs" / "PRP-1.md").write_text("x")
    sub = project / "sub"
    sub.mkdir()
    assert start_path(["nope", "PRPs/PRP-1.md::PRP-1"], project, outer) == (
        project / "PRPs" / "PRP-1.md"
    )
    assert start_path(["nope"], project, outer) == outer
    assert repository_top(project / "PRPs" / "PRP-1.md") == project
    assert repository_top(outer / "README.md") == outer
    assert repository_top(Path("/proc/self")) is None
    # The rootdir inside the repository (a sub-project) stays the base; above it does not.
    assert results_base(sub, project / "PRPs") == sub
    assert results_base(project, project / "PRPs") == project
    assert results_base(outer, project / "PRPs") == project
    assert results_base(tmp_path, tmp_path) == tmp_path  # no repository at all
