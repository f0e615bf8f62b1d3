"""Machines on 127.0.0.1 for the remote-worker tests and benchmark: each its own directory,
clone, HOME and cache, reached by xdist through an execnet socket server it runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import execnet

SOCKETSERVER = Path(execnet.__file__).parent / "script" / "socketserver.py"


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def clone(origin: Path, dest: Path) -> Path:
    """A clone of ``origin`` with a local identity (its own machine's config)."""
    _git(origin.parent, "clone", "-q", str(origin), str(dest))
    _git(dest, "config", "user.name", "Test User")
    _git(dest, "config", "user.email", "test@example.com")
    _git(dest, "config", "commit.gpgsign", "false")
    return dest


@dataclass
class Machine:
    """One "machine": a directory with a clone, a HOME and a socket server on a loopback port."""

    name: str
    root: Path
    port: int = 0
    server: subprocess.Popen[bytes] | None = None

    @property
    def clone(self) -> Path:
        return self.root / "repo"

    @property
    def tx(self) -> str:
        return f"socket=127.0.0.1:{self.port}//chdir={self.clone}"

    def start(self) -> None:
        """Start (or restart, on the same port) the machine's execnet socket server."""
        home = self.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PYTEST_XDIST_WORKER", None)
        log = self.root / "server.log"
        with log.open("w") as out:
            self.server = subprocess.Popen(
                [sys.executable, str(SOCKETSERVER), f"127.0.0.1:{self.port}"],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.server.poll() is None:
            found = re.search(r"Entering Accept loop \('127\.0\.0\.1', (\d+)\)", log.read_text())
            if found:
                self.port = int(found.group(1))
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.name}: the socket server did not start: {log.read_text()}")

    def alive(self) -> bool:
        return self.server is not None and self.server.poll() is None

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()


def machines(origin: Path, base: Path, count: int) -> list[Machine]:
    found = []
    for n in range(count):
        machine = Machine(f"m{n + 1}", base / f"m{n + 1}")
        machine.root.mkdir(parents=True)
        clone(origin, machine.clone)
        machine.start()
        found.append(machine)
    return found
