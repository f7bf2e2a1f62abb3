"""DVSNODES: every node's state as this node sees the cluster.

With the membership layer running (every dvsd started by ``main``) the
answer is its DVS view (:meth:`dvsd.membership.Membership.snapshot`): each
node's state (up, unreachable, left, disconnected, unknown), the event and
view that put it there, the view id, and whether this node's partition
holds a majority.  Without it (a daemon embedded in a test) only the current
view is known, and nodes outside it are reported unreachable.
"""

from __future__ import annotations

from dvsd.membership import has_majority
from dvsd.registry import HandlerContext, NoParams, Reply, handler
from dvsd.rqst import RequestType


@handler(RequestType.DVSNODES, summary="Every node's state in this node's view")
async def dvs_nodes(ctx: HandlerContext, params: NoParams) -> Reply:
    if ctx.membership is not None:
        return Reply(items=[ctx.membership.snapshot()])

    configured = tuple(sorted(set(ctx.config.cluster.nodes)))
    members = frozenset(ctx.view.members)
    return Reply(
        items=[
            {
                "view_id": ctx.view.view_id,
                "previous_view_id": "",
                "majority": has_majority(members, configured, len(members)),
                "configured": list(configured),
                "majority_basis": "configured nodes" if configured else "this view",
                "largest_view": len(members),
                "members": sorted(members),
                "events": 0,
                "nodes": [
                    {
                        "node": node,
                        "state": "up" if node in members else "unreachable",
                        "member": node in members,
                        "how": "present" if node in members else "configured",
                        "since_view": "",
                    }
                    for node in sorted(set(configured) | members)
                ],
            }
        ]
    )
