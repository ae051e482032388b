"""A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test server."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from tests.processes import LOCALHOST, free_port

START_SECONDS = 10.0
SERVER_POOL_SIZE = 4  # fewer server connections than the gateway's pools: they must be shared
SYSTEM_USER = "postgres"  # PgBouncer refuses to run as root


@dataclass(frozen=True)
class Bouncer:
    port: int
    log: Path

    def url_for(self, database_url: str) -> str:
        """`database_url`'s database, reached through this PgBouncer."""
        url = make_url(database_url).set(host=LOCALHOST, port=self.port, query={})
        return url.render_as_string(hide_password=False)


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer",) if os.path.exists(path)), None
    )


def server_address(server_url: str) -> tuple[str, int]:
    """Host (or socket directory) and port of the PostgreSQL server at `server_url`."""
    url = make_url(server_url)
    host = url.query.get("host") or url.host or LOCALHOST
    port = url.query.get("port") or url.port or 5432
    return str(host if isinstance(host, str) else host[0]), int(str(port))


def system_user(server_url: str) -> pwd.struct_passwd:
    """Who PgBouncer runs as: the owner of the server's socket directory, if not root."""
    host, _ = server_address(server_url)
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid)
        if owner.pw_uid != 0:
            return owner
    return pwd.getpwnam(SYSTEM_USER)


def config(server_url: str, port: int, directory: Path, pool_mode: str) -> str:
    host, server_port = server_address(server_url)
    return f"""[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = {LOCALHOST}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "users.txt"}
pool_mode = {pool_mode}
default_pool_size = {SERVER_POOL_SIZE}
max_client_conn = 1000
server_reset_query =
logfile = {directory / "pgbouncer.log"}
pidfile = {directory / "pgbouncer.pid"}
"""


@contextmanager
def started_pgbouncer(server_url: str, pool_mode: str = "transaction") -> Iterator[Bouncer]:
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("PgBouncer is not installed: apt-get install pgbouncer")
    directory = Path(tempfile.mkdtemp(prefix="gateway-pgbouncer-"))
    port = free_port()
    user = system_user(server_url) if os.geteuid() == 0 else None
    (directory / "users.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(config(server_url, port, directory, pool_mode))
    command = [binary, str(directory / "pgbouncer.ini")]
    if user is not None:
        os.chmod(directory, 0o755)
        for path in (directory, *directory.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        command.insert(1, f"--user={user.pw_name}")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bouncer = Bouncer(port, directory / "pgbouncer.log")
    try:
        wait_until_accepting(bouncer, server_url, process)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(directory, ignore_errors=True)


def wait_until_accepting(
    bouncer: Bouncer, server_url: str, process: subprocess.Popen[bytes]
) -> None:
    probe = make_url(bouncer.url_for(server_url)).set(drivername="postgresql")
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"PgBouncer exited ({process.returncode}): {error}")
        try:
            psycopg.connect(probe.render_as_string(hide_password=False), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
