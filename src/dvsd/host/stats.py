"""VMSTAT: memory, swap, I/O, interrupts and CPU, as the columns of vmstat(8).

A row is computed from two snapshots of /proc/stat, /proc/vmstat and
/proc/meminfo.  Without an earlier snapshot the rates are averages since boot,
which is what vmstat prints on its first line.
"""

from __future__ import annotations

import os

import attrs

from dvsd.host.errors import InvalidValue, OsFailure

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@attrs.frozen
class VmSnapshot:
    """The counters of one instant (cumulative since boot)."""

    uptime: float
    cpu_ticks: tuple[int, ...]  # user nice system idle iowait irq softirq steal
    interrupts: int
    context_switches: int
    procs_running: int
    procs_blocked: int
    pages_in_kib: int  # pgpgin: KiB read from block devices
    pages_out_kib: int
    swap_in_pages: int
    swap_out_pages: int
    meminfo_kib: dict[str, int]


@attrs.frozen
class VmstatRow:
    """One vmstat line.  Memory in KiB, rates per second, CPU in percent."""

    procs_running: int  # r
    procs_blocked: int  # b
    swap_used_kib: int  # swpd
    free_kib: int  # free
    buffers_kib: int  # buff
    cache_kib: int  # cache (page cache + reclaimable slab, as vmstat)
    swap_in_kib_s: float  # si
    swap_out_kib_s: float  # so
    blocks_in_s: float  # bi (KiB/s)
    blocks_out_s: float  # bo
    interrupts_s: float  # in
    context_switches_s: float  # cs
    user: float  # us (user + nice)
    system: float  # sy (system + irq + softirq)
    idle: float  # id
    iowait: float  # wa
    steal: float  # st


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` to a dict of KiB (the unit the kernel writes)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0])
    return values


def _read(path: str) -> str:
    try:
        with open(path) as proc_file:
            return proc_file.read()
    except OSError as error:
        raise OsFailure(f"cannot read {path}: {error.strerror}") from None


def read_snapshot(proc_root: str = "/proc") -> VmSnapshot:
    """Read the counters now.  Raises :class:`OsFailure` if /proc is unreadable."""
    stat_lines = {}
    for line in _read(f"{proc_root}/stat").splitlines():
        key, _, rest = line.partition(" ")
        stat_lines[key] = rest.split()
    vmstat = {}
    for line in _read(f"{proc_root}/vmstat").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            vmstat[key] = int(value)
    cpu = tuple(int(value) for value in stat_lines["cpu"][:8])
    cpu = cpu + (0,) * (8 - len(cpu))
    return VmSnapshot(
        uptime=float(_read(f"{proc_root}/uptime").split()[0]),
        cpu_ticks=cpu,
        interrupts=int(stat_lines["intr"][0]),
        context_switches=int(stat_lines["ctxt"][0]),
        procs_running=int(stat_lines["procs_running"][0]),
        procs_blocked=int(stat_lines["procs_blocked"][0]),
        pages_in_kib=vmstat.get("pgpgin", 0),
        pages_out_kib=vmstat.get("pgpgout", 0),
        swap_in_pages=vmstat.get("pswpin", 0),
        swap_out_pages=vmstat.get("pswpout", 0),
        meminfo_kib=parse_meminfo(_read(f"{proc_root}/meminfo")),
    )


def vmstat_row(
    before: VmSnapshot | None, after: VmSnapshot, *, page_kib: int = PAGE_KIB
) -> VmstatRow:
    """The vmstat line between two snapshots, or since boot if ``before`` is None."""
    if before is None:
        before = VmSnapshot(
            uptime=0.0,
            cpu_ticks=(0,) * 8,
            interrupts=0,
            context_switches=0,
            procs_running=0,
            procs_blocked=0,
            pages_in_kib=0,
            pages_out_kib=0,
            swap_in_pages=0,
            swap_out_pages=0,
            meminfo_kib={},
        )
    elapsed = after.uptime - before.uptime
    if elapsed <= 0:
        raise InvalidValue("the two vmstat snapshots are not in time order")
    ticks = [
        late - early
        for late, early in zip(after.cpu_ticks, before.cpu_ticks, strict=True)
    ]
    total_ticks = sum(ticks) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = ticks

    def percent(value: int) -> float:
        return round(100.0 * value / total_ticks, 1)

    def rate(late: int, early: int) -> float:
        return round((late - early) / elapsed, 1)

    memory = after.meminfo_kib
    return VmstatRow(
        procs_running=after.procs_running,
        procs_blocked=after.procs_blocked,
        swap_used_kib=memory.get("SwapTotal", 0) - memory.get("SwapFree", 0),
        free_kib=memory.get("MemFree", 0),
        buffers_kib=memory.get("Buffers", 0),
        cache_kib=memory.get("Cached", 0) + memory.get("SReclaimable", 0),
        swap_in_kib_s=round(
            (after.swap_in_pages - before.swap_in_pages) * page_kib / elapsed, 1
        ),
        swap_out_kib_s=round(
            (after.swap_out_pages - before.swap_out_pages) * page_kib / elapsed, 1
        ),
        blocks_in_s=rate(after.pages_in_kib, before.pages_in_kib),
        blocks_out_s=rate(after.pages_out_kib, before.pages_out_kib),
        interrupts_s=rate(after.interrupts, before.interrupts),
        context_switches_s=rate(after.context_switches, before.context_switches),
        user=percent(user + nice),
        system=percent(system + irq + softirq),
        idle=percent(idle),
        iowait=percent(iowait),
        steal=percent(steal),
    )
