"""A handler plugin used by the end-to-end tests, loaded through its entry point.

It is installed the way any third-party plugin is: a distribution whose
``entry_points.txt`` names this module in the ``dvsd.handlers`` group (see the
``dvsd_testplugin-0.1.dist-info`` folder beside it).
"""

from __future__ import annotations

import attrs
import trio

from dvsd.registry import HandlerContext, Reply, handler
from dvsd.validators import in_range

TESTECHO = 1000
TESTSLOW = 1001


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
