"""Exceptions of the Spread client, one class per thing that can go wrong.

Every class carries ``code``: the :class:`ResultCode` a libspread user would
have seen for the same failure, so logs from C and Python tools line up.
"""

from __future__ import annotations

from .constants import ResultCode


class SpreadError(Exception):
    """Base class of every error raised by ``dvsd.transport.spread``."""

    code: ResultCode | None = None


class SpreadProtocolError(SpreadError):
    """Bytes that do not follow the Spread wire protocol.

    The codec raises only this for malformed, truncated or garbage input.
    Once the receive side has raised it the stream is out of step and the
    session must be closed. ``code`` is the result a daemon would answer the
    same bytes with where that is a reject (the daemon-side parsers set it),
    else ILLEGAL_MESSAGE.
    """

    def __init__(
        self, message: str, code: ResultCode = ResultCode.ILLEGAL_MESSAGE
    ) -> None:
        super().__init__(message)
        self.code = code


class IllegalSpreadAddress(SpreadError, ValueError):
    """The daemon address string is not ``"<port>"`` or ``"<port>@<host>"``."""

    code = ResultCode.ILLEGAL_SPREAD


class CouldNotConnect(SpreadError):
    """The socket to the daemon could not be opened."""

    code = ResultCode.COULD_NOT_CONNECT


class ConnectTimeout(CouldNotConnect):
    """The connect and handshake did not finish within the caller's timeout."""


class IllegalName(SpreadError, ValueError):
    """A private (user) name the daemon would refuse; checked before connecting."""

    code = ResultCode.REJECT_ILLEGAL_NAME


class IllegalGroup(SpreadError, ValueError):
    """A group name outside 1..31 bytes of 0x24..0x7E (targets may start with ``#``)."""

    code = ResultCode.ILLEGAL_GROUP


class IllegalService(SpreadError, ValueError):
    """A multicast service type that is not exactly one of the six levels."""

    code = ResultCode.ILLEGAL_SERVICE


class IllegalMessage(SpreadError, ValueError):
    """A message field out of range, such as a message type outside int16."""

    code = ResultCode.ILLEGAL_MESSAGE


class MessageTooLong(SpreadError, ValueError):
    """The payload plus 32 bytes per group exceeds the daemon's safe maximum.

    Raised before any byte is sent, so the session stays usable.
    """

    code = ResultCode.MESSAGE_TOO_LONG


class ConnectionLost(SpreadError):
    """The daemon closed the socket or the socket failed; the session is gone."""

    code = ResultCode.CONNECTION_CLOSED


class SessionClosed(SpreadError):
    """The session was closed by this side (``aclose``) and cannot be used."""

    code = ResultCode.ILLEGAL_SESSION


class ConnectionRejected(SpreadError):
    """The daemon (or this client, on the daemon's behalf) refused the session.

    ``code`` holds the daemon's reject code; the subclass names it.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        #: The daemon's code: a :class:`ResultCode` when known, else the raw int.
        self.code = code  # type: ignore[assignment]


class RejectQuota(ConnectionRejected):
    """The daemon already serves its maximum number of sessions (997)."""


class RejectNoName(ConnectionRejected):
    """The daemon did not receive the flags and name length of the connect message."""


class RejectIllegalName(ConnectionRejected):
    """The daemon refused the private name (length or characters)."""


class RejectNotUnique(ConnectionRejected):
    """Another session on this daemon already uses the private name."""


class RejectVersion(ConnectionRejected):
    """The daemon and this client disagree on the protocol version."""


class RejectAuth(ConnectionRejected):
    """Authentication failed: no common method, or the daemon refused the choice."""


_REJECTS: dict[ResultCode, tuple[type[ConnectionRejected], str]] = {
    ResultCode.REJECT_QUOTA: (
        RejectQuota,
        "the daemon already serves its maximum number of sessions",
    ),
    ResultCode.REJECT_NO_NAME: (
        RejectNoName,
        "the daemon did not receive the private name in the connect message",
    ),
    ResultCode.REJECT_ILLEGAL_NAME: (
        RejectIllegalName,
        "the daemon refused the private name as illegal"
        " (length 0..10, bytes 0x24..0x7E)",
    ),
    ResultCode.REJECT_NOT_UNIQUE: (
        RejectNotUnique,
        "another session on this daemon already uses the private name",
    ),
    ResultCode.REJECT_VERSION: (
        RejectVersion,
        "the daemon refused this client's protocol version",
    ),
    ResultCode.REJECT_AUTH: (
        RejectAuth,
        "the daemon refused the authentication",
    ),
}


def rejection_for(code: int, detail: str = "") -> ConnectionRejected:
    """Build the typed error for a reject code read from the daemon.

    An unknown code still gives a :class:`ConnectionRejected` naming the number.
    """
    try:
        result = ResultCode(code)
        cls, sentence = _REJECTS[result]
    except (ValueError, KeyError):
        return ConnectionRejected(
            f"the daemon refused the session with unknown code {code}", code
        )
    message = f"{sentence} ({result.name}, code {int(result)})"
    if detail:
        message = f"{message}: {detail}"
    return cls(message, result)
