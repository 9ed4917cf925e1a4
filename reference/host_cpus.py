"""How many llama.cpp threads to run when a model's config does not say: `default_threads`.

llama-cpp-python's own default is ``os.cpu_count() // 2``, which assumes two hardware threads
per core; on a VM with one thread per core it leaves half the cores idle. llama.cpp computes a
decode step on all its threads and waits at a barrier for the slowest, so one thread per core
the process may really use is the count that decodes fastest, and any thread beyond that count
waits for a CPU at every barrier. Three things bound that count, and no library reads all
three (``os.cpu_count`` and ``psutil.cpu_count`` count the whole machine;
``os.sched_getaffinity`` counts CPUs, not cores; none reads a container's CPU quota):

- the CPUs in the process's affinity mask (``taskset``, ``docker --cpuset-cpus``);
- the physical cores among them: hardware threads of one core share its vector units, which a
  matrix product keeps busy, so llama.cpp's own tools default to physical cores too;
- the cgroup CPU quota, v2 or v1 (``docker --cpus``, a Kubernetes CPU limit), rounded up: a process
  allowed 2 CPUs of time on a 16-core host is throttled, not sped up, by 16 threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThreadCount", "default_threads"]

_SYSFS_CPUS = Path("/sys/devices/system/cpu")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class ThreadCount:
    """A thread count and the sentence that says where it came from, for the server's log."""

    threads: int
    reason: str


def default_threads(
    *,
    affinity: set[int] | None = None,
    sysfs_cpus: Path = _SYSFS_CPUS,
    cgroup_root: Path = _CGROUP_ROOT,
    proc_cgroup: Path = _PROC_CGROUP,
) -> ThreadCount:
    """One thread per physical core this process may run on, capped by its CPU quota.

    The keyword arguments exist for tests; the defaults read this process and this host. A
    topology or quota the host does not expose is left out of the reckoning, never guessed.
    """
    cpus = _allowed_cpus() if affinity is None else set(affinity)
    cores = _physical_cores(cpus, sysfs_cpus)
    threads = cores if cores is not None else len(cpus)
    parts = [
        f"{_count(len(cpus), 'CPU')} this process may run on"
        + (f", {_count(cores, 'physical core')} among them" if cores is not None else "")
    ]
    quota = _cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        parts.append(f"a cgroup CPU quota of {quota:g}")
        threads = min(threads, math.ceil(quota))
    return ThreadCount(max(1, threads), "; ".join(parts))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _allowed_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _physical_cores(cpus: set[int], sysfs_cpus: Path) -> int | None:
    """Distinct (package, core) pairs among ``cpus``; None where sysfs does not say."""
    cores = set()
    for cpu in cpus:
        topology = sysfs_cpus / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return None
        cores.add((package, core))
    return len(cores) or None


def _cpu_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """The tightest CPU quota on this process's cgroup and its ancestors, in CPUs.

    cgroup v2 keeps it in ``cpu.max`` of the unified tree; v1 in ``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` of the ``cpu`` controller's tree (mounted as ``cpu`` or
    ``cpu,cpuacct``).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if number == "0" and not controllers:
            quotas += _along(cgroup_root, relative, _read_cpu_max)
        elif "cpu" in controllers.split(","):
            for mount in (controllers, "cpu", "cpu,cpuacct"):
                quotas += _along(cgroup_root / mount, relative, _read_cfs_quota)
    return min(quotas, default=None)


def _along(root: Path, relative: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas ``read`` finds in the cgroup at ``relative`` under ``root`` and its parents."""
    if not root.is_dir():
        return []
    found = []
    directory = root / relative.strip().lstrip("/")
    while True:
        quota = read(directory)
        if quota is not None:
            found.append(quota)
        if directory == root or root not in directory.parents:
            return found
        directory = directory.parent


def _read_cpu_max(directory: Path) -> float | None:
    """``cpu.max`` holds "QUOTA PERIOD" in microseconds, or "max PERIOD" for no limit."""
    try:
        fields = (directory / "cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _read_cfs_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 for no limit; ``cpu.cfs_period_us`` is its period."""
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
