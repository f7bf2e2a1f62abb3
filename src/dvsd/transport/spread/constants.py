"""Every number that crosses the Spread 4.0 client/daemon socket, in one place.

The values come from the 4.0.0 wire protocol (see ``docs`` and the shared
protocol reference); the names keep Spread's meaning but drop the C
spelling (``SAFE_MESS`` becomes ``ServiceType.SAFE``).
"""

from __future__ import annotations

import enum

#: Version this client claims in its connect message. A 4.0.0 daemon only
#: runs the authentication exchange for libraries at 3.16.0 or newer, and
#: only sends the patch byte of its own version to 3.15.0 or newer.
PROTOCOL_VERSION = (4, 0, 0)

#: Default daemon port; ``""`` as an address means this port over the unix
#: socket, as in libspread.
DEFAULT_PORT = 4803


class ServiceType(enum.IntEnum):
    """Delivery guarantee of a data message: exactly one per multicast."""

    UNRELIABLE = 0x01
    RELIABLE = 0x02
    FIFO = 0x04
    CAUSAL = 0x08
    AGREED = 0x10
    SAFE = 0x20


class MessageFlag(enum.IntFlag):
    """Bits of the 32-bit ``type`` field of the 48-byte message header."""

    UNRELIABLE = 0x0000_0001
    RELIABLE = 0x0000_0002
    FIFO = 0x0000_0004
    CAUSAL = 0x0000_0008
    AGREED = 0x0000_0010
    SAFE = 0x0000_0020
    SELF_DISCARD = 0x0000_0040
    CAUSED_BY_JOIN = 0x0000_0100
    CAUSED_BY_LEAVE = 0x0000_0200
    CAUSED_BY_DISCONNECT = 0x0000_0400
    CAUSED_BY_NETWORK = 0x0000_0800
    REG_MEMB = 0x0000_1000
    TRANSITION = 0x0000_2000
    JOIN = 0x0001_0000
    LEAVE = 0x0002_0000
    KILL = 0x0004_0000
    GROUPS = 0x0008_0000
    REJECT = 0x0040_0000


class FlagMask(enum.IntEnum):
    """Masks over :class:`MessageFlag` and the header's ``hint`` field."""

    #: The six data service bits.
    REGULAR = 0x0000_003F
    #: Cause, regular-membership and transitional bits.
    MEMBERSHIP = 0x0000_3F00
    #: Cause bits only.
    CAUSE = 0x0000_0F00
    #: Set in ``type`` and ``hint`` when the writer is little-endian. It is
    #: symmetric under byte swapping, so it can be read before the order is known.
    ENDIAN_MARKER = 0x8000_0080
    #: The only bits a client may set in ``hint``; anything else gets the
    #: session killed.
    HINT_ALLOWED = 0x80FF_FF80


class MembershipReason(enum.IntEnum):
    """Why a regular membership message was sent (its cause bit)."""

    JOIN = MessageFlag.CAUSED_BY_JOIN.value
    LEAVE = MessageFlag.CAUSED_BY_LEAVE.value
    DISCONNECT = MessageFlag.CAUSED_BY_DISCONNECT.value
    NETWORK = MessageFlag.CAUSED_BY_NETWORK.value


class ConnectFlag(enum.IntFlag):
    """Byte 3 of the connect message."""

    MEMBERSHIP = 0x01
    #: Priority 1 (bits 4-7 hold priority x 16; 4.0.0 stores it but never uses it).
    PRIORITY_HIGH = 0x10


class ResultCode(enum.IntEnum):
    """Session results: the handshake's reject bytes and libspread's error codes.

    Only ACCEPT_SESSION and the REJECT_* codes ever appear on the wire (as a
    signed byte); the rest are what libspread reports for local failures and
    are kept so that errors can carry the same number a C user would see.
    """

    ACCEPT_SESSION = 1
    ILLEGAL_SPREAD = -1
    COULD_NOT_CONNECT = -2
    REJECT_QUOTA = -3
    REJECT_NO_NAME = -4
    REJECT_ILLEGAL_NAME = -5
    REJECT_NOT_UNIQUE = -6
    REJECT_VERSION = -7
    CONNECTION_CLOSED = -8
    REJECT_AUTH = -9
    ILLEGAL_SESSION = -11
    ILLEGAL_SERVICE = -12
    ILLEGAL_MESSAGE = -13
    ILLEGAL_GROUP = -14
    BUFFER_TOO_SHORT = -15
    GROUPS_TOO_SHORT = -16
    MESSAGE_TOO_LONG = -17
    NET_ERROR_ON_SESSION = -18


class Limit(enum.IntEnum):
    """Sizes fixed by the 4.0.0 daemon."""

    #: Every name slot on the wire, including the terminating NUL.
    GROUP_NAME_SLOT = 32
    #: Longest group name (join/leave/multicast target), in bytes.
    MAX_GROUP_NAME_LEN = 31
    #: Longest private (user) name the daemon accepts.
    MAX_PRIVATE_NAME_LEN = 10
    #: Longest daemon (proc) name.
    MAX_PROC_NAME_LEN = 19
    #: Most destination groups the daemon accepts in one client message.
    MAX_GROUPS_PER_MESSAGE = 100
    #: Fixed header size of every post-handshake message.
    HEADER_SIZE = 48
    #: Size of the auth choice: three 30-byte NUL-padded method names.
    AUTH_CHOICE_SIZE = 90
    AUTH_NAME_SLOT = 30
    AUTH_METHOD_SLOTS = 3
    #: Largest ``data_len + 32 * num_groups`` a 4.0.0 daemon survives. Its own
    #: checks allow up to 143952, but everything from 143552 up aborts the
    #: whole daemon (fragment-table overflow), so this client refuses it.
    MAX_SAFE_BODY = 143_551
    #: Limit libspread applies (too generous, kept for reference only).
    MAX_MESSAGE_BODY_LEN = 144_000
    #: The daemon's own check on ``data_len + 32 * num_groups``.
    DAEMON_BODY_CHECK = 143_952
    #: Messages queued for a session that does not read before it is killed.
    MAX_SESSION_MESSAGES = 1000
    #: Most client sessions per daemon.
    MAX_SESSIONS = 997
    #: Highest port libspread accepts (exclusive): the daemon keeps it in a
    #: signed 16-bit variable.
    PORT_LIMIT = 32768


#: Lowest and highest byte allowed in private names and group names.
NAME_BYTE_MIN = 0x24
NAME_BYTE_MAX = 0x7E
#: First byte of a private group name (``#priv#daemon``).
PRIVATE_GROUP_PREFIX = 0x23


def max_payload(num_groups: int = 1) -> int:
    """Return the largest payload one multicast to ``num_groups`` groups may carry."""
    return Limit.MAX_SAFE_BODY - Limit.GROUP_NAME_SLOT * num_groups


#: Largest payload of a multicast to a single group (143519 bytes).
MAX_SAFE_PAYLOAD = max_payload(1)
