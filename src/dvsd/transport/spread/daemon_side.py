"""Sans-IO codec of the daemon's side of the session protocol.

A real client never needs this. It exists so that a test stand-in for the
daemon can speak the same bytes as Spread 4.0.0, and so that property tests
can check the client codec against an independent reading of the wire:
encode an operation with :mod:`.codec`, read it back here as the daemon
would, and the other way round for events.
"""

from __future__ import annotations

import attrs

from .codec import (
    _HEADER_SIZE,
    _MARKER,
    _SLOT,
    HEADER,
    MAX_INCOMING_BODY,
    StructOrder,
    decode_hint,
    encode_header,
    encode_hint,
    marker_for,
    name_slot,
    read_name,
    read_names,
    struct_order,
)
from .constants import (
    NAME_BYTE_MAX,
    NAME_BYTE_MIN,
    PROTOCOL_VERSION,
    FlagMask,
    Limit,
    MessageFlag,
    ResultCode,
    ServiceType,
)
from .errors import SpreadError, SpreadProtocolError
from .messages import (
    ByteOrder,
    ConnectRequest,
    Disconnect,
    Event,
    Join,
    Leave,
    MembershipMessage,
    Multicast,
    Operation,
    RegularMessage,
    RejectedMessage,
    SelfLeave,
    TransitionalMembership,
)

# -- handshake, daemon side --------------------------------------------------------


def parse_connect_message(data: bytes) -> ConnectRequest:
    """Read a connect message the way the 4.0.0 daemon does.

    ``data`` is everything the daemon's single read returned. A refusal
    raises :class:`SpreadProtocolError` whose ``code`` is the reject the
    daemon answers with (REJECT_NO_NAME, REJECT_ILLEGAL_NAME, REJECT_VERSION).
    Extra bytes (for example an auth choice pipelined behind the message)
    make the name read too long, so they are REJECT_ILLEGAL_NAME, as on the
    real daemon.
    """
    if len(data) < 2:
        raise SpreadProtocolError("connect message shorter than its version bytes")
    major, minor = data[0], data[1]
    has_patch = major * 10000 + minor * 100 > 31400
    patch = data[2] if has_patch and len(data) > 2 else 0
    position = 3 if has_patch else 2
    if (major, minor, patch) < (3, 1, 0):
        raise SpreadProtocolError(
            f"library version {major}.{minor}.{patch} is below 3.1.0",
            ResultCode.REJECT_VERSION,
        )
    if len(data) < position + 2:
        raise SpreadProtocolError(
            "connect message lacks flags and name length", ResultCode.REJECT_NO_NAME
        )
    flags = data[position]
    name_len = int.from_bytes(data[position + 1 : position + 2], "little", signed=True)
    name = data[position + 2 :]
    if not 0 <= name_len <= Limit.MAX_PRIVATE_NAME_LEN or len(name) != name_len:
        raise SpreadProtocolError(
            f"private name length byte {name_len} with {len(name)} name bytes",
            ResultCode.REJECT_ILLEGAL_NAME,
        )
    if any(not NAME_BYTE_MIN <= byte <= NAME_BYTE_MAX for byte in name):
        raise SpreadProtocolError(
            f"private name {name!r} has bytes outside 0x24..0x7E",
            ResultCode.REJECT_ILLEGAL_NAME,
        )
    return ConnectRequest(
        name.decode("ascii"),
        membership=bool(flags & 0x01),
        priority=min(flags >> 4, 1),
        version=(major, minor, patch),
    )


def parse_auth_choice(data: bytes) -> tuple[str, ...]:
    """The methods named in a 90-byte auth choice; short or empty is REJECT_AUTH."""
    if len(data) != Limit.AUTH_CHOICE_SIZE:
        raise SpreadProtocolError(
            f"auth choice of {len(data)} bytes, must be exactly 90",
            ResultCode.REJECT_AUTH,
        )
    methods = []
    for slot in range(Limit.AUTH_METHOD_SLOTS):
        raw = data[slot * Limit.AUTH_NAME_SLOT : (slot + 1) * Limit.AUTH_NAME_SLOT]
        if raw[0] == 0:
            break
        methods.append(read_name(raw))
    if not methods:
        raise SpreadProtocolError("auth choice names no method", ResultCode.REJECT_AUTH)
    return tuple(methods)


def encode_auth_list(methods: tuple[str, ...] = ("NULL",)) -> bytes:
    """Daemon reply #1: length byte, then each method followed by a space."""
    text = "".join(f"{method} " for method in methods).encode("ascii")
    return bytes((len(text),)) + text


def encode_accept(
    private_group: str,
    daemon_version: tuple[int, int, int] = PROTOCOL_VERSION,
    *,
    with_patch: bool = True,
) -> bytes:
    """The accept sequence: 01, version, name length, private group name.

    The real daemon writes these five items with separate sends; a stand-in
    that wants to be faithful should do the same.
    """
    version = daemon_version if with_patch else daemon_version[:2]
    name = private_group.encode("latin-1")
    return bytes((ResultCode.ACCEPT_SESSION, *version, len(name))) + name


def encode_reject(code: ResultCode | int) -> bytes:
    """A reject code as the single signed byte the daemon sends before closing."""
    return int(code).to_bytes(1, "little", signed=True)


# -- client messages, daemon side --------------------------------------------------


@attrs.frozen
class ClientMessage:
    """One client message as the daemon reads it."""

    #: The sender field: must equal the session's private group.
    sender: str
    operation: Operation
    #: Byte order the client wrote in.
    byteorder: ByteOrder


_OPERATION_TYPES = {
    MessageFlag.JOIN: Join,
    MessageFlag.LEAVE: Leave,
    MessageFlag.KILL: Disconnect,
}


def decode_client_message(
    buffer: bytes | bytearray,
) -> tuple[ClientMessage, int] | None:
    """Read one client message from the start of ``buffer``, with the daemon's checks.

    Returns ``(message, bytes consumed)`` or None if incomplete. A header the
    daemon would kill the session for raises :class:`SpreadProtocolError`
    (one service bit or JOIN/LEAVE/KILL; 0..100 groups; hint within
    0x80ffff80; data_len within the daemon's limits).
    """
    if len(buffer) < _HEADER_SIZE:
        return None
    order = struct_order("little" if buffer[0] & 0x80 else "big")
    raw_type, sender_slot, num_groups, hint, data_len = HEADER[order].unpack_from(
        buffer
    )
    if (raw_type & _MARKER) != marker_for(order):
        raise SpreadProtocolError(
            "endian marker does not match the header's byte order"
        )
    type_field = raw_type & ~_MARKER
    kind = type_field & ~MessageFlag.SELF_DISCARD
    is_data = kind in {int(s) for s in ServiceType}
    if not is_data and kind not in _OPERATION_TYPES:
        raise SpreadProtocolError(f"client message type {type_field:#010x} is illegal")
    if not 0 <= num_groups <= Limit.MAX_GROUPS_PER_MESSAGE:
        raise SpreadProtocolError(f"num_groups {num_groups} outside 0..100")
    if hint & ~FlagMask.HINT_ALLOWED & 0xFFFF_FFFF:
        raise SpreadProtocolError(f"hint {hint:#010x} has bits outside 0x80ffff80")
    if not 0 <= data_len <= Limit.MAX_MESSAGE_BODY_LEN or (
        data_len + _SLOT * num_groups > Limit.DAEMON_BODY_CHECK
    ):
        raise SpreadProtocolError(
            f"data_len {data_len} with {num_groups} groups is beyond the daemon's limit"
        )
    total = _HEADER_SIZE + _SLOT * num_groups + data_len
    if len(buffer) < total:
        return None
    groups = read_names(bytes(buffer[_HEADER_SIZE:total]), num_groups)
    payload = bytes(buffer[_HEADER_SIZE + _SLOT * num_groups : total])
    try:
        if is_data:
            message_type, _hint_order = decode_hint(bytes(buffer[40:44]))
            operation: Operation = Multicast(
                kind,
                groups,
                payload,
                message_type=message_type,
                self_discard=bool(type_field & MessageFlag.SELF_DISCARD),
            )
        elif kind == MessageFlag.KILL:
            operation = Disconnect()
        else:
            if num_groups < 1:
                raise SpreadProtocolError("join or leave without a group")
            operation = _OPERATION_TYPES[MessageFlag(kind)](groups[0])
    except SpreadProtocolError:
        raise
    except SpreadError as exc:
        raise SpreadProtocolError(f"client message is not legal: {exc}") from exc
    sender = read_name(sender_slot)
    return ClientMessage(sender, operation, _int_order(order)), total


class ClientMessageDecoder:
    """Receive buffer of a daemon stand-in: bytes in, whole client messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the client."""
        self._buffer += data

    def next_message(self) -> ClientMessage | None:
        """The next whole client message, or None if more bytes are needed."""
        result = decode_client_message(self._buffer)
        if result is None:
            return None
        message, consumed = result
        del self._buffer[:consumed]
        return message


# -- daemon -> client encoding -----------------------------------------------------


def encode_event(event: Event, *, order: StructOrder = "<") -> bytes:
    """The bytes a daemon writing in ``order`` sends for ``event``.

    Regular and rejected messages keep the hint in the sender's own byte
    order (``sender_byteorder``), as the daemon passes it on untouched.
    """
    if isinstance(event, RegularMessage):
        type_field = int(event.service_type)
        if event.self_discard:
            type_field |= MessageFlag.SELF_DISCARD
        return _with_body(
            order,
            type_field,
            event.sender,
            event.groups,
            _sender_hint(event.message_type, event.sender_byteorder, order),
            event.payload,
        )
    if isinstance(event, RejectedMessage):
        header = encode_header(
            order,
            int(MessageFlag.REJECT),
            event.sender,
            len(event.groups),
            _sender_hint(event.message_type, event.sender_byteorder, order),
            len(event.payload),
        )
        old_type = (event.original_type | marker_for(order)) & 0xFFFF_FFFF
        return (
            header
            + int(old_type).to_bytes(4, _int_order(order))
            + b"".join(name_slot(group) for group in event.groups)
            + event.payload
        )
    if isinstance(event, MembershipMessage):
        ints = _int_order(order)
        body = bytearray()
        for value in (
            event.group_id.proc_id,
            event.group_id.time,
            event.group_id.index,
            len(event.vs_sets),
        ):
            body += value.to_bytes(4, ints)
        offsets = []
        sets = bytearray()
        for vs_set in event.vs_sets:
            offsets.append(len(sets))
            sets += len(vs_set).to_bytes(4, ints)
            sets += b"".join(name_slot(name) for name in vs_set)
        my_offset = (
            0 if event.my_vs_set_index is None else offsets[event.my_vs_set_index]
        )
        body += my_offset.to_bytes(4, ints) + sets
        return _with_body(
            order,
            int(MessageFlag.REG_MEMB) | int(event.reason),
            event.group,
            event.members,
            marker_for(order),
            bytes(body),
        )
    if isinstance(event, TransitionalMembership):
        ints = _int_order(order)
        gid = event.group_id
        body = b"".join(v.to_bytes(4, ints) for v in (gid.proc_id, gid.time, gid.index))
        return _with_body(
            order, int(MessageFlag.TRANSITION), event.group, (), marker_for(order), body
        )
    if isinstance(event, SelfLeave):
        return _with_body(
            order,
            int(MessageFlag.CAUSED_BY_LEAVE),
            event.group,
            (),
            marker_for(order),
            b"",
        )
    raise TypeError(f"not a daemon-to-client event: {event!r}")


def _sender_hint(
    message_type: int, sender_byteorder: ByteOrder, order: StructOrder
) -> int:
    # The daemon passes the sender's hint on byte for byte, so build it in
    # the sender's order and re-read those 4 bytes in the header's order,
    # which is how encode_header will pack it.
    raw = encode_hint(message_type, struct_order(sender_byteorder)).to_bytes(
        4, sender_byteorder
    )
    return int.from_bytes(raw, _int_order(order))


def _int_order(order: StructOrder) -> ByteOrder:
    return "little" if order == "<" else "big"


def _with_body(
    order: StructOrder,
    type_field: int,
    sender: str,
    groups: tuple[str, ...],
    hint: int,
    data: bytes,
) -> bytes:
    if len(groups) * _SLOT + len(data) > MAX_INCOMING_BODY:
        raise ValueError("event too large to encode")
    header = encode_header(order, type_field, sender, len(groups), hint, len(data))
    return header + b"".join(name_slot(group) for group in groups) + data
