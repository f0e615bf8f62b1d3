"""The plan view's body summaries on two processes (``plan_summaries``): the same summaries,
the same plan, whichever process made them."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from conftest import prp_text
from pytest_prp.plan_summaries import MIN_PRPS, cores, summarise
from pytest_prp.spec.body_cache import summary_of
from pytest_prp.spec.frontmatter import load_prp
from pytest_prp.spec.model import BodySummary, Prp

COUNT = MIN_PRPS + 6

needs_two_cores = pytest.mark.skipif(
    cores() < 2 or not sys.platform.startswith("linux"),
    reason="one core, or not Linux: summarised in one process",
)


@pytest.fixture
def no_other_thread() -> None:
    """``summarise`` forks only when this process runs no other thread (a test before may
    have left one behind)."""
    if threading.active_count() > 1:
        pytest.skip("another thread runs in this process: summarised in one process")


def varied(index: int) -> str:
    """PRPs that differ in every count and in their warnings, so that a summary given to the
    wrong PRP shows."""
    text = prp_text(
        f"PRP-9.{index}",
        steps=[f"echo {n}" for n in range(index % 4)],
        gates=[f"test {n}" for n in range(index % 3)],
        checklist=[f"by hand {n}" for n in range(index % 5)],
    )
    if index % 7 == 0:
        text += "\n```bash\nunclosed\n"  # a warning with this PRP's line number
    return text


def write_all(root: Path) -> list[Path]:
    root.mkdir(exist_ok=True)
    paths = []
    for index in range(1, COUNT + 1):
        path = root / f"PRP-9.{index}.md"
        path.write_text(varied(index), encoding="utf-8")
        paths.append(path)
    return paths


def loaded(paths: list[Path]) -> list[Prp]:
    prps = []
    for path in paths:
        prp = load_prp(path).prp
        assert prp is not None
        prps.append(prp)
    return prps


def expected(paths: list[Path]) -> list[BodySummary]:
    """Each summary made here, one after another (fresh PRP objects)."""
    return [summary_of(prp) for prp in loaded(paths)]


@needs_two_cores
@pytest.mark.usefixtures("no_other_thread")
def test_half_the_summaries_come_from_the_child_and_equal_those_made_here(tmp_path: Path) -> None:
    paths = write_all(tmp_path / "PRPs")
    prps = loaded(paths)
    made = summarise(prps)
    assert made == COUNT // 2
    summaries = [prp._summary for prp in prps]
    assert summaries == expected(paths)
    assert any(s is not None and s.warnings for s in summaries)


@needs_two_cores
@pytest.mark.usefixtures("no_other_thread")
def test_a_file_gone_before_the_plan_is_left_for_the_plan_to_report(tmp_path: Path) -> None:
    paths = write_all(tmp_path / "PRPs")
    prps = loaded(paths)
    paths[1].unlink()  # odd positions go to the child, even ones stay here
    paths[2].unlink()
    assert summarise(prps) == COUNT // 2 - 1
    assert prps[1]._summary is None and prps[2]._summary is None
    with pytest.raises(OSError):
        summary_of(prps[1])
    rest = [p for i, p in enumerate(prps) if i not in (1, 2)]
    assert [p._summary for p in rest] == expected([p for p in paths if p.exists()])


def test_few_prps_or_cached_ones_stay_in_this_process(tmp_path: Path) -> None:
    paths = write_all(tmp_path / "PRPs")
    prps = loaded(paths)
    assert summarise(prps[: MIN_PRPS - 1]) == 0
    assert all(p._summary is None for p in prps[: MIN_PRPS - 1])  # left for summary_of
    for prp in prps[:10]:
        summary_of(prp)  # as if read from pytest's cache: not made again
    assert summarise(prps) == 0  # 60 left to make: too few


@needs_two_cores
def test_plan_json_of_many_prps_is_the_plan_of_each(pytester: pytest.Pytester) -> None:
    """The plan of all the PRPs (two processes) shows each PRP as the plan of its batch
    alone (one process: a batch of one PRP) shows it, warnings in the same order."""
    for index in range(1, COUNT + 1):
        (pytester.path / f"PRP-9.{index}.md").write_text(varied(index), encoding="utf-8")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--prp-plan=json")
    assert result.ret == 0, result.stderr.str()
    everything = json.loads(result.stdout.str())
    assert len(everything["prps"]) == COUNT
    warnings: list[str] = []
    for index in (1, 2, 7, 14, 15, COUNT):
        one = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--prp-plan=json", f"PRP-9.{index}.md"
        )
        alone = json.loads(one.stdout.str())
        [entry] = alone["prps"]
        assert entry in everything["prps"]
        warnings += alone["warnings"]
    assert len(warnings) == 3  # PRP-9.7, PRP-9.14 and PRP-9.70: unclosed blocks
    assert [w for w in everything["warnings"] if w in warnings] == warnings


@needs_two_cores
@pytest.mark.usefixtures("no_other_thread")
def test_ctrl_c_while_summarising_ends_the_child_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in this process while the child works: the interrupt goes on at once and the child
    is ended and reaped, not waited for (it would go on summarising its half)."""
    import os
    import time

    from pytest_prp import plan_summaries

    parent = os.getpid()
    real = plan_summaries.summary_of

    def interrupted(prp: Prp) -> BodySummary:
        if os.getpid() == parent:
            raise KeyboardInterrupt
        time.sleep(0.2)  # the child: slow, so that waiting for it would show
        return real(prp)

    monkeypatch.setattr(plan_summaries, "summary_of", interrupted)
    prps = loaded(write_all(tmp_path / "PRPs"))
    before = children(parent)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        summarise(prps)
    assert time.monotonic() - started < 3  # the child's half would take 7 s
    assert children(parent) == before  # the child is gone, not even a zombie left


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, zombies included (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found
