"""Machines on 127.0.0.1 for the remote-worker tests and benchmark: each its own directory,
clone, HOME and cache, reached by xdist through an execnet socket server it runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
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
    env: dict[str, str] = field(default_factory=dict)  # more for its server (e.g. PYTHONPATH)

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
            **self.env,
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


def machines(
    origin: Path, base: Path, count: int, env: dict[str, str] | None = None
) -> list[Machine]:
    found = []
    for n in range(count):
        machine = Machine(f"m{n + 1}", base / f"m{n + 1}", env=dict(env or {}))
        machine.root.mkdir(parents=True)
        clone(origin, machine.clone)
        machine.start()
        found.append(machine)
    return found


SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SshMachine(Machine):
    """A "machine" reached over ssh: a local sshd on a loopback port with throwaway keys."""

    @property
    def tx(self) -> str:
        config = self.root / "ssh_config"
        return f"ssh=-F {config} prp-test//python={sys.executable}//chdir={self.clone}"

    def start(self) -> None:
        keys = self.root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for name in ("host", "client"):
            if not (keys / name).exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                    check=True,
                )
        (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
        cache = self.root / "home" / ".cache"
        cache.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        (self.root / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {keys / 'host'}\n"
            f"AuthorizedKeysFile {keys / 'authorized_keys'}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "StrictModes no\nUsePAM no\n"
            f"SetEnv XDG_CACHE_HOME={cache}\n"
        )
        (self.root / "ssh_config").write_text(
            "Host prp-test\n  HostName 127.0.0.1\n"
            f"  Port {self.port}\n  IdentityFile {keys / 'client'}\n  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n"
            "  LogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        log = (self.root / "sshd.log").open("w")
        self.server = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ssh", "-F", str(self.root / "ssh_config"), "prp-test", "true"],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name}: sshd did not start: {(self.root / 'sshd.log').read_text()}"
        )

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
