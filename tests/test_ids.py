"""PRP ids: how users write them in YAML, file names and prose, and how they sort."""

from __future__ import annotations

import datetime

import pytest

from pytest_prp.base.ids import batch_of, find_ids, id_from_filename, natural_key, normalize_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PRP-47.2.1", "PRP-47.2.1"),
        ("34.2.2", "PRP-34.2.2"),
        (31, "PRP-31"),
        (34.2, "PRP-34.2"),
        ("PRP-A", "PRP-A"),
        ("prp-47.1", "PRP-47.1"),
        ("PRP-43-INITIAL", "PRP-43-INITIAL"),
        ("  PRP-7 ", "PRP-7"),
        ("PRP_12", "PRP-12"),
        ("PRP 12", "PRP-12"),
        ("PRP12", "PRP-12"),
    ],
)
def test_normalize_id_accepts_the_ways_ids_are_written(raw: object, expected: str) -> None:
    assert normalize_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "none",
        "foo",
        "user-auth",
        "PRP-",
        "PRPfoo",
        "PRP-47.2.1 (needs the guide)",
        True,
        False,
        -3,
        float("nan"),
        1e20,
        [1, 2],
        {"PRP-1": "x"},
        datetime.date(2025, 11, 8),
    ],
)
def test_normalize_id_rejects_junk(raw: object) -> None:
    assert normalize_id(raw) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PRP-47.2.1-foo.md", "PRP-47.2.1"),
        ("PRP-43.2.1.md", "PRP-43.2.1"),
        ("PRP-A.md", "PRP-A"),
        ("PRP-AB-notes.md", "PRP-AB"),
        ("prp-12-lower-case.md", "PRP-12"),
        # The slug cannot be told from a qualifier: the number is the id (frontmatter wins).
        ("PRP-43-INITIAL-task-based-quota.md", "PRP-43"),
        ("PRP-43-improve-generate-prp.md", "PRP-43"),
        ("user-auth.md", None),
        ("README.md", None),
        ("PRPs.md", None),
        ("prp_base.md", None),
        ("prp_task.md", None),
        ("PRP-Abc.md", None),
    ],
)
def test_id_from_filename(name: str, expected: str | None) -> None:
    assert id_from_filename(name) == expected


@pytest.mark.parametrize(
    ("prp_id", "expected"),
    [
        ("PRP-47.2.1", "47"),
        ("PRP-47.2", "47"),
        ("PRP-A.1", "A"),
        ("PRP-43", None),
        ("PRP-43-INITIAL", None),
        ("PRP-A", None),
    ],
)
def test_batch_of(prp_id: str, expected: str | None) -> None:
    assert batch_of(prp_id) == expected


def test_natural_key_sorts_numbers_as_numbers_and_letters_safely() -> None:
    ids = ["PRP-47.10.1", "PRP-B", "PRP-47.9.1", "PRP-47", "PRP-47.A", "PRP-A", "PRP-47.1", "PRP-5"]
    assert sorted(ids, key=natural_key) == [
        "PRP-5",
        "PRP-47",
        "PRP-47.1",
        "PRP-47.9.1",
        "PRP-47.10.1",
        "PRP-47.A",
        "PRP-A",
        "PRP-B",
    ]


def test_natural_key_orders_batch_names_too() -> None:
    assert sorted(["10", "9", "43", "A"], key=natural_key) == ["9", "10", "43", "A"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Soft dependency on PRP-32.1.1 (report helps)", ["PRP-32.1.1"]),
        ("All prior phases (PRP-43.1.1 through PRP-43.3.1).", ["PRP-43.1.1", "PRP-43.3.1"]),
        ("Parent: PRP-43-INITIAL, see PRP-43-improve", ["PRP-43-INITIAL", "PRP-43"]),
        ("PRP-B (needs the usage guide)", ["PRP-B"]),
        ("PRP-7 and again PRP-7", ["PRP-7"]),
        ("PRP-Based workflows, PRP-driven design, PRPs 43.1.1", []),
        ("src/auth.py", []),
    ],
)
def test_find_ids_in_prose(text: str, expected: list[str]) -> None:
    assert find_ids(text) == expected
