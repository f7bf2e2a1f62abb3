"""Daemon-side bytes of the Spread 4.0 client protocol, without any I/O.

Written from /work/shared/reference/spread-protocol.md only, on purpose apart
from the product's client codec in ``dvsd.transport.spread``: the stand-in and
the client are two independent readings of the same reference, so a test that
passes through both checks each against the other.

Everything here is a pure function of its arguments. The daemon side only ever
*writes* in its own byte order (``ByteOrder``), and *reads* client headers in
whichever order their endian marker says (§3.3).
"""

from __future__ import annotations

import enum
import struct

import attrs

HEADER_SIZE = 48
NAME_SLOT = 32  # MAX_GROUP_NAME: every name on the wire is one 32-byte slot
MAX_PRIVATE_NAME = 10
MAX_PROC_NAME = 20  # counting the NUL, so daemon names are 1..19 bytes
MAX_GROUPS_PER_MESSAGE = 100
MAX_MESSAGE_BODY_LEN = 144000
AUTH_CHOICE_SIZE = 90  # 3 slots of 30 bytes
AUTH_SLOT = 30
MAX_SESSIONS = 997
MAX_SESSION_MESSAGES = 1000
ENDIAN_MARKER = 0x80000080
HINT_ALLOWED = 0x80FFFF80
DAEMON_VERSION = (4, 0, 0)
ALLOWED_AUTH_LIST = b"NULL "


class ServiceType(enum.IntFlag):
    """Bits of the header's ``type`` field (reference §3.1)."""

    UNRELIABLE_MESS = 0x00000001
    RELIABLE_MESS = 0x00000002
    FIFO_MESS = 0x00000004
    CAUSAL_MESS = 0x00000008
    AGREED_MESS = 0x00000010
    SAFE_MESS = 0x00000020
    REGULAR_MESS = 0x0000003F
    SELF_DISCARD = 0x00000040
    CAUSED_BY_JOIN = 0x00000100
    CAUSED_BY_LEAVE = 0x00000200
    CAUSED_BY_DISCONNECT = 0x00000400
    CAUSED_BY_NETWORK = 0x00000800
    REG_MEMB_MESS = 0x00001000
    TRANSITION_MESS = 0x00002000
    JOIN_MESS = 0x00010000
    LEAVE_MESS = 0x00020000
    KILL_MESS = 0x00040000
    GROUPS_MESS = 0x00080000


class SessionReply(enum.IntEnum):
    """Single bytes the daemon sends during the handshake (reference §2.6)."""

    ACCEPT_SESSION = 1
    REJECT_QUOTA = -3
    REJECT_NO_NAME = -4
    REJECT_ILLEGAL_NAME = -5
    REJECT_NOT_UNIQUE = -6
    REJECT_VERSION = -7
    REJECT_AUTH = -9

    def to_byte(self) -> bytes:
        return struct.pack("b", self.value)


class ByteOrder(enum.Enum):
    """The byte order a daemon writes in; x86 daemons are LITTLE."""

    LITTLE = "<"
    BIG = ">"

    @property
    def marker(self) -> int:
        return ENDIAN_MARKER if self is ByteOrder.LITTLE else 0


class HeaderError(ValueError):
    """A client header that the real daemon answers by killing the session."""


@attrs.frozen
class ClientHeader:
    """A validated client header, its integers already in host terms.

    ``raw_hint`` and ``raw_sender`` keep the bytes exactly as the client wrote
    them, because the daemon forwards both untouched (§3.3), apart from byte 31
    of the sender slot, which the daemon forces to NUL.
    """

    service_type: int  # marker bits cleared
    raw_sender: bytes
    num_groups: int
    raw_hint: bytes
    data_len: int

    @property
    def body_len(self) -> int:
        return self.num_groups * NAME_SLOT + self.data_len


def name_slot(name: bytes) -> bytes:
    """Pad ``name`` with NULs to one 32-byte slot; longer names are an error.

    A 32-byte name fills the slot with no NUL: the real daemon accepts such
    group names in a join and echoes all 32 bytes back.
    """
    if len(name) > NAME_SLOT:
        raise ValueError(f"name {name!r} is {len(name)} bytes; at most 32 fit a slot")
    return name.ljust(NAME_SLOT, b"\0")


def slot_name(slot: bytes) -> bytes:
    """The name in a slot: everything before the first NUL (§9, Names)."""
    return slot.split(b"\0", 1)[0]


def legal_name_bytes(name: bytes) -> bool:
    """True when every byte is in 0x24..0x7E, the daemon's rule for names."""
    return all(0x24 <= byte <= 0x7E for byte in name)


def split_private_group(slot: bytes) -> tuple[bytes, bytes] | None:
    """Parse ``#priv#proc`` like the daemon does, or None when it is illegal.

    Only the part before the first NUL counts. ``priv`` must be 1..10 bytes and
    ``proc`` 1..19 bytes, both from 0x24..0x7E.
    """
    name = slot_name(slot[: NAME_SLOT - 1])
    if not name.startswith(b"#"):
        return None
    private_name, sep, proc_name = name[1:].partition(b"#")
    if not sep:
        return None
    if not 1 <= len(private_name) <= MAX_PRIVATE_NAME:
        return None
    if not 1 <= len(proc_name) < MAX_PROC_NAME:
        return None
    if not (legal_name_bytes(private_name) and legal_name_bytes(proc_name)):
        return None
    return private_name, proc_name


def private_group_name(private_name: bytes, daemon_name: bytes) -> bytes:
    return b"#" + private_name + b"#" + daemon_name


def _count_bits(value: int, mask: int) -> int:
    return bin(value & mask).count("1")


def parse_client_header(
    raw: bytes, *, private_name: bytes, daemon_name: bytes
) -> ClientHeader:
    """Decode and check a 48-byte client header the way the daemon does (§3.6).

    Raises HeaderError with a sentence naming the broken rule; the caller must
    then kill the session, as the real daemon does.
    """
    if len(raw) != HEADER_SIZE:
        raise HeaderError(f"header is {len(raw)} bytes, not {HEADER_SIZE}")
    (type_le,) = struct.unpack_from("<I", raw, 0)
    # The daemon compares the marker bits with its own and swaps when they
    # differ; whatever garbage a wrong marker produces is then caught below.
    order = "<" if type_le & ENDIAN_MARKER == ENDIAN_MARKER else ">"
    service_type, sender, num_groups, _hint, data_len = struct.unpack(
        order + "I32siIi", raw
    )
    service_type &= ~ENDIAN_MARKER & 0xFFFFFFFF
    raw_hint = raw[40:44]
    (hint_le,) = struct.unpack("<I", raw_hint)

    data_bits = _count_bits(service_type, 0x3F)
    group_op_bits = _count_bits(service_type, 0x70000)
    if data_bits > 1 or group_op_bits > 1 or data_bits + group_op_bits != 1:
        raise HeaderError(
            f"type 0x{service_type:08x} must have exactly one of the six service "
            "bits, JOIN, LEAVE or KILL"
        )
    sender = sender[: NAME_SLOT - 1] + b"\0"
    parsed = split_private_group(sender)
    if parsed is None:
        raise HeaderError(f"sender {slot_name(sender)!r} is not #private#daemon")
    if parsed[1] != daemon_name:
        raise HeaderError(f"sender {slot_name(sender)!r} names another daemon")
    if parsed[0] != private_name:
        raise HeaderError(
            f"sender {slot_name(sender)!r} is not this session's #{private_name!r}#"
        )
    if not 0 <= num_groups <= MAX_GROUPS_PER_MESSAGE:
        raise HeaderError(f"num_groups {num_groups} is outside 0..100")
    # The hint mask is the same read either way round, so no swap is needed.
    if hint_le & ~HINT_ALLOWED & 0xFFFFFFFF:
        raise HeaderError(f"hint 0x{hint_le:08x} has bits outside 0x80ffff80")
    if not 0 <= data_len <= MAX_MESSAGE_BODY_LEN:
        raise HeaderError(f"data_len {data_len} is outside 0..144000")
    if data_len + NAME_SLOT * num_groups > MAX_MESSAGE_BODY_LEN - HEADER_SIZE:
        raise HeaderError(
            f"groups + data = {data_len + NAME_SLOT * num_groups} bytes exceeds "
            f"{MAX_MESSAGE_BODY_LEN - HEADER_SIZE}"
        )
    return ClientHeader(
        service_type=service_type,
        raw_sender=sender,
        num_groups=num_groups,
        raw_hint=raw_hint,
        data_len=data_len,
    )


def pack_header(
    order: ByteOrder,
    service_type: int,
    sender_slot: bytes,
    num_groups: int,
    data_len: int,
    raw_hint: bytes | None = None,
) -> bytes:
    """A daemon-to-client header in the daemon's order; hint = marker unless given."""
    head = struct.pack(
        order.value + "I32si",
        service_type | order.marker,
        sender_slot,
        num_groups,
    )
    hint = (
        raw_hint
        if raw_hint is not None
        else struct.pack(order.value + "I", order.marker)
    )
    return head + hint + struct.pack(order.value + "i", data_len)


@attrs.frozen
class GroupId:
    """(daemon ip as int, membership time, per-group change index), §5.4."""

    proc_id: int
    memb_time: int
    index: int

    def pack(self, order: ByteOrder) -> bytes:
        return struct.pack(
            order.value + "III", self.proc_id, self.memb_time, self.index
        )


def regular_membership(
    order: ByteOrder,
    group: bytes,
    cause: ServiceType,
    members: list[bytes],
    gid: GroupId,
    vs_sets: list[list[bytes]],
    my_vs_set: int,
) -> bytes:
    """A REG_MEMB message (§5.4): members and VS sets as given, already sorted.

    ``my_vs_set`` is the index of the receiver's set; the body carries its byte
    offset counted from data offset 20.
    """
    sets_blob = b""
    my_offset = 0
    for index, vs_set in enumerate(vs_sets):
        if index == my_vs_set:
            my_offset = len(sets_blob)
        sets_blob += struct.pack(order.value + "I", len(vs_set))
        sets_blob += b"".join(name_slot(member) for member in vs_set)
    body = (
        gid.pack(order)
        + struct.pack(order.value + "II", len(vs_sets), my_offset)
        + sets_blob
    )
    groups = b"".join(name_slot(member) for member in members)
    head = pack_header(
        order,
        ServiceType.REG_MEMB_MESS | cause,
        name_slot(group),
        len(members),
        len(body),
    )
    return head + groups + body


def transitional_membership(order: ByteOrder, group: bytes, old_gid: GroupId) -> bytes:
    """TRANSITION_MESS (§5.6): no groups, the previous gid as a 12-byte body."""
    body = old_gid.pack(order)
    head = pack_header(
        order, ServiceType.TRANSITION_MESS, name_slot(group), 0, len(body)
    )
    return head + body


def self_leave(order: ByteOrder, group: bytes) -> bytes:
    """The notice a leaver gets (§5.7): CAUSED_BY_LEAVE alone, empty."""
    return pack_header(order, ServiceType.CAUSED_BY_LEAVE, name_slot(group), 0, 0)


def forwarded_data(
    order: ByteOrder, header: ClientHeader, groups_blob: bytes, data: bytes
) -> bytes:
    """A client's data message as every receiver gets it (§3.3, §5.2).

    type, num_groups and data_len are rewritten in the daemon's order; the
    sender slot, the hint, the group slots and the payload pass through as is.
    """
    head = pack_header(
        order,
        header.service_type,
        header.raw_sender,
        header.num_groups,
        header.data_len,
        raw_hint=header.raw_hint,
    )
    return head + groups_blob + data
