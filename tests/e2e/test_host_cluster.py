"""Host, cgroup and namespace requests end to end on three dvsd nodes.

The three nodes run on this one machine, so every answer can be checked
against the machine's own files and calls (/proc, os.statvfs, os.stat of a
namespace link).  Each request goes to every node through real ``dvsctl``
commands: one request for the one-line types, one per node (fan-out) for the
many-line ones.
"""

from __future__ import annotations

import base64
import concurrent.futures
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import Node

from dvsd.rqst import ReturnCode

NODES = [0, 1, 2]

HOST_POLICY = """
[host]
command = "any"
command_shell = true
command_output_cap = 110000
"""


@pytest.fixture(params=["standin", "real"])
def cluster(request, tmp_path, spread_daemon_factory):
    """Three nodes that allow COMMAND (any executable, and shell lines)."""
    daemon = spread_daemon_factory.start(request.param)
    gcs = {"transport": "spread", "daemon": daemon.tcp_address}
    nodes = [Node(tmp_path, node_id, gcs, extra=HOST_POLICY) for node_id in NODES]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_view(len(nodes))
    nodes[0].spread_port = int(daemon.tcp_address.split("@")[0])
    yield nodes
    for node in nodes:
        node.cleanup()


def answers(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Each node's reply; every node answered."""
    assert result["missing"] == [], result
    replies = {reply["node"]: reply for reply in result["replies"]}
    assert sorted(replies) == NODES, result
    return replies


def items_ok(rc: int, result: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Each node's items; every node answered without error."""
    assert rc == 0, result
    replies = answers(result)
    for node, reply in replies.items():
        assert reply["rcode"] >= 0, (node, reply)
    return {node: reply["items"] for node, reply in replies.items()}


def cgroup_of(pid: int, controller: str) -> str:
    """The cgroup path of ``pid`` for ``controller``, as /proc/PID/cgroup says."""
    unified = "/"
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    return unified


def mount_table() -> list[tuple[str, str, str, list[str]]]:
    def unescape(field: str) -> str:
        for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n")):
            field = field.replace(escaped, char)
        return field.replace("\\134", "\\")

    rows = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        device, mountpoint, fstype, options, *_ = line.split(" ")
        rows.append(
            (unescape(device), unescape(mountpoint), fstype, options.split(","))
        )
    return rows


def output_bytes(field: dict[str, str]) -> bytes:
    """A COMMAND stream as ``dvsctl --json`` gives it."""
    if field["encoding"] == "base64":
        return base64.b64decode(field["data"])
    return field["text"].encode("utf-8")


def test_every_host_type_answers_from_every_node(cluster):
    asker = cluster[0]
    dvsd_pids = {node.node_id: node.process.pid for node in cluster}
    target = dvsd_pids[1]
    commands = {
        "COMMAND": ["--all", "command", "cat", "/proc/sys/kernel/hostname"],
        "PS": ["--all", "ps"],
        "VMSTAT": ["--all", "vmstat"],
        "IFCONFIG": ["--all", "ifconfig"],
        "NETSTAT": ["--all", "netstat", "--kind", "tcp"],
        "DF": ["--all", "df", "/"],
        "MOUNT": ["--all", "mount"],
        "KILL": ["--all", "kill", str(os.getpid()), "-s", "0"],
        "PIDSTAT": ["--all", "pidstat", "0.2", "1", "--pid", str(target)],
        "CONTAINER": ["--all", "containers"],
        "CONTROLLER": ["--all", "cgroup", "controllers"],
        "CGCPU": ["--all", "cgroup", "cpu", "--pid", str(target)],
        "CGMEM": ["--all", "cgroup", "mem", "--pid", str(target)],
        "CGIO": ["--all", "cgroup", "io", "--pid", str(target)],
        "CGNET": ["--all", "cgroup", "net", "--pid", str(target)],
    }
    ns_kinds = {
        "NSCGROUP": "cgroup",
        "NSIPC": "ipc",
        "NSNET": "net",
        "NSNS": "mnt",
        "NSPID": "pid",
        "NSUSER": "user",
        "NSUTS": "uts",
    }
    for rqst, kind in ns_kinds.items():
        commands[rqst] = ["--all", "ns", kind, "--pid", str(target)]
    assert len(commands) == 22

    mounts_before = mount_table()
    # Several administrators at once: every request is in flight together.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {
            rqst: pool.submit(asker.dvsctl_json, *args)
            for rqst, args in commands.items()
        }
        results = {rqst: future.result(timeout=60) for rqst, future in futures.items()}
    mounts_after = mount_table()
    for rqst, (_, result) in results.items():
        assert result["request"] == rqst, result

    hostname = Path("/proc/sys/kernel/hostname").read_bytes()
    for node, (item,) in items_ok(*results["COMMAND"]).items():
        assert item["exit_status"] == 0 and not item["timed_out"], (node, item)
        assert output_bytes(item["stdout"]) == hostname

    for node, rows in items_ok(*results["PS"]).items():
        by_pid = {row["pid"]: row for row in rows}
        for pid in dvsd_pids.values():
            assert by_pid[pid]["ppid"] == os.getpid(), (node, by_pid[pid])
            assert "dvsd" in by_pid[pid]["cmdline"]

    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
    )
    swap_used = int(meminfo["SwapTotal"].split()[0]) - int(
        meminfo["SwapFree"].split()[0]
    )
    for node, (row,) in items_ok(*results["VMSTAT"]).items():
        # Swap moves only under memory pressure; allow a little.
        assert abs(row["swap_used_kib"] - swap_used) <= 4096, (node, row)
        assert 0 < row["free_kib"] <= int(meminfo["MemTotal"].split()[0])

    for node, interfaces in items_ok(*results["IFCONFIG"]).items():
        by_name = {interface["name"]: interface for interface in interfaces}
        assert "127.0.0.1/8" in by_name["lo"]["ipv4"], (node, by_name["lo"])
        assert by_name["lo"]["mtu"] == int(Path("/sys/class/net/lo/mtu").read_text())
        assert sorted(by_name) == sorted(os.listdir("/sys/class/net"))

    # Each dvsd holds a TCP session to the Spread daemon, and netstat sees it.
    port = asker.spread_port
    for node, sockets in items_ok(*results["NETSTAT"]).items():
        to_daemon = {
            entry["pid"]
            for entry in sockets
            if entry["remote_port"] == port and entry["state"] == "ESTABLISHED"
        }
        assert set(dvsd_pids.values()) <= to_daemon, (node, to_daemon)
        assert any(
            entry["local_port"] == port and entry["state"] == "LISTEN"
            for entry in sockets
        )

    root = os.statvfs("/")
    for node, (row,) in items_ok(*results["DF"]).items():
        assert row["mountpoint"] == "/"
        assert row["size"] == root.f_blocks * root.f_frsize, (node, row)
        assert row["inodes"] == root.f_files
        # Other processes write meanwhile: free space moves a little.
        assert abs(row["available"] - root.f_bavail * root.f_frsize) < 2**28

    for node, rows in items_ok(*results["MOUNT"]).items():
        table = [
            (row["device"], row["mountpoint"], row["fstype"], row["options"])
            for row in rows
        ]
        assert table in (mounts_before, mounts_after), node

    for node, (item,) in items_ok(*results["KILL"]).items():
        assert (item["pid"], item["sent"], item["error"]) == (
            os.getpid(),
            True,
            None,
        ), node

    comm = Path(f"/proc/{target}/comm").read_text().strip()
    for node, rows in items_ok(*results["PIDSTAT"]).items():
        # An idle process may be left out of a sample, as pidstat does.
        assert all((row["pid"], row["command"]) == (target, comm) for row in rows), node

    for node, containers in items_ok(*results["CONTAINER"]).items():
        assert all(container["init_pid"] > 0 for container in containers), node

    known = {
        line.split()[0]
        for line in Path("/proc/cgroups").read_text().splitlines()[1:]
        if line.strip()
    }
    for node, controllers in items_ok(*results["CONTROLLER"]).items():
        by_name = {controller["name"]: controller for controller in controllers}
        assert known <= set(by_name), (node, sorted(by_name))
        for name, controller in by_name.items():
            if controller["version"] == "v1":
                assert any(
                    mountpoint == controller["mountpoint"] and name in options
                    for _, mountpoint, fstype, options in mounts_after
                    if fstype == "cgroup"
                ), (node, controller)

    for rqst, controller in (("CGCPU", "cpu"), ("CGMEM", "memory"), ("CGIO", "blkio")):
        for node, (item,) in items_ok(*results[rqst]).items():
            expected = (
                cgroup_of(target, controller)
                if item["version"] == "v1"
                else cgroup_of(target, "")
            )
            assert item["cgroup"] == expected, (rqst, node, item)

    net_cls_mounted = any(
        "net_cls" in options or "net_prio" in options
        for _, _, fstype, options in mounts_after
        if fstype == "cgroup"
    )
    rc, result = results["CGNET"]
    if net_cls_mounted:
        items_ok(rc, result)
    else:
        assert rc == 1
        for node, reply in answers(result).items():
            assert reply["rcode"] == ReturnCode.NOT_SUPPORTED, (node, reply)
            assert "net_cls" in reply["error"], reply["error"]

    for rqst, kind in ns_kinds.items():
        inode = os.stat(f"/proc/{target}/ns/{kind}").st_ino
        for node, (item,) in items_ok(*results[rqst]).items():
            assert item["kind"] == kind
            assert item["inode"] == inode, (rqst, node, item)
            assert target in item["pids"] or item["pids_truncated"]

    # --all ps: one request per node, each node's table under its own label
    # unless two tables are identical; --json gave every node's rows above.
    done = asker.dvsctl("--all", "ps")
    assert done.returncode == 0, done.stderr
    labels = [line for line in done.stdout.splitlines() if line.startswith("node")]
    assert labels and all(line.endswith(":") for line in labels), labels
    assert {node for label in labels for node in label_nodes(label)} == set(NODES)
    for pid in dvsd_pids.values():
        assert f" {pid} " in done.stdout


def label_nodes(label: str) -> list[int]:
    """``"node 2:"`` -> [2]; ``"nodes 0-2 (3):"`` -> [0, 1, 2]."""
    words = label.rstrip(":").split()
    nodes = []
    for part in words[1].split(","):
        first, _, last = part.partition("-")
        nodes.extend(range(int(first), int(last or first) + 1))
    return nodes


def processes_with_argument(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line has ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[1].split()[0]
        if marker.encode() in cmdline.split(b"\0") and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def test_command_output_timeout_and_kill(cluster, tmp_path):
    asker = cluster[0]

    # 300 kB of random bytes: exact, or an exact prefix flagged as cut.
    blob = os.urandom(300_000)
    path = tmp_path / "random.bin"
    path.write_bytes(blob)
    rc, result = asker.dvsctl_json("--all", "command", "cat", str(path))
    for node, (item,) in items_ok(rc, result).items():
        reply = answers(result)[node]
        stdout = output_bytes(item["stdout"])
        assert item["stdout_size"] == len(blob) and item["exit_status"] == 0
        if item["stdout_truncated"]:
            assert reply["truncated"] and reply["full_size"] == len(blob), reply
            assert 0 < len(stdout) < len(blob)
            assert blob.startswith(stdout), node
        else:
            assert stdout == blob, node
    # The plain rendering says so when the output was cut.
    cut = any(reply["truncated"] for reply in answers(result).values())
    done = asker.dvsctl("--node", "2", "command", "cat", str(path))
    assert ("(output cut: full size 300000 bytes)" in done.stdout) == cut

    # A command that outlives its timeout, with a child in the background.
    marker = f"{300 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    line = f"sleep {marker} & sleep {marker}"
    started = time.monotonic()
    rc, result = asker.dvsctl_json(
        "--all", "command", "--shell", line, "--command-timeout", "1"
    )
    for node, (item,) in items_ok(rc, result).items():
        assert item["timed_out"] and item["exit_status"] == -9, (node, item)
        assert item["argv"][-1] == line
    assert time.monotonic() - started < 10
    for node in cluster:
        node.log.wait_for(
            lambda e: e.get("event") == "command_group_killed" and e["timed_out"]
        )
    # SIGKILL was sent before the replies; a killed process may take a moment
    # to die (pid 1 reaps late, so zombies count as gone).
    deadline = time.monotonic() + 5
    while (left := processes_with_argument(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling /proc: there is no event for a death
    assert left == [], f"processes left behind: {left}"

    # KILL refuses pid 1 and dvsd itself without force, on every node.
    rc, result = asker.dvsctl_json("--all", "kill", "1", "-s", "0")
    assert rc == 1
    for node, reply in answers(result).items():
        assert reply["rcode"] == ReturnCode.NOT_ALLOWED, (node, reply)
        assert "pid 1" in reply["error"] and "force" in reply["error"]
    rc, result = asker.dvsctl_json("--all", "kill", "1", "-s", "0", "--force")
    for node, (item,) in items_ok(rc, result).items():
        assert (item["pid"], item["sent"]) == (1, True), (node, item)
    own = cluster[2].process.pid
    rc, result = asker.dvsctl_json("--node", "2", "kill", str(own), "-s", "0")
    assert rc == 1
    (reply,) = result["replies"]
    assert reply["rcode"] == ReturnCode.NOT_ALLOWED and str(own) in reply["error"]

    # A missing pid: each node answers NO_SUCH_PROCESS naming it.
    missing = next(
        pid for pid in range(4_000_000, 4_100_000) if not Path(f"/proc/{pid}").exists()
    )
    rc, result = asker.dvsctl_json("--all", "kill", str(missing))
    assert rc == 1
    for node, reply in answers(result).items():
        assert reply["rcode"] == ReturnCode.NO_SUCH_PROCESS, (node, reply)
        assert str(missing) in reply["error"]
    done = asker.dvsctl("--all", "kill", str(missing))
    assert done.returncode == 1
    for node in NODES:
        assert f"node {node}: error NO_SUCH_PROCESS" in done.stdout, done.stdout


def test_ifconfig_ipv6_addresses_carry_their_prefix(single_node):
    # /proc/net/if_inet6: address, ifindex, prefix length, scope, flags, name.
    expected: dict[str, list[str]] = {}
    for line in Path("/proc/net/if_inet6").read_text().splitlines():
        address, _, prefix, _, _, name = line.split()
        text = ":".join(address[i : i + 4] for i in range(0, 32, 4))
        compact = str(ipaddress.IPv6Address(text))
        expected.setdefault(name, []).append(f"{compact}/{int(prefix, 16)}")
    if not expected:
        pytest.skip("no IPv6 address on this machine")
    rc, result = single_node.dvsctl_json("ifconfig")
    assert rc == 0, result
    (reply,) = result["replies"]
    for interface in reply["items"]:
        if interface["name"] in expected:
            assert sorted(interface["ipv6"]) == sorted(expected[interface["name"]])
