"""IFCONFIG and NETSTAT: interfaces with their addresses and counters, and sockets."""

from __future__ import annotations

import ipaddress
import socket

import attrs
import psutil

from dvsd.host.errors import InvalidValue, PermissionDenied

#: NETSTAT's ``kind`` parameter, as psutil names the socket families.
NETSTAT_KINDS = (
    "inet",
    "inet4",
    "inet6",
    "tcp",
    "tcp4",
    "tcp6",
    "udp",
    "udp4",
    "udp6",
    "unix",
    "all",
)


@attrs.frozen
class Interface:
    """One network interface: flags, addresses (``addr/prefix``) and counters."""

    name: str
    up: bool | None
    flags: list[str]
    mtu: int | None
    speed_mbps: int | None
    mac: str | None
    ipv4: list[str]
    ipv6: list[str]
    rx_bytes: int | None
    rx_packets: int | None
    rx_errors: int | None
    rx_dropped: int | None
    tx_bytes: int | None
    tx_packets: int | None
    tx_errors: int | None
    tx_dropped: int | None


def _prefix(address: str, netmask: str | None) -> str:
    """``addr/prefix``; psutil gives IPv6 masks in address form (``ffff:ffff::``)."""
    address = address.split("%", 1)[0]  # fe80::1%eth0: the scope is the interface
    if not netmask:
        return address
    try:
        mask = ipaddress.ip_address(netmask)
    except ValueError:
        return address
    bits = bin(int(mask)).count("1")
    return f"{address}/{bits}"


def list_interfaces(name: str | None = None) -> list[Interface]:
    """The interfaces of the node sorted by name, or the one called ``name``."""
    addresses = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    counters = psutil.net_io_counters(pernic=True)
    names = sorted(set(addresses) | set(stats) | set(counters))
    if name is not None:
        if name not in names:
            raise InvalidValue(
                f"no interface called {name!r} (there are: {', '.join(names)})"
            )
        names = [name]
    result = []
    for each in names:
        ipv4, ipv6, mac = [], [], None
        for entry in addresses.get(each, []):
            if entry.family == socket.AF_INET:
                ipv4.append(_prefix(entry.address, entry.netmask))
            elif entry.family == socket.AF_INET6:
                ipv6.append(_prefix(entry.address, entry.netmask))
            elif entry.family == psutil.AF_LINK:
                mac = entry.address
        stat = stats.get(each)
        counter = counters.get(each)
        result.append(
            Interface(
                name=each,
                up=None if stat is None else stat.isup,
                flags=[] if stat is None else [f for f in stat.flags.split(",") if f],
                mtu=None if stat is None else stat.mtu,
                speed_mbps=None if stat is None or not stat.speed else stat.speed,
                mac=mac,
                ipv4=ipv4,
                ipv6=ipv6,
                rx_bytes=None if counter is None else counter.bytes_recv,
                rx_packets=None if counter is None else counter.packets_recv,
                rx_errors=None if counter is None else counter.errin,
                rx_dropped=None if counter is None else counter.dropin,
                tx_bytes=None if counter is None else counter.bytes_sent,
                tx_packets=None if counter is None else counter.packets_sent,
                tx_errors=None if counter is None else counter.errout,
                tx_dropped=None if counter is None else counter.dropout,
            )
        )
    return result


@attrs.frozen
class Connection:
    """One socket as netstat/ss shows it.  Unix sockets carry their path."""

    proto: str  # tcp, tcp6, udp, udp6, unix
    local_address: str | None
    local_port: int | None
    remote_address: str | None
    remote_port: int | None
    state: str | None  # LISTEN, ESTABLISHED, ... (None for udp and unix dgram)
    pid: int | None
    program: str | None


def _proto(family: int, kind: int) -> str:
    if family == socket.AF_UNIX:
        return "unix"
    base = "tcp" if kind == socket.SOCK_STREAM else "udp"
    return base + ("6" if family == socket.AF_INET6 else "")


def list_connections(
    kind: str = "inet", *, listening: bool = False
) -> list[Connection]:
    """The sockets of the node of ``kind`` (see :data:`NETSTAT_KINDS`).

    ``listening`` keeps only listening TCP sockets and unconnected UDP ones.
    """
    if kind not in NETSTAT_KINDS:
        raise InvalidValue(
            f"kind must be one of {', '.join(NETSTAT_KINDS)}, got {kind!r}"
        )
    try:
        sockets = psutil.net_connections(kind=kind)
    except psutil.AccessDenied:
        raise PermissionDenied(
            "listing sockets needs root on this system (psutil was refused)"
        ) from None
    names: dict[int, str | None] = {}
    result = []
    for entry in sockets:
        state = None if entry.status == psutil.CONN_NONE else entry.status
        if listening and state not in ("LISTEN", None):
            continue
        if listening and entry.raddr:
            continue
        if entry.family == socket.AF_UNIX:
            local, local_port = entry.laddr or None, None
            remote, remote_port = entry.raddr or None, None
        else:
            local, local_port = (
                (entry.laddr.ip, entry.laddr.port)
                if entry.laddr
                else (
                    None,
                    None,
                )
            )
            remote, remote_port = (
                (entry.raddr.ip, entry.raddr.port) if entry.raddr else (None, None)
            )
        program = None
        if entry.pid is not None:
            if entry.pid not in names:
                try:
                    names[entry.pid] = psutil.Process(entry.pid).name()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    names[entry.pid] = None  # gone since the scan: keep the pid
            program = names[entry.pid]
        result.append(
            Connection(
                proto=_proto(entry.family, entry.type),
                local_address=local,
                local_port=local_port,
                remote_address=remote,
                remote_port=remote_port,
                state=state,
                pid=entry.pid,
                program=program,
            )
        )
    result.sort(
        key=lambda row: (row.proto, row.local_address or "", row.local_port or 0)
    )
    return result
