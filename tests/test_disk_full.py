"""A full disk and an unusable results directory: one clear line, nothing lost, resumable.

The disk is real: a small tmpfs mounted for the test (the suite runs as root in CI); a PRP's
step fills it the way a runaway build would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import entries, git, write_prp


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(fs: Path) -> str:
    """A shell step that fills the file system (and does not fail doing so)."""
    return f"head -c 8000000 /dev/zero > {fs}/filler 2>/dev/null || true"


def three_prps(repo: Path, first_step: str) -> None:
    write_prp(
        repo, "PRP-2.1", creates={"f1.txt": "one\n"}, steps=[first_step], gates=["test -f f1.txt"]
    )
    write_prp(repo, "PRP-2.2", creates={"f2.txt": "two\n"}, gates=["test -f f2.txt"])
    write_prp(repo, "PRP-2.3", creates={"f3.txt": "three\n"}, gates=["test -f f3.txt"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")


def assert_one_clear_line(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert "No space left on device" in text


@pytest.mark.parametrize(
    ("then", "workers"),
    [("", []), ("seq 1 20000", ["-n", "2"]), ("seq 1 20000 >&2", [])],
    ids=["quiet-serial", "stdout-xdist", "stderr-serial"],
)
def test_disk_full_during_a_batch_interrupts_it_and_the_same_command_resumes(
    pytester: pytest.Pytester, repo: Path, small_fs: Path, workers: list[str], then: str
) -> None:
    # The step goes on printing once the disk is full: its log cannot take it either.
    three_prps(repo, f"{fill(small_fs)}\n{then}")
    results = small_fs / "results"
    args = ["--prp-batch", "2", "-o", f"prp_results_dir={results}", "-p", "no:randomly"]
    full = pytester.runpytest_subprocess(*args, *workers)
    assert_one_clear_line(full)
    assert full.ret == pytest.ExitCode.INTERRUPTED, full.stdout.str()
    full.stdout.fnmatch_lines(["*prp: cannot write *No space left on device*resume*"])
    # Nothing lost: what passed is on the branch.
    assert git(repo, "show", "prp/batch-2:f1.txt") == "one"

    (small_fs / "filler").unlink()
    again = pytester.runpytest_subprocess(*args, *workers)
    assert again.ret == 0, again.stdout.str()
    for name, text in (("f1.txt", "one"), ("f2.txt", "two"), ("f3.txt", "three")):
        assert git(repo, "show", f"prp/batch-2:{name}") == text
    doc = json.loads((results / "batches" / "batch-2.result.json").read_text())
    statuses = {pid: e["status"] for s in doc["stages"].values() for pid, e in s.items()}
    assert statuses["PRP-2.1"] in ("completed_earlier", "success")
    assert doc["interrupted"] is False
    # Each PRP merged exactly once.
    subjects = git(repo, "log", "--format=%s", "prp/batch-2").splitlines()
    for n in (1, 2, 3):
        assert sum(s.startswith(f"PRP-2.{n}:") for s in subjects) == 1, subjects


def test_disk_full_before_the_batch_is_one_usage_error(
    pytester: pytest.Pytester, repo: Path, small_fs: Path
) -> None:
    three_prps(repo, "true")
    subprocess.run(["sh", "-c", fill(small_fs)], check=True)
    result = pytester.runpytest_subprocess(
        "--prp-batch", "2", "-o", f"prp_results_dir={small_fs / 'results'}"
    )
    assert_one_clear_line(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: prp: cannot use the results directory *"])
    assert git(repo, "branch", "--list", "prp/*") == ""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
@pytest.mark.parametrize("where", ["README.md", "/proc/prp-results", "README.md/sub"])
def test_an_unusable_results_dir_is_one_usage_error(
    pytester: pytest.Pytester, repo: Path, where: str, workers: list[str]
) -> None:
    three_prps(repo, "true")
    result = pytester.runpytest_subprocess(
        "--prp-batch", "2", "-o", f"prp_results_dir={where}", *workers
    )
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    result.stderr.fnmatch_lines(["ERROR: prp: cannot use the results directory *"])
    assert git(repo, "branch", "--list", "prp/*") == ""


def prp_status(results: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_prp", "status", "--results-dir", str(results)],
        capture_output=True,
        text=True,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
@pytest.mark.parametrize("nearly", [False, True], ids=["full", "nearly-full"])
def test_a_disk_full_at_the_end_is_an_interrupted_run_never_a_running_one(
    pytester: pytest.Pytester, repo: Path, small_fs: Path, nearly: bool, workers: list[str]
) -> None:
    # The last PRP's step leaves the disk full, or (failing, with 6 KB of output tails in its
    # record) room for a line of result without those tails: the run's last write is refused.
    if nearly:
        step = (
            f"{fill(small_fs)}\nyes $(printf '%0300d' 0) | head -20 || true"
            f"\ntruncate -s -8K {small_fs}/filler\nexit 1"
        )
    else:
        step = fill(small_fs)
    write_prp(repo, "PRP-2.1", creates={"f1.txt": "one\n"}, gates=["test -f f1.txt"])
    write_prp(
        repo,
        "PRP-2.2",
        deps=["PRP-2.1"],
        creates={"f2.txt": "two\n"},
        steps=[step],
        gates=["test -f f2.txt"],
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prps")
    results = small_fs / "results"
    result = pytester.runpytest_subprocess(
        "--prp-batch", "2", "-o", f"prp_results_dir={results}", "-p", "no:randomly", *workers
    )
    assert_one_clear_line(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    path = results / "batches" / "batch-2.result.json"
    result.stdout.fnmatch_lines(
        [f"Results: *{path}*No space left on device*free space and run the same command*"]
    )
    # Nothing lost: what passed is on the branch.
    assert git(repo, "show", "prp/batch-2:f1.txt") == "one"
    doc = json.loads(path.read_text())
    if nearly:
        assert doc["finished_at"] is not None and doc["interrupted"] is True
        assert doc["written_compact"].startswith("no room for the full record")
        prps = entries(doc)
        assert {pid: e["status"] for pid, e in prps.items()} == {
            "PRP-2.1": "success",
            "PRP-2.2": "failed",
        }
        assert "failure_tail" not in prps["PRP-2.2"]
    else:  # no room for a line: the file stands as the run last wrote it
        assert doc["finished_at"] is None
    shown = prp_status(results)
    assert "running" not in shown, shown
    assert "interrupted" in shown.splitlines()[0], shown
