"""``dvsctl cgroup ...``: read or set a cgroup's CPU, memory, I/O and network settings.

A cgroup is named by its path in the hierarchy (``/system.slice/foo.service``)
or by ``--pid`` of a process in it.  Without a setting the command reads;
with one it checks every value, writes, and shows the values read back.
"""

from __future__ import annotations

from typing import Any

from dvsd.cli.framework import Arg, command, fields, table
from dvsd.cli.host import human_size
from dvsd.rqst import RequestType

_TARGET = [
    Arg("path", nargs="?", help="cgroup path, e.g. /system.slice/foo.service"),
    Arg("--pid", type=int, help="the cgroup this process is in"),
]


def _target(args) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.path is not None:
        params["path"] = args.path
    if args.pid is not None:
        params["pid"] = args.pid
    return params


def _given(args, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: getattr(args, name) for name in names if getattr(args, name) is not None
    }


def _limit(value: Any) -> str:
    if value is None:
        return "-"
    if value == "max":
        return "max"
    return f"{value} ({human_size(value)})"


@command(
    "cgroup",
    "cpu",
    rqst=RequestType.CGCPU,
    help="CPU quota/period and weight (v2) or shares (v1)",
    args=[
        *_TARGET,
        Arg("--quota", help="microseconds per period, or max"),
        Arg("--period", type=int, help="microseconds (1000..1000000)"),
        Arg("--weight", type=int, help="cgroup v2 weight (1..10000)"),
        Arg("--shares", type=int, help="cgroup v1 shares (2..262144)"),
    ],
)
def cgroup_cpu(args) -> dict[str, Any]:
    return _target(args) | _given(args, ("quota", "period", "weight", "shares"))


@cgroup_cpu.renderer
def render_cpu(items: list[dict[str, Any]]) -> str:
    return "\n\n".join(fields(item) for item in items)


@command(
    "cgroup",
    "mem",
    rqst=RequestType.CGMEM,
    help="memory limit, high mark and use",
    args=[
        *_TARGET,
        Arg("--limit", help="bytes, 512M, 2G or max"),
        Arg("--high", help="cgroup v2 throttle mark: bytes, 512M or max"),
    ],
)
def cgroup_mem(args) -> dict[str, Any]:
    return _target(args) | _given(args, ("limit", "high"))


@cgroup_mem.renderer
def render_mem(items: list[dict[str, Any]]) -> str:
    blocks = []
    for item in items:
        shown = dict(item)
        for name in ("limit", "high", "soft_limit", "swap_limit", "current", "peak"):
            shown[name] = _limit(item.get(name))
        blocks.append(fields(shown))
    return "\n\n".join(blocks)


@command(
    "cgroup",
    "io",
    rqst=RequestType.CGIO,
    help="block I/O limits and statistics",
    args=[
        *_TARGET,
        Arg("--device", help="major:minor of the block device, e.g. 8:0"),
        Arg("--rbps", help="read bytes/s or max"),
        Arg("--wbps", help="write bytes/s or max"),
        Arg("--riops", help="read operations/s or max"),
        Arg("--wiops", help="write operations/s or max"),
    ],
)
def cgroup_io(args) -> dict[str, Any]:
    return _target(args) | _given(args, ("device", "rbps", "wbps", "riops", "wiops"))


@cgroup_io.renderer
def render_io(items: list[dict[str, Any]]) -> str:
    blocks = []
    for item in items:
        head = f"cgroup {item.get('cgroup')} ({item.get('version')})"
        limits = table(
            item.get("limits") or [], ["device", "rbps", "wbps", "riops", "wiops"]
        )
        stats = table(
            item.get("stats") or [], ["device", "rbytes", "wbytes", "rios", "wios"]
        )
        blocks.append(f"{head}\nlimits:\n{limits}\nstatistics:\n{stats}")
    return "\n\n".join(blocks)


@command(
    "cgroup",
    "net",
    rqst=RequestType.CGNET,
    help="net_cls class id and net_prio priorities (cgroup v1 only)",
    args=[
        *_TARGET,
        Arg("--classid", help="tc handle like 1:10, or a number"),
        Arg("--interface", help="interface whose priority to set"),
        Arg("--priority", type=int, help="priority for --interface"),
    ],
)
def cgroup_net(args) -> dict[str, Any]:
    return _target(args) | _given(args, ("classid", "interface", "priority"))


@cgroup_net.renderer
def render_net(items: list[dict[str, Any]]) -> str:
    return "\n\n".join(fields(item) for item in items)


@command(
    "cgroup",
    "controllers",
    rqst=RequestType.CONTROLLER,
    help="cgroup controllers: version, mount and whether enabled",
)
def cgroup_controllers(args) -> dict[str, Any]:
    return {}


@cgroup_controllers.renderer
def render_controllers(items: list[dict[str, Any]]) -> str:
    return table(
        items,
        [
            "name",
            "version",
            "available",
            "kernel_enabled",
            "subtree_enabled",
            "hierarchy_id",
            "cgroups",
            "mountpoint",
        ],
        [
            "controller",
            "version",
            "available",
            "enabled",
            "subtree",
            "hier",
            "cgroups",
            "mountpoint",
        ],
    )
