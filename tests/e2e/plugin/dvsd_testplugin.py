"""A handler plugin used by the end-to-end tests, loaded through its entry point.

It is installed the way any third-party plugin is: a distribution whose
``entry_points.txt`` names this module in the ``dvsd.handlers`` group (see the
``dvsd_testplugin-0.1.dist-info`` folder beside it).
"""

from __future__ import annotations

import attrs
import trio

from dvsd.kernel import abi
from dvsd.registry import HandlerContext, NoParams, Reply, handler
from dvsd.validators import in_range

TESTECHO = 1000
TESTSLOW = 1001
TESTBIND = 1002
TESTATTACH = 1003


@attrs.frozen
class EchoParams:
    size: int = attrs.field(validator=in_range(0, 200_000))


@handler(TESTECHO, name="TESTECHO", params=EchoParams, summary="reply with size bytes")
async def echo(ctx: HandlerContext, params: EchoParams) -> Reply:
    # A pattern that differs from node to node, so mixed-up replies show.
    pattern = bytes((ctx.node_id * 7 + i) % 251 for i in range(251))
    blob = (pattern * (params.size // len(pattern) + 1))[: params.size]
    return Reply(items=[{"node": ctx.node_id, "blob": blob}])


@attrs.frozen
class SlowParams:
    seconds: float = 1.0


@handler(TESTSLOW, name="TESTSLOW", params=SlowParams, summary="answer after a while")
async def slow(ctx: HandlerContext, params: SlowParams) -> Reply:
    ctx.log.info("testslow_waiting", seconds=params.seconds)
    await trio.sleep(params.seconds)  # the behaviour under test: a slow handler
    return Reply(items=[{"node": ctx.node_id}])


@attrs.frozen
class BindParams:
    """Bind ``endpoint`` of DC ``dcid`` to ``pid`` running on ``home_node``."""

    dcid: int = attrs.field(validator=in_range(0, abi.NR_DCS - 1))
    endpoint: int = attrs.field(validator=in_range(-abi.NR_TASKS, abi.NR_PROCS - 1))
    home_node: int = attrs.field(validator=in_range(0, abi.NR_NODES - 1))
    pid: int = attrs.field(validator=in_range(1, 2**31 - 1))


@handler(
    TESTBIND,
    name="TESTBIND",
    params=BindParams,
    summary="bind a process slot: local on its home node, remote elsewhere",
)
async def bind(ctx: HandlerContext, params: BindParams) -> Reply:
    # A DVS application binds itself on its own node, and the DVK makes the
    # slot remote on the other nodes of the DC; dvsd has no request for
    # either, so the tests send this to every node to stand in for both.
    local = params.home_node == ctx.node_id
    ctx.kernel.bind(
        params.dcid,
        params.endpoint,
        params.pid,
        nodeid=abi.LOCALNODE if local else params.home_node,
    )
    ctx.log.info("testbind_bound", endpoint=params.endpoint, local=local)
    return Reply(items=[{"node": ctx.node_id, "local": local}])


@handler(
    TESTATTACH,
    name="TESTATTACH",
    summary="bring every other member of the view up in this node's kernel",
)
async def attach(ctx: HandlerContext, params: NoParams) -> Reply:
    # What the membership layer does for members that join after DVSINIT;
    # members already in the view when DVSINIT runs are not brought up by
    # dvsd (see tests/e2e/test_kernel_cluster.py), so the tests do it here.
    # A node already up is left as it is, so this is harmless once dvsd does.
    attached = []
    for member in sorted(ctx.view.members - {ctx.node_id}):
        if ctx.kernel.get_node_info(member).flags == abi.NodeFlag.FREE:
            ctx.kernel.attach_node(member, f"node{member}")
            attached.append(member)
    return Reply(items=[{"node": ctx.node_id, "attached": attached}])
