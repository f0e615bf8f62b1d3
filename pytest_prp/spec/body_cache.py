"""A PRP's body, parsed on first use and kept on it; the plan view's body summaries kept in
pytest's cache, keyed by file content and parser code.

The model holds what a PRP file says and does no I/O: reading and parsing the body (markdown-it
and the block scanner, imported only then) happens here, once per PRP (``body_of``). Collection
and planning rarely need a body; the plan view needs only its counts (``summary_of``).

A plan of thousands of PRPs parses every body for its step and gate counts; a body whose file
and parsing code are unchanged since the last plan is not parsed again. The key holds the
file's bytes and the source of every module that decides what a body reads as, so an edit to
either makes a new entry: a cached summary is never stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pytest_prp.spec.model import Body, BodySummary, Problem, Prp

KEY = "prp/body-summaries"
MAX_ENTRIES = 20_000  # the oldest go first beyond this: the cache file stays a few MB at most


def body_of(prp: Prp) -> Body:
    """The PRP's steps and gates, parsed on first use."""
    if prp._body is None:
        from pytest_prp.spec.body import parse_body  # late: markdown-it is only needed here

        prp._body = parse_body(_body_text(prp), prp.path, prp.body_line)
    return prp._body


def summary_of(prp: Prp) -> BodySummary:
    """The body's counts and warnings: from the cache when ``load`` filled them in, from the
    body when it is parsed already, else from ``summarise_body`` (the same summary for a
    fraction of a full parse: it skims what the counts do not depend on)."""
    if prp._summary is None:
        if prp._body is None:
            from pytest_prp.spec.body import summarise_body

            prp._summary = summarise_body(_body_text(prp), prp.path, prp.body_line)
        else:
            body = prp._body
            prp._summary = BodySummary(
                len(body.steps),
                len(body.executable_gates),
                len(body.unverified_gates),
                body.warnings,
            )
    return prp._summary


def _body_text(prp: Prp) -> str:
    """The lines of the PRP's file from its body line on. split("\n"), not splitlines():
    body_line counts newlines only (and only the frontmatter's lines need splitting off)."""
    skip = prp.body_line - 1
    parts = prp.path.read_text(encoding="utf-8").split("\n", skip)
    return parts[skip] if len(parts) > skip else ""


@cache
def _fingerprint() -> bytes:
    import markdown_it

    from pytest_prp.spec import blocks, body, frontmatter, model

    digest = hashlib.sha256(markdown_it.__version__.encode())
    for module in (blocks, body, frontmatter, model):
        digest.update(Path(str(module.__file__)).read_bytes())
    digest.update(Path(__file__).read_bytes())  # body_of: which lines are the body
    return digest.digest()


def _key(prp: Prp) -> str | None:
    try:
        data = prp.path.read_bytes()
    except OSError:
        return None
    return hashlib.sha256(_fingerprint() + data).hexdigest()


def load(cache: Any, prps: Iterable[Prp]) -> dict[str, str]:
    """Fill in the summaries the cache holds; returns each PRP's key (by id) for ``store``."""
    stored = cache.get(KEY, {})
    entries = stored if isinstance(stored, dict) else {}
    keys: dict[str, str] = {}
    for prp in prps:
        key = _key(prp)
        if key is None:
            continue
        keys[prp.id] = key
        entry = entries.get(key)
        summary = _decode(prp, entry)
        if summary is not None:
            prp._summary = summary
    return keys


def store(cache: Any, prps: Iterable[Prp], keys: dict[str, str]) -> None:
    """Keep the summaries made (or used) this time, newest last."""
    stored = cache.get(KEY, {})
    entries: dict[str, Any] = stored if isinstance(stored, dict) else {}
    changed = False
    for prp in prps:
        key = keys.get(prp.id)
        summary = prp._summary
        if key is None or summary is None:
            continue
        entry = [
            summary.steps,
            summary.executable,
            summary.unverified,
            [[w.line, w.message] for w in summary.warnings],
        ]
        if entries.get(key) != entry:
            entries.pop(key, None)
            entries[key] = entry
            changed = True
    if not changed:
        return
    while len(entries) > MAX_ENTRIES:
        entries.pop(next(iter(entries)))
    cache.set(KEY, entries)


def _decode(prp: Prp, entry: Any) -> BodySummary | None:
    """A cached entry, or None when it is missing or not of the expected shape."""
    if not isinstance(entry, list) or len(entry) != 4:
        return None
    steps, executable, unverified, warnings = entry
    if not all(isinstance(n, int) for n in (steps, executable, unverified)):
        return None
    if not isinstance(warnings, list):
        return None
    problems = []
    for item in warnings:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)):
            return None
        line = item[0] if isinstance(item[0], int) else None
        problems.append(Problem(prp.path, line, item[1]))
    return BodySummary(steps, executable, unverified, tuple(problems))
