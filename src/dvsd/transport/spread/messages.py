"""Value classes for everything a Spread client sends or receives.

Operations (client to daemon) validate themselves: a name the daemon would
refuse, a message type outside int16 or a body the daemon cannot survive
cannot be built. Events (daemon to client) are built by the decoder from
whatever the daemon sent and so only check their types.
"""

from __future__ import annotations

import functools
import ipaddress
import sys
from collections.abc import Iterable
from typing import Literal

import attrs

from .constants import (
    NAME_BYTE_MAX,
    NAME_BYTE_MIN,
    PRIVATE_GROUP_PREFIX,
    PROTOCOL_VERSION,
    Limit,
    MembershipReason,
    MessageFlag,
    ResultCode,
    ServiceType,
)
from .errors import (
    IllegalGroup,
    IllegalMessage,
    IllegalName,
    IllegalService,
    MessageTooLong,
)

ByteOrder = Literal["little", "big"]


# -- name rules --------------------------------------------------------------------


def _bad_bytes(name: str, lowest: int) -> list[str]:
    return [repr(ch) for ch in name if not lowest <= ord(ch) <= NAME_BYTE_MAX]


def check_private_name(name: str) -> str:
    """Return ``name`` if the daemon accepts it as a private name, else raise.

    Rule: 0..10 characters, each 0x24 ``$`` .. 0x7E ``~``. An empty name asks
    the daemon to make one up. Raises :class:`IllegalName`.
    """
    if not isinstance(name, str):
        raise IllegalName(f"private name must be a str, got {type(name).__name__}")
    if len(name) > Limit.MAX_PRIVATE_NAME_LEN:
        raise IllegalName(
            f"private name {name!r} has {len(name)} characters;"
            f" the daemon allows 0..{int(Limit.MAX_PRIVATE_NAME_LEN)}"
        )
    bad = _bad_bytes(name, NAME_BYTE_MIN)
    if bad:
        raise IllegalName(
            f"private name {name!r} contains {', '.join(bad)};"
            " allowed are bytes 0x24 '$' .. 0x7E '~' (no space, '!', '\"' or '#')"
        )
    return name


def check_group_name(name: str) -> str:
    """Return ``name`` if it is a legal group to join or leave, else raise.

    Rule: 1..31 characters, each 0x24..0x7E (so never ``#``: private groups
    cannot be joined). The daemon does not check this itself. Raises
    :class:`IllegalGroup`.
    """
    return _check_group(name, NAME_BYTE_MIN, "group name")


@functools.lru_cache(maxsize=1024)
def _check_target_cached(name: str) -> str:
    return _check_group(name, PRIVATE_GROUP_PREFIX, "destination group")


def check_target_group(name: str) -> str:
    """Return ``name`` if it is a legal multicast destination, else raise.

    Like :func:`check_group_name`, but ``#`` is allowed so that private groups
    (``#node.2#localhost``) can be addressed. Raises :class:`IllegalGroup`.
    """
    if not isinstance(name, str):
        raise IllegalGroup(
            f"destination group must be a str, got {type(name).__name__}"
        )
    # Cached: a node multicasts to the same few groups all the time.
    return _check_target_cached(name)


def _check_group(name: str, lowest: int, what: str) -> str:
    if not isinstance(name, str):
        raise IllegalGroup(f"{what} must be a str, got {type(name).__name__}")
    if not 1 <= len(name) <= Limit.MAX_GROUP_NAME_LEN:
        raise IllegalGroup(
            f"{what} {name!r} has {len(name)} characters;"
            f" allowed are 1..{int(Limit.MAX_GROUP_NAME_LEN)}"
        )
    bad = _bad_bytes(name, lowest)
    if bad:
        allowed = "0x24 '$'" if lowest == NAME_BYTE_MIN else "0x23 '#'"
        raise IllegalGroup(
            f"{what} {name!r} contains {', '.join(bad)};"
            f" allowed are bytes {allowed} .. 0x7E '~'"
        )
    return name


def _private_name(_instance: object, _attribute: object, value: str) -> None:
    check_private_name(value)


def _group_name(_instance: object, _attribute: object, value: str) -> None:
    check_group_name(value)


def _to_groups(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise IllegalGroup(
            f"groups must be a str or a list of str, got {type(value).__name__}"
        ) from None


def _to_service(value: ServiceType | int) -> ServiceType:
    try:
        return ServiceType(value)
    except ValueError:
        allowed = ", ".join(f"{s.name}={int(s):#x}" for s in ServiceType)
        raise IllegalService(
            f"service type {value!r} is not exactly one of {allowed}"
        ) from None


def _to_payload(value: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise IllegalMessage(f"payload must be bytes, got {type(value).__name__}")
    return bytes(value)


# -- operations (client -> daemon) -------------------------------------------------


@attrs.frozen
class ConnectRequest:
    """The first message of a session: who we are and what we want to see."""

    private_name: str = attrs.field(default="", validator=_private_name)
    #: Deliver group membership messages (and self-leave notices) to this session.
    membership: bool = True
    #: 0 or 1; the 4.0.0 daemon stores it and never uses it.
    priority: int = attrs.field(default=0, validator=attrs.validators.in_((0, 1)))
    #: Library version claimed. Decides what the daemon sends back: the auth
    #: exchange from 3.16.0, the daemon's patch byte from 3.15.0.
    version: tuple[int, int, int] = attrs.field(default=PROTOCOL_VERSION)

    @version.validator
    def _check_version(self, _attribute: object, value: tuple[int, int, int]) -> None:
        if len(value) != 3 or not all(0 <= part <= 255 for part in value):
            raise IllegalMessage(f"version {value!r} must be three ints 0..255")


@attrs.frozen
class Join:
    """Join ``group`` (1..31 bytes, 0x24..0x7E)."""

    group: str = attrs.field(validator=_group_name)


@attrs.frozen
class Leave:
    """Leave ``group``."""

    group: str = attrs.field(validator=_group_name)


@attrs.frozen
class Disconnect:
    """End the session (KILL_MESS); the daemon closes without a reply."""


@attrs.frozen
class Multicast:
    """Send ``payload`` to every member of ``groups`` with one service level.

    ``groups`` may be a str or any iterable of str (at most 100); names that
    start with ``#`` address one session's private group. The wire allows an
    empty list (delivered to nobody), so this class does too. Building one
    whose payload plus 32 bytes per group exceeds ``Limit.MAX_SAFE_BODY``
    raises :class:`MessageTooLong`.
    """

    service_type: ServiceType = attrs.field(converter=_to_service)
    groups: tuple[str, ...] = attrs.field(converter=_to_groups)
    payload: bytes = attrs.field(converter=_to_payload)
    #: Application message type, a signed 16-bit int.
    message_type: int = attrs.field(default=0)
    #: Do not deliver a copy back to the sender.
    self_discard: bool = False

    @groups.validator
    def _check_groups(self, _attribute: object, value: tuple[str, ...]) -> None:
        if len(value) > Limit.MAX_GROUPS_PER_MESSAGE:
            raise IllegalGroup(
                f"{len(value)} destination groups;"
                f" the daemon allows at most {int(Limit.MAX_GROUPS_PER_MESSAGE)}"
            )
        for group in value:
            check_target_group(group)

    @message_type.validator
    def _check_message_type(self, _attribute: object, value: int) -> None:
        if not isinstance(value, int) or not -0x8000 <= value <= 0x7FFF:
            raise IllegalMessage(
                f"message_type {value!r} must be an int in -32768..32767 (int16)"
            )

    def __attrs_post_init__(self) -> None:
        body = len(self.payload) + Limit.GROUP_NAME_SLOT * len(self.groups)
        if body > Limit.MAX_SAFE_BODY:
            raise MessageTooLong(
                f"payload of {len(self.payload)} bytes to {len(self.groups)}"
                f" group(s) makes {body} bytes of groups + data; a 4.0.0 daemon"
                f" survives at most {int(Limit.MAX_SAFE_BODY)}"
                f" (so at most {Limit.MAX_SAFE_BODY - 32 * len(self.groups)}"
                " payload bytes here)"
            )


Operation = Join | Leave | Disconnect | Multicast


# -- events (daemon -> client) -----------------------------------------------------


@attrs.frozen
class AuthMethodsOffered:
    """Handshake step: the daemon lists the authentication methods it allows."""

    methods: tuple[str, ...]


@attrs.frozen
class SessionAccepted:
    """Handshake end: the session is open."""

    daemon_version: tuple[int, int, int]
    #: ``#<private name>#<daemon name>``; the address of this session.
    private_group: str


@attrs.frozen
class SessionRejected:
    """Handshake end: the daemon (or the client, on its behalf) refused the session.

    ``code`` is the signed reject code; ``local`` is true when the client
    decided on its own (for example no common authentication method).
    """

    code: int
    local: bool = False
    detail: str = ""

    @property
    def result(self) -> ResultCode | None:
        """``code`` as a :class:`ResultCode`; None for a code Spread does not define."""
        try:
            return ResultCode(self.code)
        except ValueError:
            return None


HandshakeEvent = AuthMethodsOffered | SessionAccepted | SessionRejected


@attrs.frozen
class GroupId:
    """Identity of one group view: (daemon membership id, its time, change index).

    Group ids repeat when a group is emptied and created again; compare them
    only together with the group name and within the group's lifetime.
    """

    #: IPv4 address (as an unsigned int) of the daemon that formed the daemon
    #: membership.
    proc_id: int
    #: Unix time at which that daemon membership formed.
    time: int
    #: Per-group change counter: 1 at creation or after a network change, +1
    #: on each join, leave or disconnect.
    index: int

    @property
    def daemon_address(self) -> ipaddress.IPv4Address:
        """``proc_id`` as an address."""
        return ipaddress.IPv4Address(self.proc_id)


@attrs.frozen
class RegularMessage:
    """A data message delivered to this session."""

    #: The sender's private group (``#name#daemon``).
    sender: str
    #: The sender's destination list, verbatim and in its order.
    groups: tuple[str, ...]
    service_type: ServiceType
    #: Application message type, sign-extended from 16 bits.
    message_type: int
    payload: bytes
    #: Byte order the sender wrote its header in (from the hint's marker).
    sender_byteorder: ByteOrder = "little"
    #: The sender asked not to get its own copy.
    self_discard: bool = False

    @property
    def endian_mismatch(self) -> bool:
        """True if the sender's byte order differs from this host's (C API sense)."""
        return self.sender_byteorder != sys.byteorder


@attrs.frozen
class MembershipMessage:
    """A regular membership view of ``group`` after a change.

    ``members`` are the private groups of the members after the change, in
    the order every member sees (daemon order, then name). For JOIN, LEAVE
    and DISCONNECT there is one virtual-synchrony set holding the member that
    changed (``changed_member``); for NETWORK there is one set per group of
    members that arrived together, and ``my_vs_set_index`` names the one that
    holds this session's daemon.
    """

    group: str
    group_id: GroupId
    members: tuple[str, ...]
    reason: MembershipReason
    #: The member that joined, left or disconnected; None for NETWORK.
    changed_member: str | None
    vs_sets: tuple[tuple[str, ...], ...]
    #: Index into ``vs_sets`` of the set the daemon marked as this session's;
    #: None only if the daemon sent no sets.
    my_vs_set_index: int | None

    @property
    def my_vs_set(self) -> tuple[str, ...]:
        """The virtual-synchrony set the daemon marked as ours (empty if none)."""
        if self.my_vs_set_index is None:
            return ()
        return self.vs_sets[self.my_vs_set_index]


@attrs.frozen
class TransitionalMembership:
    """Signal: messages until the next membership of ``group`` are transitional.

    ``group_id`` is the id of the previous regular view.
    """

    group: str
    group_id: GroupId


@attrs.frozen
class SelfLeave:
    """This session's own leave of ``group`` has taken effect."""

    group: str


@attrs.frozen
class RejectedMessage:
    """The daemon refused one of our operations (access-control policy).

    Not reachable with the default PERMIT policy; decoded defensively.
    ``original_type`` holds the refused message's type bits (a join or leave
    shows as CAUSED_BY_JOIN or CAUSED_BY_LEAVE). ``groups`` has our own
    private group appended by the daemon.
    """

    sender: str
    groups: tuple[str, ...]
    original_type: int
    message_type: int
    payload: bytes
    sender_byteorder: ByteOrder = "little"

    @property
    def service_type(self) -> ServiceType | None:
        """The refused multicast's service level, or None for a join or leave."""
        bits = self.original_type & 0x3F
        try:
            return ServiceType(bits)
        except ValueError:
            return None

    @property
    def flags(self) -> MessageFlag:
        """``original_type`` as flags."""
        return MessageFlag(self.original_type & ~0x8000_0080 & 0xFFFF_FFFF)


Event = (
    RegularMessage
    | MembershipMessage
    | TransitionalMembership
    | SelfLeave
    | RejectedMessage
)
