"""`python -m bench.attack`: clients sending huge request heads to `gateway serve`, and the others.

Quiet and attacked rounds alternate. In a quiet round one prober asks
`/healthz` in a loop; in an attacked round four more clients each send a
request whose one header is `--header-mb` MB long, starting again as soon as
the server cuts them off. Printed: the prober's p50 and p99 in each kind of
round (medians over the rounds) and their ratio, and for the attackers how
long and how many bytes the server took before it answered and closed.

The server runs on the first core (`taskset`), the prober and the attackers
on the last one, each attacker a process of its own at the lowest priority
(on a real network they would be other machines), retrying at once when cut
off: the worst they can do. `--protocol stock` runs
the same app on uvicorn's own httptools protocol, without the gateway's
limits, for comparison (use a smaller `--header-mb` there: it reads all of it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.database import embedded_server, recreate
from bench.machine import plan_pinning, raise_open_files
from bench.servers import HOST, free_port, stop
from demo.database import install

CHUNK = 1024 * 1024
PROTOCOLS = {
    "gateway": "gateway.ops.http_protocol:GatewayHttpProtocol",
    "stock": "httptools",
}


@dataclass(frozen=True)
class Cut:
    seconds: float
    bytes_sent: int
    answered: bool


def attacker(port: int, header_mb: int, until: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Send huge heads until `until`; put the list of their Cuts on `results` at the end.

    At the lowest priority: the attackers share the load generator's core with the
    prober, whose latency must show the server's behaviour, not this core's.
    """
    os.nice(19)
    chunk = b"a" * CHUNK
    cuts = []
    while time.monotonic() < until:
        started, sent, answered = time.monotonic(), 0, False
        try:
            with socket.create_connection((HOST, port), timeout=30) as connection:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
                for _ in range(header_mb):
                    connection.sendall(chunk)
                    sent += CHUNK
                    if time.monotonic() > until:
                        break
                connection.sendall(b"\r\n\r\n")
                answered = connection.recv(64).startswith(b"HTTP/1.1 ")
        except OSError:
            answered = False  # cut off while sending: the connection was closed under it
        cuts.append(Cut(time.monotonic() - started, sent, answered))
    results.put(cuts)


def probe(base_url: str, seconds: float) -> list[float]:
    """GET /healthz for `seconds`, one request after the other; their latencies."""
    latencies = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    return latencies


def p(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def gateway(url: str, protocol: str, log: Path) -> Iterator[str]:
    port = free_port()
    pinning = plan_pinning()
    command = [
        *pinning.server_prefix(), sys.executable, "-m", "uvicorn", "demo.app:app",
        "--host", HOST, "--port", str(port), "--loop", "gateway.ops.serving:new_event_loop",
        "--http", PROTOCOLS[protocol], "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_LOG_LEVEL": "ERROR"}
    with log.open("ab") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
    finally:
        stop(process)


def attacked_round(base: str, header_mb: int, seconds: float) -> tuple[list[float], list[Cut]]:
    port = int(base.rsplit(":", 1)[1])
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    until = time.monotonic() + seconds
    attackers = [
        multiprocessing.Process(target=attacker, args=(port, header_mb, until, results))
        for _ in range(4)
    ]
    for process in attackers:
        process.start()
    latencies = probe(base, seconds)
    cuts = [cut for _ in attackers for cut in results.get(timeout=seconds + 60)]
    for process in attackers:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
    return latencies, cuts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="gateway")
    parser.add_argument("--header-mb", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    arguments = parser.parse_args()
    raise_open_files()
    pinning = plan_pinning()
    if pinning.load_cpus:
        os.sched_setaffinity(0, pinning.load_cpus)
    quiet: list[tuple[float, float]] = []
    attacked: list[tuple[float, float]] = []
    cuts: list[Cut] = []
    with embedded_server() as server_url:
        url = recreate(server_url, "gateway_attack")
        install(url)
        with gateway(url, arguments.protocol, Path("/tmp/gateway-attack.log")) as base:
            probe(base, 1.0)  # warm up
            for _ in range(arguments.rounds):
                calm = probe(base, arguments.seconds)
                quiet.append((p(calm, 0.5), p(calm, 0.99)))
                loud, round_cuts = attacked_round(base, arguments.header_mb, arguments.seconds)
                attacked.append((p(loud, 0.5), p(loud, 0.99)))
                cuts.extend(round_cuts)
    report(arguments, pinning.note, quiet, attacked, cuts)


def report(
    arguments: argparse.Namespace,
    pinning: str,
    quiet: list[tuple[float, float]],
    attacked: list[tuple[float, float]],
    cuts: list[Cut],
) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    quiet_p99, attacked_p99 = median([q[1] for q in quiet]), median([a[1] for a in attacked])
    print(f"protocol: {arguments.protocol}; {pinning}")
    rounds = f"{arguments.rounds} rounds of {arguments.seconds:g} s"
    print(f"{rounds}, 4 attackers x {arguments.header_mb} MB headers")
    quiet_p50, attacked_p50 = median([q[0] for q in quiet]), median([a[0] for a in attacked])
    print(f"/healthz quiet:    p50 {quiet_p50:.2f} ms, p99 {quiet_p99:.2f} ms")
    print(f"/healthz attacked: p50 {attacked_p50:.2f} ms, p99 {attacked_p99:.2f} ms")
    print(f"p99 attacked / quiet: {attacked_p99 / quiet_p99:.2f}x")
    if cuts:
        seconds = sorted(cut.seconds for cut in cuts)
        sent = sorted(cut.bytes_sent for cut in cuts)
        print(
            f"attacks: {len(cuts)}; until cut off: median {median(seconds) * 1000:.1f} ms, "
            f"max {seconds[-1] * 1000:.1f} ms; sent before the cut: median "
            f"{median([float(s) for s in sent]) / 1e6:.2f} MB, max {sent[-1] / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
