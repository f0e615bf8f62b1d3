"""``prp-status`` (or ``python -m pytest_prp status``): how a batch is doing, from another terminal.

The command: it finds the results directory and the batch, reads the batch's view
(``status_view``) and prints it as a table or JSON (``status_table``), once or until the batch
has finished (``--watch``); ``--html`` writes the batch's HTML report from its files instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_prp.base.ids import batch_id_problem
from pytest_prp.base.naming import result_path
from pytest_prp.records.record import read_result
from pytest_prp.records.status_table import render_table, view_document
from pytest_prp.records.status_view import (
    BatchView,
    beats_for,
    latest_batch,
    load_view,
    run_gone,
)

DEFAULT_RESULTS_DIR = Path(".ce/orchestration")
WATCH_SECONDS = 2.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prp-status",
        description="Show how a pytest-prp batch is doing, from its result JSON and heartbeats.",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"where pytest-prp writes results (default: {DEFAULT_RESULTS_DIR} in this "
        "directory or the nearest one above it, up to the repository's root)",
    )
    parser.add_argument("--batch", help="the batch to show (default: the latest one)")
    parser.add_argument("--watch", action="store_true", help="refresh until the batch has finished")
    parser.add_argument(
        "--every",
        type=float,
        default=WATCH_SECONDS,
        metavar="SECONDS",
        help=f"refresh interval of --watch (default {WATCH_SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--html",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the batch's HTML report from its result JSON instead (default: "
        "batches/batch-<batch>.html in the results directory)",
    )
    return parser.parse_args(list(argv))


def write_html(results_dir: Path, batch: str, target: str) -> int:
    """``--html``: the report of a batch, rebuilt from its result JSON (and, while it runs,
    the heartbeats of its running PRPs), as ``--prp-report`` writes it during the run."""
    from pytest_prp.records.report_html import default_report_path, write_report

    document = read_result(result_path(results_dir, batch))
    if document is None:
        print(
            f"prp-status: no result JSON of batch {batch} in {results_dir}: "
            f"{result_path(results_dir, batch)}",
            file=sys.stderr,
        )
        return 1
    path = Path(target) if target else default_report_path(results_dir, batch)
    live: dict[str, dict[str, Any]] = {}
    if run_gone(document) is not None:  # its run died before recording its end
        document = {**document, "interrupted": True}
    elif not document.get("finished_at"):
        for prp_id, beat in beats_for(results_dir, batch, document).items():
            if beat.get("status") is None:  # still running
                live[prp_id] = beat
    try:
        write_report(path, document, live=live)
    except OSError as exc:
        print(f"prp-status: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    print(f"prp-status: report written to {path}")
    return 0


def _show(view: BatchView, as_json: bool, clear: bool) -> None:
    if as_json:
        text = json.dumps(view_document(view), separators=(",", ":"))
    else:
        text = render_table(view)
    if clear:
        text = "\x1b[H\x1b[2J" + text
    print(text, flush=True)


def find_results_dir(start: Path) -> Path:
    """``.ce/orchestration`` of ``start`` or of the nearest directory above it that has one,
    looking no higher than the repository's root (as git finds its root from a subdirectory);
    ``start``'s own when there is none (for the message saying so)."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / DEFAULT_RESULTS_DIR).is_dir():
            return folder / DEFAULT_RESULTS_DIR
        if (folder / ".git").exists():
            break
    return DEFAULT_RESULTS_DIR


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results_dir: Path = args.results_dir or find_results_dir(Path.cwd())
    batch = args.batch.removeprefix("batch-") if args.batch else latest_batch(results_dir)
    problem = batch_id_problem(batch) if batch else None
    if problem:  # it would name a file outside the results directory
        print(f"prp-status: --batch {batch!r:.60} {problem}", file=sys.stderr)
        return 2
    if args.html is not None and batch:
        return write_html(results_dir, batch, args.html)
    view = load_view(results_dir, batch) if batch else None
    if view is None:
        what = f"batch {batch}" if args.batch else "any batch"
        print(
            f"prp-status: no result JSON or heartbeats of {what} in {results_dir}",
            file=sys.stderr,
        )
        return 1
    clear = args.watch and not args.json and sys.stdout.isatty()
    try:
        _show(view, args.json, clear)
        while args.watch and not view.done:
            time.sleep(max(args.every, 0.1))
            view = load_view(results_dir, str(batch)) or view
            _show(view, args.json, clear)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # prp-status | head
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
