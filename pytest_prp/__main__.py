"""``python -m pytest_prp status [options]``: the status view of a running or finished batch."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: python -m pytest_prp status [--results-dir DIR] [--batch N] [--watch] [--json]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "status":
        from pytest_prp.records.status import main as status_main

        return status_main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
