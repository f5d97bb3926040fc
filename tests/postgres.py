"""A real PostgreSQL server for the tests: Debian's ``postgresql``, run by hand in a temporary directory.

``make test`` installs the package (``--no-install-recommends``). Debian keeps
``initdb`` and ``pg_ctl`` in ``/usr/lib/postgresql/<version>/bin``, off the
PATH, so :func:`binaries` looks there first. PostgreSQL refuses to run as
root, and CI runs as root: there the server runs as the ``postgres`` user
(``runuser``), in a directory handed to that user.

The server listens on 127.0.0.1 at a free port, with a password (SCRAM), so
the URLs the tests hand the sidecar carry credentials as a deployment's do.
Each test takes a database of its own (:meth:`Postgres.database`), so one
server serves the whole session. It runs with ``fsync`` off, as no test needs
durability; the benchmarks ask for it on (``run_postgres(durable=True)``).

Usage::

    with run_postgres(tmp_path) as server:
        url = server.database("replicas")      # postgresql://sidecar:...@127.0.0.1:PORT/replicas
        server.stop()                          # the fault tests: the database goes away...
        server.start()                         # ...and comes back on the same port
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["Postgres", "binaries", "require_postgres", "run_postgres"]

USER = "sidecar"
_DEBIAN = Path("/usr/lib/postgresql")
_TIMEOUT = 60.0


def binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: Debian's newest version, else the PATH's; None if neither."""
    if _DEBIAN.is_dir():
        versions = sorted(
            (d for d in _DEBIAN.iterdir() if (d / "bin" / "initdb").exists()),
            key=lambda d: int(d.name) if d.name.isdigit() else 0,
        )
        if versions:
            return versions[-1] / "bin"
    found = shutil.which("initdb")
    return None if found is None else Path(found).resolve().parent


def require_postgres() -> Path:
    """The binaries' directory; skips the test without PostgreSQL outside CI, and fails it in CI.

    ``make test`` installs PostgreSQL, so in CI its absence is a broken setup, not a reason to skip.
    """
    directory = binaries()
    if directory is None:
        message = "PostgreSQL is not installed (Debian: apt-get install --no-install-recommends postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return directory


@dataclass
class Postgres:
    """One running server; see the module's docstring."""

    bin: Path
    data: Path
    port: int
    password: str
    _as_postgres: bool
    durable: bool = False  # fsync as PostgreSQL's default does; the tests run without, the benchmarks with
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.data.parent / "postgres.log"

    @property
    def host_url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}"

    def url(self, database: str) -> str:
        return f"{self.host_url}/{database}"

    def database(self, name: str | None = None) -> str:
        """Create a fresh database and return its URL; a unique name when none is given."""
        import psycopg  # the runtime's driver, imported late so that collecting the suite does not need it

        name = name or f"t_{secrets.token_hex(6)}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain database name: {name!r}")
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")  # a checked identifier; CREATE DATABASE takes no parameter
        return self.url(name)

    def start(self) -> None:
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(int(_TIMEOUT)),
            "-l",
            str(self._log),
            # The socket directory is the data directory's parent: /var/run/postgresql may not exist here.
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent}"
            + ("" if self.durable else " -c fsync=off"),
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clients disconnected, a clean shutdown) or ``immediate`` (as a crash)."""
        self._pg_ctl("stop", "-w", "-m", mode, "-t", str(int(_TIMEOUT)))

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def _pg_ctl(self, *args: str) -> None:
        _run(self._command(str(self.bin / "pg_ctl"), "-D", str(self.data), *args))

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else list(args)


@contextlib.contextmanager
def run_postgres(*, durable: bool = False) -> Iterator[Postgres]:
    """Initialise a cluster in a temporary directory, start it, and remove it all afterwards.

    ``durable``: with ``fsync`` on, as a deployment runs it (benchmarks); the tests need no durability.
    """
    directory = require_postgres()
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
    try:
        data = root / "data"
        password = secrets.token_urlsafe(12)
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if as_postgres:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        server = Postgres(directory, data, _free_port(), password, as_postgres, durable)
        _run(
            server._command(
                str(directory / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
        )
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=_TIMEOUT, cwd="/")
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(command)} failed ({exc.returncode}):\n{exc.stdout}\n{exc.stderr}") from exc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
