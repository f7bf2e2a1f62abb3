"""``dvsctl ns KIND [--pid N]``: a process's namespace of one kind, or all of them.

KIND is cgroup, ipc, net, mnt, pid, user or uts (``mnt`` is RQST_NSNS).
"""

from __future__ import annotations

from typing import Any

from dvsd.cli.framework import Arg, command, table
from dvsd.rqst import RequestType

_KINDS = {
    "cgroup": RequestType.NSCGROUP,
    "ipc": RequestType.NSIPC,
    "net": RequestType.NSNET,
    "mnt": RequestType.NSNS,
    "pid": RequestType.NSPID,
    "user": RequestType.NSUSER,
    "uts": RequestType.NSUTS,
}

#: Pids shown per namespace in the table; --json has the whole list.
SHOWN_PIDS = 12


def _build(args) -> dict[str, Any]:
    return {} if args.pid is None else {"pid": args.pid}


def render_namespaces(items: list[dict[str, Any]]) -> str:
    rows = []
    for item in items:
        pids = item.get("pids") or []
        shown = " ".join(str(pid) for pid in pids[:SHOWN_PIDS])
        if item.get("process_count", 0) > SHOWN_PIDS:
            shown += " ..."
        rows.append(
            {
                "ns": item.get("inode"),
                "type": item.get("kind"),
                "nprocs": item.get("process_count"),
                "pid": item.get("owner_pid"),
                "command": item.get("command"),
                "pids": shown,
            }
        )
    return table(rows, ["ns", "type", "nprocs", "pid", "command", "pids"])


for _kind, _rqst in _KINDS.items():
    _entry = command(
        "ns",
        _kind,
        rqst=_rqst,
        help=f"the {_kind} namespace of --pid and who shares it, or every one",
        args=[Arg("--pid", type=int, help="the process whose namespace to show")],
    )(_build)
    _entry.renderer(render_namespaces)
