"""Option values and ini keys: a bad value is one usage error (exit 4) before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_prp

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
