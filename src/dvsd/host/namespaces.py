"""Namespaces: which namespace of each kind a process is in, and who shares it.

A namespace is identified, as lsns(8) does, by the inode number shown in the
``/proc/<pid>/ns/<kind>`` link (``net:[4026531833]``), which is the same as
``os.stat`` of that link's target.  The link text is parsed rather than
stat'ed so fixture trees can hold plain symlinks.
"""

from __future__ import annotations

import os
import re

import attrs

from dvsd.host.errors import InvalidValue, NoSuchProcess, PermissionDenied
from dvsd.host.procs import list_pids, read_stat

#: The kinds of ``/proc/<pid>/ns``; RQST_NSNS is ``mnt``.
NAMESPACE_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")

#: The pids listed per namespace; the count is always exact.
MEMBER_LIMIT = 2000

_LINK = re.compile(r"^(\w+):\[(\d+)\]$")


@attrs.frozen
class NamespaceInfo:
    """One namespace: its kind, id (inode) and the processes in it."""

    kind: str
    inode: int
    process_count: int
    pids: list[int]  # sorted, at most MEMBER_LIMIT
    pids_truncated: bool
    owner_pid: int  # the lowest pid in it, as lsns shows
    command: str | None  # that process's name


def check_kind(kind: str) -> str:
    if kind not in NAMESPACE_KINDS:
        raise InvalidValue(
            f"namespace kind must be one of {', '.join(NAMESPACE_KINDS)}, got {kind!r}"
        )
    return kind


def namespace_id(pid: int, kind: str, proc_root: str = "/proc") -> int | None:
    """The inode of ``pid``'s namespace of ``kind``; ``None`` if gone, not
    offered or not readable by dvsd (a scan skips such processes)."""
    try:
        return _namespace_inode(pid, kind, proc_root)
    except PermissionError:
        return None


def _namespace_inode(pid: int, kind: str, proc_root: str) -> int | None:
    """As :func:`namespace_id`, but a link dvsd may not read raises PermissionError."""
    try:
        target = os.readlink(f"{proc_root}/{pid}/ns/{kind}")
    except (FileNotFoundError, ProcessLookupError):
        return None
    match = _LINK.match(target)
    return int(match.group(2)) if match else None


def process_namespaces(pid: int, proc_root: str = "/proc") -> dict[str, int]:
    """{kind: inode} for every kind the kernel shows for ``pid``.

    Raises :class:`NoSuchProcess` if the process does not exist.
    """
    if not os.path.isdir(f"{proc_root}/{pid}"):
        raise NoSuchProcess(f"no process with pid {pid}")
    found = {}
    for kind in NAMESPACE_KINDS:
        inode = namespace_id(pid, kind, proc_root)
        if inode is not None:
            found[kind] = inode
    return found


def namespace_members(kind: str, proc_root: str = "/proc") -> dict[int, list[int]]:
    """{inode: sorted pids} for every namespace of ``kind`` on the node."""
    check_kind(kind)
    members: dict[int, list[int]] = {}
    for pid in list_pids(proc_root):
        inode = namespace_id(pid, kind, proc_root)
        if inode is not None:  # a process that exited meanwhile is skipped
            members.setdefault(inode, []).append(pid)
    return members


def _info(kind: str, inode: int, pids: list[int], proc_root: str) -> NamespaceInfo:
    owner = pids[0]
    stat = read_stat(owner, proc_root)
    return NamespaceInfo(
        kind=kind,
        inode=inode,
        process_count=len(pids),
        pids=pids[:MEMBER_LIMIT],
        pids_truncated=len(pids) > MEMBER_LIMIT,
        owner_pid=owner,
        command=None if stat is None else str(stat["comm"]),
    )


def describe_namespaces(
    kind: str, pid: int | None = None, proc_root: str = "/proc"
) -> list[NamespaceInfo]:
    """The namespace of ``kind`` that ``pid`` is in, or every one of that kind."""
    check_kind(kind)
    members = namespace_members(kind, proc_root)
    if pid is None:
        return [
            _info(kind, inode, pids, proc_root)
            for inode, pids in sorted(members.items())
        ]
    if not os.path.isdir(f"{proc_root}/{pid}"):
        raise NoSuchProcess(f"no process with pid {pid}")
    try:
        inode = _namespace_inode(pid, kind, proc_root)
    except PermissionError:
        raise PermissionDenied(
            f"pid {pid}'s {kind} namespace cannot be read by dvsd (permission denied)"
        ) from None
    if inode is None:
        raise NoSuchProcess(f"pid {pid} shows no {kind} namespace (gone or hidden)")
    return [_info(kind, inode, members.get(inode, [pid]), proc_root)]
