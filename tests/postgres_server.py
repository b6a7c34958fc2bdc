"""A throwaway PostgreSQL server for tests and scripts: initdb in a temporary folder, listening on
a free port of 127.0.0.1 only, stopped and deleted at the end.

PostgreSQL refuses to run as root, so when this runs as root the server runs as an unprivileged
user (`postgres` if it exists, else `nobody`) through `runuser`; its folder is made outside
pytest's tmp_path, which other users cannot enter. The database superuser is `nnspec`, trusted
without a password on 127.0.0.1 (the server accepts no other address).

    with PostgresServer() as pg:
        url = pg.create_database("studies")   # postgresql://nnspec@127.0.0.1:PORT/studies
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
SUPERUSER = "nnspec"


def find_bin() -> Path | None:
    """The folder with initdb, pg_ctl and createdb, or None where PostgreSQL is not installed."""
    for folder in BIN_DIRS:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "createdb")):
            return folder
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def server_user() -> str | None:
    """The user the server runs as: None (this user) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None):
        self.bin = bin_dir or find_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL's initdb and pg_ctl are not installed")
        self.user = server_user()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="nnspec-pg-"))
        self.data = self.root / "data"
        self.started = False

    def run(self, tool: str, *args: str) -> str:
        cmd = [str(self.bin / tool), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> "PostgresServer":
        if self.user is not None:
            shutil.chown(self.root, user=self.user)
        self.run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                 "-t", "60", "start")
        self.started = True
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            self.started = False
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
