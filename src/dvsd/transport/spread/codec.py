"""Sans-IO codec of the client side of the Spread 4.0 session protocol.

Nothing here touches a socket or a clock. :class:`Handshake` turns the
daemon's handshake bytes into :data:`HandshakeEvent` values and tells the
caller what to write; :class:`MessageDecoder` turns the byte stream after
the handshake into whole :data:`Event` values; :func:`encode_operation`
turns an operation into the bytes to write. Malformed input raises
:class:`SpreadProtocolError` and nothing else.
"""

from __future__ import annotations

import enum
import functools
import struct
from typing import Literal

from .constants import (
    FlagMask,
    Limit,
    MembershipReason,
    MessageFlag,
    ResultCode,
    ServiceType,
)
from .errors import IllegalGroup, SpreadProtocolError
from .messages import (
    AuthMethodsOffered,
    ByteOrder,
    ConnectRequest,
    Disconnect,
    Event,
    GroupId,
    HandshakeEvent,
    Join,
    Leave,
    MembershipMessage,
    Multicast,
    Operation,
    RegularMessage,
    RejectedMessage,
    SelfLeave,
    SessionAccepted,
    SessionRejected,
    TransitionalMembership,
)

StructOrder = Literal["<", ">"]

HEADER = {"<": struct.Struct("<I32siIi"), ">": struct.Struct(">I32siIi")}
_U32 = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
_GROUP_ID = {"<": struct.Struct("<III"), ">": struct.Struct(">III")}
_MEMB_PREFIX = {"<": struct.Struct("<IIIII"), ">": struct.Struct(">IIIII")}
_INT16 = {"<": struct.Struct("<h"), ">": struct.Struct(">h")}

_SLOT = int(Limit.GROUP_NAME_SLOT)
_HEADER_SIZE = int(Limit.HEADER_SIZE)
_MARKER = int(FlagMask.ENDIAN_MARKER)
# Plain ints for the per-message paths: IntFlag arithmetic costs a Python
# call per operator, which showed up in the loop-back benchmark.
_REJECT = int(MessageFlag.REJECT)
_REGULAR = int(FlagMask.REGULAR)
_REG_MEMB = int(MessageFlag.REG_MEMB)
_TRANSITION = int(MessageFlag.TRANSITION)
_CAUSED_BY_LEAVE = int(MessageFlag.CAUSED_BY_LEAVE)
_SELF_DISCARD = int(MessageFlag.SELF_DISCARD)
_CAUSE = int(FlagMask.CAUSE)
_SERVICE_TYPES = {int(level): level for level in ServiceType}

#: Refuse headers that announce more than this many bytes after the header.
#: A real daemon sends at most 144000 data bytes plus one 32-byte name per
#: group member; 16 MiB is far above any real group and stops a corrupt
#: length from making the buffer wait for gigabytes.
MAX_INCOMING_BODY = 16 * 1024 * 1024


# -- shared helpers ----------------------------------------------------------------


def struct_order(byteorder: ByteOrder) -> StructOrder:
    """``"little"``/``"big"`` to the matching :mod:`struct` prefix."""
    return "<" if byteorder == "little" else ">"


def byteorder_of(first_byte: int) -> ByteOrder:
    """Byte order of a ``type`` or ``hint`` field from its first byte's marker bit."""
    return "little" if first_byte & 0x80 else "big"


def marker_for(order: StructOrder) -> int:
    """Endian marker a writer in ``order`` ORs into ``type`` and ``hint``."""
    return _MARKER if order == "<" else 0


@functools.lru_cache(maxsize=1024)
def name_slot(name: str) -> bytes:
    """A name as a NUL-padded 32-byte slot (at most 31 name bytes)."""
    raw = name.encode("latin-1")
    if len(raw) >= _SLOT:
        raise IllegalGroup(f"name {name!r} does not fit a 32-byte slot with its NUL")
    return raw.ljust(_SLOT, b"\0")


def read_name(slot: bytes) -> str:
    """A received name: the slot's bytes up to the first NUL.

    Decoded as latin-1 so that any byte round-trips; the daemon does not
    check multicast target names, so other clients may send anything.
    """
    end = slot.find(b"\0")
    return (slot if end < 0 else slot[:end]).decode("latin-1")


def read_names(data: bytes, count: int, offset: int = 0) -> tuple[str, ...]:
    """``count`` consecutive 32-byte name slots from ``data`` at ``offset``."""
    return tuple(
        read_name(data[offset + i * _SLOT : offset + (i + 1) * _SLOT])
        for i in range(count)
    )


def encode_hint(message_type: int, order: StructOrder) -> int:
    """The ``hint`` field for ``message_type`` as a writer in ``order`` builds it.

    The int16 is masked to 16 bits before the shift, as the daemon kills a
    session whose hint has bits outside 0x80ffff80.
    """
    return ((message_type & 0xFFFF) << 8) | marker_for(order)


def decode_hint(hint_bytes: bytes) -> tuple[int, ByteOrder]:
    """Message type (sign-extended) and writer's byte order from the 4 hint bytes."""
    order = byteorder_of(hint_bytes[0])
    (message_type,) = _INT16[struct_order(order)].unpack(hint_bytes[1:3])
    return message_type, order


def encode_header(
    order: StructOrder,
    message_type_field: int,
    sender: str,
    num_groups: int,
    hint: int,
    data_len: int,
) -> bytes:
    """The 48-byte header; the endian marker is added to ``type`` here."""
    return HEADER[order].pack(
        message_type_field | marker_for(order),
        name_slot(sender),
        num_groups,
        hint,
        data_len,
    )


# -- client -> daemon encoding -----------------------------------------------------


def encode_connect_request(request: ConnectRequest) -> bytes:
    """The connect message, ``5 + len(name)`` bytes; write it in ONE send.

    The daemon reads it with a single non-blocking read within 1 s of
    accepting the socket; a split or late message ends in a silent close.
    """
    flags = 0x01 if request.membership else 0x00
    flags |= (request.priority & 0x0F) << 4
    name = request.private_name.encode("ascii")
    major, minor, patch = request.version
    return bytes((major, minor, patch, flags, len(name))) + name


def encode_auth_choice(methods: tuple[str, ...] = ("NULL",)) -> bytes:
    """The 90-byte auth choice: up to three NUL-padded 30-byte method names."""
    if not 1 <= len(methods) <= Limit.AUTH_METHOD_SLOTS:
        raise ValueError(f"between 1 and 3 auth methods, got {len(methods)}")
    slots = []
    for method in methods:
        raw = method.encode("ascii")
        if not 1 <= len(raw) < Limit.AUTH_NAME_SLOT:
            raise ValueError(f"auth method name {method!r} must be 1..29 bytes")
        slots.append(raw.ljust(Limit.AUTH_NAME_SLOT, b"\0"))
    return b"".join(slots).ljust(Limit.AUTH_CHOICE_SIZE, b"\0")


def encode_operation(
    operation: Operation, private_group: str, *, order: StructOrder = "<"
) -> bytes:
    """The complete bytes of one client message, header through payload.

    ``private_group`` must be this session's own private group name as the
    handshake returned it: the daemon kills a session whose sender field
    differs. ``order`` is the byte order to write in (default little-endian,
    like x86 libspread); either is legal as long as it is consistent.
    """
    if isinstance(operation, Multicast):
        type_field = int(operation.service_type)
        if operation.self_discard:
            type_field |= _SELF_DISCARD
        header = encode_header(
            order,
            type_field,
            private_group,
            len(operation.groups),
            encode_hint(operation.message_type, order),
            len(operation.payload),
        )
        slots = b"".join(name_slot(group) for group in operation.groups)
        return header + slots + operation.payload
    if isinstance(operation, Join):
        type_field, group = MessageFlag.JOIN, operation.group
    elif isinstance(operation, Leave):
        type_field, group = MessageFlag.LEAVE, operation.group
    elif isinstance(operation, Disconnect):
        # The daemon ignores the group slot of a KILL; libspread puts the
        # session's own private group there and so do we.
        type_field, group = MessageFlag.KILL, private_group
    else:
        raise TypeError(f"not a Spread operation: {operation!r}")
    header = encode_header(
        order, int(type_field), private_group, 1, marker_for(order), 0
    )
    return header + name_slot(group)


# -- handshake ---------------------------------------------------------------------


class HandshakeState(enum.Enum):
    """Where a :class:`Handshake` stands."""

    SEND_CONNECT = "send connect message"
    AWAIT_AUTH_LIST = "await auth list"
    SEND_AUTH = "send auth choice"
    AWAIT_ACCEPT = "await accept"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Handshake:
    """State machine of the session handshake (NULL-style authentication).

    Use::

        handshake = Handshake(ConnectRequest("node.1"))
        write(handshake.connect_message())           # one write, right away
        while (event := handshake.next_event()) is None:
            handshake.receive_data(read())
        if isinstance(event, AuthMethodsOffered):
            write(handshake.auth_choice())           # one write, only now
            ...keep feeding until SessionAccepted / SessionRejected

    Replies may be split at any byte; ``next_event`` returns None until a
    whole step is buffered. Bytes after the accept sequence are kept in
    ``trailing_data`` for the message decoder.
    """

    def __init__(
        self, request: ConnectRequest, auth_methods: tuple[str, ...] = ("NULL",)
    ) -> None:
        self.request = request
        self.auth_methods = auth_methods
        self.state = HandshakeState.SEND_CONNECT
        self._buffer = bytearray()
        # Libraries older than 3.16 skip the auth exchange; older than 3.15
        # the daemon leaves out its patch byte. We claim 4.0.0 by default.
        self._with_auth = request.version >= (3, 16, 0)
        self._with_patch = request.version >= (3, 15, 0)

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the accept sequence (normally none)."""
        return bytes(self._buffer) if self.state is HandshakeState.ACCEPTED else b""

    def connect_message(self) -> bytes:
        """The connect message; call once, first."""
        self._expect(HandshakeState.SEND_CONNECT)
        self.state = (
            HandshakeState.AWAIT_AUTH_LIST
            if self._with_auth
            else HandshakeState.AWAIT_ACCEPT
        )
        return encode_connect_request(self.request)

    def auth_choice(self) -> bytes:
        """The 90-byte auth choice; call once, after :class:`AuthMethodsOffered`."""
        self._expect(HandshakeState.SEND_AUTH)
        self.state = HandshakeState.AWAIT_ACCEPT
        return encode_auth_choice(self.auth_methods)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the daemon."""
        self._buffer += data

    def next_event(self) -> HandshakeEvent | None:
        """The next complete handshake step, or None if more bytes are needed."""
        if self.state is HandshakeState.AWAIT_AUTH_LIST:
            return self._read_auth_list()
        if self.state is HandshakeState.AWAIT_ACCEPT:
            return self._read_accept()
        return None

    def _expect(self, state: HandshakeState) -> None:
        if self.state is not state:
            raise RuntimeError(
                f"handshake is at {self.state.value!r}, not {state.value!r}"
            )

    def _reject(
        self, code: int, *, local: bool = False, detail: str = ""
    ) -> SessionRejected:
        self.state = HandshakeState.REJECTED
        return SessionRejected(code, local=local, detail=detail)

    def _read_auth_list(self) -> HandshakeEvent | None:
        if not self._buffer:
            return None
        length = int.from_bytes(self._buffer[:1], "little", signed=True)
        if length < 0:
            return self._reject(length)
        if length == 0:
            # The daemon allows no method; it sends REJECT_AUTH and closes.
            return self._reject(
                ResultCode.REJECT_AUTH, detail="the daemon allows no auth method"
            )
        if length > Limit.AUTH_CHOICE_SIZE:
            raise SpreadProtocolError(
                f"auth list length {length} exceeds {int(Limit.AUTH_CHOICE_SIZE)}"
            )
        if len(self._buffer) < 1 + length:
            return None
        text = bytes(self._buffer[1 : 1 + length]).decode("latin-1")
        del self._buffer[: 1 + length]
        offered = tuple(method for method in text.split(" ") if method)
        missing = [method for method in self.auth_methods if method not in offered]
        if missing:
            return self._reject(
                ResultCode.REJECT_AUTH,
                local=True,
                detail=f"daemon offers {offered!r}, this client needs {missing!r}",
            )
        self.state = HandshakeState.SEND_AUTH
        return AuthMethodsOffered(offered)

    def _read_accept(self) -> HandshakeEvent | None:
        version_len = 3 if self._with_patch else 2
        if not self._buffer:
            return None
        answer = int.from_bytes(self._buffer[:1], "little", signed=True)
        if answer < 0:
            return self._reject(answer)
        if answer != ResultCode.ACCEPT_SESSION:
            raise SpreadProtocolError(
                f"handshake answer byte {answer} is neither ACCEPT_SESSION (1)"
                " nor a reject code"
            )
        # accept byte, version, name length, name: each a separate daemon
        # send, so any prefix may be all we have.
        if len(self._buffer) < 2 + version_len:
            return None
        version = tuple(self._buffer[1 : 1 + version_len])
        name_len = self._buffer[1 + version_len]
        start = 2 + version_len
        if not 1 <= name_len <= Limit.MAX_GROUP_NAME_LEN:
            raise SpreadProtocolError(
                f"private group name length {name_len} is outside"
                f" 1..{int(Limit.MAX_GROUP_NAME_LEN)}"
            )
        if len(self._buffer) < start + name_len:
            return None
        private_group = bytes(self._buffer[start : start + name_len]).decode("latin-1")
        del self._buffer[: start + name_len]
        if len(version) == 2:
            version = (*version, 0)
        daemon_version = (version[0], version[1], version[2])
        if daemon_version < (3, 1, 0) or (
            self.request.priority > 0 and daemon_version < (3, 8, 0)
        ):
            return self._reject(
                ResultCode.REJECT_VERSION,
                local=True,
                detail=f"daemon version {daemon_version} is too old",
            )
        self.state = HandshakeState.ACCEPTED
        return SessionAccepted(daemon_version, private_group)


# -- daemon -> client decoding -----------------------------------------------------


class MessageDecoder:
    """Receive buffer for the post-handshake stream: bytes in, whole events out.

    ``next_event`` returns an event only once its header, groups and data
    are all buffered, so a caller never sees half a message. Consumed bytes
    are dropped from the front of a ``bytearray``; CPython makes that
    amortised O(1), so a burst of small messages costs O(total bytes).
    After a :class:`SpreadProtocolError` the decoder stays broken: the stream
    has lost its framing and the session must end.
    """

    def __init__(self, initial: bytes = b"") -> None:
        self._buffer = bytearray(initial)
        self._broken: SpreadProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the daemon."""
        self._buffer += data

    def next_event(self) -> Event | None:
        """The next whole event, or None if more bytes are needed."""
        if self._broken is not None:
            raise self._broken
        try:
            result = decode_message(self._buffer)
        except SpreadProtocolError as exc:
            self._broken = exc
            raise
        if result is None:
            return None
        event, consumed = result
        del self._buffer[:consumed]
        return event


def _split_header(
    buffer: bytes | bytearray,
) -> tuple[StructOrder, int, str, int, bytes, int]:
    order = struct_order(byteorder_of(buffer[0]))
    type_field, sender_slot, num_groups, _hint, data_len = HEADER[order].unpack_from(
        buffer
    )
    hint_bytes = bytes(buffer[40:44])
    if num_groups < 0 or data_len < 0:
        raise SpreadProtocolError(
            f"header has negative num_groups ({num_groups}) or data_len ({data_len})"
        )
    return (
        order,
        type_field & ~_MARKER,
        read_name(sender_slot),
        num_groups,
        hint_bytes,
        data_len,
    )


def decode_message(buffer: bytes | bytearray) -> tuple[Event, int] | None:
    """Decode one daemon-to-client message from the start of ``buffer``.

    Returns ``(event, bytes consumed)``, or None if the message is not yet
    complete. Raises :class:`SpreadProtocolError` for anything malformed.
    """
    if len(buffer) < _HEADER_SIZE:
        return None
    order, type_field, sender, num_groups, hint_bytes, data_len = _split_header(buffer)
    extra = 4 if type_field & _REJECT else 0
    groups_len = num_groups * _SLOT
    if groups_len + data_len > MAX_INCOMING_BODY:
        raise SpreadProtocolError(
            f"header announces {num_groups} groups and {data_len} data bytes,"
            f" more than the {MAX_INCOMING_BODY}-byte limit"
        )
    total = _HEADER_SIZE + extra + groups_len + data_len
    if len(buffer) < total:
        return None
    body = bytes(buffer[_HEADER_SIZE:total])
    groups = read_names(body, num_groups, extra)
    data = body[extra + groups_len :]

    if type_field & _REJECT:
        (old_type,) = _U32[order].unpack_from(body)
        message_type, sender_order = decode_hint(hint_bytes)
        event: Event = RejectedMessage(
            sender, groups, old_type & ~_MARKER, message_type, data, sender_order
        )
    elif type_field & _REGULAR:
        event = _regular(type_field, sender, groups, hint_bytes, data)
    elif type_field & _REG_MEMB:
        event = _membership(order, type_field, sender, groups, data)
    elif type_field & _TRANSITION:
        event = TransitionalMembership(sender, _group_id(order, data, "transitional"))
    elif type_field & _CAUSED_BY_LEAVE:
        event = SelfLeave(sender)
    else:
        raise SpreadProtocolError(
            f"message type {type_field:#010x} is no data, membership or reject message"
        )
    return event, total


def _regular(
    type_field: int,
    sender: str,
    groups: tuple[str, ...],
    hint_bytes: bytes,
    data: bytes,
) -> RegularMessage:
    bits = type_field & _REGULAR
    service_type = _SERVICE_TYPES.get(bits)
    if service_type is None:
        raise SpreadProtocolError(
            f"data message has service bits {bits:#04x}, not exactly one level"
        )
    message_type, sender_order = decode_hint(hint_bytes)
    return RegularMessage(
        sender,
        groups,
        service_type,
        message_type,
        data,
        sender_order,
        bool(type_field & _SELF_DISCARD),
    )


def _group_id(order: StructOrder, data: bytes, what: str) -> GroupId:
    if len(data) < 12:
        raise SpreadProtocolError(
            f"{what} message body has {len(data)} bytes, too short for a group id"
        )
    return GroupId(*_GROUP_ID[order].unpack_from(data))


def _membership(
    order: StructOrder,
    type_field: int,
    group: str,
    members: tuple[str, ...],
    data: bytes,
) -> MembershipMessage:
    cause = type_field & _CAUSE
    try:
        reason = MembershipReason(cause)
    except ValueError:
        raise SpreadProtocolError(
            f"membership message has cause bits {cause:#06x}, not exactly one cause"
        ) from None
    if len(data) < 20:
        raise SpreadProtocolError(
            f"membership body has {len(data)} bytes, needs at least 20"
        )
    proc_id, time, index, num_sets, my_offset = _MEMB_PREFIX[order].unpack_from(data)
    if num_sets > (len(data) - 20) // 4:
        raise SpreadProtocolError(
            f"membership body claims {num_sets} VS sets in {len(data)} bytes"
        )
    u32 = _U32[order]
    sets: list[tuple[str, ...]] = []
    my_index: int | None = None
    position = 20
    for set_index in range(num_sets):
        if position + 4 > len(data):
            raise SpreadProtocolError("membership body ends inside a VS set count")
        if position - 20 == my_offset:
            my_index = set_index
        (count,) = u32.unpack_from(data, position)
        end = position + 4 + count * _SLOT
        if end > len(data):
            raise SpreadProtocolError(
                f"VS set {set_index} claims {count} members beyond the body's end"
            )
        sets.append(read_names(data, count, position + 4))
        position = end
    if sets and my_index is None:
        raise SpreadProtocolError(
            f"my_vs_set_offset {my_offset} is not the start of any VS set"
        )
    changed = None
    if reason is not MembershipReason.NETWORK and sets and sets[0]:
        changed = sets[0][0]
    return MembershipMessage(
        group,
        GroupId(proc_id, time, index),
        members,
        reason,
        changed,
        tuple(sets),
        my_index,
    )
