"""Native Spread 4.0 client: a sans-IO codec and a Trio connection on top.

Typical use::

    from dvsd.transport.spread import ServiceType, connect

    conn = await connect("4803@127.0.0.1", name="node.1")
    await conn.join("DVS")
    await conn.multicast(ServiceType.SAFE, "DVS", b"payload", message_type=1)
    async for event in conn:
        ...
    await conn.aclose()
"""

from .codec import Handshake, MessageDecoder, decode_message, encode_operation
from .connection import SpreadAddress, SpreadConnection, connect, parse_address
from .constants import (
    DEFAULT_PORT,
    MAX_SAFE_PAYLOAD,
    PROTOCOL_VERSION,
    Limit,
    MembershipReason,
    MessageFlag,
    ResultCode,
    ServiceType,
    max_payload,
)
from .errors import (
    ConnectionLost,
    ConnectionRejected,
    ConnectTimeout,
    CouldNotConnect,
    IllegalGroup,
    IllegalMessage,
    IllegalName,
    IllegalService,
    IllegalSpreadAddress,
    MessageTooLong,
    RejectAuth,
    RejectIllegalName,
    RejectNoName,
    RejectNotUnique,
    RejectQuota,
    RejectVersion,
    SessionClosed,
    SpreadError,
    SpreadProtocolError,
)
from .messages import (
    ConnectRequest,
    Disconnect,
    Event,
    GroupId,
    Join,
    Leave,
    MembershipMessage,
    Multicast,
    RegularMessage,
    RejectedMessage,
    SelfLeave,
    TransitionalMembership,
    check_group_name,
    check_private_name,
    check_target_group,
)

#: Largest ``payload + 32 * groups`` this client sends (143551).
MAX_SAFE_BODY = int(Limit.MAX_SAFE_BODY)

__all__ = [
    "DEFAULT_PORT",
    "MAX_SAFE_BODY",
    "MAX_SAFE_PAYLOAD",
    "PROTOCOL_VERSION",
    "ConnectRequest",
    "ConnectTimeout",
    "ConnectionLost",
    "ConnectionRejected",
    "CouldNotConnect",
    "Disconnect",
    "Event",
    "GroupId",
    "Handshake",
    "IllegalGroup",
    "IllegalMessage",
    "IllegalName",
    "IllegalService",
    "IllegalSpreadAddress",
    "Join",
    "Leave",
    "Limit",
    "MembershipMessage",
    "MembershipReason",
    "MessageDecoder",
    "MessageFlag",
    "MessageTooLong",
    "Multicast",
    "RegularMessage",
    "RejectAuth",
    "RejectIllegalName",
    "RejectNoName",
    "RejectNotUnique",
    "RejectQuota",
    "RejectVersion",
    "RejectedMessage",
    "ResultCode",
    "SelfLeave",
    "ServiceType",
    "SessionClosed",
    "SpreadAddress",
    "SpreadConnection",
    "SpreadError",
    "SpreadProtocolError",
    "TransitionalMembership",
    "check_group_name",
    "check_private_name",
    "check_target_group",
    "connect",
    "decode_message",
    "encode_operation",
    "max_payload",
    "parse_address",
]
