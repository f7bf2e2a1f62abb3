"""ADDNODE, GETNODEINFO, DELNODE, GETPROXYINFO, GETPROXYSTS.

A node can join a DC only after its proxy pair is bound and it is up
(reference 4.7); the membership layer brings joined nodes up with
``kernel.attach_node``.  GETPROXYSTS is the proxy-pair record, which no DVK
call returns: on a real kernel it is read from /proc/dvs/proxies/info.
"""

from __future__ import annotations

import attrs

from dvsd.kernel import abi
from dvsd.registry import HandlerContext, Reply, handler
from dvsd.rqst import RequestType
from dvsd.validators import in_range


@attrs.frozen
class DcNodeParams:
    dcid: int = attrs.field(validator=in_range(0, abi.NR_DCS - 1))
    nodeid: int = attrs.field(validator=in_range(0, abi.NR_NODES - 1))


@attrs.frozen
class NodeIdParams:
    """``nodeid`` -1 means the node that executes the request."""

    nodeid: int = attrs.field(default=-1, validator=in_range(-1, abi.NR_NODES - 1))


@attrs.frozen
class ProxyIdParams:
    pxid: int = attrs.field(validator=in_range(0, abi.NR_NODES - 1))


@handler(RequestType.ADDNODE, params=DcNodeParams, summary="Add a node to a DC")
async def add_node(ctx: HandlerContext, params: DcNodeParams) -> Reply:
    ctx.kernel.add_node(params.dcid, params.nodeid)
    ctx.log.info("dc_node_added", dcid=params.dcid, nodeid=params.nodeid)
    return Reply()


@handler(RequestType.DELNODE, params=DcNodeParams, summary="Remove a node from a DC")
async def del_node(ctx: HandlerContext, params: DcNodeParams) -> Reply:
    ctx.kernel.del_node(params.dcid, params.nodeid)
    ctx.log.info("dc_node_removed", dcid=params.dcid, nodeid=params.nodeid)
    return Reply()


@handler(RequestType.GETNODEINFO, params=NodeIdParams, summary="Show one node slot")
async def get_node_info(ctx: HandlerContext, params: NodeIdParams) -> Reply:
    return Reply(items=[ctx.kernel.get_node_info(params.nodeid)])


@handler(
    RequestType.GETPROXYINFO,
    params=ProxyIdParams,
    summary="Show the sender and receiver proxy of a pair",
)
async def get_proxy_info(ctx: HandlerContext, params: ProxyIdParams) -> Reply:
    sender, receiver = ctx.kernel.get_proxy_info(params.pxid)
    return Reply(
        items=[
            {"role": "sender", **attrs.asdict(sender)},
            {"role": "receiver", **attrs.asdict(receiver)},
        ]
    )


@handler(
    RequestType.GETPROXYSTS, params=ProxyIdParams, summary="Show a proxy pair's status"
)
async def get_proxy_status(ctx: HandlerContext, params: ProxyIdParams) -> Reply:
    return Reply(items=[ctx.kernel.get_proxy_status(params.pxid)])
