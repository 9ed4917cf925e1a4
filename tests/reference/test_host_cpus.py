"""`default_threads`: one thread per physical core the process may use, within its CPU quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.host_cpus import default_threads


def fake_sysfs(root: Path, cores_by_cpu: dict[int, tuple[int, int]]) -> Path:
    """A /sys/devices/system/cpu with a (package, core) for each CPU number."""
    for cpu, (package, core) in cores_by_cpu.items():
        topology = root / "sys" / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root / "sys"


def fake_cgroup(root: Path, limits: dict[str, str], own: str = "/app/worker") -> tuple[Path, Path]:
    """A cgroup v2 tree with ``cpu.max`` files at the given relative paths, and a /proc file."""
    cgroup_root = root / "cgroup"
    (cgroup_root / own.lstrip("/")).mkdir(parents=True)
    for relative, text in limits.items():
        (cgroup_root / relative / "cpu.max").write_text(text)
    proc = root / "proc_cgroup"
    proc.write_text(f"0::{own}\n")
    return cgroup_root, proc


def count(tmp_path: Path, affinity: set[int], cores_by_cpu=None, limits=None, proc_text=None):
    sysfs = fake_sysfs(tmp_path, cores_by_cpu or {})
    cgroup_root, proc = fake_cgroup(tmp_path, limits or {})
    if proc_text is not None:
        proc.write_text(proc_text)
    return default_threads(
        affinity=affinity, sysfs_cpus=sysfs, cgroup_root=cgroup_root, proc_cgroup=proc
    )


def test_one_thread_per_core_when_each_core_has_one_cpu(tmp_path):
    chosen = count(tmp_path, {0, 1}, {0: (0, 0), 1: (0, 1)})
    assert chosen.threads == 2
    assert chosen.reason == "2 CPUs this process may run on, 2 physical cores among them"


def test_hyperthreads_of_one_core_count_once(tmp_path):
    smt = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}
    assert count(tmp_path, {0, 1, 2, 3}, smt).threads == 2


def test_cores_of_two_packages_with_equal_core_ids_are_apart(tmp_path):
    assert count(tmp_path, {0, 1}, {0: (0, 0), 1: (1, 0)}).threads == 2


def test_only_the_cpus_in_the_affinity_mask_count(tmp_path):
    chosen = count(tmp_path, {1}, {0: (0, 0), 1: (0, 1)})
    assert chosen.threads == 1
    assert chosen.reason == "1 CPU this process may run on, 1 physical core among them"


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_a_cgroup_v1_quota_caps_the_count(tmp_path, mount):
    cores = {cpu: (0, cpu) for cpu in range(4)}
    sysfs = fake_sysfs(tmp_path, cores)
    group = tmp_path / "cgroup" / mount / "app" / "worker"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("250000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cgroup" / mount / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cgroup" / mount / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("4:memory:/app/worker\n3:cpu,cpuacct:/app/worker\n0::/\n")
    chosen = default_threads(
        affinity={0, 1, 2, 3}, sysfs_cpus=sysfs, cgroup_root=tmp_path / "cgroup", proc_cgroup=proc
    )
    assert chosen.threads == 3
    assert chosen.reason.endswith("; a cgroup CPU quota of 2.5")


def test_without_topology_every_allowed_cpu_counts(tmp_path):
    chosen = count(tmp_path, {0, 1, 2})
    assert chosen.threads == 3
    assert chosen.reason == "3 CPUs this process may run on"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"app/worker": "150000 100000"}, 2),  # 1.5 CPUs of time: rounded up
        ({"app/worker": "50000 100000"}, 1),
        ({"app": "100000 100000", "app/worker": "max 100000"}, 1),  # a parent's limit holds
        ({"app/worker": "max 100000"}, 4),
        ({"": "200000 100000"}, 2),  # the root's own file counts too
    ],
)
def test_a_cgroup_cpu_quota_caps_the_count(tmp_path, limits, expected):
    cores = {cpu: (0, cpu) for cpu in range(4)}
    assert count(tmp_path, {0, 1, 2, 3}, cores, limits).threads == expected


def test_the_quota_is_named_in_the_reason(tmp_path):
    chosen = count(tmp_path, {0, 1}, {0: (0, 0), 1: (0, 1)}, {"app/worker": "150000 100000"})
    assert chosen.reason.endswith("; a cgroup CPU quota of 1.5")


@pytest.mark.parametrize("text", ["", "1:cpu:/app\n", "0::/elsewhere\n", "2:memory:/app/worker\n"])
def test_a_cgroup_without_a_quota_sets_no_cap(tmp_path, text):
    cores = {0: (0, 0), 1: (0, 1)}
    assert count(tmp_path, {0, 1}, cores, {"app/worker": "50000 100000"}, text).threads == 2


@pytest.mark.parametrize("text", ["garbage", "0 100000", "-1 100000", "1 2 3"])
def test_a_malformed_cpu_max_sets_no_cap(tmp_path, text):
    cores = {0: (0, 0), 1: (0, 1)}
    assert count(tmp_path, {0, 1}, cores, {"app/worker": text}).threads == 2


def test_this_process_gets_at_least_one_thread():
    chosen = default_threads()
    assert chosen.threads >= 1
    assert "CPUs this process may run on" in chosen.reason
