"""The request and reply that travel between dvsd nodes, one Spread message each.

Sans-IO: :func:`encode_request` / :func:`encode_reply` give bytes,
:func:`decode` gives a :class:`WireRequest` or :class:`WireReply` back or
raises :class:`WireError`.  Every integer is big-endian (network order) so
nodes of any architecture agree; parameters and reply items are MessagePack
(also big-endian by definition).  ``docs/wire-format.md`` has the byte
tables; keep the two in step.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import attrs
import msgpack

MAGIC = b"DV"
PROTOCOL_VERSION = 1

#: Destination count that means "every member of the group".
ALL_NODES = 0xFFFF
#: The largest node id the wire can name (0xFFFF is taken by ALL_NODES).
MAX_NODE_ID = 0xFFFE


class Kind(enum.IntEnum):
    """Byte 3 of every dvsd message; also the Spread message type it is sent with."""

    REQUEST = 1
    REPLY = 2


class RequestFlag(enum.IntFlag):
    """Bits of a request's flags field."""

    NONE = 0
    #: Sent by a dvsd on its own behalf (a MIGRATE step), not for a dvsctl client.
    INTERNAL = 0x0001


class ReplyFlag(enum.IntFlag):
    """Bits of a reply's flags field."""

    NONE = 0
    #: The handler cut its output to fit one message; ``full_size`` says how big it was.
    TRUNCATED = 0x0001


# magic, version, kind, type, flags, requester, incarnation, seq, timeout_ms,
# destination count, auth length, params length
_REQUEST_HEADER = struct.Struct("!2sBBHHIIIIHHI")
# magic, version, kind, type, flags, responder, requester, incarnation, seq,
# rcode, item count, full size, auth length, reserved, body length
_REPLY_HEADER = struct.Struct("!2sBBHHIIIIiIIHHI")
_NODE_ID = struct.Struct("!H")


class WireError(ValueError):
    """Bytes that are not a dvsd message of this protocol version."""


def _node_ids(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(sorted(set(value)))


@attrs.frozen
class RequestId:
    """Who asked, in which life of their dvsd, and which of their requests this is.

    A restarted dvsd picks a new incarnation, so ``(requester, incarnation,
    seq)`` never repeats across restarts; nodes deduplicate on it.
    """

    requester: int
    incarnation: int
    seq: int


@attrs.frozen
class WireRequest:
    """A request as it travels between nodes.

    ``destinations`` is ``None`` for all nodes, else the sorted node ids.
    ``timeout_ms`` is the time the requester had left when it sent the
    request: clocks differ between nodes, so a relative time travels and each
    node sets its own deadline on receipt.
    """

    rqst_type: int
    id: RequestId
    destinations: tuple[int, ...] | None = attrs.field(converter=_node_ids)
    timeout_ms: int
    params: Any = attrs.field(factory=dict)
    flags: RequestFlag = RequestFlag.NONE
    auth_tag: bytes = b""

    def addressed_to(self, node_id: int) -> bool:
        return self.destinations is None or node_id in self.destinations


@attrs.frozen
class WireReply:
    """One node's answer to one request."""

    rqst_type: int
    id: RequestId
    responder: int
    rcode: int
    items: list[Any] = attrs.field(factory=list)
    error: str | None = None
    flags: ReplyFlag = ReplyFlag.NONE
    full_size: int = 0
    auth_tag: bytes = b""


def _pack(value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise WireError(f"value cannot be encoded: {error}") from None


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises several unrelated types
        raise WireError(f"{what} is not valid MessagePack: {error}") from None


def encode_request(request: WireRequest) -> bytes:
    """The bytes of one request message."""
    if request.destinations is None:
        count, destinations = ALL_NODES, b""
    else:
        if len(request.destinations) >= ALL_NODES:
            raise WireError("too many destination nodes")
        for node in request.destinations:
            if not 0 <= node <= MAX_NODE_ID:
                raise WireError(
                    f"destination node must be in 0..{MAX_NODE_ID}, got {node}"
                )
        count = len(request.destinations)
        destinations = b"".join(_NODE_ID.pack(node) for node in request.destinations)
    params = _pack(request.params)
    try:
        header = _REQUEST_HEADER.pack(
            MAGIC,
            PROTOCOL_VERSION,
            Kind.REQUEST,
            request.rqst_type,
            request.flags,
            request.id.requester,
            request.id.incarnation,
            request.id.seq,
            max(0, request.timeout_ms),
            count,
            len(request.auth_tag),
            len(params),
        )
    except struct.error as error:
        raise WireError(f"request header field out of range: {error}") from None
    return header + destinations + request.auth_tag + params


def encode_reply(reply: WireReply) -> bytes:
    """The bytes of one reply message."""
    body = _pack({"items": reply.items, "error": reply.error})
    try:
        header = _REPLY_HEADER.pack(
            MAGIC,
            PROTOCOL_VERSION,
            Kind.REPLY,
            reply.rqst_type,
            reply.flags,
            reply.responder,
            reply.id.requester,
            reply.id.incarnation,
            reply.id.seq,
            reply.rcode,
            len(reply.items),
            reply.full_size,
            len(reply.auth_tag),
            0,
            len(body),
        )
    except struct.error as error:
        raise WireError(f"reply header field out of range: {error}") from None
    return header + reply.auth_tag + body


def decode(data: bytes) -> WireRequest | WireReply:
    """Decode one dvsd message; anything malformed raises :class:`WireError`."""
    if len(data) < 4:
        raise WireError(f"message of {len(data)} bytes is shorter than any header")
    if data[:2] != MAGIC:
        raise WireError(f"message does not start with {MAGIC!r}")
    if data[2] != PROTOCOL_VERSION:
        raise WireError(
            f"protocol version {data[2]} is not supported (this node speaks"
            f" {PROTOCOL_VERSION})"
        )
    if data[3] == Kind.REQUEST:
        return _decode_request(data)
    if data[3] == Kind.REPLY:
        return _decode_reply(data)
    raise WireError(f"message kind {data[3]} is neither request (1) nor reply (2)")


def _take(data: bytes, offset: int, length: int, what: str) -> bytes:
    end = offset + length
    if end > len(data):
        raise WireError(f"message ends inside its {what}")
    return data[offset:end]


def _decode_request(data: bytes) -> WireRequest:
    if len(data) < _REQUEST_HEADER.size:
        raise WireError("request shorter than its header")
    (
        _magic,
        _version,
        _kind,
        rqst_type,
        flags,
        requester,
        incarnation,
        seq,
        timeout_ms,
        count,
        auth_len,
        params_len,
    ) = _REQUEST_HEADER.unpack_from(data)
    offset = _REQUEST_HEADER.size
    destinations: tuple[int, ...] | None = None
    if count != ALL_NODES:
        raw = _take(data, offset, count * _NODE_ID.size, "destination list")
        destinations = tuple(node for (node,) in _NODE_ID.iter_unpack(raw))
        offset += len(raw)
    auth_tag = _take(data, offset, auth_len, "authentication tag")
    offset += auth_len
    params_bytes = _take(data, offset, params_len, "parameters")
    if offset + params_len != len(data):
        raise WireError(f"{len(data) - offset - params_len} stray bytes after request")
    return WireRequest(
        rqst_type=rqst_type,
        id=RequestId(requester, incarnation, seq),
        destinations=destinations,
        timeout_ms=timeout_ms,
        params=_unpack(params_bytes, "request parameters"),
        flags=RequestFlag(flags),
        auth_tag=auth_tag,
    )


def _decode_reply(data: bytes) -> WireReply:
    if len(data) < _REPLY_HEADER.size:
        raise WireError("reply shorter than its header")
    (
        _magic,
        _version,
        _kind,
        rqst_type,
        flags,
        responder,
        requester,
        incarnation,
        seq,
        rcode,
        item_count,
        full_size,
        auth_len,
        _reserved,
        body_len,
    ) = _REPLY_HEADER.unpack_from(data)
    offset = _REPLY_HEADER.size
    auth_tag = _take(data, offset, auth_len, "authentication tag")
    offset += auth_len
    body_bytes = _take(data, offset, body_len, "body")
    if offset + body_len != len(data):
        raise WireError(f"{len(data) - offset - body_len} stray bytes after reply")
    body = _unpack(body_bytes, "reply body")
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise WireError("reply body must be a map with an item list")
    items = body["items"]
    error = body.get("error")
    if len(items) != item_count:
        raise WireError(
            f"reply header counts {item_count} items, body has {len(items)}"
        )
    if error is not None and not isinstance(error, str):
        raise WireError("reply error must be a string")
    return WireReply(
        rqst_type=rqst_type,
        id=RequestId(requester, incarnation, seq),
        responder=responder,
        rcode=rcode,
        items=items,
        error=error,
        flags=ReplyFlag(flags),
        full_size=full_size,
        auth_tag=auth_tag,
    )
