"""A real PostgreSQL server for tests and the benchmark, started in a temporary directory.

Not a fake: the PostgreSQL store is tested against the real server, never a mocked driver. The
server binaries are found with `pg_config --bindir`, under `/usr/lib/postgresql/*/bin` (Debian
keeps them off `PATH`) or on `PATH`. `initdb` and `pg_ctl` refuse to run as root, so as root
they run as the `postgres` user, in a directory it owns. The server is tuned for throwaway data
(no fsync), listens on 127.0.0.1 only and trusts local connections.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The programs a server needs.
PROGRAMS = ("initdb", "pg_ctl", "postgres", "createdb")


class NoPostgres(Exception):
    """No PostgreSQL server can be started here (the message says why)."""


def find_bindir() -> Path | None:
    """Where the server binaries are, or None."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    for bindir in candidates:
        if all((bindir / program).exists() for program in PROGRAMS):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One running server; `start()` it, `url(name)` per database, `stop()` at the end."""

    bindir: Path
    port: int = field(default_factory=_free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="slackbot-pg-")))
    _user: str | None = None  # the OS user the server runs as, when not ourselves

    @classmethod
    def create(cls) -> PostgresServer:
        bindir = find_bindir()
        if bindir is None:
            raise NoPostgres(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config, "
                "/usr/lib/postgresql/*/bin or PATH"
            )
        return cls(bindir)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise NoPostgres("running as root and there is no postgres user") from None
            self._user = "postgres"
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log), "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(NoPostgres):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def kill(self) -> None:
        """Stop at once, as a crash or a network cut would look to the clients."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "start")

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise NoPostgres(f"{program} failed: {(done.stderr or done.stdout).strip()[-500:]}")


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A server for the duration of the block."""
    server = PostgresServer.create()
    try:
        server.start()
    except BaseException:
        shutil.rmtree(server.root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop()
