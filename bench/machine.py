"""The machine under test: tools, cores split between server and load, limits, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import shutil
import sys
from dataclasses import dataclass

WANTED_OPEN_FILES = 20_000
WRK_MISSING = (
    "wrk is not installed: the benchmark drives its load with it. "
    "Install the Debian package: sudo apt-get install wrk"
)


class MissingTool(RuntimeError):
    """A program the benchmark needs is not installed."""


def require_wrk() -> str:
    """The path of `wrk`; `MissingTool` saying how to install it when it is absent."""
    path = shutil.which("wrk")
    if path is None:
        raise MissingTool(WRK_MISSING)
    return path


def raise_open_files() -> int:
    """Raise the open-file limit (inherited by children) to 20,000, within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(WANTED_OPEN_FILES, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return max(wanted, soft)


def cpu_list(cpus: list[int]) -> str:
    return ",".join(str(cpu) for cpu in cpus)


@dataclass(frozen=True)
class Pinning:
    """Which cores the servers and the load generators may use (None: any)."""

    server_cpus: list[int] | None
    load_cpus: list[int] | None
    note: str

    def server_prefix(self, workers: int = 1) -> list[str]:
        """`taskset` for a server of `workers` processes; none if it would need the load's core."""
        if self.server_cpus is None or len(self.server_cpus) < workers:
            return []
        return ["taskset", "-c", cpu_list(self.server_cpus)]

    def load_prefix(self) -> list[str]:
        return [] if self.load_cpus is None else ["taskset", "-c", cpu_list(self.load_cpus)]

    def load_threads(self) -> int:
        return len(self.load_cpus) if self.load_cpus else 2


def plan_pinning() -> Pinning:
    """Servers on every core but the last, load generators on the last one, when possible."""
    cores = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        return Pinning(None, None, "not pinned: taskset is not installed")
    if len(cores) < 2:
        return Pinning(None, None, "not pinned: only one core is available")
    server, load = cores[:-1], cores[-1:]
    note = (
        f"servers pinned to core(s) {cpu_list(server)}, wrk and pgbench to core {load[0]}; "
        f"a server with more workers than {len(server)} core(s) runs unpinned"
    )
    return Pinning(server, load, note)


def machine_facts() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
    }


def package_versions() -> dict[str, str]:
    """Every installed distribution and its version, sorted by name."""
    versions = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
    return dict(sorted(versions.items(), key=lambda item: item[0].lower()))
