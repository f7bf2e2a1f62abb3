"""DVK constants and error codes (new tree), one place for every kernel number.

The values follow the DVK ABI reference (dvk-abi.md, sections 2 and 3);
``native/dvs_api.h`` carries the same numbers for C, and
``tests/kernel/test_binding.py`` checks that the two agree.
"""

from __future__ import annotations

import enum

# Compiled-in limits (dvs_config.h / config.h).
NR_DCS = 32
NR_NODES = 32
NR_FIXED_TASKS = 3
NR_SYSTASKS = 32
NR_TASKS = NR_FIXED_TASKS + NR_SYSTASKS
NR_PROCS = 256 - NR_TASKS
NR_SYS_PROCS = 64
MAXCOPYBUF = 65536
MAXCOPYLEN = 16 * MAXCOPYBUF
#: Every name buffer is 16 bytes including the NUL: 15 usable characters.
MAXNAME = 16
MAX_NAME_CHARS = MAXNAME - 1
DVS_VERSION = 202202
#: The kernel's default DVS name when dvs-init gets no parameter block.
DEFAULT_DVS_NAME = "DVS_IPC"

# Special values.
LOCALNODE = -1
PROC_NO_PID = -1
NO_PROXIES = -1
PROXY_NO_DC = -1
ANY = 0x7ACE
NONE = 0x6ACE
SELF = 0x8ACE
#: endpoint = generation * GENERATION_SIZE + slot
GENERATION_SIZE = NR_TASKS + SELF + 1

FREE_NODE_NAME = "NONAME"
FREE_PROXY_NAME = "NONAME"
FREE_PROC_NAME = "$noname"
REMOTE_PROC_NAME = "remote"


def endpoint_slot(endpoint: int) -> int:
    """The slot number an endpoint designates (tasks are negative)."""
    return ((endpoint + NR_TASKS) % GENERATION_SIZE) - NR_TASKS


def endpoint_generation(endpoint: int) -> int:
    """The generation part of an endpoint (0 for a never-reused slot)."""
    return (endpoint + NR_TASKS) // GENERATION_SIZE


def make_endpoint(generation: int, slot: int) -> int:
    """The endpoint of ``slot`` in ``generation``."""
    return generation * GENERATION_SIZE + slot


class DcState(enum.IntEnum):
    """``dc_flags``."""

    RUNNING = 0x00
    FREE = 0x02


class NodeFlag(enum.IntFlag):
    """``n_flags``; a node with no bit set is free (not up)."""

    FREE = 0x0
    ATTACHED = 0x2
    SCONNECTED = 0x4
    RCONNECTED = 0x8


class ProxyFlag(enum.IntFlag):
    """``px_flags``; 0 = the pair is free."""

    FREE = 0x0
    INUSE = 0x1
    SCONNECTED = 0x2
    RCONNECTED = 0x4


class ProxyConn(enum.IntEnum):
    """The status argument of proxy-connection."""

    CONNECT_SPROXY = 1
    CONNECT_RPROXY = 2
    DISCONNECT_SPROXY = 3
    DISCONNECT_RPROXY = 4


class RtsFlag(enum.IntFlag):
    """``p_rts_flags``; 0 = runnable."""

    SLOT_FREE = 0x1
    NO_MAP = 0x2
    SENDING = 0x4
    RECEIVING = 0x8
    SIGNALED = 0x10
    SIG_PENDING = 0x20
    P_STOP = 0x40
    NO_PRIV = 0x80
    NO_PRIORITY = 0x100
    NO_ENDPOINT = 0x200
    ONCOPY = 0x400
    MIGRATING = 0x800
    REMOTE = 0x1000
    RMTOPER = 0x2000
    WAITMIGR = 0x8000
    WAITUNBIND = 0x20000
    WAITBIND = 0x40000


class MiscFlag(enum.IntFlag):
    """``p_misc_flags``."""

    PROXY = 0x1
    CONNECTED = 0x2
    NOTIFY = 0x4
    NEEDMIG = 0x8
    RMTBACKUP = 0x10
    GRPLEADER = 0x20
    KTHREAD = 0x40
    REPLICATED = 0x80
    KILLED = 0x100
    WOKENUP = 0x200
    USERMODE = 0x400
    RMTINFO = 0x800
    NOMIGRATE = 0x1000
    ATOMIC = 0x2000
    ENQUEUED = 0x4000


class DvsFlag(enum.IntFlag):
    """``d_flags`` (new tree only)."""

    IPC = 0x1
    IOCTL = 0x2
    USERMODE = 0x4
    INITIALIZED = 0x100


#: The ``d_flags`` bits dvs-init keeps from the caller's block.
DVS_CALLER_FLAGS = DvsFlag.IPC | DvsFlag.IOCTL | DvsFlag.USERMODE


class PrivLevel(enum.IntEnum):
    """``priv_level``."""

    USER = 0
    SERVER = 1
    TASK = 2
    SYSTEM = 3
    KERNEL = 4
    PROXY = 5


class MigrOp(enum.IntEnum):
    START = 0
    COMMIT = 1
    ROLLBACK = 2


class BindType(enum.IntEnum):
    SELF = 0
    LOCAL = 1
    REMOTE = 2
    BACKUP = 3
    REPLICA = 4
    USERMODE = 5


class DvkCall(enum.IntEnum):
    """DVK call numbers of the new tree (``dvk_calls.h``)."""

    DCINIT = 1
    DCEND = 8
    BIND = 9
    GETPRIV = 11
    SETPRIV = 12
    GETDCINFO = 14
    GETPROCINFO = 15
    PROXYBIND = 17
    PROXYUNBIND = 18
    GETNODEINFO = 19
    ADDNODE = 22
    DELNODE = 23
    DVSINIT = 24
    DVSEND = 25
    GETEP = 26
    GETDVSINFO = 27
    PROXYCONN = 28
    MIGRATE = 30
    NODEUP = 31
    NODEDOWN = 32
    GETPROXYINFO = 33
    #: Proposed by dvsd, in no shipped module (see native/dvs_api.h).
    GETPROXYSTS = 36


DVK_IOC_MAGIC = 0xE3
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, number: int, size: int) -> int:
    # Linux asm-generic encoding: dir << 30 | size << 16 | type << 8 | nr.
    return (direction << 30) | (size << 16) | (DVK_IOC_MAGIC << 8) | number


#: Calls the module declares with _IOR (it writes to user memory); the rest are
#: _IOW, except dvs-end which is a plain _IO.
_READ_CALLS = {
    DvkCall.GETPRIV,
    DvkCall.GETDCINFO,
    DvkCall.GETPROCINFO,
    DvkCall.GETNODEINFO,
    DvkCall.GETEP,
    DvkCall.GETDVSINFO,
    DvkCall.GETPROXYINFO,
    DvkCall.GETPROXYSTS,
}


def ioctl_request(call: DvkCall) -> int:
    """The ioctl request number for ``call`` on /dev/dvk.

    The size field is ``sizeof(int)`` for every call, not the size of the
    argument (reference 2.11).
    """
    if call is DvkCall.DVSEND:
        return _ioc(0, call, 0)
    direction = _IOC_READ if call in _READ_CALLS else _IOC_WRITE
    return _ioc(direction, call, 4)


class Edvs(enum.IntEnum):
    """Kernel error codes (``dvs_errno.h``); the kernel answers ``-code``."""

    PERM = -1
    NOENT = -2
    SRCH = -3
    INTR = -4
    IO = -5
    NXIO = -6
    TOOBIG = -7
    NOEXEC = -8
    BADF = -9
    CHILD = -10
    AGAIN = -11
    NOMEM = -12
    ACCES = -13
    FAULT = -14
    NOTBLK = -15
    BUSY = -16
    EXIST = -17
    XDEV = -18
    NODEV = -19
    NOTDIR = -20
    ISDIR = -21
    INVAL = -22
    NFILE = -23
    MFILE = -24
    NOTTY = -25
    TXTBSY = -26
    FBIG = -27
    NOSPC = -28
    SPIPE = -29
    ROFS = -30
    MLINK = -31
    PIPE = -32
    DOM = -33
    RANGE = -34
    DEADLK = -35
    NAMETOOLONG = -36
    NOLCK = -37
    NOSYS = -38
    NOTEMPTY = -39
    LOOP = -40
    PACKSIZE = -50
    OUTOFBUFS = -51
    BADIOCTL = -52
    BADMODE = -53
    WOULDBLOCK = -54
    BADDEST = -55
    DSTNOTRCH = -56
    ISCONN = -57
    ADDRINUSE = -58
    CONNREFUSED = -59
    CONNRESET = -60
    TIMEDOUT = -61
    URG = -62
    NOURG = -63
    NOTCONN = -64
    SHUTDOWN = -65
    NOCONN = -66
    AFNOSUPPORT = -67
    PROTONOSUPPORT = -68
    PROTOTYPE = -69
    INPROGRESS = -70
    ADDRNOTAVAIL = -71
    ALREADY = -72
    MSGSIZE = -73
    NOTSOCK = -74
    NOPROTOOPT = -75
    GENERIC = -99
    LOCKED = -101
    BADCALL = -102
    BADSRCDST = -103
    CALLDENIED = -104
    DEADSRCDST = -105
    NOTREADY = -106
    BADREQUEST = -107
    SRCDIED = -108
    DSTDIED = -109
    TRAPDENIED = -110
    DONTREPLY = -201
    BADNODEID = -301
    BADDCID = -302
    DCNOTRUN = -303
    BADPROC = -304
    BADPID = -305
    ENDPOINT = -306
    NOPROXY = -307
    RMTPROC = -308
    LCLPROC = -309
    NOTBIND = -310
    PROXYRUN = -311
    ACKDST = -312
    ACKSRC = -313
    ACKWAIT = -314
    NODEBUSY = -315
    NONODE = -316
    DVSBUSY = -317
    DVSINIT = -318
    NODCNODE = -319
    PROCRUN = -320
    NOMSG = -321
    DCRUN = -323
    PROCSTS = -324
    NODEFREE = -325
    DCNODE = -326
    BADPROXY = -327
    ONCOPY = -328
    ENQUEUED = -329
    OVERRUN = -330
    BADOWNER = -331
    MIGRATE = -332
    PROXYFREE = -333
    GRPLEADER = -334
    PRIVILEGES = -335
    BINDTYPE = -336
    SLOTUSED = -337
    BADRANGE = -338
    BADVALUE = -339
    BADDIR = -340
    BADFILE = -341
    RSCBUSY = -342
    NAMESIZE = -343
    ALLOCMEM = -344
    PROXYID = -345
    REPLPROC = -346
    ALIGN = -347
    WOKENUP = -348
    BADTRAMP = -349
    USR2USR = -350
    KRN2USR = -351
    USR2KRN = -352
    PRIMARY = -401
    NOREPLICA = -402
    RESTARTSYS = -512


_MEANINGS = {
    Edvs.PERM: "operation not permitted",
    Edvs.NOENT: "no such file or directory",
    Edvs.SRCH: "no such process",
    Edvs.INTR: "interrupted call",
    Edvs.IO: "I/O error",
    Edvs.NXIO: "no such device or address",
    Edvs.TOOBIG: "argument too long",
    Edvs.NOEXEC: "exec format error",
    Edvs.BADF: "bad file descriptor",
    Edvs.CHILD: "no child process",
    Edvs.AGAIN: "try again",
    Edvs.NOMEM: "out of memory",
    Edvs.ACCES: "permission denied",
    Edvs.FAULT: "bad address",
    Edvs.NOTBLK: "not a block device",
    Edvs.BUSY: "resource busy",
    Edvs.EXIST: "already exists",
    Edvs.XDEV: "improper link",
    Edvs.NODEV: "no such device",
    Edvs.NOTDIR: "not a directory",
    Edvs.ISDIR: "is a directory",
    Edvs.INVAL: "invalid argument",
    Edvs.NFILE: "system file table full",
    Edvs.MFILE: "too many open files",
    Edvs.NOTTY: "inappropriate ioctl for this device",
    Edvs.TXTBSY: "text file busy",
    Edvs.FBIG: "file too large",
    Edvs.NOSPC: "no space left",
    Edvs.SPIPE: "invalid seek",
    Edvs.ROFS: "read-only file system",
    Edvs.MLINK: "too many links",
    Edvs.PIPE: "broken pipe",
    Edvs.DOM: "math domain error",
    Edvs.RANGE: "result out of range",
    Edvs.DEADLK: "deadlock avoided",
    Edvs.NAMETOOLONG: "name too long",
    Edvs.NOLCK: "no locks available",
    Edvs.NOSYS: "not implemented",
    Edvs.NOTEMPTY: "directory not empty",
    Edvs.LOOP: "too many symbolic link levels",
    Edvs.PACKSIZE: "bad packet size",
    Edvs.OUTOFBUFS: "out of buffers",
    Edvs.BADIOCTL: "bad ioctl",
    Edvs.BADMODE: "bad ioctl mode",
    Edvs.WOULDBLOCK: "would block",
    Edvs.BADDEST: "bad destination address",
    Edvs.DSTNOTRCH: "destination unreachable",
    Edvs.ISCONN: "already connected",
    Edvs.ADDRINUSE: "address in use",
    Edvs.CONNREFUSED: "connection refused",
    Edvs.CONNRESET: "connection reset",
    Edvs.TIMEDOUT: "timed out",
    Edvs.URG: "urgent data present",
    Edvs.NOURG: "no urgent data",
    Edvs.NOTCONN: "not connected",
    Edvs.SHUTDOWN: "write after shutdown",
    Edvs.NOCONN: "no such connection",
    Edvs.AFNOSUPPORT: "address family not supported",
    Edvs.PROTONOSUPPORT: "protocol not supported",
    Edvs.PROTOTYPE: "wrong protocol type",
    Edvs.INPROGRESS: "operation in progress",
    Edvs.ADDRNOTAVAIL: "address not available",
    Edvs.ALREADY: "operation already in progress",
    Edvs.MSGSIZE: "message too long",
    Edvs.NOTSOCK: "not a socket",
    Edvs.NOPROTOOPT: "protocol option unavailable",
    Edvs.GENERIC: "generic error",
    Edvs.LOCKED: "send would deadlock",
    Edvs.BADCALL: "bad call number",
    Edvs.BADSRCDST: "bad source or destination",
    Edvs.CALLDENIED: "call not permitted",
    Edvs.DEADSRCDST: "source or destination not alive",
    Edvs.NOTREADY: "source or destination not ready",
    Edvs.BADREQUEST: "destination cannot handle the request",
    Edvs.SRCDIED: "source died",
    Edvs.DSTDIED: "destination died or slot is free",
    Edvs.TRAPDENIED: "IPC trap not allowed",
    Edvs.DONTREPLY: "no reply to send",
    Edvs.BADNODEID: "bad node id",
    Edvs.BADDCID: "bad DC id",
    Edvs.DCNOTRUN: "DC not running",
    Edvs.BADPROC: "bad process slot number",
    Edvs.BADPID: "bad Linux PID",
    Edvs.ENDPOINT: "bad endpoint",
    Edvs.NOPROXY: "proxy not running or node has no proxy",
    Edvs.RMTPROC: "process is remote",
    Edvs.LCLPROC: "process is local",
    Edvs.NOTBIND: "process not bound",
    Edvs.PROXYRUN: "proxy already running",
    Edvs.ACKDST: "proxy acknowledged with a bad destination",
    Edvs.ACKSRC: "proxy acknowledged with a bad source",
    Edvs.ACKWAIT: "proxy acknowledged a process that was not waiting",
    Edvs.NODEBUSY: "node busy",
    Edvs.NONODE: "node does not exist",
    Edvs.DVSBUSY: "DVS already initialised",
    Edvs.DVSINIT: "DVS not initialised",
    Edvs.NODCNODE: "node not a member of the DC",
    Edvs.PROCRUN: "copy source or destination is running",
    Edvs.NOMSG: "no message",
    Edvs.DCRUN: "DC already running",
    Edvs.PROCSTS: "bad process state",
    Edvs.NODEFREE: "node is free (not up)",
    Edvs.DCNODE: "node already in the DC, or not in it",
    Edvs.BADPROXY: "bad proxy",
    Edvs.ONCOPY: "process in copy state",
    Edvs.ENQUEUED: "descriptor is queued",
    Edvs.OVERRUN: "resource overrun",
    Edvs.BADOWNER: "slot has another owner",
    Edvs.MIGRATE: "process is migrating",
    Edvs.PROXYFREE: "proxy pair is free",
    Edvs.GRPLEADER: "caller is not the thread-group leader",
    Edvs.PRIVILEGES: "caller lacks privileges (CAP_SYS_ADMIN)",
    Edvs.BINDTYPE: "bad bind type",
    Edvs.SLOTUSED: "slot already bound",
    Edvs.BADRANGE: "value out of range",
    Edvs.BADVALUE: "bad value",
    Edvs.BADDIR: "kernel directory could not be created",
    Edvs.BADFILE: "kernel file could not be created",
    Edvs.RSCBUSY: "resource busy",
    Edvs.NAMESIZE: "name too long",
    Edvs.ALLOCMEM: "kernel allocation failed",
    Edvs.PROXYID: "bad proxy pair id",
    Edvs.REPLPROC: "process is replicated",
    Edvs.ALIGN: "addresses not aligned",
    Edvs.WOKENUP: "woken by another process",
    Edvs.BADTRAMP: "bad trampoline command",
    Edvs.USR2USR: "user-to-user copy trampoline",
    Edvs.KRN2USR: "kernel-to-user copy trampoline",
    Edvs.USR2KRN: "user-to-kernel copy trampoline",
    Edvs.PRIMARY: "no primary replica",
    Edvs.NOREPLICA: "no replica members",
    Edvs.RESTARTSYS: "call interrupted, restart",
}


def error_name(code: int) -> str:
    """``EDVSBADDCID`` for -302; ``EDVS(-999)`` for a number not in the table."""
    try:
        member = Edvs(code)
    except ValueError:
        return f"EDVS({code})"
    # The C name of TOOBIG is EDVS2BIG (a Python name cannot start with a digit).
    return "EDVS2BIG" if member is Edvs.TOOBIG else f"EDVS{member.name}"


def error_meaning(code: int) -> str:
    """The meaning of a kernel error code, or "unknown kernel error"."""
    try:
        return _MEANINGS[Edvs(code)]
    except ValueError:
        return "unknown kernel error"


def describe_error(code: int) -> str:
    """``"EDVSBADDCID (-302): bad DC id"``."""
    return f"{error_name(code)} ({code}): {error_meaning(code)}"
