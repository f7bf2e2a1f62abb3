"""MOUNT and DF: the mount table and the space of each mounted filesystem.

Both read ``<proc_root>/self/mounts``, the mount table of dvsd's own mount
namespace, which is what mount(8) and df(1) run on the node would show.
"""

from __future__ import annotations

import os
import re

import attrs

from dvsd.host.errors import HostError, InvalidValue, OsFailure, describe_os_error

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@attrs.frozen
class Mount:
    """One line of /proc/self/mounts with its escapes (``\\040``) undone."""

    device: str
    mountpoint: str
    fstype: str
    options: list[str]


@attrs.frozen
class DfRow:
    """One filesystem as df shows it; sizes in bytes."""

    filesystem: str
    fstype: str
    size: int
    used: int
    available: int
    use_percent: int | None  # None when the filesystem has no blocks
    inodes: int
    inodes_used: int
    inodes_free: int
    mountpoint: str


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes of space, tab, newline and backslash."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    """Parse the text of /proc/self/mounts (fstab format, six fields)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mounts.append(
            Mount(
                device=unescape(fields[0]),
                mountpoint=unescape(fields[1]),
                fstype=fields[2],
                options=fields[3].split(","),
            )
        )
    return mounts


def list_mounts(proc_root: str = "/proc", *, fstype: str | None = None) -> list[Mount]:
    """The mount table in mount order, optionally of one filesystem type."""
    path = f"{proc_root}/self/mounts"
    try:
        with open(path) as mounts_file:
            mounts = parse_mounts(mounts_file.read())
    except OSError as error:
        raise OsFailure(f"cannot read {path}: {error.strerror}") from None
    if fstype is not None:
        mounts = [mount for mount in mounts if mount.fstype == fstype]
    return mounts


def df_row(mount: Mount) -> DfRow:
    """Statistics of one mounted filesystem (statvfs), computed as df does."""
    try:
        stat = os.statvfs(mount.mountpoint)
    except OSError as error:
        raise describe_os_error(f"statvfs {mount.mountpoint}", error) from None
    block = stat.f_frsize or stat.f_bsize
    size = stat.f_blocks * block
    used = (stat.f_blocks - stat.f_bfree) * block
    available = stat.f_bavail * block
    # df rounds up and counts space reserved for root as unavailable.
    usable = used + available
    use_percent = None if usable == 0 else -(-100 * used // usable)
    return DfRow(
        filesystem=mount.device,
        fstype=mount.fstype,
        size=size,
        used=used,
        available=available,
        use_percent=use_percent,
        inodes=stat.f_files,
        inodes_used=stat.f_files - stat.f_ffree,
        inodes_free=stat.f_ffree,
        mountpoint=mount.mountpoint,
    )


def disk_free(
    proc_root: str = "/proc",
    *,
    include_all: bool = False,
    fstype: str | None = None,
    path: str | None = None,
) -> list[DfRow]:
    """df for the node.

    Without ``include_all`` pseudo filesystems (no blocks) are left out and a
    mountpoint mounted over is shown once, as its last mount (the one visible).
    ``path`` selects the filesystem holding that path, like ``df PATH``.
    """
    mounts = list_mounts(proc_root, fstype=fstype)
    if path is not None:
        if not os.path.isabs(path):
            raise InvalidValue(f"path must be absolute, got {path!r}")
        if not os.path.exists(path):
            raise InvalidValue(f"path {path!r} does not exist on this node")
        real = os.path.realpath(path)
        holders = [
            mount
            for mount in mounts
            if real == mount.mountpoint
            or real.startswith(mount.mountpoint.rstrip("/") + "/")
        ]
        if not holders:
            raise InvalidValue(f"no mounted filesystem holds {path!r}")
        mounts = [max(holders, key=lambda mount: len(mount.mountpoint))]
        include_all = True
    visible: dict[str, Mount] = {}
    for mount in mounts:
        visible.pop(mount.mountpoint, None)
        visible[mount.mountpoint] = mount  # the later mount hides the earlier one
    rows = []
    for mount in visible.values():
        try:
            row = df_row(mount)
        except HostError:
            if path is not None:
                raise
            continue  # a mount that cannot be examined (gone, permission) is skipped
        if not include_all and row.size == 0:
            continue
        rows.append(row)
    return rows
