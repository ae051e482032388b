"""Calls that block the thread they run in, by qualified name, and what an async twin uses.

A legacy `def` endpoint runs in a worker thread, where blocking only holds that
thread. The same call in an `async def` endpoint holds the event loop, and with
it every request of the process. Names are matched after imports are resolved
(`from time import sleep` is `time.sleep`), on the call itself or on the app's
own functions it calls.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Blocking:
    """A family of blocking calls and the async form that replaces them."""

    what: str
    async_form: str


HTTP = Blocking("a blocking HTTP call", "httpx.AsyncClient: `await client.get(...)`")
FILES = Blocking(
    "file I/O", "`await anyio.Path(path).read_text()`, or `await anyio.to_thread.run_sync(...)`"
)
PROCESS = Blocking("a subprocess", "`await anyio.run_process([...])`")
DRIVER = Blocking(
    "a sync database or network driver",
    "its async client (asyncpg, redis.asyncio ...), or the request's AsyncSession",
)
SLEEP = Blocking("time.sleep", "`await asyncio.sleep(...)`")

CALLS: dict[str, Blocking] = {
    "time.sleep": SLEEP,
    "requests": HTTP,
    "urllib.request.urlopen": HTTP,
    "http.client": HTTP,
    "httpx.get": HTTP,
    "httpx.post": HTTP,
    "httpx.put": HTTP,
    "httpx.patch": HTTP,
    "httpx.delete": HTTP,
    "httpx.request": HTTP,
    "httpx.Client": HTTP,
    "builtins.open": FILES,
    "io.open": FILES,
    "shutil.copy": FILES,
    "shutil.copyfile": FILES,
    "shutil.move": FILES,
    "shutil.rmtree": FILES,
    "os.listdir": FILES,
    "os.remove": FILES,
    "os.rename": FILES,
    "subprocess": PROCESS,
    "os.system": PROCESS,
    "psycopg.connect": DRIVER,
    "psycopg2.connect": DRIVER,
    "sqlite3.connect": DRIVER,
    "pymysql.connect": DRIVER,
    "MySQLdb.connect": DRIVER,
    "sqlalchemy.create_engine": DRIVER,
    "redis.Redis": DRIVER,
    "redis.StrictRedis": DRIVER,
    "redis.from_url": DRIVER,
    "smtplib.SMTP": DRIVER,
    "socket.create_connection": DRIVER,
}


def blocking(qualified_name: str) -> Blocking | None:
    """The blocking family of the call named `qualified_name`, matched by dotted prefix."""
    parts = qualified_name.split(".")
    for length in range(len(parts), 0, -1):
        found = CALLS.get(".".join(parts[:length]))
        if found is not None:
            return found
    return None
