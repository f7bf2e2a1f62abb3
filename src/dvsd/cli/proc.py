"""``dvsctl proc info|priv|setpriv|migrate``: DVK processes."""

from __future__ import annotations

from typing import Any

from dvsd.cli.dc import DCID
from dvsd.cli.dvs import given
from dvsd.cli.framework import Arg, command, fields, table
from dvsd.kernel import abi
from dvsd.rqst import RequestType

ENDPOINT = Arg("endpoint", type=int, help="process endpoint")


def integer(text: str) -> int:
    """Decimal, 0x hexadecimal or 0b binary (argparse names it in errors)."""
    return int(text, 0)


@command(
    "proc",
    "info",
    rqst=RequestType.GETPROCINFO,
    help="show the used slots of a DC, or one slot",
    args=[
        DCID,
        Arg(
            "slot",
            type=int,
            nargs="?",
            help=f"slot number ({-abi.NR_TASKS}..{abi.NR_PROCS - 1})",
        ),
        Arg("--free", action="store_true", help="list free slots too"),
    ],
)
def proc_info(args) -> dict[str, Any]:
    params: dict[str, Any] = {"dcid": args.dcid}
    if args.slot is not None:
        params["slot"] = args.slot
    if args.free:
        params["include_free"] = True
    return params


def _state(item: dict[str, Any]) -> str:
    names = [member.name for member in abi.RtsFlag if item["rts_flags"] & member.value]
    return "|".join(names) or "ready"


@proc_info.renderer
def render_proc_info(items: list[dict[str, Any]]) -> str:
    rows = [dict(item, state=_state(item)) for item in items]
    columns = [
        "dcid",
        "slot",
        "endpoint",
        "lpid",
        "vpid",
        "nodeid",
        "state",
        "misc_flags",
        "name",
    ]
    return table(rows, columns)


@command(
    "proc",
    "priv",
    rqst=RequestType.GETPRIV,
    help="show a process's privileges",
    args=[DCID, ENDPOINT],
)
def proc_priv(args) -> dict[str, Any]:
    return {"dcid": args.dcid, "endpoint": args.endpoint}


@proc_priv.renderer
def render_priv(items: list[dict[str, Any]]) -> str:
    shown = []
    for item in items:
        item = dict(item)
        item["level"] = f"{abi.PrivLevel(item['level']).name.lower()} ({item['level']})"
        for name in ("ipc_from", "ipc_to", "dvk_allowed"):
            item[name] = f"{item[name]:#x}"
        shown.append(fields(item))
    return "\n".join(shown)


@command(
    "proc",
    "setpriv",
    rqst=RequestType.SETPRIV,
    help="change a process's privileges (only the options given)",
    args=[
        DCID,
        ENDPOINT,
        Arg(
            "--level",
            type=int,
            help="0 user, 1 server, 2 task, 3 system, 4 kernel, 5 proxy",
        ),
        Arg("--warn", type=int, help="endpoint told when the process exits"),
        Arg("--ipc-to", dest="ipc_to", type=integer, help="bitmap of allowed targets"),
        Arg(
            "--dvk-allowed",
            dest="dvk_allowed",
            type=integer,
            help="bitmap of allowed DVK calls",
        ),
    ],
)
def proc_setpriv(args) -> dict[str, Any]:
    params = {"dcid": args.dcid, "endpoint": args.endpoint}
    params.update(given(args, ["level", "warn", "ipc_to", "dvk_allowed"]))
    return params


proc_setpriv.renderer(render_priv)


@command(
    "proc",
    "migrate",
    rqst=RequestType.MIGRATE,
    help="migrate a process: start on the old node, commit on every DC node",
    args=[
        DCID,
        ENDPOINT,
        Arg("new_node", type=int, help="node the process moves to"),
        Arg("pid", type=int, help="Linux PID of the process on the new node"),
        Arg(
            "--old-node",
            dest="old_node",
            type=int,
            help="node it runs on now (default: as the coordinating node sees it)",
        ),
    ],
)
def proc_migrate(args) -> dict[str, Any]:
    params = {
        "dcid": args.dcid,
        "endpoint": args.endpoint,
        "new_node": args.new_node,
        "pid": args.pid,
    }
    params.update(given(args, ["old_node"]))
    return params


@proc_migrate.renderer
def render_migrate(items: list[dict[str, Any]]) -> str:
    rows = [dict(item, ok="yes" if item["ok"] else "no") for item in items]
    return table(rows, ["node", "step", "ok", "rcode", "error"])
