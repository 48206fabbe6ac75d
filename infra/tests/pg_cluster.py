"""A throwaway PostgreSQL cluster from the PostgreSQL binaries (initdb, pg_ctl), on a free
loopback port, with trust authentication; used by the preview database tests here and by the
preview sweep test in .github/tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

TOOLS = ("initdb", "pg_ctl", "psql")


def available() -> bool:
    return all(shutil.which(t) for t in TOOLS)


def psql(url: str, sql: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["psql", url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], input=sql, capture_output=True, text=True
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


@contextlib.contextmanager
def cluster(database: str) -> Iterator[str]:
    """Yields a URL template, postgres://{user}@127.0.0.1:PORT/DATABASE, with DATABASE created."""
    # Not under pytest's tmp_path: its parent is private to this user, and the cluster's owner
    # must reach the directory. initdb refuses to run as root; the cluster then belongs to the
    # postgres user.
    work = Path(tempfile.mkdtemp(prefix="preview-db-"))
    owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if owner:
        os.chown(work, pwd.getpwnam("postgres").pw_uid, -1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        subprocess.run([*owner, "initdb", "-D", work / "data", "-U", "postgres", "-A", "trust", "--no-instructions"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            [*owner, "pg_ctl", "start", "-w", "-D", work / "data", "-l", work / "server.log",
             "-o", f"-k {work} -p {port} -c listen_addresses=127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        psql(f"postgres://postgres@127.0.0.1:{port}/postgres", f"CREATE DATABASE {database}")
        yield f"postgres://{{user}}@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run([*owner, "pg_ctl", "stop", "-D", work / "data", "-m", "immediate"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
