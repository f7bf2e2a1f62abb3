"""Control groups: the node's layout (v1, v2 or hybrid) and the CPU, memory, I/O
and network settings of one cgroup, read and written through cgroupfs.

The layout comes from ``<proc_root>/self/mountinfo``.  On a hybrid host each
controller is looked up where it really lives: a controller bound to a v1
hierarchy is used there, one listed in the v2 root's ``cgroup.controllers``
is used on v2.  An empty file, ``max`` and a file the kernel does not offer
are values (``None``, ``"max"``, ``None``), never errors.  Every value is
checked before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import re

import attrs

from dvsd.host.errors import (
    HostError,
    InvalidValue,
    NoSuchProcess,
    NotSupported,
    OsFailure,
    describe_os_error,
)

#: v1 mount options that are not controller names.
_V1_MOUNT_FLAGS = {"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode"}

#: What cgroup v1 reports for "no memory limit": PAGE_COUNTER_MAX pages.  Any
#: value at or above this (for 4 KiB to 64 KiB pages) means unlimited.
_V1_UNLIMITED = 0x7FFFFFFFFFFF0000

_DEVICE = re.compile(r"^\d+:\d+$")
_SIZE = re.compile(r"^([0-9]+)\s*([KMGT]?)(i?B?)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@attrs.frozen
class Hierarchy:
    """One mounted cgroup hierarchy: where it is and which subtree it shows."""

    mountpoint: str
    root: str  # the hierarchy path the mount shows ("/" unless in a container)


@attrs.frozen
class CgroupLayout:
    """How cgroups are mounted on the node.

    ``version`` is ``"v1"``, ``"v2"``, ``"hybrid"`` (v1 controllers plus a v2
    mount) or ``"none"``.  ``v1`` maps each v1 controller (and named
    hierarchies such as ``name=systemd``) to its mount.
    """

    version: str
    v1: dict[str, Hierarchy] = attrs.field(factory=dict)
    v2: Hierarchy | None = None


def parse_mountinfo(text: str) -> CgroupLayout:
    """Find the cgroup mounts in the text of /proc/<pid>/mountinfo."""
    v1: dict[str, Hierarchy] = {}
    v2: Hierarchy | None = None
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        if not separator:
            continue
        fields = before.split()
        fstype, _source, super_options = (after.split() + ["", "", ""])[:3]
        if len(fields) < 5:
            continue
        hierarchy = Hierarchy(
            mountpoint=_unescape(fields[4]), root=_unescape(fields[3])
        )
        if fstype == "cgroup2" and v2 is None:
            v2 = hierarchy
        elif fstype == "cgroup":
            for option in super_options.split(","):
                if option in _V1_MOUNT_FLAGS or option.startswith("release_agent="):
                    continue
                v1.setdefault(option, hierarchy)  # a bind mount repeats it
    if v1 and v2 is not None:
        version = "hybrid"
    elif v1:
        version = "v1"
    elif v2 is not None:
        version = "v2"
    else:
        version = "none"
    return CgroupLayout(version=version, v1=v1, v2=v2)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def detect_layout(proc_root: str = "/proc") -> CgroupLayout:
    """The layout of the mount namespace dvsd runs in."""
    path = f"{proc_root}/self/mountinfo"
    try:
        with open(path) as mountinfo:
            return parse_mountinfo(mountinfo.read())
    except OSError as error:
        raise OsFailure(f"cannot read {path}: {error.strerror}") from None


def v2_layout(root: str) -> CgroupLayout:
    """A pure cgroup v2 layout rooted at ``root`` (a fixture tree or a custom mount)."""
    return CgroupLayout(version="v2", v2=Hierarchy(mountpoint=root, root="/"))


def read_file(directory: str, name: str) -> str | None:
    """The stripped content of a cgroup file; ``None`` if absent or empty."""
    try:
        with open(os.path.join(directory, name)) as cgroup_file:
            text = cgroup_file.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise describe_os_error(f"read {directory}/{name}", error) from None
    return text or None


def v2_controllers(layout: CgroupLayout) -> list[str]:
    """The controllers the v2 root offers (``cgroup.controllers``)."""
    if layout.v2 is None:
        return []
    text = read_file(layout.v2.mountpoint, "cgroup.controllers")
    return text.split() if text else []


# -- locating one cgroup -------------------------------------------------------


@attrs.frozen
class CgroupDir:
    """One cgroup of one controller: its hierarchy path and its directory."""

    version: str  # "v1" or "v2"
    controller: str
    path: str  # as in /proc/<pid>/cgroup, e.g. /system.slice/foo.service
    directory: str


def check_cgroup_path(path: str) -> str:
    """Normalise a cgroup path given by a requester; refuse escapes upward."""
    if not path.startswith("/"):
        raise InvalidValue(f"cgroup path must start with '/', got {path!r}")
    if "\0" in path or any(part == ".." for part in path.split("/")):
        raise InvalidValue(f"cgroup path must not contain '..' or NUL: {path!r}")
    return os.path.normpath(path).replace("//", "/")


def read_pid_cgroups(pid: int, proc_root: str = "/proc") -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 line is under ``""``."""
    path = f"{proc_root}/{pid}/cgroup"
    try:
        with open(path) as cgroup_file:
            text = cgroup_file.read()
    except (FileNotFoundError, ProcessLookupError):
        raise NoSuchProcess(f"no process with pid {pid}") from None
    except OSError as error:
        raise describe_os_error(f"read {path}", error) from None
    return parse_pid_cgroups(text)


def parse_pid_cgroups(text: str) -> dict[str, str]:
    """Parse the lines ``hierarchy-id:controllers:path`` of /proc/<pid>/cgroup."""
    result = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy, controllers, cgroup_path = parts
        if not controllers:
            result[""] = cgroup_path
        for controller in controllers.split(","):
            if controller:
                result[controller] = cgroup_path
    return result


def locate(
    layout: CgroupLayout,
    *,
    v1_controller: str | None,
    v2_controller: str | None,
    path: str | None = None,
    pid: int | None = None,
    proc_root: str = "/proc",
) -> CgroupDir:
    """Find the directory of a cgroup, given by ``path`` or by a member ``pid``.

    Raises :class:`NotSupported` when the controller is not available on this
    node, :class:`NoSuchProcess` for an unknown pid and :class:`InvalidValue`
    for a path that is not a cgroup.
    """
    if (path is None) == (pid is None):
        raise InvalidValue("give either a cgroup path or a pid, not both or neither")
    version, controller, hierarchy = _controller_home(
        layout, v1_controller, v2_controller
    )
    if pid is not None:
        memberships = read_pid_cgroups(pid, proc_root)
        key = controller if version == "v1" else ""
        if key not in memberships:
            raise NotSupported(
                f"pid {pid} has no {controller} cgroup in /proc/{pid}/cgroup"
            )
        cgroup_path = memberships[key]
    else:
        cgroup_path = check_cgroup_path(path)
    if not (cgroup_path + "/").startswith(hierarchy.root.rstrip("/") + "/"):
        raise NotSupported(
            f"cgroup {cgroup_path} is outside the part of the {controller} hierarchy"
            f" mounted here ({hierarchy.root})"
        )
    relative = cgroup_path[len(hierarchy.root.rstrip("/")) :].lstrip("/")
    directory = (
        os.path.join(hierarchy.mountpoint, relative)
        if relative
        else hierarchy.mountpoint
    )
    if not os.path.isdir(directory):
        raise InvalidValue(f"no cgroup {cgroup_path} in the {controller} hierarchy")
    return CgroupDir(
        version=version, controller=controller, path=cgroup_path, directory=directory
    )


def _controller_home(
    layout: CgroupLayout, v1_controller: str | None, v2_controller: str | None
) -> tuple[str, str, Hierarchy]:
    if v1_controller is not None and v1_controller in layout.v1:
        return "v1", v1_controller, layout.v1[v1_controller]
    if v2_controller is not None and v2_controller in v2_controllers(layout):
        return "v2", v2_controller, layout.v2
    if v2_controller is None and layout.version == "v2":
        raise NotSupported(f"{v1_controller} is not available on cgroup v2")
    names = " / ".join(name for name in (v1_controller, v2_controller) if name)
    raise NotSupported(
        f"the {names} controller is not mounted or enabled on this node"
        f" (cgroup layout: {layout.version})"
    )


# -- values -----------------------------------------------------------------------


def parse_limit(text: str | None) -> int | str | None:
    """A cgroup limit: ``None`` (absent/empty), ``"max"`` or bytes/units."""
    if text is None:
        return None
    if text == "max" or text == "-1":
        return "max"
    value = int(text)
    return "max" if value >= _V1_UNLIMITED else value


def parse_size(text: str, field: str) -> int | str:
    """A size given by a requester: ``max``, ``1048576``, ``512M``, ``2GiB``."""
    cleaned = str(text).strip()
    if cleaned.lower() == "max":
        return "max"
    match = _SIZE.match(cleaned)
    if match is None:
        raise InvalidValue(
            f"{field} must be 'max' or a size like 1048576, 512M or 2G, got {text!r}"
        )
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if value <= 0:
        raise InvalidValue(f"{field} must be greater than 0, got {text!r}")
    if value > MAX_KERNEL_VALUE:
        raise InvalidValue(
            f"{field} must be at most {MAX_KERNEL_VALUE} bytes (the kernel keeps"
            f" 64-bit values), got {text!r}"
        )
    return value


def parse_keyed(text: str | None) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.stat) to a dict of integers."""
    values = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


#: Plain ASCII digits: ``str.isdigit`` also takes "９" and "²".
_DIGITS = re.compile(r"[0-9]+")
#: The largest limit cgroup files keep without wrapping (a signed 64-bit value).
MAX_KERNEL_VALUE = 2**63 - 1
#: The kernel's largest CFS quota, in microseconds (2**44 - 1: MAX_BW).
MAX_CPU_QUOTA = 2**44 - 1


def _write_all(directory: str, writes: list[tuple[str, str, str | None]]) -> None:
    """Write ``(file, value, restore)`` in order; on a failure undo the earlier ones.

    The kernel checks some values only when they are written (a quota against
    the period, say); restoring what was already written keeps a refused
    request from changing anything.
    """
    done: list[tuple[str, str | None]] = []
    try:
        for name, value, restore in writes:
            _write(directory, name, value)
            done.append((name, restore))
    except HostError:
        for name, restore in reversed(done):
            if restore is not None:
                with contextlib.suppress(HostError):
                    _write(directory, name, restore)
        raise


def _write(directory: str, name: str, value: str) -> None:
    path = os.path.join(directory, name)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except FileNotFoundError:
        raise NotSupported(f"{path} does not exist on this node") from None
    except OSError as error:
        raise describe_os_error(f"open {path}", error) from None
    try:
        # One write(2) per setting: cgroupfs parses each write on its own.
        os.write(descriptor, value.encode())
    except OSError as error:
        raise describe_os_error(f"write {value!r} to {path}", error) from None
    finally:
        os.close(descriptor)


# -- CPU ---------------------------------------------------------------------------


@attrs.frozen
class CpuSettings:
    """CPU bandwidth and share of one cgroup.  ``quota`` is µs per period or "max"."""

    cgroup: str
    version: str
    quota: int | str | None
    period: int | None
    weight: int | None  # v2 cpu.weight (1..10000)
    shares: int | None  # v1 cpu.shares (2..262144)
    usage_usec: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_usec: int | None


def _opt_int(text: str | None) -> int | None:
    return None if text is None else int(text)


def read_cpu(where: CgroupDir, layout: CgroupLayout) -> CpuSettings:
    """Read the CPU settings and statistics of ``where``."""
    directory = where.directory
    if where.version == "v2":
        quota = period = None
        cpu_max = read_file(directory, "cpu.max")
        if cpu_max is not None:
            quota_text, _, period_text = cpu_max.partition(" ")
            quota = parse_limit(quota_text)
            period = _opt_int(period_text or None)
        stat = parse_keyed(read_file(directory, "cpu.stat"))
        return CpuSettings(
            cgroup=where.path,
            version="v2",
            quota=quota,
            period=period,
            weight=_opt_int(read_file(directory, "cpu.weight")),
            shares=None,
            usage_usec=stat.get("usage_usec"),
            nr_periods=stat.get("nr_periods"),
            nr_throttled=stat.get("nr_throttled"),
            throttled_usec=stat.get("throttled_usec"),
        )
    stat = parse_keyed(read_file(directory, "cpu.stat"))
    throttled_ns = stat.get("throttled_time")
    return CpuSettings(
        cgroup=where.path,
        version="v1",
        quota=parse_limit(read_file(directory, "cpu.cfs_quota_us")),
        period=_opt_int(read_file(directory, "cpu.cfs_period_us")),
        weight=None,
        shares=_opt_int(read_file(directory, "cpu.shares")),
        usage_usec=_v1_cpuacct_usage(where, layout),
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_usec=None if throttled_ns is None else throttled_ns // 1000,
    )


def _v1_cpuacct_usage(where: CgroupDir, layout: CgroupLayout) -> int | None:
    hierarchy = layout.v1.get("cpuacct")
    if hierarchy is None:
        return None
    relative = where.path[len(hierarchy.root.rstrip("/")) :].lstrip("/")
    usage = read_file(os.path.join(hierarchy.mountpoint, relative), "cpuacct.usage")
    return None if usage is None else int(usage) // 1000


def check_quota(quota: str) -> int | str:
    """``max`` or microseconds from 1000 (kernel minimum) to the kernel's maximum."""
    cleaned = str(quota).strip().lower()
    if cleaned in ("max", "-1"):
        return "max"
    if not _DIGITS.fullmatch(cleaned) or not 1000 <= int(cleaned) <= MAX_CPU_QUOTA:
        raise InvalidValue(
            f"quota must be 'max' or microseconds in 1000..{MAX_CPU_QUOTA},"
            f" got {quota!r}"
        )
    return int(cleaned)


def _check_int_range(value: int, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{field} must be an integer in {low}..{high}")
    if not low <= value <= high:
        raise InvalidValue(f"{field} must be in {low}..{high}, got {value}")
    return value


def set_cpu(
    where: CgroupDir,
    layout: CgroupLayout,
    *,
    quota: str | None = None,
    period: int | None = None,
    weight: int | None = None,
    shares: int | None = None,
) -> CpuSettings:
    """Validate everything, then write; returns the settings read back."""
    new_quota = None if quota is None else check_quota(quota)
    if period is not None:
        _check_int_range(period, "period", 1000, 1_000_000)
    if weight is not None:
        _check_int_range(weight, "weight", 1, 10_000)
        if where.version == "v1":
            raise InvalidValue(
                "weight is the cgroup v2 setting; this cgroup is v1: give shares"
                " (2..262144)"
            )
    if shares is not None:
        _check_int_range(shares, "shares", 2, 262_144)
        if where.version == "v2":
            raise InvalidValue(
                "shares is the cgroup v1 setting; this cgroup is v2: give weight"
                " (1..10000)"
            )

    directory = where.directory
    if where.version == "v2":
        if new_quota is not None or period is not None:
            current = read_cpu(where, layout)
            write_quota = new_quota if new_quota is not None else current.quota
            write_period = period if period is not None else current.period
            text = str(write_quota or "max")
            if write_period is not None:
                text += f" {write_period}"
            writes = [("cpu.max", text, read_file(directory, "cpu.max"))]
        else:
            writes = []
        if weight is not None:
            writes.append(
                ("cpu.weight", str(weight), read_file(directory, "cpu.weight"))
            )
        _write_all(directory, writes)
    else:
        writes = []
        if period is not None:
            writes.append(("cpu.cfs_period_us", str(period)))
        if new_quota is not None:
            writes.append(
                ("cpu.cfs_quota_us", "-1" if new_quota == "max" else str(new_quota))
            )
        if shares is not None:
            writes.append(("cpu.shares", str(shares)))
        _write_all(
            directory,
            [(name, value, read_file(directory, name)) for name, value in writes],
        )
    return read_cpu(where, layout)


# -- memory -----------------------------------------------------------------------


@attrs.frozen
class MemorySettings:
    """Memory limits and use of one cgroup, in bytes or ``"max"``."""

    cgroup: str
    version: str
    limit: int | str | None  # v2 memory.max, v1 memory.limit_in_bytes
    high: int | str | None  # v2 memory.high (v1 has none)
    soft_limit: int | str | None  # v1 memory.soft_limit_in_bytes
    swap_limit: int | str | None  # v2 memory.swap.max, v1 memory.memsw.limit_in_bytes
    current: int | None
    peak: int | None


def read_memory(where: CgroupDir) -> MemorySettings:
    directory = where.directory
    if where.version == "v2":
        return MemorySettings(
            cgroup=where.path,
            version="v2",
            limit=parse_limit(read_file(directory, "memory.max")),
            high=parse_limit(read_file(directory, "memory.high")),
            soft_limit=None,
            swap_limit=parse_limit(read_file(directory, "memory.swap.max")),
            current=_opt_int(read_file(directory, "memory.current")),
            peak=_opt_int(read_file(directory, "memory.peak")),
        )
    return MemorySettings(
        cgroup=where.path,
        version="v1",
        limit=parse_limit(read_file(directory, "memory.limit_in_bytes")),
        high=None,
        soft_limit=parse_limit(read_file(directory, "memory.soft_limit_in_bytes")),
        swap_limit=parse_limit(read_file(directory, "memory.memsw.limit_in_bytes")),
        current=_opt_int(read_file(directory, "memory.usage_in_bytes")),
        peak=_opt_int(read_file(directory, "memory.max_usage_in_bytes")),
    )


def set_memory(
    where: CgroupDir, *, limit: str | None = None, high: str | None = None
) -> MemorySettings:
    """Set ``limit`` and/or ``high`` (sizes or ``max``); returns the values now."""
    new_limit = None if limit is None else parse_size(limit, "limit")
    new_high = None if high is None else parse_size(high, "high")
    if new_high is not None and where.version == "v1":
        raise NotSupported("memory high is a cgroup v2 setting; this cgroup is v1")
    if where.version == "v2":
        writes = []
        if new_limit is not None:
            writes.append(("memory.max", str(new_limit)))
        if new_high is not None:
            writes.append(("memory.high", str(new_high)))
        _write_all(
            where.directory,
            [(name, value, read_file(where.directory, name)) for name, value in writes],
        )
    elif new_limit is not None:
        _write(
            where.directory,
            "memory.limit_in_bytes",
            "-1" if new_limit == "max" else str(new_limit),
        )
    return read_memory(where)


# -- I/O ---------------------------------------------------------------------------

_IO_KEYS = ("rbps", "wbps", "riops", "wiops")
_V1_IO_FILES = {
    "rbps": "blkio.throttle.read_bps_device",
    "wbps": "blkio.throttle.write_bps_device",
    "riops": "blkio.throttle.read_iops_device",
    "wiops": "blkio.throttle.write_iops_device",
}


@attrs.frozen
class IoLimit:
    """The throttle of one block device; each value a number or ``"max"``."""

    device: str  # major:minor
    rbps: int | str
    wbps: int | str
    riops: int | str
    wiops: int | str


@attrs.frozen
class IoStat:
    """Bytes and operations done on one block device (cumulative)."""

    device: str
    rbytes: int | None
    wbytes: int | None
    rios: int | None
    wios: int | None


@attrs.frozen
class IoSettings:
    cgroup: str
    version: str
    limits: list[IoLimit]
    stats: list[IoStat]


def parse_io_max(text: str | None) -> list[IoLimit]:
    """v2 ``io.max`` lines: ``8:0 rbps=1048576 wbps=max riops=max wiops=120``."""
    limits = []
    for line in (text or "").splitlines():
        device, *pairs = line.split()
        values: dict[str, int | str] = dict.fromkeys(_IO_KEYS, "max")
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key in values:
                values[key] = "max" if value == "max" else int(value)
        limits.append(IoLimit(device=device, **values))
    return limits


def parse_io_stat(text: str | None) -> list[IoStat]:
    """v2 ``io.stat`` lines: ``8:0 rbytes=... wbytes=... rios=... wios=...``."""
    stats = []
    for line in (text or "").splitlines():
        device, *pairs = line.split()
        values = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if value.isdigit():
                values[key] = int(value)
        stats.append(
            IoStat(
                device=device,
                rbytes=values.get("rbytes"),
                wbytes=values.get("wbytes"),
                rios=values.get("rios"),
                wios=values.get("wios"),
            )
        )
    return stats


def _v1_device_values(text: str | None) -> dict[str, int]:
    values = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and _DEVICE.match(parts[0]):
            values[parts[0]] = int(parts[1])
    return values


def _v1_service(text: str | None) -> dict[str, dict[str, int]]:
    """``8:0 Read 4096`` lines of blkio.throttle.io_service_bytes/io_serviced."""
    per_device: dict[str, dict[str, int]] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and _DEVICE.match(parts[0]):
            per_device.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return per_device


def read_io(where: CgroupDir) -> IoSettings:
    directory = where.directory
    if where.version == "v2":
        return IoSettings(
            cgroup=where.path,
            version="v2",
            limits=parse_io_max(read_file(directory, "io.max")),
            stats=parse_io_stat(read_file(directory, "io.stat")),
        )
    per_key = {
        key: _v1_device_values(read_file(directory, name))
        for key, name in _V1_IO_FILES.items()
    }
    devices = sorted({device for values in per_key.values() for device in values})
    limits = [
        IoLimit(
            device=device,
            **{key: per_key[key].get(device, "max") for key in _IO_KEYS},
        )
        for device in devices
    ]
    service_bytes = _v1_service(read_file(directory, "blkio.throttle.io_service_bytes"))
    serviced = _v1_service(read_file(directory, "blkio.throttle.io_serviced"))
    stats = [
        IoStat(
            device=device,
            rbytes=service_bytes.get(device, {}).get("Read"),
            wbytes=service_bytes.get(device, {}).get("Write"),
            rios=serviced.get(device, {}).get("Read"),
            wios=serviced.get(device, {}).get("Write"),
        )
        for device in sorted(set(service_bytes) | set(serviced))
    ]
    return IoSettings(cgroup=where.path, version="v1", limits=limits, stats=stats)


def check_device(device: str, field: str = "device") -> str:
    """A block device as ``major:minor``; raises :class:`InvalidValue` otherwise."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise InvalidValue(f"{field} must be major:minor like 8:0, got {device!r}")
    return device


def check_io_value(value: str, field: str) -> int | str:
    """An I/O limit: ``max`` or a positive integer (bytes/s or operations/s)."""
    cleaned = str(value).strip().lower()
    if cleaned == "max":
        return "max"
    if _DIGITS.fullmatch(cleaned) and 0 < int(cleaned) <= MAX_KERNEL_VALUE:
        return int(cleaned)
    raise InvalidValue(
        f"{field} must be 'max' or an integer in 1..{MAX_KERNEL_VALUE}, got {value!r}"
    )


def set_io(where: CgroupDir, device: str, **limits: str | None) -> IoSettings:
    """Throttle ``device`` (major:minor): rbps, wbps, riops, wiops, a number or max."""
    check_device(device)
    checked: dict[str, int | str] = {}
    for key, value in limits.items():
        if key not in _IO_KEYS:
            known = ", ".join(_IO_KEYS)
            raise InvalidValue(f"unknown I/O limit {key!r}; known: {known}")
        if value is not None:
            checked[key] = check_io_value(value, key)
    if not checked:
        raise InvalidValue("give at least one of rbps, wbps, riops, wiops")
    if where.version == "v2":
        pairs = " ".join(f"{key}={value}" for key, value in checked.items())
        _write(where.directory, "io.max", f"{device} {pairs}")
    else:
        for key, value in checked.items():
            # v1 removes a device's limit when it is set to 0.
            _write(
                where.directory,
                _V1_IO_FILES[key],
                f"{device} {0 if value == 'max' else value}",
            )
    return read_io(where)


# -- network (v1 only) -------------------------------------------------------------


@attrs.frozen
class NetSettings:
    """net_cls class id and net_prio priorities of one v1 cgroup."""

    cgroup: str
    version: str
    classid: int | None
    classid_handle: str | None  # as tc shows it, "major:minor" in hex
    prioidx: int | None
    ifpriomap: dict[str, int] | None


def locate_net(
    layout: CgroupLayout,
    *,
    path: str | None,
    pid: int | None,
    proc_root: str = "/proc",
) -> CgroupDir:
    """net_cls (or, failing it, net_prio) of a cgroup; v2 has neither."""
    if layout.version == "v2":
        raise NotSupported(
            "network classid/priority is not available on cgroup v2"
            " (use an eBPF or nftables socket cgroup match instead)"
        )
    for controller in ("net_cls", "net_prio"):
        if controller in layout.v1:
            return locate(
                layout,
                v1_controller=controller,
                v2_controller=None,
                path=path,
                pid=pid,
                proc_root=proc_root,
            )
    raise NotSupported(
        "neither net_cls nor net_prio is mounted on this node"
        f" (cgroup layout: {layout.version}); not available on cgroup v2"
    )


def _sibling_directory(where: CgroupDir, layout: CgroupLayout, controller: str):
    hierarchy = layout.v1.get(controller)
    if hierarchy is None:
        return None
    relative = where.path[len(hierarchy.root.rstrip("/")) :].lstrip("/")
    directory = os.path.join(hierarchy.mountpoint, relative)
    return directory if os.path.isdir(directory) else None


def read_net(where: CgroupDir, layout: CgroupLayout) -> NetSettings:
    cls_dir = _sibling_directory(where, layout, "net_cls")
    prio_dir = _sibling_directory(where, layout, "net_prio")
    classid = (
        None if cls_dir is None else _opt_int(read_file(cls_dir, "net_cls.classid"))
    )
    priomap = None
    prioidx = None
    if prio_dir is not None:
        prioidx = _opt_int(read_file(prio_dir, "net_prio.prioidx"))
        priomap = {}
        for line in (read_file(prio_dir, "net_prio.ifpriomap") or "").splitlines():
            name, _, value = line.partition(" ")
            if value.strip().isdigit():
                priomap[name] = int(value)
    return NetSettings(
        cgroup=where.path,
        version="v1",
        classid=classid,
        classid_handle=None
        if classid is None
        else f"{classid >> 16:x}:{classid & 0xFFFF:x}",
        prioidx=prioidx,
        ifpriomap=priomap,
    )


def parse_classid(text: str) -> int:
    """A class id as ``1:10`` (tc handle, hex), ``0x10010`` or decimal."""
    cleaned = str(text).strip().lower()
    try:
        if ":" in cleaned:
            major, minor = cleaned.split(":", 1)
            major_value, minor_value = int(major, 16), int(minor or "0", 16)
            if not (0 <= major_value <= 0xFFFF and 0 <= minor_value <= 0xFFFF):
                raise ValueError
            return (major_value << 16) | minor_value
        value = int(cleaned, 0)
    except ValueError:
        raise InvalidValue(
            f"classid must be a tc handle like 1:10, 0x10010 or a number, got {text!r}"
        ) from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise InvalidValue(f"classid must fit 32 bits, got {text!r}")
    return value


def set_net(
    where: CgroupDir,
    layout: CgroupLayout,
    *,
    classid: str | None = None,
    interface: str | None = None,
    priority: int | None = None,
) -> NetSettings:
    """Set the class id and/or the priority of one interface; values read back."""
    new_classid = None if classid is None else parse_classid(classid)
    if (interface is None) != (priority is None):
        raise InvalidValue("give both interface and priority, or neither")
    if priority is not None:
        _check_int_range(priority, "priority", 0, 0xFFFFFFFF)
        if not re.match(r"^[\w.:@-]{1,15}$", interface):
            raise InvalidValue(
                f"interface must be an interface name, got {interface!r}"
            )
    if new_classid is not None:
        cls_dir = _sibling_directory(where, layout, "net_cls")
        if cls_dir is None:
            raise NotSupported("net_cls is not mounted on this node")
        _write(cls_dir, "net_cls.classid", str(new_classid))
    if priority is not None:
        prio_dir = _sibling_directory(where, layout, "net_prio")
        if prio_dir is None:
            raise NotSupported("net_prio is not mounted on this node")
        _write(prio_dir, "net_prio.ifpriomap", f"{interface} {priority}")
    return read_net(where, layout)


# -- CONTROLLER -------------------------------------------------------------------


@attrs.frozen
class ControllerInfo:
    """One cgroup controller of the node: does the kernel have it, where is it."""

    name: str
    version: str | None  # "v1", "v2", None when usable nowhere
    mountpoint: str | None
    kernel_enabled: bool | None  # /proc/cgroups "enabled" (None: not listed)
    available: bool  # mounted on v1, or offered by the v2 root
    subtree_enabled: bool | None  # v2: in the root's cgroup.subtree_control
    hierarchy_id: int | None
    cgroups: int | None


def list_controllers(
    layout: CgroupLayout, proc_root: str = "/proc"
) -> list[ControllerInfo]:
    """Every controller the kernel knows or the v2 root offers, sorted by name."""
    kernel: dict[str, tuple[int, int, bool]] = {}
    try:
        with open(f"{proc_root}/cgroups") as cgroups_file:
            for line in cgroups_file.read().splitlines():
                if line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) == 4:
                    kernel[parts[0]] = (int(parts[1]), int(parts[2]), parts[3] == "1")
    except FileNotFoundError:
        pass  # kernels without v1 support may not have /proc/cgroups
    offered = v2_controllers(layout)
    subtree = set()
    if layout.v2 is not None:
        subtree = set(
            (read_file(layout.v2.mountpoint, "cgroup.subtree_control") or "").split()
        )
    names = sorted(
        set(kernel) | set(offered) | {n for n in layout.v1 if not n.startswith("name=")}
    )
    result = []
    for name in names:
        hierarchy_id, cgroup_count, enabled = kernel.get(name, (None, None, None))
        if name in layout.v1:
            version, mountpoint = "v1", layout.v1[name].mountpoint
        elif name in offered:
            version, mountpoint = "v2", layout.v2.mountpoint
        else:
            version, mountpoint = None, None
        result.append(
            ControllerInfo(
                name=name,
                version=version,
                mountpoint=mountpoint,
                kernel_enabled=enabled,
                available=version is not None,
                subtree_enabled=(name in subtree) if version == "v2" else None,
                hierarchy_id=hierarchy_id,
                cgroups=cgroup_count,
            )
        )
    return result
