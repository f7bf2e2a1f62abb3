"""``dvsctl host ...``: the node's processes, memory, network, disks and commands.

Each subcommand sends one request type; the renderers print the columns
administrators know from ps, vmstat, ip/ifconfig, ss/netstat, df, mount and
pidstat.  ``--json`` shows the reply fields instead (done by the framework).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dvsd.cli.framework import Arg, command, fields, table
from dvsd.rqst import RequestType


def human_size(value: Any) -> str:
    """Bytes as df -h prints them (1024-based, one decimal under 10)."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if size < 1024 or unit == "P":
            if unit == "B":
                return f"{int(size)}"
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
        size /= 1024
    return str(value)


def _kib(value: Any) -> Any:
    return None if value is None else int(value) // 1024


def _text(value: Any) -> str:
    """Command output for people: bytes decoded, undecodable bytes as \\xNN."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


# -- COMMAND --------------------------------------------------------------------


@command(
    "host",
    "command",
    rqst=RequestType.COMMAND,
    help="run a command on the node(s), if their [host] policy allows it",
    args=[
        Arg("--shell", help="a shell line for /bin/sh -c (needs host.command_shell)"),
        Arg("--command-timeout", type=float, help="seconds before the group is killed"),
        Arg("argv", nargs=argparse.REMAINDER, help="the command and its arguments"),
    ],
)
def host_command(args) -> dict[str, Any]:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    params: dict[str, Any] = {"argv": argv}
    if args.shell is not None:
        params["shell"] = args.shell
    if args.command_timeout is not None:
        params["timeout"] = args.command_timeout
    return params


@host_command.renderer
def render_command(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    result = items[0]
    status = result.get("exit_status")
    head = (
        f"exit {status}"
        + (" (timed out, process group killed)" if result.get("timed_out") else "")
        + f" in {result.get('duration', 0):.2f}s"
    )
    # Absent from a dvsd older than the field: nothing is said then.
    leftovers = result.get("leftovers_killed") or 0
    if leftovers:
        noun = "process" if leftovers == 1 else "processes"
        head += f", {leftovers} leftover {noun} killed"
    parts = [head]
    for stream in ("stdout", "stderr"):
        body = _text(result.get(stream))
        if body:
            parts.append(f"--- {stream} ---\n{body.rstrip(chr(10))}")
        if result.get(f"{stream}_truncated"):
            parts.append(
                f"({stream} cut: {len(result.get(stream) or b'')} of"
                f" {result.get(f'{stream}_size')} bytes shown)"
            )
    return "\n".join(parts)


# -- PS, PIDSTAT, KILL -----------------------------------------------------------


@command(
    "host",
    "ps",
    rqst=RequestType.PS,
    help="processes (ps aux)",
    args=[
        Arg("--pid", type=int, help="one process"),
        Arg("--user", help="processes of one user"),
        Arg("--name", help="processes with this name"),
    ],
)
def host_ps(args) -> dict[str, Any]:
    return {
        key: value
        for key, value in {
            "pid": args.pid,
            "user": args.user,
            "name": args.name,
        }.items()
        if value is not None
    }


@host_ps.renderer
def render_ps(items: list[dict[str, Any]]) -> str:
    rows = []
    for item in items:
        started = item.get("start_time")
        cmdline = item.get("cmdline") or []
        rows.append(
            {
                "user": item.get("user"),
                "pid": item.get("pid"),
                "%cpu": item.get("cpu_percent"),
                "%mem": item.get("mem_percent"),
                "vsz": _kib(item.get("vsz")),
                "rss": _kib(item.get("rss")),
                "tty": (item.get("tty") or "?").removeprefix("/dev/"),
                "stat": item.get("state"),
                "start": time.strftime("%H:%M", time.localtime(started))
                if started
                else None,
                "time": _cpu_time(item.get("cpu_time")),
                "command": " ".join(cmdline) if cmdline else f"[{item.get('name')}]",
            }
        )
    return table(rows, list(rows[0]) if rows else None)


def _cpu_time(seconds: Any) -> str | None:
    if seconds is None:
        return None
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


@command(
    "host",
    "pidstat",
    rqst=RequestType.PIDSTAT,
    help="per-process CPU, page faults and I/O over an interval (pidstat)",
    args=[
        Arg("interval", nargs="?", type=float, default=1.0, help="seconds (0.1..60)"),
        Arg("count", nargs="?", type=int, default=1, help="samples (1..60)"),
        Arg("--pid", type=int, help="one process (default: every active one)"),
    ],
)
def host_pidstat(args) -> dict[str, Any]:
    params: dict[str, Any] = {"interval": args.interval, "count": args.count}
    if args.pid is not None:
        params["pid"] = args.pid
    return params


@host_pidstat.renderer
def render_pidstat(items: list[dict[str, Any]]) -> str:
    return table(
        items,
        [
            "sample",
            "pid",
            "usr_percent",
            "system_percent",
            "cpu_percent",
            "minflt_per_s",
            "majflt_per_s",
            "rss",
            "read_kib_per_s",
            "write_kib_per_s",
            "command",
        ],
        [
            "#",
            "PID",
            "%usr",
            "%system",
            "%CPU",
            "minflt/s",
            "majflt/s",
            "RSS",
            "kB_rd/s",
            "kB_wr/s",
            "Command",
        ],
    )


@command(
    "host",
    "kill",
    rqst=RequestType.KILL,
    help="send a signal to a process by pid or by name",
    args=[
        Arg("target", help="a pid, or a process name"),
        Arg("-s", "--signal", default="TERM", help="name or number (default TERM)"),
        Arg("--force", action="store_true", help="allow pid 1 and dvsd itself"),
    ],
)
def host_kill(args) -> dict[str, Any]:
    params: dict[str, Any] = {"signal": args.signal, "force": args.force}
    if args.target.isdigit():
        params["pid"] = int(args.target)
    else:
        params["name"] = args.target
    return params


@host_kill.renderer
def render_kill(items: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"pid {item['pid']}: {item['signal']} sent"
        if item.get("sent")
        else f"pid {item['pid']}: not sent: {item.get('error')}"
        for item in items
    )


# -- VMSTAT ----------------------------------------------------------------------


@command(
    "host",
    "vmstat",
    rqst=RequestType.VMSTAT,
    help="memory, swap, I/O and CPU activity (vmstat)",
    args=[
        Arg("interval", nargs="?", type=float, default=0.0, help="seconds (0..60)"),
        Arg("count", nargs="?", type=int, default=None, help="lines (1..60)"),
    ],
)
def host_vmstat(args) -> dict[str, Any]:
    count = args.count if args.count is not None else (2 if args.interval else 1)
    return {"interval": args.interval, "count": count}


_VMSTAT_COLUMNS = [
    ("procs_running", "r"),
    ("procs_blocked", "b"),
    ("swap_used_kib", "swpd"),
    ("free_kib", "free"),
    ("buffers_kib", "buff"),
    ("cache_kib", "cache"),
    ("swap_in_kib_s", "si"),
    ("swap_out_kib_s", "so"),
    ("blocks_in_s", "bi"),
    ("blocks_out_s", "bo"),
    ("interrupts_s", "in"),
    ("context_switches_s", "cs"),
    ("user", "us"),
    ("system", "sy"),
    ("idle", "id"),
    ("iowait", "wa"),
    ("steal", "st"),
]


@host_vmstat.renderer
def render_vmstat(items: list[dict[str, Any]]) -> str:
    rows = [
        {name: _whole(item.get(name)) for name, _ in _VMSTAT_COLUMNS} for item in items
    ]
    return table(
        rows,
        [name for name, _ in _VMSTAT_COLUMNS],
        [header for _, header in _VMSTAT_COLUMNS],
    )


def _whole(value: Any) -> Any:
    return round(value) if isinstance(value, float) else value


# -- IFCONFIG, NETSTAT ------------------------------------------------------------


@command(
    "host",
    "ifconfig",
    rqst=RequestType.IFCONFIG,
    help="network interfaces, addresses and counters",
    args=[Arg("interface", nargs="?", help="one interface")],
)
def host_ifconfig(args) -> dict[str, Any]:
    return {} if args.interface is None else {"interface": args.interface}


@host_ifconfig.renderer
def render_ifconfig(items: list[dict[str, Any]]) -> str:
    blocks = []
    for item in items:
        flags = ",".join(flag.upper() for flag in item.get("flags") or [])
        lines = [f"{item['name']}: <{flags}> mtu {item.get('mtu')}"]
        if item.get("mac"):
            lines.append(f"    link/ether {item['mac']}")
        lines += [f"    inet {address}" for address in item.get("ipv4") or []]
        lines += [f"    inet6 {address}" for address in item.get("ipv6") or []]
        lines.append(
            f"    RX packets {item.get('rx_packets')} bytes {item.get('rx_bytes')}"
            f" errors {item.get('rx_errors')} dropped {item.get('rx_dropped')}"
        )
        lines.append(
            f"    TX packets {item.get('tx_packets')} bytes {item.get('tx_bytes')}"
            f" errors {item.get('tx_errors')} dropped {item.get('tx_dropped')}"
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@command(
    "host",
    "netstat",
    rqst=RequestType.NETSTAT,
    help="sockets with state and process (netstat -tunap / ss)",
    args=[
        Arg("--kind", default="inet", help="inet, tcp, udp, unix, all, tcp6, ..."),
        Arg("-l", "--listening", action="store_true", help="listening sockets only"),
    ],
)
def host_netstat(args) -> dict[str, Any]:
    return {"kind": args.kind, "listening": args.listening}


def _endpoint(address: Any, port: Any) -> str:
    if address is None:
        return "*"
    if port is None:
        return str(address)
    host = f"[{address}]" if ":" in str(address) else str(address)
    return f"{host}:{port}"


@host_netstat.renderer
def render_netstat(items: list[dict[str, Any]]) -> str:
    rows = [
        {
            "proto": item.get("proto"),
            "local": _endpoint(item.get("local_address"), item.get("local_port")),
            "remote": _endpoint(item.get("remote_address"), item.get("remote_port")),
            "state": item.get("state"),
            "pid/program": f"{item.get('pid') or '-'}/{item.get('program') or '-'}",
        }
        for item in items
    ]
    return table(rows, ["proto", "local", "remote", "state", "pid/program"])


# -- DF, MOUNT -------------------------------------------------------------------


@command(
    "host",
    "df",
    rqst=RequestType.DF,
    help="space of mounted filesystems (df -h)",
    args=[
        Arg("path", nargs="?", help="the filesystem holding this path"),
        # --all is taken by the node selection; -a as in df stays.
        Arg(
            "-a",
            "--all-fs",
            dest="all_fs",
            action="store_true",
            help="include pseudo filesystems",
        ),
        Arg("-t", "--type", dest="fstype", help="only this filesystem type"),
    ],
)
def host_df(args) -> dict[str, Any]:
    params: dict[str, Any] = {"all": args.all_fs}
    if args.fstype is not None:
        params["fstype"] = args.fstype
    if args.path is not None:
        params["path"] = args.path
    return params


@host_df.renderer
def render_df(items: list[dict[str, Any]]) -> str:
    rows = [
        {
            "filesystem": item.get("filesystem"),
            "type": item.get("fstype"),
            "size": human_size(item.get("size")),
            "used": human_size(item.get("used")),
            "avail": human_size(item.get("available")),
            "use%": "-"
            if item.get("use_percent") is None
            else f"{item['use_percent']}%",
            "mounted on": item.get("mountpoint"),
        }
        for item in items
    ]
    return table(
        rows, ["filesystem", "type", "size", "used", "avail", "use%", "mounted on"]
    )


@command(
    "host",
    "mount",
    rqst=RequestType.MOUNT,
    help="the mount table",
    args=[Arg("-t", "--type", dest="fstype", help="only this filesystem type")],
)
def host_mount(args) -> dict[str, Any]:
    return {} if args.fstype is None else {"fstype": args.fstype}


@host_mount.renderer
def render_mount(items: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{item['device']} on {item['mountpoint']} type {item['fstype']}"
        f" ({','.join(item.get('options') or [])})"
        for item in items
    )


# -- CONTAINER ---------------------------------------------------------------------


@command(
    "host",
    "containers",
    rqst=RequestType.CONTAINER,
    help="containers on the node (Docker, Podman, containerd, LXC, nspawn)",
    args=[Arg("--runtime", help="only this runtime")],
)
def host_containers(args) -> dict[str, Any]:
    return {} if args.runtime is None else {"runtime": args.runtime}


@host_containers.renderer
def render_containers(items: list[dict[str, Any]]) -> str:
    rows = [
        {
            "runtime": item.get("runtime"),
            "name": item.get("name"),
            "init": item.get("init_pid"),
            "procs": item.get("process_count"),
            "command": item.get("command"),
            "netns": (item.get("namespaces") or {}).get("net"),
            "pidns": (item.get("namespaces") or {}).get("pid"),
            "cgroup": item.get("cgroup"),
        }
        for item in items
    ]
    if not rows:
        return "(no containers)"
    return table(rows, list(rows[0]))


def render_fields(items: list[dict[str, Any]]) -> str:
    """One record per item as ``name value`` lines (used by the cgroup family)."""
    return "\n\n".join(fields(item) for item in items)
