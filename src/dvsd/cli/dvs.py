"""``dvsctl dvs init|info|end``: the DVS on each addressed node."""

from __future__ import annotations

from typing import Any

from dvsd.cli.framework import Arg, command, fields
from dvsd.kernel import abi
from dvsd.rqst import RequestType


def flag_names(flag_class: type, value: int) -> str:
    """``ATTACHED|SCONNECTED (0x6)``; ``-`` for 0."""
    names = [
        member.name
        for member in flag_class
        if member.value and value & member.value == member.value
    ]
    return f"{'|'.join(names) or '-'} ({value:#x})"


def given(args, names: list[str]) -> dict[str, Any]:
    """The named arguments the user gave (the params class fills the rest)."""
    return {
        name: getattr(args, name) for name in names if getattr(args, name) is not None
    }


_DVS_ARGS = [
    ("name", str, f"DVS name (at most {abi.MAX_NAME_CHARS} bytes)"),
    ("nr_dcs", int, f"DC slots, 1..{abi.NR_DCS}"),
    ("nr_nodes", int, f"node slots, 1..{abi.NR_NODES}"),
    ("nr_procs", int, f"process slots per DC, 1..{abi.NR_PROCS}"),
    ("nr_tasks", int, f"task slots per DC, 1..{abi.NR_TASKS}"),
    ("nr_sysprocs", int, f"privileged slots per DC, 1..{abi.NR_SYS_PROCS}"),
    ("max_copybuf", int, f"largest copy buffer, 1..{abi.MAXCOPYBUF}"),
    ("max_copylen", int, f"largest copy length, 1..{abi.MAXCOPYLEN}"),
    ("debug_level", int, "kernel debug mask"),
]


@command(
    "dvs",
    "init",
    rqst=RequestType.DVSINIT,
    help="initialise the DVS (defaults: the compiled-in limits)",
    rcode_means="local node",
    args=[
        Arg(f"--{name.replace('_', '-')}", dest=name, type=kind, help=text)
        for name, kind, text in _DVS_ARGS
    ],
)
def dvs_init(args) -> dict[str, Any]:
    return given(args, [name for name, _, _ in _DVS_ARGS])


@dvs_init.renderer
def render_dvs_init(items: list[Any]) -> str:
    return ""  # the framework prints "ok (rcode N)": N is the local node id


@command("dvs", "info", rqst=RequestType.GETDVSINFO, help="show the DVS parameters")
def dvs_info(args) -> dict[str, Any]:
    return {}


@dvs_info.renderer
def render_dvs_info(items: list[dict[str, Any]]) -> str:
    shown = []
    for item in items:
        item = dict(item)
        item["flags"] = flag_names(abi.DvsFlag, item["flags"])
        shown.append(fields(item))
    return "\n".join(shown)


@command("dvs", "end", rqst=RequestType.DVSEND, help="end the DVS")
def dvs_end(args) -> dict[str, Any]:
    return {}
