"""Paths built from names a user wrote (batch and PRP ids): they stay inside their directory."""

from __future__ import annotations

from pathlib import Path

# The common limit of one file name (ext4, xfs, btrfs, tmpfs), in bytes.
MAX_NAME_BYTES = 255


class UnsafePathError(ValueError):
    """A name that would leave its directory, or that no file system can hold."""


def inside(directory: Path, *names: str) -> Path:
    """``directory / names...``, each name one plain file name. Ids are checked where they are
    read; this is the guard that holds should an unchecked name ever get this far."""
    for name in names:
        if (
            name in ("", ".", "..")
            or "/" in name
            or "\\" in name
            or "\0" in name
            or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES
        ):
            raise UnsafePathError(f"refusing a path under {directory} from the name {name!r:.80}")
    return directory.joinpath(*names)
