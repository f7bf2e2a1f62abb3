"""The real DVK: ioctls on /dev/dvk, structs laid out by cffi.

cffi reads the struct declarations of ``native/dvs_api.h`` (the part between
``DVSD_CDEF_BEGIN`` and ``DVSD_CDEF_END``) at ABI level, with this machine's
own sizes: on x86_64 that is the LP64 column of the DVK ABI reference, with
the 128-byte user-space ``cpu_set_t``.  Each call fills a parameter block,
calls the ioctl entry point, and maps the result: ``>= 0`` is the call's
value, ``-1`` with ``errno`` = N is the kernel's ``-N`` and becomes
:class:`~dvsd.kernel.KernelError`.

The entry point is an :class:`IoctlChannel`: libc's ``ioctl`` on an open
/dev/dvk in production, or the ``fake_dvk_ioctl`` of the C test double
(native/fake_dvk.c) in the tests, so everything above the ioctl itself runs
the same code in both.

Limits of the real kernel that show here (docs/kernel.md):

* The shipped DVK was built for 32-bit x86 and its library truncates
  pointers to ``int``; whether a 64-bit module exists is unconfirmed.
* No call returns the proxy-pair record: :meth:`DvkKernel.get_proxy_status`
  reads /proc/dvs/proxies/info, which shows flags, PIDs, name and node map
  but not ``px_maxbytes`` / ``px_maxbcmds`` (reported as None).
* A remote bind would pass the process name as a pointer in an ``int``
  field, impossible from an LP64 process: refused with NOT_SUPPORTED.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cffi import FFI

from dvsd.kernel import KernelError, KernelUnavailable, NotSupportedByKernel, abi
from dvsd.kernel.models import (
    DcInfo,
    DcParams,
    DvsInfo,
    DvsParams,
    Kind,
    NodeInfo,
    PrivInfo,
    PrivUpdate,
    ProcInfo,
    ProxyStatus,
    bits_to_tuple,
    c_fields,
)

Edvs = abi.Edvs
HEADER_ENV = "DVSD_DVS_API_H"
PROXIES_INFO = "/proc/dvs/proxies/info"

_ULONG_BYTES = struct.calcsize("L")
#: glibc's cpu_set_t is always 1024 bits, as unsigned longs.
_CPUSET_LONGS = 1024 // (8 * _ULONG_BYTES)
_PRELUDE = f"""
typedef int pid_t;
typedef struct {{ unsigned long __bits[{_CPUSET_LONGS}]; }} cpu_set_t;
struct timespec {{ long tv_sec; long tv_nsec; }};
"""


def header_path() -> Path:
    """Where dvs_api.h is: $DVSD_DVS_API_H, else the copy packaged with dvsd.

    ``src/dvsd/kernel/dvs_api.h`` is a link to ``native/dvs_api.h`` in the
    source tree; building a wheel stores the file itself as package data.
    """
    override = os.environ.get(HEADER_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "dvs_api.h"


def cdef_text(path: Path | None = None) -> str:
    """The cffi-readable part of the header."""
    text = (path or header_path()).read_text()
    match = re.search(r"/\* DVSD_CDEF_BEGIN \*/(.*)/\* DVSD_CDEF_END \*/", text, re.S)
    if match is None:
        raise KernelUnavailable(f"{path or header_path()} has no DVSD_CDEF block")
    return match.group(1)


def make_ffi(path: Path | None = None) -> FFI:
    """An FFI that knows the DVK structs, parameter blocks and entry points."""
    ffi = FFI()
    ffi.cdef(_PRELUDE + cdef_text(path))
    return ffi


_ffi: FFI | None = None
_ffi_lock = threading.Lock()


def get_ffi() -> FFI:
    """The process-wide FFI (the header is parsed once)."""
    global _ffi
    with _ffi_lock:
        if _ffi is None:
            _ffi = make_ffi()
        return _ffi


# -- C struct <-> model, driven by the metadata in models.py ---------------


def _to_python(ffi: FFI, value: Any, kind: Kind) -> Any:
    if kind is Kind.INT:
        return int(value)
    if kind is Kind.NAME:
        return ffi.string(value).decode("utf-8", "replace")
    if kind is Kind.BITMAP:
        return bits_to_tuple(int(value))
    if kind is Kind.CPUMASK:
        cpus = []
        for index, word in enumerate(value.__bits):
            cpus.extend(index * 8 * _ULONG_BYTES + bit for bit in bits_to_tuple(word))
        return tuple(cpus)
    if kind is Kind.TIMESPEC:
        return value.tv_sec + value.tv_nsec / 1e9
    if kind is Kind.CHUNKS:
        return sum(int(chunk) << (16 * index) for index, chunk in enumerate(value))
    raise AssertionError(kind)


def from_c(ffi: FFI, cls: type, cdata: Any, **extra: Any) -> Any:
    """Build a model instance from a struct (the C names come from models)."""
    fields = {
        name: _to_python(ffi, getattr(cdata, c_name), kind)
        for name, c_name, kind in c_fields(cls)
    }
    fields.update(extra)
    return cls(**fields)


def _store(cdata: Any, c_name: str, kind: Kind, value: Any) -> None:
    if kind is Kind.INT:
        setattr(cdata, c_name, value)
    elif kind is Kind.NAME:
        # Up to 16 bytes, NUL only if it fits: a 16-byte name reaches the
        # kernel without terminator, which dc-init answers with NAMESIZE.
        raw = value.encode("utf-8")[: abi.MAXNAME]
        target = getattr(cdata, c_name)
        for index in range(abi.MAXNAME):
            target[index] = raw[index : index + 1] or b"\0"
    elif kind is Kind.CPUMASK:
        words = getattr(cdata, c_name).__bits
        for cpu in value:
            if 0 <= cpu < 8 * _ULONG_BYTES * _CPUSET_LONGS:
                bits = 8 * _ULONG_BYTES
                words[cpu // bits] |= 1 << (cpu % bits)
    elif kind is Kind.CHUNKS:
        chunks = getattr(cdata, c_name)
        for index in range(len(chunks)):
            chunks[index] = (value >> (16 * index)) & 0xFFFF
    else:
        raise AssertionError(kind)


def to_c(ffi: FFI, ctype: str, model: Any) -> Any:
    """A new zeroed ``ctype *`` filled from ``model``'s C-backed fields."""
    cdata = ffi.new(ctype + " *")
    for name, c_name, kind in c_fields(type(model)):
        _store(cdata, c_name, kind, getattr(model, name))
    return cdata


# -- the entry point ---------------------------------------------------------


class IoctlChannel:
    """One ioctl entry point on one open descriptor.

    ``function`` is a cffi function ``int f(int, unsigned long, ...)`` that
    returns ``>= 0`` or ``-1`` with ``errno`` set, which is what libc's
    ``ioctl`` gives for the DVK module.
    """

    def __init__(
        self,
        ffi: FFI,
        fd: int,
        function: Any,
        close: Callable[[int], None] | None = None,
    ) -> None:
        self._ffi = ffi
        self._fd = fd
        self._function = function
        self._close = close

    def call(self, dvk_call: abi.DvkCall, arg: Any, what: str) -> int:
        """Run one request; ``arg`` is a cdata pointer or a plain int."""
        ffi = self._ffi
        if isinstance(arg, int):
            # The module reads its argument as an unsigned long; negative
            # ints wrap and come back as the same int in the kernel.
            c_arg = ffi.cast("unsigned long", arg)
        else:
            c_arg = ffi.cast("void *", arg)
        result = self._function(self._fd, abi.ioctl_request(dvk_call), c_arg)
        if result >= 0:
            return int(result)
        code = ffi.errno
        raise KernelError(-code if code > 0 else Edvs.GENERIC, what)

    def close(self) -> None:
        if self._close is not None and self._fd >= 0:
            self._close(self._fd)
            self._fd = -1


def _read_proxies_info() -> str:
    with open(PROXIES_INFO) as info:
        return info.read()


class DvkKernel:
    """The :class:`~dvsd.kernel.Kernel` interface over the DVK ioctls."""

    backend_name = "dvk"

    def __init__(
        self,
        channel: IoctlChannel,
        *,
        ffi: FFI | None = None,
        proxies_info: Callable[[], str] = _read_proxies_info,
    ) -> None:
        self._ffi = ffi or get_ffi()
        self._channel = channel
        self._proxies_info = proxies_info

    @classmethod
    def open(cls, device: str = "/dev/dvk") -> DvkKernel:
        """Open ``device`` and bind libc's ioctl to it."""
        ffi = get_ffi()
        try:
            fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as error:
            raise KernelUnavailable(
                f"cannot open the DVK device {device}: {error.strerror}"
            ) from None
        libc = ffi.dlopen(None)
        return cls(IoctlChannel(ffi, fd, libc.ioctl, os.close), ffi=ffi)

    def _call(self, dvk_call: abi.DvkCall, arg: Any, what: str) -> int:
        return self._channel.call(dvk_call, arg, what)

    def close(self) -> None:
        self._channel.close()

    # -- DVS ---------------------------------------------------------------

    def dvs_init(self, nodeid: int, params: DvsParams | None = None) -> int:
        ffi = self._ffi
        block = ffi.new("struct dvk_parm_dvsinit *")
        block.nodeid = nodeid
        dvs = to_c(ffi, "dvs_usr_t", params) if params is not None else ffi.NULL
        block.dvs = dvs
        return self._call(abi.DvkCall.DVSINIT, block, f"dvs_init nodeid={nodeid}")

    def dvs_end(self) -> None:
        self._call(abi.DvkCall.DVSEND, 0, "dvs_end")

    def get_dvs_info(self) -> DvsInfo:
        dvs = self._ffi.new("dvs_usr_t *")
        try:
            local = self._call(abi.DvkCall.GETDVSINFO, dvs, "get_dvs_info")
        except KernelError as error:
            # -1 is the kernel's "not initialised" (DVS_NO_INIT), not EPERM.
            if error.code == Edvs.PERM:
                raise KernelError(Edvs.DVSINIT, "get_dvs_info") from None
            raise
        return from_c(self._ffi, DvsInfo, dvs, local_node=local)

    # -- DCs ---------------------------------------------------------------

    def dc_init(self, params: DcParams) -> int:
        dc = to_c(self._ffi, "dc_usr_t", params)
        return self._call(abi.DvkCall.DCINIT, dc, f"dc_init dcid={params.dcid}")

    def dc_end(self, dcid: int) -> None:
        self._call(abi.DvkCall.DCEND, dcid, f"dc_end dcid={dcid}")

    def get_dc_info(self, dcid: int) -> DcInfo:
        block = self._ffi.new("struct dvk_parm_getdcinfo *")
        dc = self._ffi.new("dc_usr_t *")
        block.dcid, block.dc = dcid, dc
        self._call(abi.DvkCall.GETDCINFO, block, f"get_dc_info dcid={dcid}")
        return from_c(self._ffi, DcInfo, dc)

    # -- nodes and proxy pairs ---------------------------------------------

    def _dc_node(self, dvk_call: abi.DvkCall, dcid: int, nodeid: int, what: str):
        block = self._ffi.new("struct dvk_parm_dcnode *")
        block.dcid, block.nodeid = dcid, nodeid
        self._call(dvk_call, block, f"{what} dcid={dcid} nodeid={nodeid}")

    def add_node(self, dcid: int, nodeid: int) -> None:
        self._dc_node(abi.DvkCall.ADDNODE, dcid, nodeid, "add_node")

    def del_node(self, dcid: int, nodeid: int) -> None:
        self._dc_node(abi.DvkCall.DELNODE, dcid, nodeid, "del_node")

    def get_node_info(self, nodeid: int) -> NodeInfo:
        block = self._ffi.new("struct dvk_parm_getnodeinfo *")
        node = self._ffi.new("node_usr_t *")
        block.nodeid, block.node = nodeid, node
        self._call(abi.DvkCall.GETNODEINFO, block, f"get_node_info nodeid={nodeid}")
        return from_c(self._ffi, NodeInfo, node)

    def node_up(self, nodeid: int, name: str, pxid: int) -> None:
        block = self._ffi.new("struct dvk_parm_nodeup *")
        c_name = self._ffi.new("char[]", name.encode("utf-8"))
        block.name, block.nodeid, block.pxid = c_name, nodeid, pxid
        self._call(abi.DvkCall.NODEUP, block, f"node_up nodeid={nodeid} pxid={pxid}")

    def node_down(self, nodeid: int) -> None:
        self._call(abi.DvkCall.NODEDOWN, nodeid, f"node_down nodeid={nodeid}")

    def proxies_bind(
        self,
        pxid: int,
        name: str,
        sender_pid: int,
        receiver_pid: int,
        max_bytes: int = abi.MAXCOPYBUF,
    ) -> None:
        block = self._ffi.new("struct dvk_parm_pxbind *")
        c_name = self._ffi.new("char[]", name.encode("utf-8"))
        block.name, block.pxid = c_name, pxid
        block.spid, block.rpid, block.maxbuf = sender_pid, receiver_pid, max_bytes
        self._call(abi.DvkCall.PROXYBIND, block, f"proxies_bind pxid={pxid}")

    def proxies_unbind(self, pxid: int) -> None:
        self._call(abi.DvkCall.PROXYUNBIND, pxid, f"proxies_unbind pxid={pxid}")

    def proxy_conn(self, pxid: int, status: abi.ProxyConn | int) -> None:
        block = self._ffi.new("struct dvk_parm_pxconn *")
        block.pxid, block.sts = pxid, int(status)
        what = f"proxy_conn pxid={pxid} status={int(status)}"
        self._call(abi.DvkCall.PROXYCONN, block, what)

    def get_proxy_info(self, pxid: int) -> tuple[ProcInfo, ProcInfo]:
        ffi = self._ffi
        block = ffi.new("struct dvk_parm_proxyinfo *")
        sender, receiver = ffi.new("proc_usr_t *"), ffi.new("proc_usr_t *")
        block.pxid, block.spx, block.rpx = pxid, sender, receiver
        self._call(abi.DvkCall.GETPROXYINFO, block, f"get_proxy_info pxid={pxid}")
        return from_c(ffi, ProcInfo, sender), from_c(ffi, ProcInfo, receiver)

    def get_proxy_status(self, pxid: int) -> ProxyStatus:
        """The pair record, derived from /proc/dvs/proxies/info.

        No DVK call returns ``proxies_usr_t``; the proc file shows id, flags,
        the two PIDs, the name and the sender's node map.  ``max_bytes`` and
        ``max_batch_cmds`` are therefore None.  A pair missing from the file
        is free.  NOT_SUPPORTED when the file is absent or unreadable.
        """
        info = self.get_dvs_info()
        what = f"get_proxy_status pxid={pxid}"
        if not 0 <= pxid < info.nr_nodes:
            raise KernelError(Edvs.PROXYID, what)
        try:
            text = self._proxies_info()
        except OSError as error:
            raise NotSupportedByKernel(
                f"this kernel shows no proxy-pair status: cannot read"
                f" {PROXIES_INFO} ({error.strerror or error})"
            ) from None
        pairs = parse_proxies_info(text)
        if pxid in pairs:
            return pairs[pxid]
        return ProxyStatus(
            pxid=pxid,
            flags=int(abi.ProxyFlag.FREE),
            max_bytes=None,
            max_batch_cmds=None,
            name=abi.FREE_PROXY_NAME,
        )

    # -- membership helpers ------------------------------------------------

    def attach_node(self, nodeid: int, name: str) -> NodeInfo:
        """node-up for a joined node on pair ``nodeid``.

        On a real cluster the proxy programs bind and connect the pair; if
        they have not, the kernel answers EDVSPROXYFREE and this raises it.
        """
        self.node_up(nodeid, name, nodeid)
        return self.get_node_info(nodeid)

    def detach_node(self, nodeid: int) -> None:
        """Delete the node from every DC that has it, then node-down."""
        info = self.get_dvs_info()
        for dcid in range(info.nr_dcs):
            dc = self.get_dc_info(dcid)
            if dc.running and nodeid in dc.nodes and nodeid != info.local_node:
                self.del_node(dcid, nodeid)
        self.node_down(nodeid)

    # -- processes ---------------------------------------------------------

    def bind(
        self, dcid: int, endpoint: int, pid: int, nodeid: int = -1, name: str = ""
    ) -> int:
        """Local bind of ``pid`` to ``endpoint``; returns the endpoint."""
        if nodeid != abi.LOCALNODE:
            raise NotSupportedByKernel(
                "a remote bind passes the process name as a pointer in an int"
                " field of the parameter block, which a 64-bit process cannot do"
            )
        block = self._ffi.new("struct dvk_parm_bind *")
        block.cmd, block.dcid, block.pid = int(abi.BindType.LOCAL), dcid, pid
        block.ep, block.nodeid = endpoint, abi.LOCALNODE
        what = f"bind dcid={dcid} endpoint={endpoint} nodeid={nodeid}"
        return self._call(abi.DvkCall.BIND, block, what)

    def get_proc_info(self, dcid: int, slot: int) -> ProcInfo:
        block = self._ffi.new("struct dvk_parm_procinfo *")
        proc = self._ffi.new("proc_usr_t *")
        block.dcid, block.nr, block.proc = dcid, slot, proc
        what = f"get_proc_info dcid={dcid} slot={slot}"
        self._call(abi.DvkCall.GETPROCINFO, block, what)
        return from_c(self._ffi, ProcInfo, proc)

    def _priv_block(self, dcid: int, endpoint: int):
        block = self._ffi.new("struct dvk_parm_priv *")
        priv = self._ffi.new("priv_usr_t *")
        block.dcid, block.ep, block.priv = dcid, endpoint, priv
        return block, priv

    def get_priv(self, dcid: int, endpoint: int) -> PrivInfo:
        block, priv = self._priv_block(dcid, endpoint)
        what = f"get_priv dcid={dcid} endpoint={endpoint}"
        self._call(abi.DvkCall.GETPRIV, block, what)
        return from_c(self._ffi, PrivInfo, priv)

    def set_priv(self, dcid: int, endpoint: int, update: PrivUpdate) -> None:
        """Read the block, change the fields given, write it back.

        The new kernel applies only warn, level, ipc_to and dvk_allowed; an
        old kernel would copy the whole block, so starting from the current
        one keeps the other fields as they are either way.
        """
        block, priv = self._priv_block(dcid, endpoint)
        what = f"set_priv dcid={dcid} endpoint={endpoint}"
        self._call(abi.DvkCall.GETPRIV, block, what)
        if update.warn is not None:
            priv.priv_warn = update.warn
        if update.level is not None:
            priv.priv_level = update.level
        if update.ipc_to is not None:
            _store(priv, "priv_ipc_to", Kind.CHUNKS, update.ipc_to)
        if update.dvk_allowed is not None:
            _store(priv, "priv_dvk_allowed", Kind.CHUNKS, update.dvk_allowed)
        self._call(abi.DvkCall.SETPRIV, block, what)

    def _migrate(
        self, op: abi.MigrOp, pid: int, dcid: int, endpoint: int, node: int
    ) -> None:
        block = self._ffi.new("struct dvk_parm_bind *")
        block.cmd, block.pid, block.dcid = int(op), pid, dcid
        block.ep, block.nodeid = endpoint, node
        what = f"migr_{op.name.lower()} dcid={dcid} endpoint={endpoint}"
        if op is abi.MigrOp.COMMIT:
            what += f" new_node={node}"
        self._call(abi.DvkCall.MIGRATE, block, what)

    def migr_start(self, dcid: int, endpoint: int) -> None:
        self._migrate(abi.MigrOp.START, -1, dcid, endpoint, -1)

    def migr_commit(self, pid: int, dcid: int, endpoint: int, new_node: int) -> None:
        self._migrate(abi.MigrOp.COMMIT, pid, dcid, endpoint, new_node)

    def migr_rollback(self, dcid: int, endpoint: int) -> None:
        self._migrate(abi.MigrOp.ROLLBACK, -1, dcid, endpoint, -1)


_PROXY_LINE = re.compile(
    r"^\s*(?P<pxid>\d+)\s+(?P<flags>[0-9A-Fa-f]+)\s+(?P<spid>-?\d+)\s+"
    r"(?P<rpid>-?\d+)\s+(?P<name>.*?)\s*(?P<map>[X-]{32})\s*$"
)


def parse_proxies_info(text: str) -> dict[int, ProxyStatus]:
    """Read /proc/dvs/proxies/info (one header line, one line per bound pair).

    Line format (kernel ``%7d %5lX %6d %8d %15s %s``): pair id, flags in hex,
    sender PID, receiver PID, name right-aligned in 15 columns, and the
    sender's node map as 32 characters, node 31 first, ``X`` = set.
    """
    pairs: dict[int, ProxyStatus] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        match = _PROXY_LINE.match(line)
        if match is None:
            raise NotSupportedByKernel(
                f"cannot read {PROXIES_INFO} line {number}: {line!r}"
            )
        node_map = match["map"]
        nodes = tuple(31 - index for index, mark in enumerate(node_map) if mark == "X")
        pxid = int(match["pxid"])
        pairs[pxid] = ProxyStatus(
            pxid=pxid,
            flags=int(match["flags"], 16),
            max_bytes=None,
            max_batch_cmds=None,
            name=match["name"].strip(),
            sender_pid=int(match["spid"]),
            receiver_pid=int(match["rpid"]),
            nodes=tuple(sorted(nodes)),
        )
    return pairs
