"""cgroups: layout detection, v2 via fixture trees, v1 on the real cgroupfs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from dvsd.handlers import cgroup as cgroup_handlers
from dvsd.handlers import host as host_handlers
from dvsd.host import cgroups
from dvsd.host.errors import InvalidValue, NoSuchProcess, NotSupported
from dvsd.hostpolicy import HostPolicy
from dvsd.registry import RequestError
from dvsd.rqst import ReturnCode

from .conftest import FIXTURES

# -- layout -------------------------------------------------------------------


def test_mountinfo_pure_v2():
    layout = cgroups.parse_mountinfo((FIXTURES / "mountinfo-v2.txt").read_text())
    assert layout.version == "v2"
    assert layout.v1 == {}
    assert layout.v2.mountpoint == "/sys/fs/cgroup"


def test_mountinfo_legacy_v1_with_combined_hierarchies():
    layout = cgroups.parse_mountinfo((FIXTURES / "mountinfo-v1.txt").read_text())
    assert layout.version == "v1"
    assert layout.v2 is None
    assert layout.v1["cpu"].mountpoint == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.v1["cpuacct"] == layout.v1["cpu"]
    assert layout.v1["net_prio"].mountpoint == "/sys/fs/cgroup/net_cls,net_prio"
    assert "name=systemd" in layout.v1
    assert not any(key.startswith("release_agent") for key in layout.v1)
    assert "xattr" not in layout.v1


def test_mountinfo_hybrid_captured_on_this_machine():
    layout = cgroups.parse_mountinfo((FIXTURES / "mountinfo-hybrid.txt").read_text())
    assert layout.version == "hybrid"
    assert layout.v2.mountpoint == "/sys/fs/cgroup/unified"
    assert {"cpu", "memory", "blkio", "pids"} <= set(layout.v1)


def test_detect_layout_matches_this_machine():
    with open("/proc/self/mountinfo") as mountinfo:
        text = mountinfo.read()
    kinds = {line.split(" - ")[1].split()[0] for line in text.splitlines()}
    layout = cgroups.detect_layout()
    if "cgroup" in kinds and "cgroup2" in kinds:
        assert layout.version == "hybrid"
    elif "cgroup2" in kinds:
        assert layout.version == "v2"
    elif "cgroup" in kinds:
        assert layout.version == "v1"


# -- v2 through the fixture tree -----------------------------------------------


def v2(root: Path) -> cgroups.CgroupLayout:
    return cgroups.v2_layout(str(root))


def locate_v2(root: Path, controller: str, path: str) -> cgroups.CgroupDir:
    return cgroups.locate(
        v2(root), v1_controller=None, v2_controller=controller, path=path
    )


def test_v2_cpu_read(cgroup2_root):
    where = locate_v2(cgroup2_root, "cpu", "/system.slice/demo.service")
    cpu = cgroups.read_cpu(where, v2(cgroup2_root))
    assert (cpu.version, cpu.quota, cpu.period, cpu.weight) == (
        "v2",
        "max",
        100000,
        100,
    )
    assert cpu.shares is None
    assert cpu.usage_usec == 123456789
    assert (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec) == (10, 2, 5000)

    idle = cgroups.read_cpu(
        locate_v2(cgroup2_root, "cpu", "/system.slice/idle.service"), v2(cgroup2_root)
    )
    assert (idle.quota, idle.period, idle.weight) == (50000, 100000, 400)
    assert idle.usage_usec is None  # no cpu.stat in that fixture: absent, not an error


def test_v2_root_has_no_cpu_max(cgroup2_root):
    root = cgroups.read_cpu(locate_v2(cgroup2_root, "cpu", "/"), v2(cgroup2_root))
    assert root.quota is None and root.period is None and root.weight is None
    assert root.usage_usec == 92831746000


def test_v2_memory_read(cgroup2_root):
    demo = cgroups.read_memory(
        locate_v2(cgroup2_root, "memory", "/system.slice/demo.service")
    )
    assert demo.limit == "max"
    assert demo.high == 536870912
    assert demo.current == 1234944
    assert demo.peak == 2469888
    assert demo.swap_limit == "max"
    assert demo.soft_limit is None
    idle = cgroups.read_memory(
        locate_v2(cgroup2_root, "memory", "/system.slice/idle.service")
    )
    assert (idle.limit, idle.high, idle.current, idle.peak) == (
        1073741824,
        "max",
        0,
        None,
    )


def test_v2_io_read(cgroup2_root):
    demo = cgroups.read_io(locate_v2(cgroup2_root, "io", "/system.slice/demo.service"))
    assert demo.limits == [
        cgroups.IoLimit(device="8:0", rbps=1048576, wbps="max", riops="max", wiops=120)
    ]
    assert demo.stats == [
        cgroups.IoStat(device="8:0", rbytes=1409024, wbytes=8192, rios=62, wios=2)
    ]
    idle = cgroups.read_io(locate_v2(cgroup2_root, "io", "/system.slice/idle.service"))
    assert idle.limits == [] and idle.stats == []  # empty io.max: no limits


def test_v2_cpu_set_writes_kernel_syntax(cgroup2_root):
    layout = v2(cgroup2_root)
    where = locate_v2(cgroup2_root, "cpu", "/system.slice/demo.service")
    settings = cgroups.set_cpu(where, layout, quota="50000", weight=250)
    assert (Path(where.directory) / "cpu.max").read_text() == "50000 100000"
    assert (Path(where.directory) / "cpu.weight").read_text() == "250"
    assert (settings.quota, settings.period, settings.weight) == (50000, 100000, 250)
    cgroups.set_cpu(where, layout, period=20000)
    assert (Path(where.directory) / "cpu.max").read_text() == "50000 20000"
    cgroups.set_cpu(where, layout, quota="max")
    assert (Path(where.directory) / "cpu.max").read_text() == "max 20000"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quota": "0"}, "quota must be"),
        ({"quota": "-5"}, "quota must be"),
        ({"quota": "lots"}, "quota must be"),
        ({"weight": 0}, "weight must be in 1..10000"),
        ({"weight": 10001}, "weight must be in 1..10000"),
        ({"period": 10}, "period must be in 1000..1000000"),
        ({"shares": 512}, "shares is the cgroup v1 setting"),
        ({"quota": "50000", "weight": 0}, "weight must be"),
    ],
)
def test_v2_cpu_bad_values_write_nothing(cgroup2_root, changes, message):
    where = locate_v2(cgroup2_root, "cpu", "/system.slice/demo.service")
    before = {
        name: (Path(where.directory) / name).read_text()
        for name in ("cpu.max", "cpu.weight")
    }
    with pytest.raises(InvalidValue, match=message):
        cgroups.set_cpu(where, v2(cgroup2_root), **changes)
    after = {name: (Path(where.directory) / name).read_text() for name in before}
    assert after == before


def test_v2_memory_set_with_units(cgroup2_root):
    where = locate_v2(cgroup2_root, "memory", "/system.slice/demo.service")
    settings = cgroups.set_memory(where, limit="512M", high="max")
    assert (Path(where.directory) / "memory.max").read_text() == str(512 << 20)
    assert (Path(where.directory) / "memory.high").read_text() == "max"
    assert settings.limit == 512 << 20 and settings.high == "max"
    with pytest.raises(InvalidValue, match="limit must be 'max' or a size"):
        cgroups.set_memory(where, limit="12X")
    with pytest.raises(InvalidValue, match="greater than 0"):
        cgroups.set_memory(where, high="0")


def test_v2_io_set(cgroup2_root):
    where = locate_v2(cgroup2_root, "io", "/system.slice/idle.service")
    cgroups.set_io(where, "8:0", wbps="2097152", riops="max")
    assert (
        Path(where.directory) / "io.max"
    ).read_text() == "8:0 wbps=2097152 riops=max"
    with pytest.raises(InvalidValue, match="major:minor"):
        cgroups.set_io(where, "sda", rbps="1")
    with pytest.raises(InvalidValue, match="rbps must be 'max' or an integer in 1.."):
        cgroups.set_io(where, "8:0", rbps="-1")


def test_v2_net_is_not_supported(cgroup2_root):
    with pytest.raises(NotSupported, match="not available on cgroup v2"):
        cgroups.locate_net(v2(cgroup2_root), path="/", pid=None)


def test_v2_by_pid_uses_the_unified_line(cgroup2_root, fake_proc):
    fake_proc.add(4242, cgroup="0::/system.slice/demo.service\n")
    where = cgroups.locate(
        v2(cgroup2_root),
        v1_controller="cpu",
        v2_controller="cpu",
        pid=4242,
        proc_root=str(fake_proc.root),
    )
    assert where.path == "/system.slice/demo.service"
    with pytest.raises(NoSuchProcess):
        cgroups.locate(
            v2(cgroup2_root),
            v1_controller="cpu",
            v2_controller="cpu",
            pid=999999,
            proc_root=str(fake_proc.root),
        )


@pytest.mark.parametrize("path", ["relative", "/a/../../etc", "/x\0y"])
def test_bad_cgroup_paths(cgroup2_root, path):
    with pytest.raises(InvalidValue):
        locate_v2(cgroup2_root, "cpu", path)


def test_missing_cgroup_and_controller(cgroup2_root):
    with pytest.raises(InvalidValue, match="no cgroup /nope"):
        locate_v2(cgroup2_root, "cpu", "/nope")
    with pytest.raises(NotSupported, match="not mounted or enabled"):
        locate_v2(cgroup2_root, "perf_event", "/")


def test_v2_controllers(cgroup2_root):
    listed = {
        entry.name: entry
        for entry in cgroups.list_controllers(v2(cgroup2_root), "/nonexistent")
    }
    assert listed["memory"].version == "v2" and listed["memory"].subtree_enabled
    assert listed["hugetlb"].available and listed["hugetlb"].subtree_enabled is False
    assert listed["cpu"].kernel_enabled is None  # no /proc/cgroups in that root


# -- handlers over the fixture tree --------------------------------------------


async def test_cgcpu_handler_reads_and_sets(cgroup2_root, ctx_factory):
    ctx = ctx_factory(HostPolicy(cgroup_v2_root=str(cgroup2_root)))
    params = cgroup_handlers.CgCpuParams(path="/system.slice/demo.service")
    reply = await cgroup_handlers.cg_cpu(ctx, params)
    assert reply.items[0].quota == "max"
    params = cgroup_handlers.CgCpuParams(
        path="/system.slice/demo.service", quota="25000", period=50000
    )
    reply = await cgroup_handlers.cg_cpu(ctx, params)
    assert (reply.items[0].quota, reply.items[0].period) == (25000, 50000)


async def test_cg_write_refused_by_policy(cgroup2_root, ctx_factory):
    ctx = ctx_factory(HostPolicy(cgroup_v2_root=str(cgroup2_root), cgroup_write=False))
    params = cgroup_handlers.CgMemParams(path="/system.slice/demo.service", limit="1G")
    with pytest.raises(RequestError) as caught:
        await cgroup_handlers.cg_mem(ctx, params)
    assert caught.value.rcode == ReturnCode.NOT_ALLOWED
    memory_max = cgroup2_root / "system.slice/demo.service/memory.max"
    assert memory_max.read_text().strip() == "max"


async def test_cgnet_handler_on_v2_is_not_supported(cgroup2_root, ctx_factory):
    ctx = ctx_factory(HostPolicy(cgroup_v2_root=str(cgroup2_root)))
    with pytest.raises(RequestError) as caught:
        await cgroup_handlers.cg_net(ctx, cgroup_handlers.CgNetParams(path="/"))
    assert caught.value.rcode == ReturnCode.NOT_SUPPORTED
    assert "not available on cgroup v2" in caught.value.message


def test_params_validate_before_sending():
    with pytest.raises(ValueError, match="either path"):
        cgroup_handlers.CgCpuParams()
    with pytest.raises(ValueError, match="either path"):
        cgroup_handlers.CgCpuParams(path="/", pid=3)
    with pytest.raises(ValueError, match="shares must be in 2..262144"):
        cgroup_handlers.CgCpuParams(path="/", shares=1)
    with pytest.raises(ValueError, match="quota must be"):
        cgroup_handlers.CgCpuParams(path="/", quota="0")
    with pytest.raises(ValueError, match="need a device"):
        cgroup_handlers.CgIoParams(path="/", rbps="100")
    with pytest.raises(ValueError, match="classid must be"):
        cgroup_handlers.CgNetParams(path="/", classid="zz:1")


def test_classid_forms():
    assert cgroups.parse_classid("1:10") == 0x10010
    assert cgroups.parse_classid("0x100001") == 0x100001
    assert cgroups.parse_classid("65537") == 65537


# -- v1 on this machine --------------------------------------------------------

REAL_LAYOUT = cgroups.detect_layout()
needs_v1_cpu = pytest.mark.skipif(
    "cpu" not in REAL_LAYOUT.v1, reason="this host has no cgroup v1 cpu hierarchy"
)


@needs_v1_cpu
def test_v1_cpu_of_this_process_matches_the_files():
    where = cgroups.locate(
        REAL_LAYOUT, v1_controller="cpu", v2_controller="cpu", pid=os.getpid()
    )
    with open(f"/proc/{os.getpid()}/cgroup") as own:
        expected = cgroups.parse_pid_cgroups(own.read())["cpu"]
    assert where.version == "v1" and where.path == expected
    cpu = cgroups.read_cpu(where, REAL_LAYOUT)
    directory = Path(where.directory)
    assert cpu.shares == int((directory / "cpu.shares").read_text())
    assert cpu.period == int((directory / "cpu.cfs_period_us").read_text())
    quota = int((directory / "cpu.cfs_quota_us").read_text())
    assert cpu.quota == ("max" if quota == -1 else quota)
    assert cpu.weight is None


@pytest.mark.skipif("memory" not in REAL_LAYOUT.v1, reason="no v1 memory hierarchy")
def test_v1_memory_of_this_process():
    where = cgroups.locate(
        REAL_LAYOUT, v1_controller="memory", v2_controller="memory", pid=os.getpid()
    )
    memory = cgroups.read_memory(where)
    raw = int((Path(where.directory) / "memory.limit_in_bytes").read_text())
    assert memory.limit == ("max" if raw >= 0x7FFFFFFFFFFF0000 else raw)
    assert memory.high is None  # v1 has no memory.high
    assert isinstance(memory.current, int) and memory.current > 0


def test_v1_net_absent_here_is_not_supported():
    if "net_cls" in REAL_LAYOUT.v1 or REAL_LAYOUT.version == "v2":
        pytest.skip("net_cls is mounted on this host")
    with pytest.raises(NotSupported, match="net_cls"):
        cgroups.locate_net(REAL_LAYOUT, path="/", pid=None)


def test_real_controllers_match_proc_cgroups():
    with open("/proc/cgroups") as proc_cgroups:
        names = {
            line.split()[0]
            for line in proc_cgroups.read().splitlines()
            if not line.startswith("#")
        }
    listed = {entry.name: entry for entry in cgroups.list_controllers(REAL_LAYOUT)}
    assert names <= set(listed)
    for name, hierarchy in REAL_LAYOUT.v1.items():
        if not name.startswith("name="):
            assert listed[name].version == "v1"
            assert listed[name].mountpoint == hierarchy.mountpoint


@pytest.fixture
def v1_child_cgroup():
    """A child of the real v1 cpu hierarchy, created and removed by the test."""
    if "cpu" not in REAL_LAYOUT.v1:
        pytest.skip("this host has no cgroup v1 cpu hierarchy")
    name = f"dvsd-test-{os.getpid()}"
    directory = Path(REAL_LAYOUT.v1["cpu"].mountpoint) / name
    try:
        directory.mkdir()
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            pytest.skip(f"cannot create a cgroup here: {error.strerror}")
        raise
    try:
        yield "/" + name
    finally:
        directory.rmdir()


def test_v1_cpu_set_on_a_child_cgroup(v1_child_cgroup):
    where = cgroups.locate(
        REAL_LAYOUT, v1_controller="cpu", v2_controller="cpu", path=v1_child_cgroup
    )
    settings = cgroups.set_cpu(
        where, REAL_LAYOUT, quota="50000", period=100000, shares=512
    )
    assert (settings.quota, settings.period, settings.shares) == (50000, 100000, 512)
    directory = Path(where.directory)
    assert (directory / "cpu.cfs_quota_us").read_text().strip() == "50000"
    cgroups.set_cpu(where, REAL_LAYOUT, quota="max")
    assert (directory / "cpu.cfs_quota_us").read_text().strip() == "-1"
    with pytest.raises(InvalidValue, match="weight is the cgroup v2 setting"):
        cgroups.set_cpu(where, REAL_LAYOUT, weight=100)


async def test_cgcpu_handler_on_real_v1(v1_child_cgroup, ctx_factory):
    ctx = ctx_factory(HostPolicy())
    params = cgroup_handlers.CgCpuParams(path=v1_child_cgroup, shares=300)
    reply = await cgroup_handlers.cg_cpu(ctx, params)
    assert reply.items[0].version == "v1" and reply.items[0].shares == 300


async def test_controller_handler(ctx_factory):
    reply = await host_handlers.controller(ctx_factory(), host_handlers.NoParams())
    assert any(entry.name == "memory" for entry in reply.items)
