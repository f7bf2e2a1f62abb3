"""The kernel request handlers, run through the registry on emulated kernels.

MIGRATE is driven with a fake ``ctx.request`` that executes the per-node
step handlers on the emulated kernels of three nodes, as the daemon's
sub-request path would.
"""

from __future__ import annotations

import os

import attrs
import pytest
import structlog

import dvsd.handlers.dc
import dvsd.handlers.dvs
import dvsd.handlers.node
import dvsd.handlers.proc  # noqa: F401 - registers the handlers
from dvsd.aggregator import NodeResult
from dvsd.kernel import abi
from dvsd.kernel.emulated import EmulatedKernel
from dvsd.registry import REGISTRY, HandlerContext, View, execute
from dvsd.rqst import RequestType, ReturnCode

MY_PID = os.getpid()
RT = RequestType


def context(kernel, node_id, request=None, members=(0, 1, 2)):
    return HandlerContext(
        node_id=node_id,
        kernel=kernel,
        config=None,
        log=structlog.get_logger("test").bind(node=node_id),
        requester=node_id,
        view=View(members=frozenset(members), view_id="v1"),
        deadline=float("inf"),
        request=request,
    )


async def run(kernel, rqst, params=None, node_id=0, request=None):
    return await execute(
        REGISTRY, rqst, params or {}, context(kernel, node_id, request)
    )


async def test_dvs_init_info_end():
    kernel = EmulatedKernel()
    reply = await run(kernel, RT.DVSINIT, {"nr_dcs": 8}, node_id=4)
    assert reply.rcode == 4
    reply = await run(kernel, RT.GETDVSINFO, node_id=4)
    assert reply.rcode == 0
    [info] = reply.items
    assert (info.local_node, info.nr_dcs, info.nr_nodes) == (4, 8, abi.NR_NODES)
    assert (await run(kernel, RT.DVSEND)).rcode == 0
    reply = await run(kernel, RT.GETDVSINFO)
    assert reply.rcode == abi.Edvs.DVSINIT
    assert reply.error.startswith("EDVSDVSINIT (-318): DVS not initialised")


@pytest.mark.parametrize(
    ("rqst", "params", "words"),
    [
        (RT.DVSINIT, {"nr_dcs": 40}, "nr_dcs must be in 1..32, got 40"),
        (RT.DVSINIT, {"nr_sysprocs": 10}, "nr_sysprocs must be greater than"),
        (RT.DVSINIT, {"name": "x" * 16}, "name must be at most 15 bytes in UTF-8"),
        (RT.DVSINIT, {"max_copylen": 10}, "max_copylen must be at least"),
        (RT.DCINIT, {"dcid": 32, "name": "a"}, "dcid must be in 0..31, got 32"),
        (RT.DCINIT, {"dcid": 1, "name": ""}, "name must not be empty"),
        # a C string ends at NUL: "ab\0" would be "ab" in the kernel
        (RT.DCINIT, {"dcid": 1, "name": "ab\0"}, "must not contain control"),
        (RT.DCINIT, {"dcid": 1, "name": "a\nb"}, "must not contain control"),
        (RT.DVSINIT, {"name": "a\x01"}, "must not contain control"),
        # 8 characters, 24 bytes: the buffer's limit is in bytes
        (RT.DCINIT, {"dcid": 1, "name": "日本日本日本日本"}, "got 24"),
        (RT.DCINIT, {"dcid": 1, "name": "a", "cpus": [2000]}, "cpus must be in"),
        (RT.ADDNODE, {"dcid": 0, "nodeid": 32}, "nodeid must be in 0..31, got 32"),
        (RT.GETPROXYSTS, {"pxid": -1}, "pxid must be in 0..31, got -1"),
        (RT.GETPROCINFO, {"dcid": 0, "slot": 221}, "slot must be in -35..220"),
        (RT.GETPRIV, {"dcid": 0, "endpoint": -36}, "endpoint must designate a slot"),
        (RT.SETPRIV, {"dcid": 0, "endpoint": 1, "level": 6}, "level must be in 0..5"),
        (RT.SETPRIV, {"dcid": 0, "endpoint": 1}, "needs at least one of"),
        (
            RT.MIGRATE,
            {"dcid": 0, "endpoint": 1, "new_node": 1, "pid": 1, "old_node": 1},
            "new_node must differ from old_node",
        ),
    ],
)
async def test_parameters_are_checked_with_a_sentence(rqst, params, words):
    reply = await run(EmulatedKernel(), rqst, params)
    assert reply.rcode == ReturnCode.BAD_REQUEST
    assert words in reply.error


async def test_a_name_of_fifteen_utf8_bytes_is_taken_whole():
    kernel = EmulatedKernel()
    await run(kernel, RT.DVSINIT)
    name = "日本日本x"  # 5 characters, 13 bytes
    assert (await run(kernel, RT.DCINIT, {"dcid": 2, "name": name})).rcode >= 0
    [info] = (await run(kernel, RT.GETDCINFO, {"dcid": 2})).items
    assert info.name == name


async def test_dc_and_node_family():
    kernel = EmulatedKernel()
    await run(kernel, RT.DVSINIT)
    reply = await run(kernel, RT.DCINIT, {"dcid": 3, "name": "web", "nr_nodes": 4})
    assert reply.rcode == 3  # the spec's "rcode = DCID"
    [dc] = (await run(kernel, RT.GETDCINFO, {"dcid": 3})).items
    assert (dc.name, dc.nodes, dc.nr_nodes) == ("web", (0,), 4)
    reply = await run(kernel, RT.ADDNODE, {"dcid": 3, "nodeid": 1})
    assert reply.rcode == abi.Edvs.NODEFREE
    assert reply.error.startswith("EDVSNODEFREE (-325)")
    kernel.attach_node(1, "host1")  # what the membership layer does on join
    assert (await run(kernel, RT.ADDNODE, {"dcid": 3, "nodeid": 1})).rcode == 0
    [node] = (await run(kernel, RT.GETNODEINFO, {"nodeid": 1})).items
    assert (node.name, node.dcs, node.pxid) == ("host1", (3,), 1)
    sender, receiver = (await run(kernel, RT.GETPROXYINFO, {"pxid": 1})).items
    assert (sender["role"], receiver["role"]) == ("sender", "receiver")
    assert sender["lpid"] == MY_PID
    [status] = (await run(kernel, RT.GETPROXYSTS, {"pxid": 1})).items
    assert status.flags == 0x7
    assert (await run(kernel, RT.DELNODE, {"dcid": 3, "nodeid": 1})).rcode == 0
    assert (await run(kernel, RT.DCEND, {"dcid": 3})).rcode == 0
    reply = await run(kernel, RT.DCEND, {"dcid": 3})
    assert reply.rcode == abi.Edvs.DCNOTRUN


async def test_proc_info_lists_used_slots_or_all():
    kernel = EmulatedKernel()
    kernel.dvs_init(0)
    await run(
        kernel,
        RT.DCINIT,
        {"dcid": 0, "name": "d", "nr_procs": 10, "nr_tasks": 2, "nr_sysprocs": 4},
    )
    kernel.bind(0, 3, MY_PID)
    kernel.bind(0, -1, MY_PID)
    reply = await run(kernel, RT.GETPROCINFO, {"dcid": 0})
    assert [proc.slot for proc in reply.items] == [-1, 3]
    reply = await run(kernel, RT.GETPROCINFO, {"dcid": 0, "include_free": True})
    assert [proc.slot for proc in reply.items] == list(range(-2, 10))
    reply = await run(kernel, RT.GETPROCINFO, {"dcid": 0, "slot": 3})
    assert reply.items[0].lpid == MY_PID
    reply = await run(kernel, RT.GETPROCINFO, {"dcid": 1})
    assert reply.rcode == abi.Edvs.DCNOTRUN
    assert REGISTRY.get(RT.GETPROCINFO).many_lines is not False


async def test_proc_info_of_a_full_dc_fits_one_reply():
    kernel = EmulatedKernel()
    kernel.dvs_init(0)
    await run(kernel, RT.DCINIT, {"dcid": 0, "name": "d"})
    reply = await run(kernel, RT.GETPROCINFO, {"dcid": 0, "include_free": True})
    assert reply.rcode == 0
    from dvsd.handlers.proc import _encoded_size
    from dvsd.registry import MAX_REPLY_BYTES

    assert sum(_encoded_size(item) for item in reply.items) < MAX_REPLY_BYTES
    if reply.truncated:
        assert reply.full_size > MAX_REPLY_BYTES - 2_000
    else:
        assert len(reply.items) == abi.NR_TASKS + abi.NR_PROCS


async def test_get_and_set_priv():
    kernel = EmulatedKernel()
    kernel.dvs_init(0)
    await run(kernel, RT.DCINIT, {"dcid": 0, "name": "d"})
    kernel.bind(0, 7, MY_PID)
    reply = await run(
        kernel, RT.SETPRIV, {"dcid": 0, "endpoint": 7, "level": 1, "warn": 2}
    )
    assert reply.rcode == 0
    assert (reply.items[0].level, reply.items[0].warn) == (1, 2)
    reply = await run(kernel, RT.GETPRIV, {"dcid": 0, "endpoint": 8})
    assert reply.rcode == abi.Edvs.DSTDIED


# -- MIGRATE across three emulated nodes -------------------------------------------


def cluster(nodes=(0, 1, 2), home=1, endpoint=5):
    """Three nodes sharing DC 0; ``endpoint`` runs on ``home``."""
    kernels = {node: EmulatedKernel() for node in nodes}
    for node, kernel in kernels.items():
        kernel.dvs_init(node)
        kernel.dc_init(attrs_dc())
        for other in nodes:
            if other != node:
                kernel.attach_node(other, f"host{other}")
                kernel.add_node(0, other)
    for node, kernel in kernels.items():
        if node == home:
            kernel.bind(0, endpoint, MY_PID)
        else:
            kernel.bind(0, endpoint, 0, nodeid=home)
    return kernels


def attrs_dc():
    from dvsd.kernel.models import DcParams

    return DcParams(dcid=0, name="dc0")


def fake_request(kernels, sent, lost=frozenset(), timeouts=None):
    """ctx.request: run the step handler on each addressed node's kernel."""
    timeouts = [] if timeouts is None else timeouts

    async def request(rqst, params, nodes, timeout=None):
        timeouts.append(timeout)
        targets = sorted(kernels) if nodes == "all" else sorted(nodes)
        sent.append((RequestType(rqst).name, targets))
        results = []
        for node in targets:
            if node in lost:
                results.append(
                    NodeResult(
                        node, ReturnCode.NODE_LEFT, missing_reason="node left the group"
                    )
                )
                continue
            reply = await run(kernels[node], rqst, params, node_id=node)
            results.append(
                NodeResult(node, reply.rcode, list(reply.items), reply.error)
            )
        return results

    return request


async def test_migrate_commits_on_every_node_of_the_dc():
    kernels = cluster()
    sent = []
    reply = await run(
        kernels[0],
        RT.MIGRATE,
        {"dcid": 0, "endpoint": 5, "new_node": 2, "pid": MY_PID},
        node_id=0,
        request=fake_request(kernels, sent),
    )
    assert reply.rcode == 0, reply.error
    # the old node (1) commits last, once every other node has
    assert sent == [
        ("MIGR_START", [1]),
        ("MIGR_COMMIT", [0, 2]),
        ("MIGR_COMMIT", [1]),
    ]
    assert [(o["node"], o["step"], o["ok"]) for o in reply.items] == [
        (1, "start", True),
        (0, "commit", True),
        (2, "commit", True),
        (1, "commit", True),
    ]
    old = kernels[1].get_proc_info(0, 5)
    new = kernels[2].get_proc_info(0, 5)
    other = kernels[0].get_proc_info(0, 5)
    assert old.rts_flags == abi.RtsFlag.REMOTE and old.nodeid == 2
    assert new.rts_flags == 0 and (new.nodeid, new.lpid) == (2, MY_PID)
    assert other.rts_flags == abi.RtsFlag.REMOTE and other.nodeid == 2


async def test_migrate_rolls_back_on_the_old_node_when_a_commit_fails():
    kernels = cluster()
    kernels[0].dc_end(0)  # node 0 loses the DC: its commit will fail
    sent = []
    reply = await run(
        kernels[2],
        RT.MIGRATE,
        {"dcid": 0, "endpoint": 5, "new_node": 0, "pid": MY_PID},
        node_id=2,
        request=fake_request(kernels, sent),
    )
    assert reply.rcode == abi.Edvs.DCNOTRUN
    assert sent[-1] == ("MIGR_ROLLBACK", [1])
    assert ("MIGR_COMMIT", [1]) not in sent  # the old node never committed
    failed = [o for o in reply.items if not o["ok"]]
    assert [(o["node"], o["step"]) for o in failed] == [(0, "commit")]
    assert "EDVSDCNOTRUN" in failed[0]["error"]
    assert "rolled back: endpoint 5 stays on node 1" in reply.error
    old = kernels[1].get_proc_info(0, 5)
    assert not old.rts_flags & (abi.RtsFlag.MIGRATING | abi.RtsFlag.REMOTE)
    assert old.nodeid == 1


async def test_migrate_undoes_commits_when_a_bystander_fails():
    kernels = cluster()
    kernels[0].dc_end(0)  # node 0, a bystander, cannot commit
    sent = []
    reply = await run(
        kernels[2],
        RT.MIGRATE,
        {"dcid": 0, "endpoint": 5, "new_node": 2, "pid": MY_PID},
        node_id=2,
        request=fake_request(kernels, sent),
    )
    assert reply.rcode == abi.Edvs.DCNOTRUN
    steps = [(o["node"], o["step"], o["ok"]) for o in reply.items]
    assert (2, "commit", True) in steps and (2, "undo", True) in steps
    assert (1, "rollback", True) in steps
    assert "stays on node 1" in reply.error
    old, new = kernels[1].get_proc_info(0, 5), kernels[2].get_proc_info(0, 5)
    assert not old.rts_flags & (abi.RtsFlag.MIGRATING | abi.RtsFlag.REMOTE)
    assert old.nodeid == 1
    assert new.rts_flags & abi.RtsFlag.REMOTE and new.nodeid == 1


async def test_migrate_rolls_back_when_a_node_does_not_answer():
    kernels = cluster()
    sent = []
    reply = await run(
        kernels[0],
        RT.MIGRATE,
        {"dcid": 0, "endpoint": 5, "new_node": 2, "pid": MY_PID},
        node_id=0,
        request=fake_request(kernels, sent, lost={2}),
    )
    assert reply.rcode == ReturnCode.NODE_LEFT
    assert ("MIGR_ROLLBACK", [1]) in sent
    assert any(
        o["node"] == 2 and o["error"] == "node left the group" for o in reply.items
    )


async def test_migrate_stops_when_start_fails():
    kernels = cluster()
    sent = []
    reply = await run(
        kernels[0],
        RT.MIGRATE,
        {
            "dcid": 0,
            "endpoint": abi.make_endpoint(1, 5),
            "new_node": 2,
            "pid": MY_PID,
            "old_node": 1,
        },
        node_id=0,
        request=fake_request(kernels, sent),
    )
    assert reply.rcode == abi.Edvs.BADPROC  # wrong generation
    assert sent == [("MIGR_START", [1])]


async def test_migrate_refuses_a_new_node_outside_the_dc():
    kernels = cluster()
    kernels[0].attach_node(3, "host3")
    reply = await run(
        kernels[0],
        RT.MIGRATE,
        {"dcid": 0, "endpoint": 5, "new_node": 3, "pid": MY_PID},
        node_id=0,
        request=fake_request(kernels, []),
    )
    assert reply.rcode == abi.Edvs.DCNODE
    assert "new_node 3 is not a member of DC 0" in reply.error


def test_reply_items_unstructure_to_plain_values():
    from dvsd.registry import unstructure_items

    kernel = EmulatedKernel()
    kernel.dvs_init(0)
    [item] = unstructure_items([kernel.get_node_info(0)])
    assert item["name"] == "node0" and isinstance(item["dcs"], (list, tuple))
    assert attrs.has(type(kernel.get_dvs_info()))


async def test_migrate_steps_share_the_remaining_time():
    import trio

    from dvsd.registry import HandlerContext

    kernels = cluster()
    kernels[0].dc_end(0)  # node 0's commit fails: every kind of step runs
    sent, timeouts = [], []
    ctx = attrs.evolve(
        context(kernels[2], 2, fake_request(kernels, sent, timeouts=timeouts)),
        deadline=trio.current_time() + 9.2,
    )
    assert isinstance(ctx, HandlerContext)
    reply = await execute(
        REGISTRY,
        RT.MIGRATE,
        {"dcid": 0, "endpoint": 5, "new_node": 0, "pid": MY_PID},
        ctx,
    )
    assert reply.rcode == abi.Edvs.DCNOTRUN
    assert len(timeouts) == 4  # start, commit (nodes 0 and 2), undo (2), rollback
    start, commit, undo, rollback = timeouts
    # the fake steps take no time, so each share is of the same ~9 s left
    assert 2.9 < start <= 3.0
    assert 2.9 < commit <= 3.0
    assert 4.4 < undo <= 4.5
    assert 8.9 < rollback <= 9.0
