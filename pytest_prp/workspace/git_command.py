"""Running git: one call, the environment every call gets, and how a failure reads.

Every git process pytest-prp starts goes through ``run_git``: messages in English (some are
matched), user hooks disabled (``core.hooksPath`` names a directory that is never created), no
``gc --auto`` or maintenance, no optional index writes. A failure becomes ``GitError``, one clear
line for the user (``failure``). Commits get an identity even where none is configured
(``identity_env``).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_NAME = "pytest-prp"
DEFAULT_EMAIL = "pytest-prp@localhost"
MIN_GIT_VERSION = (2, 38)  # merge-tree --write-tree

# Variables that would point our git calls (and the checkout `worktree add` runs) at the
# user's index or work tree instead of the PRP worktree's own: git sets them for hooks.
HOSTILE_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")


class GitError(Exception):
    """A git operation failed; ``str(e)`` is one clear user-facing line."""


def identity_env(environ: Mapping[str, str], config: Mapping[str, str]) -> dict[str, str]:
    """GIT_AUTHOR_*/GIT_COMMITTER_* values for whatever neither the environment nor git config
    (``user.*``, ``author.*``, ``committer.*``) provides, so our commits never fail with
    "Please tell me who you are". ``config`` keys are lower-case, as ``git config`` prints."""
    env: dict[str, str] = {}
    for role in ("author", "committer"):
        var = f"GIT_{role.upper()}"
        name = environ.get(f"{var}_NAME") or config.get(f"{role}.name") or config.get("user.name")
        email = (
            environ.get(f"{var}_EMAIL")
            or config.get(f"{role}.email")
            or config.get("user.email")
            or environ.get("EMAIL")
        )
        if not name:
            env[f"{var}_NAME"] = DEFAULT_NAME
        if not email:
            env[f"{var}_EMAIL"] = DEFAULT_EMAIL
    return env


def base_env(common_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for every git call: no hooks, no auto-gc, no optional index writes.
    Appends to GIT_CONFIG_COUNT so settings the user passes that way survive."""
    try:
        first = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
    except ValueError:
        first = 0
    settings = {
        "core.hooksPath": str(common_dir / "prp" / "hooks-disabled"),  # never created
        "gc.auto": "0",
        "maintenance.auto": "false",
    }
    env = {"GIT_CONFIG_COUNT": str(first + len(settings)), "GIT_OPTIONAL_LOCKS": "0"}
    for i, (key, value) in enumerate(settings.items(), start=first):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def run_git(
    executable: str,
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdin: str | None = None,
) -> tuple[int, str, str]:
    """``git <args>`` in ``cwd``: exit status, stdout and stderr, one final newline dropped.
    Messages in English (some are matched here); bytes that are not UTF-8 survive in paths."""
    done = subprocess.run(
        [executable, *args],
        cwd=cwd,
        env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **env},
        input=stdin.encode("utf-8") if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    out = done.stdout.decode("utf-8", "surrogateescape")
    err = done.stderr.decode("utf-8", "surrogateescape")
    return done.returncode, out.removesuffix("\n"), err.removesuffix("\n")


def run_git_bytes(
    executable: str, args: Sequence[str], cwd: Path, env: Mapping[str, str], data: bytes
) -> tuple[int, bytes, str]:
    """As ``run_git``, for binary data both ways (a pack on stdin or stdout)."""
    done = subprocess.run(
        [executable, *args],
        cwd=cwd,
        env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **env},
        input=data,
        capture_output=True,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace").removesuffix("\n")


def git_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from ``git version 2.39.5`` (vendor suffixes allowed)."""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def failure(command: str, status: int, stderr: str) -> str:
    """The one line a failed ``git <command>`` becomes: its last ``fatal:``/``error:`` line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    detail = (fatal or lines or [f"exit status {status}"])[-1]
    for prefix in ("fatal: ", "error: "):
        detail = detail.removeprefix(prefix)
    return f"git {command} failed: {detail}"


def retry_pause(attempt: int) -> None:
    """Short randomised back-off so racing workers do not retry in lockstep."""
    time.sleep(random.uniform(0.001, 0.004 * min(attempt + 1, 10)))
