"""A real partition and merge: three hosts in network namespaces, real Spread.

The test builds its own little network: one namespace per host (``10.213.0.1``
.. ``.3``, each with a veth into a bridge in a fourth "switch" namespace), one
real Spread daemon per host with a segment listing all three, and one dvsd
per host run with ``ip netns exec``.  Setting host 2's switch port down cuts
it off (a real partition, found by Spread's own timeouts); setting it up
again gives a real merge.  Every address and link lives inside namespaces
made here, and all of them are deleted at the end.

Skipped unless run as root with ``ip`` and a ``spread`` binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
from tests.e2e.harness import LogWatcher, environment
from tests.membership.conftest import ScriptedNode
from tests.spread_standin.launch import find_spread_binary, free_spread_port

HOSTS = 3
SUBNET = "10.213.0"
#: Spread notices a silent daemon after its token and fail timeouts (seconds)
#: and needs a few more to agree on a new membership; merges take about as long.
MEMBERSHIP_SECONDS = 60.0


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    if find_spread_binary() is None:
        return "needs a Spread daemon (spread on PATH or DVSD_SPREAD_DAEMON)"
    return None


pytestmark = [
    pytest.mark.real_spread,
    pytest.mark.skipif(
        _missing_prerequisite() is not None, reason=_missing_prerequisite() or ""
    ),
]


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


class Network:
    """The namespaces, veths and bridge of one test; ``delete`` removes them all."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.switch = f"dvsdsw{tag}"
        self.hosts = [f"dvsdh{tag}x{index}" for index in range(HOSTS)]
        self.created: list[str] = []

    def address(self, index: int) -> str:
        return f"{SUBNET}.{index + 1}"

    def build(self) -> None:
        for name in [self.switch, *self.hosts]:
            ip("netns", "add", name)
            self.created.append(name)
            ip("link", "set", "lo", "up", netns=name)
        ip("link", "add", "br0", "type", "bridge", netns=self.switch)
        ip("link", "set", "br0", "up", netns=self.switch)
        for index, host in enumerate(self.hosts):
            port = f"port{index}"
            ip(
                "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", host,
                netns=self.switch,
            )  # fmt: skip
            ip("link", "set", port, "master", "br0", netns=self.switch)
            ip("link", "set", port, "up", netns=self.switch)
            ip("addr", "add", f"{self.address(index)}/24", "dev", "eth0", netns=host)
            ip("link", "set", "eth0", "up", netns=host)

    def cut(self, index: int) -> None:
        ip("link", "set", f"port{index}", "down", netns=self.switch)

    def restore(self, index: int) -> None:
        ip("link", "set", f"port{index}", "up", netns=self.switch)

    def delete(self) -> None:
        for name in reversed(self.created):
            with contextlib.suppress(RuntimeError):
                ip("netns", "delete", name)


def spread_conf(network: Network, port: int, runtime_dir: Path) -> str:
    lines = [f"Spread_Segment {SUBNET}.255:{port} {{"]
    lines += [f"\tn{index}\t{network.address(index)}" for index in range(HOSTS)]
    lines += ["}", f'RuntimeDir = "{runtime_dir}"']
    user, group = "nobody", "nogroup"
    try:
        import grp
        import pwd

        pwd.getpwnam(user)
        grp.getgrnam(group)
    except KeyError:
        user, group = "root", "root"
    lines += [f'DaemonUser = "{user}"', f'DaemonGroup = "{group}"']
    return "\n".join(lines) + "\n"


class NamespacedNode(ScriptedNode):
    """A recording dvsd started inside a host namespace."""

    def __init__(self, netns: str, *args, **kwargs) -> None:
        self.netns = netns
        super().__init__(*args, **kwargs)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "ip", "netns", "exec", self.netns,
                sys.executable, "-m", "dvsd",
                "--config", str(self.config_path), "--log-format", "json",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment(),
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        self.log = LogWatcher(self.process.stderr)


#: Every daemon of a segment listens on the same port, and each makes its
#: Unix socket at /tmp/<port>: network namespaces share the file system, so
#: three daemons on one machine would race for that one name (the loser
#: exits "already running").  ``ip netns exec`` runs its command in a mount
#: namespace of its own, so a tmpfs mounted on /tmp there is that host's alone.
PRIVATE_TMP = 'mount -t tmpfs -o size=1m,mode=1777 dvsd-host-tmp /tmp && exec "$@"'


@pytest.fixture
def namespaced_cluster(tmp_path):
    network = Network()
    daemons: list[subprocess.Popen] = []
    nodes: list[NamespacedNode] = []
    # outside /tmp, which each daemon's private tmpfs hides
    spread_dir = Path(tempfile.mkdtemp(prefix="dvsd-netns-", dir="/var/tmp"))
    try:
        network.build()
        port = free_spread_port()
        runtime_dir = spread_dir / "run"
        runtime_dir.mkdir()
        conf = spread_dir / "spread.conf"
        conf.write_text(spread_conf(network, port, runtime_dir))
        binary = find_spread_binary()
        for index, host in enumerate(network.hosts):
            log = open(tmp_path / f"spread{index}.log", "wb")  # noqa: SIM115
            daemons.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", host, "sh", "-c", PRIVATE_TMP, "spread"]
                    + [binary, "-n", f"n{index}", "-c", str(conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=spread_dir,
                )
            )
            log.close()
        for index, host in enumerate(network.hosts):
            gcs = {
                "transport": "spread",
                "daemon": f"{port}@{network.address(index)}",
                "reconnect_max": 0.5,
            }
            nodes.append(NamespacedNode(host, tmp_path, index, gcs, HOSTS))
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_view(HOSTS, timeout=MEMBERSHIP_SECONDS)
        yield network, nodes
    finally:
        for node in nodes:
            node.cleanup()
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(5)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(5)
        network.delete()
        shutil.rmtree(spread_dir, ignore_errors=True)


def heal(nodes) -> None:
    """Wait for the merge, sending group traffic while it has not come.

    With one segment, Spread 4.0.0 probes for lost daemons only every 300 s;
    it merges at once when a daemon hears a packet from one outside its
    membership.  A live DVS has such traffic; here a DVSNODES request from
    each side makes it (each is answered within its partition).
    """
    deadline = time.monotonic() + MEMBERSHIP_SECONDS
    while time.monotonic() < deadline:
        for node in (nodes[0], nodes[2]):
            node.dvsctl("--node", str(node.node_id), "--timeout", "2", "dvs", "nodes")
        try:
            nodes[0].wait_script("merge", timeout=3)
            return
        except AssertionError:
            continue
    raise AssertionError(
        f"no merge within {MEMBERSHIP_SECONDS} s of the link coming back"
    )


def only(records, event):
    return [record for record in records if record["DVSD_EVENT"] == event]


def test_real_partition_and_merge(namespaced_cluster):
    network, nodes = namespaced_cluster
    network.cut(2)
    for node in nodes:
        node.wait_script("partition", timeout=MEMBERSHIP_SECONDS)
    for node in nodes:
        (record,) = only(node.records(), "partition")
        if node.node_id < 2:
            assert (record["DVSD_CHANGED"], record["DVSD_MEMBERS"]) == ("2", "0 1")
            assert record["DVSD_MAJORITY"] == "1"
        else:
            assert (record["DVSD_CHANGED"], record["DVSD_MEMBERS"]) == ("0 1", "2")
            assert record["DVSD_MAJORITY"] == "0"
        assert record["DVSD_CAUSE"] == "network"

    network.restore(2)
    heal(nodes)
    for node in nodes:
        node.wait_script("merge", timeout=MEMBERSHIP_SECONDS)
    views = set()
    for node in nodes:
        events = [r["DVSD_EVENT"] for r in node.records()]
        assert events[-2:] == ["partition", "merge"], events
        merge = node.records()[-1]
        assert merge["DVSD_MEMBERS"] == "0 1 2"
        assert merge["DVSD_CHANGED"] == ("2" if node.node_id < 2 else "0 1")
        views.add(merge["DVSD_VIEW_ID"])
        rc, result = node.dvsctl_json("--node", str(node.node_id), "dvs", "nodes")
        assert rc == 0, result
        summary = result["replies"][0]["items"][0]
        assert summary["view_id"] == merge["DVSD_VIEW_ID"]
        assert {entry["state"] for entry in summary["nodes"]} == {"up"}
    assert len(views) == 1, f"views disagree after the merge: {views}"
    for node in nodes:
        assert node.script_failures() == []
        # every transitional signal named the view it ended
        assert not node.log.count(lambda e: e["event"] == "transitional_unexpected")


def wait_count(log, event: str, count: int) -> None:
    seen = 0

    def counted(entry: dict) -> bool:
        nonlocal seen
        seen += entry.get("event") == event
        return seen >= count

    log.wait_for(counted, MEMBERSHIP_SECONDS)


def test_a_second_node_with_a_taken_id_stops(namespaced_cluster, tmp_path):
    network, nodes = namespaced_cluster
    # node 1 again, on host 2's Spread daemon (a copied configuration)
    gcs = tomllib.loads(nodes[2].config_path.read_text())["gcs"]
    workdir = tmp_path / "duplicate"
    workdir.mkdir()
    duplicate = NamespacedNode(network.hosts[2], workdir, 1, gcs, HOSTS)
    duplicate.start()
    try:
        assert duplicate.process.wait(MEMBERSHIP_SECONDS) == 2
        taken = duplicate.log.wait_for(lambda e: e.get("event") == "node_id_taken")
        assert "node id 1 is already used" in taken["error"], taken
        assert "#node.1#n1" in taken["error"], taken
        assert duplicate.records() == []  # it ran no JOIN script
    finally:
        duplicate.cleanup()
    for node in nodes:
        # its coming and going were seen, and are not events of the DVS
        wait_count(node.log, "duplicate_node_id_change", 2)
        events = [record["DVSD_EVENT"] for record in node.records()]
        assert "disconnect" not in events and "leave" not in events, events
        rc, result = node.dvsctl_json("--node", str(node.node_id), "dvs", "nodes")
        assert rc == 0, result
        summary = result["replies"][0]["items"][0]
        assert {entry["node"] for entry in summary["nodes"]} == {0, 1, 2}
        assert {entry["state"] for entry in summary["nodes"]} == {"up"}
