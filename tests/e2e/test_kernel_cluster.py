"""Kernel requests end to end: three dvsd nodes, each with its own emulated DVK.

Each test drives the cluster with real ``dvsctl`` commands, as an
administrator would: DVS and DC start-up, nodes joining a DC, and a process
migration that succeeds or fails on one node.  Two test-plugin requests stand
in for what is not dvsd's job (``tests/e2e/plugin/dvsd_testplugin.py``):
TESTBIND binds a process slot, as the DVS application does on a real DVK,
and TESTATTACH brings the other members up in each kernel, which dvsd's
membership layer does only for members that join after DVSINIT (see
``test_dvs_init_brings_the_present_members_up``).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from tests.e2e.harness import Node

from dvsd.kernel.abi import Edvs, NodeFlag, RtsFlag

NODES = (0, 1, 2)


def run_ok(node: Node, *args: str) -> dict[str, Any]:
    """``dvsctl --json ARGS`` on ``node``; it must exit 0."""
    rc, result = node.dvsctl_json(*args)
    assert rc == 0, (args, result)
    return result


def replies_by_node(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {reply["node"]: reply for reply in result["replies"]}


def start_dvs_and_dc(cluster: list[Node]) -> None:
    """DVS and DC 0 "web" on every node; every node up and in DC 0 everywhere."""
    result = run_ok(cluster[0], "--all", "dvs", "init")
    # DVSINIT answers the local node id: each node initialised itself.
    assert {
        node: reply["rcode"] for node, reply in replies_by_node(result).items()
    } == {
        0: 0,
        1: 1,
        2: 2,
    }
    run_ok(cluster[0], "--all", "dc", "init", "0", "web")
    run_ok(cluster[0], "--all", "call", "TESTATTACH")
    for joining in NODES:
        others = ",".join(str(node) for node in NODES if node != joining)
        run_ok(cluster[0], "--nodes", others, "node", "add", "0", str(joining))


def proc_slots(node: Node, endpoint: int) -> dict[int, dict[str, Any]]:
    """The slot of ``endpoint`` in DC 0 as each node's kernel shows it.

    GETPROCINFO has many lines, so ``--all`` sends one request per node.
    """
    result = run_ok(node, "--all", "proc", "info", "0", str(endpoint))
    slots = {}
    for reply in result["replies"]:
        (item,) = reply["items"]
        slots[reply["node"]] = item
    assert sorted(slots) == list(NODES), result
    return slots


def bind_everywhere(node: Node, endpoint: int, home_node: int, pid: int) -> None:
    """``pid`` runs on ``home_node`` as ``endpoint``; the others know it as remote."""
    run_ok(
        node,
        "--all",
        "call",
        "TESTBIND",
        "dcid=0",
        f"endpoint={endpoint}",
        f"home_node={home_node}",
        f"pid={pid}",
    )


def migrate(
    node: Node, coordinator: int, endpoint: int, new_node: int, pid: int
) -> tuple[int, dict[str, Any]]:
    """``dvsctl --node COORDINATOR proc migrate 0 ENDPOINT NEW_NODE PID``."""
    rc, result = node.dvsctl_json(
        "--node",
        str(coordinator),
        "proc",
        "migrate",
        "0",
        str(endpoint),
        str(new_node),
        str(pid),
    )
    (reply,) = result["replies"]
    return rc, reply


def outcomes(reply: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(item["node"], item["step"]): item for item in reply["items"]}


def assert_state_matches_reply(
    slots: dict[int, dict[str, Any]],
    reply: dict[str, Any],
    old_node: int,
    new_node: int,
) -> None:
    """Every node holds the location the reply says it holds.

    A node whose commit succeeded and was not undone holds the new node;
    every other node holds the old one; none is left MIGRATING.
    """
    steps = outcomes(reply)
    for node, slot in slots.items():
        committed = steps.get((node, "commit"), {}).get("ok", False)
        undone = steps.get((node, "undo"), {}).get("ok", False)
        expected = new_node if committed and not undone else old_node
        assert slot["nodeid"] == expected, (node, slot, reply)
        assert not slot["rts_flags"] & RtsFlag.MIGRATING, (node, slot)


@pytest.fixture
def sleepers():
    """Start ``sleep`` processes for a test (the DVS application's processes)."""
    started: list[subprocess.Popen] = []

    def start() -> int:
        process = subprocess.Popen(["sleep", "600"])
        started.append(process)
        return process.pid

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def test_dc_node_and_migration_on_three_nodes(cluster, sleepers):
    start_dvs_and_dc(cluster)

    # dc info: DC 0 "web" runs on every node, with all three nodes in it.
    result = run_ok(cluster[1], "--all", "dc", "info", "0")
    assert sorted(replies_by_node(result)) == list(NODES)
    for node, reply in replies_by_node(result).items():
        (dc,) = reply["items"]
        assert (dc["dcid"], dc["name"], dc["flags"]) == (0, "web", 0), (node, dc)
        assert dc["nodes"] == [0, 1, 2], (node, dc)
        assert dc["pid"] == cluster[node].process.pid

    # node info: nodes 0 and 1 see node 2 up, in DC 0, on proxy pair 2...
    result = run_ok(cluster[2], "--nodes", "0,1", "node", "info", "2")
    for node, reply in replies_by_node(result).items():
        (info,) = reply["items"]
        assert info["nodeid"] == 2
        assert info["flags"] & NodeFlag.ATTACHED, (node, info)
        assert info["dcs"] == [0], (node, info)
        assert info["pxid"] == 2
    # ...and a node asked without a node id describes itself.
    result = run_ok(cluster[0], "--all", "node", "info")
    assert {
        node: reply["items"][0]["nodeid"]
        for node, reply in replies_by_node(result).items()
    } == {0: 0, 1: 1, 2: 2}

    # Adding node 1 again: each node says why it refuses.
    rc, result = cluster[0].dvsctl_json("--all", "node", "add", "0", "1")
    assert rc == 1
    codes = {node: reply["rcode"] for node, reply in replies_by_node(result).items()}
    assert codes == {0: Edvs.DCNODE, 1: Edvs.BADNODEID, 2: Edvs.DCNODE}

    # Endpoint 10 runs on node 0; node 2, a bystander, moves it to node 1.
    old_pid, new_pid = sleepers(), sleepers()
    bind_everywhere(cluster[0], 10, home_node=0, pid=old_pid)
    before = proc_slots(cluster[0], 10)
    assert {node: slot["nodeid"] for node, slot in before.items()} == {
        0: 0,
        1: 0,
        2: 0,
    }
    assert before[0]["lpid"] == old_pid

    rc, reply = migrate(cluster[0], coordinator=2, endpoint=10, new_node=1, pid=new_pid)
    assert rc == 0, reply
    steps = [(item["node"], item["step"], item["ok"]) for item in reply["items"]]
    # the old node commits last, once every other node has
    assert steps == [
        (0, "start", True),
        (1, "commit", True),
        (2, "commit", True),
        (0, "commit", True),
    ]

    after = proc_slots(cluster[1], 10)
    for node, slot in after.items():
        assert slot["nodeid"] == 1, (node, slot)
        assert not slot["rts_flags"] & RtsFlag.MIGRATING, (node, slot)
    assert after[1]["lpid"] == new_pid
    assert not after[1]["rts_flags"] & RtsFlag.REMOTE
    assert after[0]["rts_flags"] & RtsFlag.REMOTE
    assert after[0]["lpid"] == -1
    assert after[2]["rts_flags"] & RtsFlag.REMOTE

    # Endpoint 11 runs on node 0 too.  On node 0 alone node 2 leaves DC 0,
    # so node 0's own commit of a move to node 2 fails.
    old_pid, new_pid = sleepers(), sleepers()
    bind_everywhere(cluster[0], 11, home_node=0, pid=old_pid)
    run_ok(cluster[0], "--node", "0", "node", "del", "0", "2")

    rc, reply = migrate(cluster[0], coordinator=1, endpoint=11, new_node=2, pid=new_pid)
    assert rc == 1, reply
    assert reply["rcode"] == Edvs.DCNODE
    assert "node(s) 0" in reply["error"] and "rolled back" in reply["error"]
    steps = outcomes(reply)
    assert sorted(steps) == [
        (0, "commit"),
        (0, "rollback"),
        (0, "start"),
        (1, "commit"),
        (1, "undo"),
        (2, "commit"),
        (2, "undo"),
    ]
    assert steps[(0, "start")]["ok"] and steps[(0, "rollback")]["ok"]
    assert steps[(0, "commit")]["rcode"] == Edvs.DCNODE
    assert "EDVSDCNODE" in steps[(0, "commit")]["error"]
    # Nodes 1 and 2 had committed; both were undone, and their kernels agree.
    assert steps[(1, "commit")]["ok"] and steps[(2, "commit")]["ok"]
    assert steps[(1, "undo")]["ok"] and steps[(2, "undo")]["ok"]

    slots = proc_slots(cluster[2], 11)
    assert_state_matches_reply(slots, reply, old_node=0, new_node=2)
    assert slots[0]["lpid"] == old_pid
    assert not slots[0]["rts_flags"] & RtsFlag.REMOTE
    assert slots[2]["rts_flags"] & RtsFlag.REMOTE and slots[2]["nodeid"] == 0


def test_migration_that_fails_on_a_bystander_leaves_the_old_node_rolled_back(
    cluster, sleepers
):
    start_dvs_and_dc(cluster)
    old_pid, new_pid = sleepers(), sleepers()
    bind_everywhere(cluster[0], 10, home_node=0, pid=old_pid)
    # On node 2 alone, node 1 leaves DC 0: node 2's commit fails.
    run_ok(cluster[0], "--node", "2", "node", "del", "0", "1")

    rc, reply = migrate(cluster[0], coordinator=0, endpoint=10, new_node=1, pid=new_pid)

    assert rc == 1, reply
    assert reply["rcode"] == Edvs.DCNODE
    steps = outcomes(reply)
    assert steps[(2, "commit")]["rcode"] == Edvs.DCNODE
    assert steps[(0, "rollback")]["ok"]
    assert "rolled back: endpoint 10 stays on node 0" in reply["error"]

    slots = proc_slots(cluster[0], 10)
    # The old node was rolled back: the process still runs there.
    assert slots[0]["nodeid"] == 0, slots[0]
    assert slots[0]["lpid"] == old_pid
    assert_state_matches_reply(slots, reply, old_node=0, new_node=1)


@pytest.fixture(params=["standin", "real"])
def configured_cluster(request, tmp_path, spread_daemon_factory):
    """Three nodes whose config names the cluster's nodes and DC 0."""
    daemon = spread_daemon_factory.start(request.param)
    extra = "[cluster]\nnodes = [0, 1, 2]\ndcs = [0]\n"
    gcs = {"transport": "spread", "daemon": daemon.tcp_address}
    nodes = [Node(tmp_path, node_id, gcs, extra=extra) for node_id in NODES]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_view(len(nodes))
    yield nodes
    for node in nodes:
        node.cleanup()


def test_dvs_init_brings_the_present_members_up(configured_cluster):
    cluster = configured_cluster
    run_ok(cluster[0], "--all", "dvs", "init")
    run_ok(cluster[0], "--all", "dc", "init", "0", "web")

    result = run_ok(cluster[0], "--all", "dc", "info", "0")
    for node, reply in replies_by_node(result).items():
        assert reply["items"][0]["nodes"] == [0, 1, 2], (node, reply)
    for member in NODES:
        others = ",".join(str(node) for node in NODES if node != member)
        result = run_ok(cluster[0], "--nodes", others, "node", "info", str(member))
        for node, reply in replies_by_node(result).items():
            (info,) = reply["items"]
            assert info["flags"] & NodeFlag.ATTACHED, (node, member, info)
