"""What the kernel tables look like to Python: frozen attrs classes.

Each class is one user-space struct of ``native/dvs_api.h``.  The C member
behind each field is named once, here, in the field's metadata
(``c_field("d_nr_dcs", ...)``); the cffi backend converts in both directions
with :func:`c_fields` and nothing else in dvsd spells a C name.

Bitmaps of nodes, DCs and CPUs become sorted tuples of the set bit numbers;
flags stay integers (decode them with the ``IntFlag`` classes of
:mod:`dvsd.kernel.abi`).  The input classes (:class:`DvsParams`,
:class:`DcParams`, :class:`PrivUpdate`) carry no range checks on purpose: the
kernel is the judge of ranges and the contract tests hand it bad values; the
request handlers validate before they get here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import attrs

from dvsd.kernel import abi


class Kind(enum.Enum):
    """How a C member becomes a Python value."""

    INT = "int"  # any integer member
    NAME = "name"  # char[16] -> str (up to the first NUL)
    BITMAP = "bitmap"  # unsigned long bitmap -> tuple of bit numbers
    CPUMASK = "cpumask"  # cpu_set_t -> tuple of CPU numbers, () = all CPUs
    TIMESPEC = "timespec"  # struct timespec -> float seconds
    CHUNKS = "chunks"  # unsigned short[] bitmap -> int (chunk 0 = low bits)


def c_field(c_name: str | None, kind: Kind = Kind.INT, **kwargs):
    """An attrs field that remembers its C member (None = not in the struct)."""
    return attrs.field(metadata={"c": c_name, "kind": kind}, **kwargs)


def c_fields(cls: type) -> Iterator[tuple[str, str, Kind]]:
    """(python name, C member, kind) of every field of ``cls`` backed by C."""
    for field in attrs.fields(cls):
        c_name = field.metadata.get("c")
        if c_name is not None:
            yield field.name, c_name, field.metadata["kind"]


def bits_to_tuple(bitmap: int) -> tuple[int, ...]:
    """The numbers of the set bits, lowest first."""
    return tuple(bit for bit in range(bitmap.bit_length()) if bitmap >> bit & 1)


def tuple_to_bits(numbers: tuple[int, ...] | list[int]) -> int:
    bitmap = 0
    for number in numbers:
        bitmap |= 1 << number
    return bitmap


@attrs.frozen
class DvsParams:
    """The parameter block of dvs-init (``dvs_usr_t`` in-fields).

    The defaults are the compiled-in limits, which is also what the kernel
    uses when dvs-init gets no block.
    """

    name: str = c_field("d_name", Kind.NAME, default=abi.DEFAULT_DVS_NAME)
    nr_dcs: int = c_field("d_nr_dcs", default=abi.NR_DCS)
    nr_nodes: int = c_field("d_nr_nodes", default=abi.NR_NODES)
    nr_procs: int = c_field("d_nr_procs", default=abi.NR_PROCS)
    nr_tasks: int = c_field("d_nr_tasks", default=abi.NR_TASKS)
    nr_sysprocs: int = c_field("d_nr_sysprocs", default=abi.NR_SYS_PROCS)
    max_copybuf: int = c_field("d_max_copybuf", default=abi.MAXCOPYBUF)
    max_copylen: int = c_field("d_max_copylen", default=abi.MAXCOPYLEN)
    debug_level: int = c_field("d_dbglvl", default=0)
    flags: int = c_field("d_flags", default=int(abi.DvsFlag.IPC))


@attrs.frozen
class DvsInfo:
    """``dvs_usr_t`` as get-dvs-info returns it, plus the call's return value."""

    local_node: int = c_field(None)  # the return value of get-dvs-info
    name: str = c_field("d_name", Kind.NAME)
    nr_dcs: int = c_field("d_nr_dcs")
    nr_nodes: int = c_field("d_nr_nodes")
    nr_procs: int = c_field("d_nr_procs")
    nr_tasks: int = c_field("d_nr_tasks")
    nr_sysprocs: int = c_field("d_nr_sysprocs")
    max_copybuf: int = c_field("d_max_copybuf")
    max_copylen: int = c_field("d_max_copylen")
    debug_level: int = c_field("d_dbglvl")
    version: int = c_field("d_version")
    flags: int = c_field("d_flags")
    size_proc: int = c_field("d_size_proc")


@attrs.frozen
class DcParams:
    """The in-fields of ``dc_usr_t`` for dc-init."""

    dcid: int = c_field("dc_dcid")
    name: str = c_field("dc_name", Kind.NAME)
    nr_procs: int = c_field("dc_nr_procs", default=abi.NR_PROCS)
    nr_tasks: int = c_field("dc_nr_tasks", default=abi.NR_TASKS)
    nr_sysprocs: int = c_field("dc_nr_sysprocs", default=abi.NR_SYS_PROCS)
    nr_nodes: int = c_field("dc_nr_nodes", default=abi.NR_NODES)
    warn2proc: int = c_field("dc_warn2proc", default=abi.NONE)
    warnmsg: int = c_field("dc_warnmsg", default=0)
    cpus: tuple[int, ...] = c_field(
        "dc_cpumask", Kind.CPUMASK, default=(), converter=tuple
    )


@attrs.frozen
class DcInfo:
    """``dc_usr_t``: one DC slot (free slots too: ``flags`` = DcState.FREE)."""

    dcid: int = c_field("dc_dcid")
    flags: int = c_field("dc_flags")
    nr_procs: int = c_field("dc_nr_procs")
    nr_tasks: int = c_field("dc_nr_tasks")
    nr_sysprocs: int = c_field("dc_nr_sysprocs")
    nr_nodes: int = c_field("dc_nr_nodes")
    nodes: tuple[int, ...] = c_field("dc_nodes", Kind.BITMAP, converter=tuple)
    warn2proc: int = c_field("dc_warn2proc")
    warnmsg: int = c_field("dc_warnmsg")
    pid: int = c_field("dc_pid")
    name: str = c_field("dc_name", Kind.NAME)
    cpus: tuple[int, ...] = c_field("dc_cpumask", Kind.CPUMASK, converter=tuple)

    @property
    def running(self) -> bool:
        return self.flags == abi.DcState.RUNNING


@attrs.frozen
class NodeInfo:
    """``node_usr_t``: one node slot as this node's kernel sees it."""

    nodeid: int = c_field("n_nodeid")
    flags: int = c_field("n_flags")
    pxid: int = c_field("n_proxies")
    dcs: tuple[int, ...] = c_field("n_dcs", Kind.BITMAP, converter=tuple)
    last_sent: float = c_field("n_stimestamp", Kind.TIMESPEC)
    last_received: float = c_field("n_rtimestamp", Kind.TIMESPEC)
    proxy_sent: int = c_field("n_pxsent")
    proxy_received: int = c_field("n_pxrcvd")
    name: str = c_field("n_name", Kind.NAME)

    @property
    def up(self) -> bool:
        return self.flags != abi.NodeFlag.FREE


@attrs.frozen
class ProcInfo:
    """``proc_usr_t``: one process slot, or one proxy of a pair."""

    slot: int = c_field("p_nr")
    endpoint: int = c_field("p_endpoint")
    dcid: int = c_field("p_dcid")
    rts_flags: int = c_field("p_rts_flags")
    lpid: int = c_field("p_lpid")
    vpid: int = c_field("p_vpid")
    nodeid: int = c_field("p_nodeid")
    nodemap: tuple[int, ...] = c_field("p_nodemap", Kind.BITMAP, converter=tuple)
    misc_flags: int = c_field("p_misc_flags")
    getfrom: int = c_field("p_getfrom")
    sendto: int = c_field("p_sendto")
    waitmigr: int = c_field("p_waitmigr")
    waitunbind: int = c_field("p_waitunbind")
    proxy: int = c_field("p_proxy")
    local_sent: int = c_field("p_lclsent")
    remote_sent: int = c_field("p_rmtsent")
    local_copies: int = c_field("p_lclcopy")
    remote_copies: int = c_field("p_rmtcopy")
    name: str = c_field("p_name", Kind.NAME)
    cpus: tuple[int, ...] = c_field("p_cpumask", Kind.CPUMASK, converter=tuple)

    @property
    def free(self) -> bool:
        return bool(self.rts_flags & abi.RtsFlag.SLOT_FREE)


@attrs.frozen
class ProxyStatus:
    """``proxies_usr_t``: one proxy pair record.

    ``max_bytes`` and ``max_batch_cmds`` are None when the kernel does not
    expose them (a shipped DVK shows only id, flags, PIDs and name in
    /proc/dvs/proxies/info).
    """

    pxid: int = c_field("px_id")
    flags: int = c_field("px_flags")
    max_bytes: int | None = c_field("px_maxbytes")
    max_batch_cmds: int | None = c_field("px_maxbcmds")
    name: str = c_field("px_name", Kind.NAME)
    sender_pid: int | None = c_field(None, default=None)
    receiver_pid: int | None = c_field(None, default=None)
    nodes: tuple[int, ...] | None = c_field(None, default=None)


@attrs.frozen
class PrivInfo:
    """``priv_usr_t`` without the kernel's alarm timer (opaque pointers)."""

    priv_id: int = c_field("priv_id")
    warn: int = c_field("priv_warn")
    level: int = c_field("priv_level")
    trap_mask: int = c_field("priv_trap_mask")
    ipc_from: int = c_field("priv_ipc_from", Kind.CHUNKS)
    ipc_to: int = c_field("priv_ipc_to", Kind.CHUNKS)
    dvk_allowed: int = c_field("priv_dvk_allowed", Kind.CHUNKS)


@attrs.frozen
class PrivUpdate:
    """The four fields set-privilege applies (new tree); None = keep as is."""

    warn: int | None = None
    level: int | None = None
    ipc_to: int | None = None
    dvk_allowed: int | None = None
