"""A throw-away PostgreSQL server for the history tests and benchmarks (stdlib only).

Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin``
run in a temporary folder, on a free port, listening on 127.0.0.1 only, with a password for
TCP connections. PostgreSQL refuses to run as root, so as root they run as the ``postgres``
user (``runuser``), in a folder that user owns. ``destroy`` stops the server and deletes it all.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from .server import free_port

#: The Debian package that provides initdb/pg_ctl (scripts/test installs it when root).
DEBIAN_PACKAGE = "postgresql"


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, initialised, started or stopped."""


def bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with an initdb."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise PostgresError(f"PostgreSQL is not installed: apt-get install -y {DEBIAN_PACKAGE} (scripts/test does)")
    return Path(found[-1]).parent


class PostgresServer:
    """One cluster in a temporary folder; ``url(db)`` names a database on it (with the password)."""

    user = "postgres"

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.password = "pw-" + secrets.token_hex(8)
        self.root = Path(tempfile.mkdtemp(prefix="rtm-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, self.user, self.user)
            self.as_user = ["runuser", "-u", self.user, "--"]

    def _run(self, *args: str) -> str:
        try:
            done = subprocess.run(
                [*self.as_user, *args], check=True, capture_output=True, text=True, cwd=self.root, timeout=120
            )
        except subprocess.CalledProcessError as exc:
            raise PostgresError(f"{Path(args[0]).name} failed: {exc.stderr.strip()[-2000:]}") from exc
        return done.stdout

    def start(self) -> PostgresServer:
        """initdb (the first time), then start; returns once it accepts connections."""
        if not self.data.exists():
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self.as_user:
                shutil.chown(pwfile, self.user, self.user)
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            )
            pwfile.unlink()
        # fsync off: a test database that a crash may lose; the tests measure the plugin, not the disk.
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections cut); its data stays for a restart."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for ``database``, password included."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or "h_" + uuid.uuid4().hex[:12]
        # Over the Unix socket in our folder (trust for local connections): no password needed.
        self._run(
            "psql", "-h", str(self.root), "-p", str(self.port), "-U", self.user, "-c", f'CREATE DATABASE "{name}"'
        )
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server if it runs and delete its folder."""
        with contextlib.suppress(PostgresError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
