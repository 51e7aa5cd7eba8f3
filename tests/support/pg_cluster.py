"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl in a temporary directory.

The server runs as an unprivileged user (PostgreSQL refuses to run as root, and CI runs as
root: there it runs as `nobody` through `runuser`), listens on a private Unix socket in its
own directory and on 127.0.0.1 at a free port, and is removed by `destroy()`.

Authentication: the Unix socket trusts everyone (the socket directory is the cluster's own);
TCP asks for a SCRAM password, so a test can prove that a password comes from a pgpass
file and never from the URL.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg

SUPERUSER = "postgres"
UNPRIVILEGED = "nobody"  # exists on every Debian system
NEEDED = ("initdb", "pg_ctl", "postgres")


class ClusterError(RuntimeError):
    pass


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None.

    Debian keeps the server binaries off PATH in /usr/lib/postgresql/<major>/bin; other
    systems put them on PATH. `$PG_BINDIR` overrides both.
    """
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).resolve().parent))
    by_version = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p)],
        reverse=True,
    )
    candidates += by_version
    for directory in candidates:
        if all(os.access(Path(directory, name), os.X_OK) for name in NEEDED):
            return Path(directory)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One cluster. `start()` once; `stop()`/`start()` to take the server away and back."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable  # False: fsync off, for tests; True: as a real server, for bench
        self.root = Path(tempfile.mkdtemp(prefix="dhanfeed-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user = None if os.geteuid() != 0 else UNPRIVILEGED
        self.socket_dir.mkdir()
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
                  "--no-instructions")  # fmt: skip

    def _run(self, program: str, *args: str) -> str:
        argv = [str(self.bindir / program), *args]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        env = {**os.environ, "LC_ALL": "C"}
        result = subprocess.run(
            argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ClusterError(
                f"{program} {' '.join(args)} failed ({result.returncode}):"
                f" {result.stdout}{result.stderr}{tail}"
            )
        return result.stdout

    def start(self) -> None:
        options = [
            f"-p {self.port}",
            f"-k {self.socket_dir}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=60",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l",
                  str(self.log), "-o", " ".join(options))  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; "fast" disconnects every client at once, as a restart does."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))

    def running(self) -> bool:
        argv = [str(self.bindir / "pg_ctl"), "status", "-D", str(self.data)]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, cwd=self.root).returncode == 0

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- addresses ---------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """A URL over the Unix socket (trusted: no password needed)."""
        return f"postgresql://{user}@/{dbname}?host={quote(str(self.socket_dir))}&port={self.port}"

    def tcp_url(self, dbname: str, user: str) -> str:
        """A URL over TCP (a password is required, and this URL has none)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run SQL as the superuser (autocommit: CREATE DATABASE cannot run in a transaction)."""
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self) -> str:
        """A fresh, empty database; its URL (superuser, Unix socket)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)
