"""DVSNODES: every node's state as this node sees the cluster."""

from __future__ import annotations

from dvsd.registry import HandlerContext, NoParams, Reply, handler
from dvsd.rqst import RequestType


@handler(RequestType.DVSNODES, summary="Every node's state in this node's view")
async def dvs_nodes(ctx: HandlerContext, params: NoParams) -> Reply:
    configured = set(ctx.config.cluster.nodes)
    members = set(ctx.view.members)
    nodes = sorted(configured | members)
    basis = configured or members
    seen = len(members & basis) if configured else len(members)
    majority = seen * 2 > len(basis) if basis else False
    return Reply(
        items=[
            {
                "view_id": ctx.view.view_id,
                "majority": majority,
                "configured": sorted(configured),
                "nodes": [
                    {
                        "node": node,
                        "state": "up" if node in members else "unreachable",
                        "member": node in members,
                    }
                    for node in nodes
                ],
            }
        ]
    )
