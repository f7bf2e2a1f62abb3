"""VMSTAT, IFCONFIG, NETSTAT, DF, MOUNT, namespaces, containers, policy, fitting."""

from __future__ import annotations

import os
import socket

import pytest

from dvsd.handlers import host as host_handlers
from dvsd.handlers import namespace as namespace_handlers
from dvsd.host import containers, disks, namespaces, net, stats
from dvsd.host.errors import InvalidValue, NoSuchProcess, PermissionDenied
from dvsd.hostpolicy import HostPolicy, HostPolicyError
from dvsd.registry import MAX_REPLY_BYTES, REGISTRY
from dvsd.rqst import RequestType

# -- VMSTAT --------------------------------------------------------------------


def test_vmstat_since_boot_is_consistent_with_meminfo():
    snapshot = stats.read_snapshot()
    row = stats.vmstat_row(None, snapshot)
    memory = snapshot.meminfo_kib
    assert row.free_kib == memory["MemFree"]
    assert row.swap_used_kib == memory["SwapTotal"] - memory["SwapFree"]
    total = row.user + row.system + row.idle + row.iowait + row.steal
    assert 95 <= total <= 100.5  # the rest is nice-free guest time, rounding
    assert row.procs_running >= 1  # this test is running


def test_vmstat_rates_between_two_fixture_snapshots(tmp_path):
    def write(root, uptime, cpu, intr, ctxt, pgpgin):
        root.mkdir()
        (root / "uptime").write_text(f"{uptime} 0.00\n")
        (root / "stat").write_text(
            f"cpu  {cpu} 0 0 0 0 0 0 0 0 0\ncpu0 {cpu} 0 0 0 0 0 0 0 0 0\n"
            f"intr {intr} 0 0\nctxt {ctxt}\nbtime 0\nprocesses 9\n"
            "procs_running 3\nprocs_blocked 1\n"
        )
        (root / "vmstat").write_text(
            f"pgpgin {pgpgin}\npgpgout 0\npswpin 0\npswpout 0\n"
        )
        (root / "meminfo").write_text(
            "MemTotal:       1000 kB\nMemFree:         400 kB\n"
            "Buffers:          10 kB\nCached:          100 kB\n"
            "SwapTotal:        50 kB\nSwapFree:         20 kB\n"
            "SReclaimable:      5 kB\n"
        )

    write(tmp_path / "a", 100.0, 1000, 5000, 7000, 2048)
    write(tmp_path / "b", 102.0, 1200, 5400, 7600, 4096)
    early = stats.read_snapshot(str(tmp_path / "a"))
    late = stats.read_snapshot(str(tmp_path / "b"))
    row = stats.vmstat_row(early, late)
    assert (row.interrupts_s, row.context_switches_s, row.blocks_in_s) == (
        200.0,
        300.0,
        1024.0,
    )
    assert (row.user, row.idle) == (100.0, 0.0)
    assert (row.procs_running, row.procs_blocked) == (3, 1)
    assert (row.swap_used_kib, row.cache_kib, row.buffers_kib) == (30, 105, 10)


# -- IFCONFIG, NETSTAT ---------------------------------------------------------


def test_ifconfig_has_loopback():
    interfaces = {entry.name: entry for entry in net.list_interfaces()}
    loopback = interfaces["lo"]
    assert "127.0.0.1/8" in loopback.ipv4
    assert loopback.up and "loopback" in loopback.flags
    assert set(interfaces) == set(os.listdir("/sys/class/net"))
    with pytest.raises(InvalidValue, match="no interface called"):
        net.list_interfaces("nope0")


def test_netstat_finds_our_listening_socket():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        rows = net.list_connections("tcp4", listening=True)
        ours = [row for row in rows if row.local_port == port]
        assert len(ours) == 1
        assert ours[0].local_address == "127.0.0.1" and ours[0].state == "LISTEN"
        assert ours[0].pid == os.getpid() and ours[0].proto == "tcp"
    with pytest.raises(InvalidValue, match="kind must be one of"):
        net.list_connections("sctp")


# -- DF, MOUNT -----------------------------------------------------------------


def test_mount_matches_proc_self_mounts():
    with open("/proc/self/mounts") as mounts_file:
        lines = mounts_file.read().splitlines()
    listed = disks.list_mounts()
    assert len(listed) == len(lines)
    for mount, line in zip(listed, lines, strict=True):
        device, mountpoint, fstype, options = line.split()[:4]
        assert mount.mountpoint == disks.unescape(mountpoint)
        assert (mount.fstype, mount.options) == (fstype, options.split(","))


def test_mount_unescapes_spaces():
    (mount,) = disks.parse_mounts("/dev/sdb1 /mnt/my\\040disk ext4 rw,relatime 0 0\n")
    assert mount.mountpoint == "/mnt/my disk"


def test_df_root_matches_statvfs():
    (row,) = disks.disk_free(path="/")
    stat = os.statvfs("/")
    assert row.mountpoint == "/"
    assert row.size == stat.f_blocks * stat.f_frsize
    assert row.inodes == stat.f_files
    # used/available move with other writers; allow 64 MiB of drift.
    assert abs(row.available - stat.f_bavail * stat.f_frsize) < 64 << 20
    assert abs(row.used - (stat.f_blocks - stat.f_bfree) * stat.f_frsize) < 64 << 20


def test_df_leaves_out_pseudo_filesystems_unless_all():
    default = {row.mountpoint for row in disks.disk_free()}
    everything = {row.mountpoint for row in disks.disk_free(include_all=True)}
    assert "/" in default and "/proc" not in default
    assert "/proc" in everything
    with pytest.raises(InvalidValue, match="does not exist"):
        disks.disk_free(path="/no/such/place")


async def test_df_and_mount_handlers(ctx_factory):
    ctx = ctx_factory()
    reply = await host_handlers.df(ctx, host_handlers.DfParams(fstype="proc", all=True))
    assert reply.items and all(row.fstype == "proc" for row in reply.items)
    reply = await host_handlers.mount(ctx, host_handlers.MountParams())
    assert any(row.mountpoint == "/" for row in reply.items)


# -- namespaces ----------------------------------------------------------------


def test_namespace_ids_equal_stat_of_proc_self_ns():
    found = namespaces.process_namespaces(os.getpid())
    for kind in os.listdir("/proc/self/ns"):
        if kind in namespaces.NAMESPACE_KINDS:
            assert found[kind] == os.stat(f"/proc/self/ns/{kind}").st_ino, kind
    assert {"net", "mnt", "pid", "uts", "ipc", "user"} <= set(found)


def test_describe_namespace_of_this_process():
    (info,) = namespaces.describe_namespaces("net", os.getpid())
    assert info.inode == os.stat("/proc/self/ns/net").st_ino
    assert os.getpid() in info.pids and info.process_count >= 1
    assert info.owner_pid == min(info.pids)
    with pytest.raises(InvalidValue, match="namespace kind"):
        namespaces.describe_namespaces("bogus")


def test_namespaces_in_a_fixture_tree(fake_proc):
    fake_proc.add(1, ppid=0, comm="init", namespaces={"net": 100, "uts": 7})
    fake_proc.add(20, comm="a", namespaces={"net": 200, "uts": 7})
    fake_proc.add(21, ppid=20, comm="b", namespaces={"net": 200, "uts": 7})
    root = str(fake_proc.root)
    every = namespaces.describe_namespaces("net", proc_root=root)
    assert [(info.inode, info.pids, info.command) for info in every] == [
        (100, [1], "init"),
        (200, [20, 21], "a"),
    ]
    (shared,) = namespaces.describe_namespaces("uts", 21, proc_root=root)
    assert shared.pids == [1, 20, 21]
    with pytest.raises(NoSuchProcess):
        namespaces.describe_namespaces("net", 99, proc_root=root)


def test_an_unreadable_namespace_is_a_permission_error(fake_proc, monkeypatch):
    fake_proc.add(1, ppid=0, comm="init", namespaces={"net": 100})
    fake_proc.add(30, comm="a", namespaces={"net": 100})
    root = str(fake_proc.root)
    real_readlink = os.readlink

    # as /proc/1/ns/* is to a root dvsd in some sandboxes (ptrace access check)
    def readlink(path, *args, **kwargs):
        if path.startswith(f"{root}/1/ns/"):
            raise PermissionError(13, "Permission denied", path)
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "readlink", readlink)
    with pytest.raises(PermissionDenied, match="pid 1's net namespace cannot be read"):
        namespaces.describe_namespaces("net", 1, proc_root=root)
    # a scan skips the unreadable process instead of failing
    (info,) = namespaces.describe_namespaces("net", proc_root=root)
    assert info.pids == [30]


async def test_ns_handlers_cover_each_kind(ctx_factory):
    assert set(namespace_handlers.NAMESPACE_REQUESTS.values()) == {
        "cgroup",
        "ipc",
        "net",
        "mnt",
        "pid",
        "user",
        "uts",
    }
    entry = REGISTRY.get(int(RequestType.NSNS))
    assert entry.many_lines
    reply = await entry.function(
        ctx_factory(), namespace_handlers.NamespaceParams(pid=os.getpid())
    )
    assert reply.items[0].kind == "mnt"
    assert reply.items[0].inode == os.stat("/proc/self/ns/mnt").st_ino


# -- containers ----------------------------------------------------------------

DOCKER_ID = "3f4e" + "a" * 60
PODMAN_ID = "b" * 64


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/docker/{DOCKER_ID}", ("docker", DOCKER_ID)),
        (f"/system.slice/docker-{DOCKER_ID}.scope", ("docker", DOCKER_ID)),
        (f"/machine.slice/libpod-{PODMAN_ID}.scope/container", ("podman", PODMAN_ID)),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/x/cri-containerd-{PODMAN_ID}.scope",
            ("containerd", PODMAN_ID),
        ),
        (f"/kubepods/burstable/pod1234/{PODMAN_ID}", ("containerd", PODMAN_ID)),
        ("/lxc.payload.web1/init.scope", ("lxc", "web1")),
        ("/lxc/db", ("lxc", "db")),
        (
            "/machine.slice/machine-my\\x2dbox.scope/init.scope",
            ("systemd-nspawn", "my-box"),
        ),
        (f"/machine.slice/libpod-conmon-{PODMAN_ID}.scope", None),
        ("/system.slice/sshd.service", None),
        ("/user.slice/user-0.slice/session-1.scope", None),
    ],
)
def test_match_container(path, expected):
    found = containers.match_container(path)
    assert (found[:2] if found else None) == expected


def test_list_containers_in_a_fixture_tree(fake_proc):
    fake_proc.add(1, ppid=0, comm="systemd", cgroup="0::/init.scope\n")
    fake_proc.add(
        900, comm="containerd-shim", cgroup="0::/system.slice/containerd.service\n"
    )
    docker = f"0::/system.slice/docker-{DOCKER_ID}.scope\n"
    fake_proc.add(
        901,
        ppid=900,
        comm="nginx",
        cgroup=docker,
        namespaces={"net": 4026532300, "pid": 4026532301},
    )
    fake_proc.add(
        950, ppid=901, comm="nginx", cgroup=docker, namespaces={"net": 4026532300}
    )
    v1_lxc = "12:memory:/lxc/db\n1:name=systemd:/lxc/db\n0::/\n"
    fake_proc.add(1200, comm="init", cgroup=v1_lxc, namespaces={"uts": 4026532400})
    found = containers.list_containers(str(fake_proc.root))
    assert [(c.runtime, c.name, c.init_pid, c.process_count) for c in found] == [
        ("docker", DOCKER_ID[:12], 901, 2),
        ("lxc", "db", 1200, 1),
    ]
    assert found[0].namespaces == {"net": 4026532300, "pid": 4026532301}
    assert found[0].cgroup == f"/system.slice/docker-{DOCKER_ID}"
    assert found[0].command == "nginx"


async def test_container_handler_runs_on_this_node(ctx_factory):
    reply = await host_handlers.container(
        ctx_factory(), host_handlers.ContainerParams()
    )
    assert isinstance(reply.items, list)  # this VM runs no containers


# -- policy and reply fitting --------------------------------------------------


def test_policy_defaults_are_safe():
    policy = HostPolicy.from_mapping({})
    assert policy.command == "off" and policy.command_shell is False
    assert policy.command_output_cap <= 110_000


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"command": "sometimes"}, "host.command must be one of"),
        ({"comand": "any"}, "unknown key comand"),
        ({"command_allow": "ls"}, "must be a list"),
        ({"command_timeout": -1}, "greater than 0"),
        ({"command_output_cap": 10_000_000}, "command_output_cap must be in"),
        ({"command_shell": "yes"}, "true or false"),
        ({"proc_root": "relative"}, "absolute path"),
    ],
)
def test_policy_refuses_bad_keys(table, message):
    with pytest.raises(HostPolicyError, match=message):
        HostPolicy.from_mapping(table)


def test_fit_items_cuts_with_a_flag_and_the_full_size():
    items = [{"line": "x" * 1000, "n": n} for n in range(500)]
    reply = host_handlers.fit_items(items)
    assert reply.truncated and 0 < len(reply.items) < 500
    assert reply.items == items[: len(reply.items)]
    assert reply.full_size == sum(host_handlers.encoded_size(i) for i in items) + 5
    kept = sum(host_handlers.encoded_size(item) for item in reply.items)
    assert kept <= MAX_REPLY_BYTES - host_handlers.REPLY_MARGIN
    small = host_handlers.fit_items(items[:3])
    assert not small.truncated and small.full_size is None
