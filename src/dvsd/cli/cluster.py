"""``dvsctl dvs nodes``: each node's picture of the cluster."""

from __future__ import annotations

from typing import Any

from dvsd.cli.framework import command, table
from dvsd.rqst import RequestType


@command(
    "dvs", "nodes", rqst=RequestType.DVSNODES, help="every node's state in the view"
)
def dvs_nodes(args) -> dict[str, Any]:
    return {}


@dvs_nodes.renderer
def render_dvs_nodes(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    summary = items[0]
    basis = summary.get("majority_basis", "")
    head = (
        f"view {summary['view_id'] or '-'}"
        f"  majority {'yes' if summary['majority'] else 'no'}"
        + (f" (of {basis})" if basis else "")
    )
    rows = [
        {**entry, "member": "yes" if entry.get("member") else "no"}
        for entry in summary["nodes"]
    ]
    return head + "\n" + table(rows, ["node", "state", "member", "how", "since_view"])
