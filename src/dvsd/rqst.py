"""Request types and dvsd's own return codes.

Every number that crosses the wire or the message queue as a request type or
a return code is defined here, once.  Kernel return codes (EDVS*, -1..-512)
live in :mod:`dvsd.kernel.abi`; the codes below are dvsd's own and sit in
their own range (-1001 and down) so the two never collide.
"""

from __future__ import annotations

import enum


class RequestType(enum.IntEnum):
    """What a request asks a node to do.

    The numbering follows the order of the original specification.  Numbers
    1000..32767 are left to plugins.
    """

    # DVS
    DVSINIT = 1
    GETDVSINFO = 2
    DVSEND = 3
    DVSNODES = 4
    # DC
    DCINIT = 5
    GETDCINFO = 6
    DCEND = 7
    # node and proxy
    ADDNODE = 8
    GETNODEINFO = 9
    DELNODE = 10
    GETPROXYINFO = 11
    GETPROXYSTS = 12
    # process
    GETPROCINFO = 13
    SETPRIV = 14
    GETPRIV = 15
    MIGRATE = 16
    # control groups
    CGCPU = 17
    CGMEM = 18
    CGIO = 19
    CGNET = 20
    # namespaces
    NSCGROUP = 21
    NSIPC = 22
    NSNET = 23
    NSNS = 24
    NSPID = 25
    NSUSER = 26
    NSUTS = 27
    # host
    COMMAND = 28
    PS = 29
    VMSTAT = 30
    IFCONFIG = 31
    NETSTAT = 32
    DF = 33
    MOUNT = 34
    KILL = 35
    PIDSTAT = 36
    CONTAINER = 37
    CONTROLLER = 38
    # the per-node steps of MIGRATE, sent by the coordinating dvsd
    MIGR_START = 40
    MIGR_COMMIT = 41
    MIGR_ROLLBACK = 42


#: The first request type number a plugin may use.
FIRST_PLUGIN_TYPE = 1000
#: The largest request type number (the wire field is 16 bits, unsigned).
LAST_REQUEST_TYPE = 0xFFFF


class ReturnCode(enum.IntEnum):
    """dvsd's own return codes.  A return code >= 0 means success."""

    OK = 0
    BAD_REQUEST = -1001
    MANY_LINES_TO_ALL = -1003
    TIMEOUT = -1004
    NODE_LEFT = -1005
    GCS_DOWN = -1006
    TOO_LARGE = -1007
    NOT_ALLOWED = -1008
    HOST_ERROR = -1009
    NOT_SUPPORTED = -1010
    NO_SUCH_PROCESS = -1011
    PERMISSION = -1012
    INTERNAL = -1013
    NO_SUCH_NODE = -1014


def request_type_name(value: int) -> str:
    """The name of a request type, or ``TYPE<n>`` for a number nobody registered."""
    try:
        return RequestType(value).name
    except ValueError:
        return f"TYPE{value}"


def return_code_name(value: int) -> str:
    """A readable name for any return code: dvsd's, the kernel's, or a success value."""
    if value >= 0:
        return "OK" if value == 0 else f"OK({value})"
    try:
        return ReturnCode(value).name
    except ValueError:
        pass
    try:
        from dvsd.kernel.abi import error_name
    except ImportError:  # pragma: no cover - the kernel package is always shipped
        return str(value)
    return error_name(value)
