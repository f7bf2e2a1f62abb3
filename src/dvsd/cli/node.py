"""``dvsctl node add|del|info`` and ``dvsctl proxy info|status``."""

from __future__ import annotations

from typing import Any

from dvsd.cli.dc import DCID
from dvsd.cli.dvs import flag_names
from dvsd.cli.framework import Arg, command, fields, table
from dvsd.kernel import abi
from dvsd.rqst import RequestType

NODEID = Arg("nodeid", type=int, help=f"node id (0..{abi.NR_NODES - 1})")
PXID = Arg("pxid", type=int, help=f"proxy pair id (0..{abi.NR_NODES - 1})")


@command(
    "node",
    "add",
    rqst=RequestType.ADDNODE,
    help="add a node to a DC",
    args=[DCID, NODEID],
)
def node_add(args) -> dict[str, Any]:
    return {"dcid": args.dcid, "nodeid": args.nodeid}


@command(
    "node",
    "del",
    rqst=RequestType.DELNODE,
    help="remove a node from a DC",
    args=[DCID, NODEID],
)
def node_del(args) -> dict[str, Any]:
    return {"dcid": args.dcid, "nodeid": args.nodeid}


@command(
    "node",
    "info",
    rqst=RequestType.GETNODEINFO,
    help="show a node slot as each addressed node's kernel sees it",
    args=[
        Arg(
            "nodeid",
            type=int,
            nargs="?",
            default=-1,
            help="node id (default: the answering node itself)",
        )
    ],
)
def node_info(args) -> dict[str, Any]:
    return {"nodeid": args.nodeid}


@node_info.renderer
def render_node_info(items: list[dict[str, Any]]) -> str:
    shown = []
    for item in items:
        item = dict(item)
        item["flags"] = flag_names(abi.NodeFlag, item["flags"])
        shown.append(fields(item))
    return "\n".join(shown)


@command(
    "proxy",
    "info",
    rqst=RequestType.GETPROXYINFO,
    help="show the sender and receiver proxy of a pair",
    args=[PXID],
)
def proxy_info(args) -> dict[str, Any]:
    return {"pxid": args.pxid}


@proxy_info.renderer
def render_proxy_info(items: list[dict[str, Any]]) -> str:
    rows = [
        dict(item, misc_flags=flag_names(abi.MiscFlag, item["misc_flags"]))
        for item in items
    ]
    columns = [
        "role",
        "lpid",
        "nodemap",
        "misc_flags",
        "local_sent",
        "remote_sent",
        "name",
    ]
    return table(rows, columns)


@command(
    "proxy",
    "status",
    rqst=RequestType.GETPROXYSTS,
    help="show a proxy pair's status record",
    args=[PXID],
)
def proxy_status(args) -> dict[str, Any]:
    return {"pxid": args.pxid}


@proxy_status.renderer
def render_proxy_status(items: list[dict[str, Any]]) -> str:
    shown = []
    for item in items:
        item = dict(item)
        item["flags"] = flag_names(abi.ProxyFlag, item["flags"])
        shown.append(fields(item))
    return "\n".join(shown)
