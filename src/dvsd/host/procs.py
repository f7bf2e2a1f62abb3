"""Processes: the rows of PS, the signals of KILL and the samples of PIDSTAT.

A process may exit between the moment it is listed and the moment its files
are read; such a process is skipped, never reported as an error.  A field the
kernel does not give (or refuses to dvsd's user) is ``None``.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import time

import attrs
import psutil

from dvsd.host.errors import (
    InvalidValue,
    NoSuchProcess,
    NotAllowed,
    PermissionDenied,
)

#: Command lines are cut to this many characters (joined) so that one
#: pathological process cannot eat the whole reply.
CMDLINE_LIMIT = 1024

_PS_ATTRS = [
    "pid",
    "ppid",
    "username",
    "status",
    "nice",
    "num_threads",
    "memory_info",
    "terminal",
    "create_time",
    "cpu_times",
    "name",
    "cmdline",
]


@attrs.frozen
class ProcessRow:
    """One process as ``ps aux`` shows it; sizes in bytes, times in seconds."""

    pid: int
    ppid: int | None
    user: str | None
    state: str | None
    nice: int | None
    threads: int | None
    cpu_percent: float | None  # CPU time over lifetime, like ps %CPU
    mem_percent: float | None
    vsz: int | None
    rss: int | None
    tty: str | None
    start_time: float | None  # seconds since the epoch
    cpu_time: float | None  # user + system seconds
    name: str | None
    cmdline: list[str] | None


def _cut_cmdline(cmdline: list[str] | None) -> list[str] | None:
    if not cmdline:
        return cmdline
    kept: list[str] = []
    used = 0
    for argument in cmdline:
        if used + len(argument) > CMDLINE_LIMIT:
            kept.append(argument[: max(0, CMDLINE_LIMIT - used)] + "...")
            break
        kept.append(argument)
        used += len(argument) + 1
    return kept


def list_processes(
    *, pid: int | None = None, user: str | None = None, name: str | None = None
) -> list[ProcessRow]:
    """The processes of the node, sorted by pid, optionally filtered.

    ``pid`` selects one process, ``user`` the processes of one user name,
    ``name`` those whose name (comm) or first argument's basename equals it.
    """
    total_memory = psutil.virtual_memory().total
    now = time.time()
    rows: list[ProcessRow] = []
    if pid is not None:
        try:
            candidates = [psutil.Process(pid)]
        except psutil.NoSuchProcess:
            raise NoSuchProcess(f"no process with pid {pid}") from None
    else:
        candidates = psutil.process_iter()
    for process in candidates:
        try:
            info = process.as_dict(attrs=_PS_ATTRS, ad_value=None)
        except psutil.NoSuchProcess:
            continue  # exited while we looked: not an error
        if user is not None and info["username"] != user:
            continue
        if name is not None and not _name_matches(info, name):
            continue
        rows.append(_row_from_info(info, total_memory, now))
    if pid is not None and not rows:
        raise NoSuchProcess(f"no process with pid {pid}")
    rows.sort(key=lambda row: row.pid)
    return rows


def _name_matches(info: dict, name: str) -> bool:
    if info.get("name") == name:
        return True
    cmdline = info.get("cmdline") or []
    return bool(cmdline) and os.path.basename(cmdline[0]) == name


def _row_from_info(info: dict, total_memory: int, now: float) -> ProcessRow:
    memory = info["memory_info"]
    times = info["cpu_times"]
    cpu_time = None if times is None else times.user + times.system
    created = info["create_time"]
    cpu_percent = None
    if cpu_time is not None and created is not None and now > created:
        cpu_percent = round(100.0 * cpu_time / (now - created), 1)
    rss = None if memory is None else memory.rss
    return ProcessRow(
        pid=info["pid"],
        ppid=info["ppid"],
        user=info["username"],
        state=info["status"],
        nice=info["nice"],
        threads=info["num_threads"],
        cpu_percent=cpu_percent,
        mem_percent=None
        if rss is None or not total_memory
        else round(100.0 * rss / total_memory, 1),
        vsz=None if memory is None else memory.vms,
        rss=rss,
        tty=info["terminal"],
        start_time=created,
        cpu_time=None if cpu_time is None else round(cpu_time, 2),
        name=info["name"],
        cmdline=_cut_cmdline(info["cmdline"]),
    )


# -- KILL --------------------------------------------------------------------


def parse_signal(text: str) -> signal.Signals | int:
    """``"TERM"``, ``"SIGTERM"``, ``"15"`` or ``"0"`` to a signal number.

    Raises :class:`InvalidValue` naming the accepted forms.
    """
    cleaned = text.upper()
    if re.fullmatch(r"[0-9]+", cleaned):
        number = int(cleaned)
        if number == 0:
            return 0  # the existence probe of kill(2)
        try:
            return signal.Signals(number)
        except ValueError:
            raise InvalidValue(f"signal {text!r} is not a signal number") from None
    if not cleaned.startswith("SIG"):
        cleaned = "SIG" + cleaned
    # Only the canonical names: aliases (SIGIOT, SIGCLD), digits other than
    # ASCII and surrounding spaces are refused rather than guessed at.
    member = signal.Signals.__members__.get(cleaned)
    if member is None or member.name != cleaned:
        raise InvalidValue(
            f"signal must be a name like TERM or KILL or a number, got {text!r}"
        )
    return member


def signal_name(signum: int) -> str:
    if signum == 0:
        return "0"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


@attrs.frozen
class KillResult:
    """What happened to one process that KILL addressed."""

    pid: int
    signal: str
    sent: bool
    error: str | None = None


def check_kill_target(pid: int, *, dvsd_pid: int, force: bool) -> None:
    """Refuse pid 1 and dvsd itself unless ``force``; raise :class:`NotAllowed`."""
    if pid <= 0:
        raise InvalidValue(f"pid must be a positive process id, got {pid}")
    if force:
        return
    if pid == 1:
        raise NotAllowed("refusing to signal pid 1 (init) without force")
    if pid == dvsd_pid:
        raise NotAllowed(f"refusing to signal dvsd itself (pid {pid}) without force")


def send_signal(pid: int, signum: int, *, dvsd_pid: int, force: bool) -> KillResult:
    """Send ``signum`` to ``pid`` after the pid-1/dvsd check.

    Raises :class:`NotAllowed`, :class:`NoSuchProcess` or
    :class:`PermissionDenied` with a sentence naming the pid.
    """
    check_kill_target(pid, dvsd_pid=dvsd_pid, force=force)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise NoSuchProcess(f"no process with pid {pid}") from None
    except PermissionError:
        raise PermissionDenied(
            f"not permitted to send {signal_name(signum)} to pid {pid}"
            f" (dvsd runs as {_user_name(os.geteuid())})"
        ) from None
    return KillResult(pid=pid, signal=signal_name(signum), sent=True)


def pids_by_name(name: str) -> list[int]:
    """Pids whose comm or first argument's basename is ``name``, sorted."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"], ad_value=None):
        try:
            if _name_matches(process.info, name):
                found.append(process.info["pid"])
        except psutil.NoSuchProcess:
            continue
    return sorted(found)


def signal_by_name(
    name: str, signum: int, *, dvsd_pid: int, force: bool
) -> list[KillResult]:
    """Signal every process called ``name``; one :class:`KillResult` each.

    A process refused by the pid-1/dvsd rule or that fails is reported in its
    result with the reason; only "nothing matched" raises
    :class:`NoSuchProcess`.
    """
    pids = pids_by_name(name)
    if not pids:
        raise NoSuchProcess(f"no process is called {name!r}")
    results = []
    for pid in pids:
        try:
            results.append(send_signal(pid, signum, dvsd_pid=dvsd_pid, force=force))
        except (NotAllowed, NoSuchProcess, PermissionDenied) as error:
            results.append(
                KillResult(
                    pid=pid, signal=signal_name(signum), sent=False, error=str(error)
                )
            )
    return results


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


# -- PIDSTAT -----------------------------------------------------------------


@attrs.frozen
class ProcSample:
    """Counters of one process at one instant, read from /proc/<pid>/stat and io."""

    pid: int
    command: str
    start_ticks: int
    utime_ticks: int
    stime_ticks: int
    minflt: int
    majflt: int
    rss_pages: int
    read_bytes: int | None
    write_bytes: int | None


@attrs.frozen
class PidstatRow:
    """One line of ``pidstat -u -r -d`` for one interval."""

    sample: int
    pid: int
    command: str
    usr_percent: float
    system_percent: float
    cpu_percent: float
    minflt_per_s: float
    majflt_per_s: float
    rss: int
    read_kib_per_s: float | None
    write_kib_per_s: float | None


def parse_stat(text: str) -> dict[str, int | str]:
    """Parse the single line of /proc/<pid>/stat (the comm may hold spaces and ')').

    Returns the fields dvsd uses, named as in proc(5).
    """
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    comm = text[open_paren + 1 : close_paren]
    rest = text[close_paren + 2 :].split()
    # rest[0] is field 3 (state) of proc(5); field n is rest[n - 3].
    return {
        "pid": int(text[:open_paren]),
        "comm": comm,
        "state": rest[0],
        "ppid": int(rest[1]),
        "pgrp": int(rest[2]),
        "session": int(rest[3]),
        "minflt": int(rest[7]),
        "majflt": int(rest[9]),
        "utime": int(rest[11]),
        "stime": int(rest[12]),
        "starttime": int(rest[19]),
        "rss": int(rest[21]),
    }


def read_stat(pid: int, proc_root: str = "/proc") -> dict[str, int | str] | None:
    """The parsed stat of ``pid``, or ``None`` when the process is gone."""
    try:
        with open(f"{proc_root}/{pid}/stat") as stat_file:
            return parse_stat(stat_file.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def _read_io(pid: int, proc_root: str) -> tuple[int | None, int | None]:
    try:
        with open(f"{proc_root}/{pid}/io") as io_file:
            fields = dict(line.split(": ", 1) for line in io_file.read().splitlines())
    except OSError:
        return None, None  # gone, or io accounting refused to this user
    try:
        return int(fields["read_bytes"]), int(fields["write_bytes"])
    except (KeyError, ValueError):
        return None, None


def list_pids(proc_root: str = "/proc") -> list[int]:
    """The numeric entries of the proc root, sorted."""
    return sorted(int(entry) for entry in os.listdir(proc_root) if entry.isdigit())


def sample_processes(
    pid: int | None = None, proc_root: str = "/proc"
) -> dict[int, ProcSample]:
    """Read the counters of one process or of every process; gone ones are skipped."""
    pids = [pid] if pid is not None else list_pids(proc_root)
    samples = {}
    for each in pids:
        stat = read_stat(each, proc_root)
        if stat is None:
            continue
        read_bytes, write_bytes = _read_io(each, proc_root)
        samples[each] = ProcSample(
            pid=each,
            command=str(stat["comm"]),
            start_ticks=int(stat["starttime"]),
            utime_ticks=int(stat["utime"]),
            stime_ticks=int(stat["stime"]),
            minflt=int(stat["minflt"]),
            majflt=int(stat["majflt"]),
            rss_pages=int(stat["rss"]),
            read_bytes=read_bytes,
            write_bytes=write_bytes,
        )
    return samples


def pidstat_rows(
    before: dict[int, ProcSample],
    after: dict[int, ProcSample],
    elapsed: float,
    *,
    sample: int = 1,
    active_only: bool = True,
) -> list[PidstatRow]:
    """Rates over ``elapsed`` seconds for processes present in both samples.

    A pid whose start time changed is a new process reusing the number and is
    left out.  ``active_only`` keeps, like pidstat without ``-p``, only rows
    where something happened.
    """
    if elapsed <= 0:
        raise InvalidValue(f"elapsed time must be positive, got {elapsed}")
    ticks = os.sysconf("SC_CLK_TCK")
    page_size = os.sysconf("SC_PAGE_SIZE")
    rows = []
    for pid, late in sorted(after.items()):
        early = before.get(pid)
        if early is None or early.start_ticks != late.start_ticks:
            continue
        usr = 100.0 * (late.utime_ticks - early.utime_ticks) / ticks / elapsed
        system = 100.0 * (late.stime_ticks - early.stime_ticks) / ticks / elapsed
        minflt = (late.minflt - early.minflt) / elapsed
        majflt = (late.majflt - early.majflt) / elapsed
        read_rate = write_rate = None
        if early.read_bytes is not None and late.read_bytes is not None:
            read_rate = (late.read_bytes - early.read_bytes) / 1024 / elapsed
        if early.write_bytes is not None and late.write_bytes is not None:
            write_rate = (late.write_bytes - early.write_bytes) / 1024 / elapsed
        if active_only and not (
            usr or system or minflt or majflt or read_rate or write_rate
        ):
            continue
        rows.append(
            PidstatRow(
                sample=sample,
                pid=pid,
                command=late.command,
                usr_percent=round(usr, 2),
                system_percent=round(system, 2),
                cpu_percent=round(usr + system, 2),
                minflt_per_s=round(minflt, 2),
                majflt_per_s=round(majflt, 2),
                rss=late.rss_pages * page_size,
                read_kib_per_s=None if read_rate is None else round(read_rate, 2),
                write_kib_per_s=None if write_rate is None else round(write_rate, 2),
            )
        )
    return rows
