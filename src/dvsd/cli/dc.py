"""``dvsctl dc init|info|end``: distributed containers."""

from __future__ import annotations

import argparse
from typing import Any

from dvsd.cli.dvs import given
from dvsd.cli.framework import Arg, command, fields
from dvsd.kernel import abi
from dvsd.rqst import RequestType

DCID = Arg("dcid", type=int, help=f"DC id (0..{abi.NR_DCS - 1})")


def cpu_list(text: str) -> list[int]:
    """``0-3,6`` -> [0, 1, 2, 3, 6]; an empty or reversed range is an error.

    Leaving ``--cpus`` out means every CPU; an empty list given on purpose
    must not silently mean the same.
    """
    cpus: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            first = last = -1
        if not 0 <= first <= last:
            raise argparse.ArgumentTypeError(
                f"CPU numbers and ranges like 0-3,6 expected; {part!r} is neither"
            )
        cpus.extend(range(first, last + 1))
    return cpus


_DC_OPTIONS = [
    ("nr_procs", f"process slots, 1..{abi.NR_PROCS}"),
    ("nr_tasks", f"task slots, 0..{abi.NR_TASKS}"),
    ("nr_sysprocs", f"privileged slots, 0..{abi.NR_SYS_PROCS}"),
    ("nr_nodes", f"nodes allowed in the DC, 1..{abi.NR_NODES}"),
    ("warn2proc", "endpoint told when a process exits"),
    ("warnmsg", "message type of that warning"),
]


@command(
    "dc",
    "init",
    rqst=RequestType.DCINIT,
    help="start a DC (rcode = dcid)",
    rcode_means="dcid",
    args=[
        DCID,
        Arg(
            "name",
            help=f"DC name, unique, at most {abi.MAX_NAME_CHARS} bytes,"
            " no control characters",
        ),
        *[
            Arg(f"--{name.replace('_', '-')}", dest=name, type=int, help=text)
            for name, text in _DC_OPTIONS
        ],
        Arg("--cpus", type=cpu_list, help="CPUs, e.g. 0-3,6 (default: all)"),
    ],
)
def dc_init(args) -> dict[str, Any]:
    params = {"dcid": args.dcid, "name": args.name}
    params.update(given(args, [name for name, _ in _DC_OPTIONS] + ["cpus"]))
    return params


@dc_init.renderer
def render_dc_init(items: list[Any]) -> str:
    return ""


@command("dc", "info", rqst=RequestType.GETDCINFO, help="show a DC", args=[DCID])
def dc_info(args) -> dict[str, Any]:
    return {"dcid": args.dcid}


@dc_info.renderer
def render_dc_info(items: list[dict[str, Any]]) -> str:
    shown = []
    for item in items:
        item = dict(item)
        item["flags"] = abi.DcState(item["flags"]).name.lower()
        shown.append(fields(item))
    return "\n".join(shown)


@command("dc", "end", rqst=RequestType.DCEND, help="end a DC", args=[DCID])
def dc_end(args) -> dict[str, Any]:
    return {"dcid": args.dcid}
