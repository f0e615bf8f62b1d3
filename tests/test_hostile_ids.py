"""Hostile batch and PRP ids: refused where they are read, never turned into paths or refs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import entries, git, result_json, write_prp
from pytest_prp.base.ids import normalize_id
from pytest_prp.base.safepath import UnsafePathError, inside
from pytest_prp.spec.frontmatter import load_prp

HOSTILE_BATCHES = [
    "/tmp/prp-hostile-batch",
    "../../escape",
    "a/b",
    "..",
    '"line\\nbreak"',
    "x" * 300,
    "-rf",
    "batch.lock",
]


@pytest.mark.parametrize("batch", HOSTILE_BATCHES)
def test_hostile_batch_id_is_one_collection_error(
    pytester: pytest.Pytester, repo: Path, batch: str
) -> None:
    outside = Path("/tmp/prp-hostile-batch")
    path = write_prp(repo, "PRP-5", gates=["true"], extra=f"batch_id: {batch}")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prp")
    branches = git(repo, "branch", "--list")
    result = pytester.runpytest("--prp-all")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors
    out = result.stdout.str()
    assert "Traceback" not in out + result.stderr.str()
    # file and line of the key, and what is wrong with it
    result.stdout.fnmatch_lines([f"PRPs/{path.name}:5: batch_id *is not a batch id*"])
    assert git(repo, "branch", "--list") == branches
    assert not outside.exists()
    # Nothing ran: no heartbeat, no log (an interrupted run's empty result JSON is all there is).
    results = repo / ".ce" / "orchestration"
    assert not (results / "heartbeats").exists() and not (results / "logs").exists()


@pytest.mark.parametrize("batch", ["../x", "/abs", "a/b", "x" * 200])
def test_hostile_batch_option_is_a_usage_error(
    pytester: pytest.Pytester, repo: Path, batch: str
) -> None:
    write_prp(repo, "PRP-5.1", gates=["true"])
    result = pytester.runpytest("--prp-batch", batch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --prp-batch * is not a batch id*"])
    assert not (repo / ".ce").exists()


def test_very_long_prp_id_is_refused(tmp_path: Path) -> None:
    long_id = "PRP-" + "1." * 100 + "1"
    assert normalize_id(long_id) is None
    path = tmp_path / "PRP-x.md"
    path.write_text(f"---\nprp_id: {long_id}\n---\n# x\n")
    result = load_prp(path)
    assert result.prp is None
    assert [str(e) for e in result.errors][0].endswith(
        "is not a PRP id (write it like PRP-12 or PRP-12.1.1)"
    )


@pytest.mark.parametrize("part", ["", ".", "..", "a/b", "/abs", "a\0b", "x" * 256, "a\\b"])
def test_paths_from_names_stay_inside(tmp_path: Path, part: str) -> None:
    with pytest.raises(UnsafePathError):
        inside(tmp_path, part)
    assert inside(tmp_path, "batch-7.result.json") == tmp_path / "batch-7.result.json"
    assert inside(tmp_path, "none", "PRP-1.json") == tmp_path / "none" / "PRP-1.json"


@pytest.mark.parametrize("batch", ["../../etc/passwd", "/tmp/x", "a/b"])
def test_prp_status_refuses_a_hostile_batch(tmp_path: Path, batch: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", str(tmp_path)]
        + ["--batch", batch],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"prp-status: --batch {batch!r} is not a batch id")


def test_a_title_too_long_for_one_argument_is_committed(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # Linux takes at most 128 KiB in one argument: the commit message must not be one.
    title = "Long " + "t" * 200_000
    write_prp(repo, "PRP-5.1", title=title, steps=["echo hi > a.txt"], gates=["test -f a.txt"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prp")
    result = pytester.runpytest("--prp-batch", "5")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    message = git(repo, "log", "-1", "--format=%B", "prp/batch-5")
    assert message.startswith(f"PRP-5.1: Complete - {title}\n")
    assert "PRP-Id: PRP-5.1" in message


def test_an_unexpected_error_is_recorded_by_its_message(
    pytester: pytest.Pytester, repo: Path
) -> None:
    # A plugin's (or our own) exception: the record says what it was, not where pytest's
    # traceback happened to end.
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_prp_run_gate(gate, context):
            raise RuntimeError("the gate plugin broke")
        """
    )
    write_prp(repo, "PRP-5.1", gates=["true"])
    result = pytester.runpytest("--prp-batch", "5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    record = entries(result_json(repo, "5"))["PRP-5.1"]
    assert record["status"] == "failed"
    assert any("RuntimeError: the gate plugin broke" in e for e in record["errors"]), record[
        "errors"
    ]
