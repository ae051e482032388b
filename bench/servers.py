"""Servers under test: one uvicorn process each (uvloop, httptools, no access log), pinned.

The gateway runs on the loop `gateway serve` uses: uvloop with an accept loop that
drains the listen queue (gateway/ops/serving.py).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil

from bench.apps.common import DATABASE_URL_VARIABLE
from bench.machine import Pinning
from bench.scenarios import USERS_ROUTE, Configuration

HOST = "127.0.0.1"
READY_PATH = "/users/1"
READY_SECONDS = 60.0
STOP_SECONDS = 5.0
MODE_SECONDS = 15.0
REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = secrets.token_urlsafe(24)
GATEWAY_LOOP = (
    "gateway.ops.serving:new_event_loop"  # uvloop draining its listen queue, as `gateway serve`
)
NEVER_JUDGED = 10**12  # the canary guard keeps counting but never rolls a measured canary back


class ServerFailed(RuntimeError):
    """The server exited, or did not answer, before it was ready."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def server_env(config: Configuration, database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env[DATABASE_URL_VARIABLE] = database_url
    if config.gateway:
        env["GATEWAY_DATABASE_URL"] = database_url
        env["GATEWAY_LOG_LEVEL"] = "WARNING"
        env["GATEWAY_ADMIN_TOKENS"] = json.dumps({"bench": ADMIN_TOKEN})
        env["GATEWAY_ROLLBACK_MIN_REQUESTS"] = str(NEVER_JUDGED)
    env.update(config.env)
    return env


def server_command(config: Configuration, port: int) -> list[str]:
    address = f"--host {HOST} --port {port}".split()
    if config.workers is not None:
        serve = "from gateway.cli import main; main()"
        workers = ["--workers", str(config.workers)]
        return [sys.executable, "-c", serve, "serve", "--app", str(config.app), *address, *workers]
    assert config.app is not None
    loop = GATEWAY_LOOP if config.gateway else "uvloop"
    uvicorn = ["--loop", loop, "--http", "httptools", "--no-access-log"]
    quiet = ["--log-level", "warning"]
    return [sys.executable, "-m", "uvicorn", config.app, *address, *uvicorn, *quiet]


def wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            response = httpx.get(server.base_url + READY_PATH, timeout=5.0)
        except httpx.TransportError as error:
            last = repr(error)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        time.sleep(0.2)
    raise ServerFailed(f"not ready in {READY_SECONDS:.0f} s ({last}):\n{server.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server by PID, then SIGKILL it and any child left after the grace period."""
    family = process_tree(process.pid)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    for child in family[1:]:
        with suppress(psutil.NoSuchProcess):
            child.kill()


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    """Resident memory of process `pid` and all its descendants, in bytes."""
    total = 0
    for process in process_tree(pid):
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


def set_mode(
    server: Server,
    body: Mapping[str, object],
    workers: int,
    routes: Sequence[str] = (USERS_ROUTE,),
) -> None:
    """Put each of `routes` in `body`'s mode through the admin API; wait until every worker has."""
    for route in routes:
        put_mode(server, route, body)
    wanted = {key: body[key] for key in ("mode", "percent", "primary") if key in body}
    deadline = time.monotonic() + MODE_SECONDS
    agreeing = 0
    while agreeing < 4 * workers:
        if time.monotonic() > deadline:
            raise ServerFailed(f"workers did not all switch to {wanted} in {MODE_SECONDS:.0f} s")
        agreeing = agreeing + 1 if current_mode(server, wanted, routes) else 0
        time.sleep(0.05)


def put_mode(server: Server, route: str, body: Mapping[str, object]) -> None:
    url = f"{server.base_url}/admin/routes/{quote(route, safe='')}"
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    response = httpx.put(url, json={**body, "reason": "benchmark"}, headers=headers, timeout=10)
    if response.status_code != 200:
        raise ServerFailed(
            f"admin API refused the mode of {route}: {response.status_code} {response.text}"
        )


def current_mode(
    server: Server, wanted: Mapping[str, object], routes: Sequence[str] = (USERS_ROUTE,)
) -> bool | None:
    """Whether a fresh connection (any worker) reports `wanted`'s mode for every one of `routes`.

    None if no worker answers.
    """
    try:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.base_url, timeout=5, headers=headers) as client:
            listed = client.get("/admin/routes").json()
    except httpx.HTTPError:
        return None
    modes = {route["route"]: route for route in listed}
    return all(modes[route].get(key) == value for route in routes for key, value in wanted.items())


@contextmanager
def running(
    config: Configuration, database_url: str, pinning: Pinning, log_dir: Path
) -> Iterator[Server]:
    """Start `config`'s server, wait until it answers (and has its mode), stop it afterwards."""
    port = free_port()
    log_path = log_dir / f"{config.name}.log"
    command = pinning.server_prefix(config.workers or 1) + server_command(config, port)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=server_env(config, database_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log_path)
    try:
        wait_until_ready(server)
        if config.mode:
            set_mode(server, config.mode_body, config.workers or 1, config.routes)
        yield server
    finally:
        stop(process)
