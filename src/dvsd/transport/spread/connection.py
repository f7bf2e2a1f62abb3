"""Trio session with a local Spread 4.0 daemon, on top of the sans-IO codec.

One :class:`SpreadConnection` owns one socket. Any number of tasks may send
(join, leave, multicast) at the same time; one task at a time may receive.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import attrs
import structlog
import trio

from .codec import Handshake, MessageDecoder, encode_operation
from .constants import DEFAULT_PORT, Limit, MembershipReason, ServiceType
from .errors import (
    ConnectionLost,
    ConnectTimeout,
    CouldNotConnect,
    IllegalGroup,
    IllegalSpreadAddress,
    SessionClosed,
    SpreadProtocolError,
    rejection_for,
)
from .messages import (
    AuthMethodsOffered,
    ConnectRequest,
    Disconnect,
    Event,
    Join,
    Leave,
    MembershipMessage,
    Multicast,
    Operation,
    SelfLeave,
    SessionAccepted,
    SessionRejected,
)

log = structlog.get_logger("dvsd.transport.spread")

#: Read size; a little above the largest message so one read usually holds it.
_RECEIVE_SIZE = 256 * 1024

#: Where the daemon puts its unix socket for ``"<port>"`` addresses.
UNIX_SOCKET_DIRECTORY = "/tmp"


@attrs.frozen
class SpreadAddress:
    """A parsed daemon address: a TCP ``host`` and ``port``, or a unix socket."""

    port: int
    #: None means the unix socket ``/tmp/<port>``.
    host: str | None = None

    @property
    def unix_path(self) -> str:
        """Path of the daemon's unix socket for this port."""
        return f"{UNIX_SOCKET_DIRECTORY}/{self.port}"

    def __str__(self) -> str:
        return f"{self.port}@{self.host}" if self.host is not None else str(self.port)


def parse_address(address: str) -> SpreadAddress:
    """Parse a libspread daemon name: ``"4803"`` (unix socket) or ``"4803@host"`` (TCP).

    ``""`` means the default port over the unix socket. Raises
    :class:`IllegalSpreadAddress` naming what is wrong.
    """
    if not isinstance(address, str):
        raise IllegalSpreadAddress(f"address must be a str, got {address!r}")
    if address == "":
        return SpreadAddress(DEFAULT_PORT)
    if any(ch.isspace() for ch in address):
        raise IllegalSpreadAddress(f"address {address!r} contains white space")
    port_text, at, host = address.partition("@")
    if at and not host:
        raise IllegalSpreadAddress(f"address {address!r} has no host after '@'")
    if not port_text.isdigit() or not port_text.isascii():
        raise IllegalSpreadAddress(
            f"address {address!r}: port {port_text!r} is not a decimal number"
            " (forms: '<port>' for the unix socket, '<port>@<host>' for TCP)"
        )
    port = int(port_text)
    if not 0 < port < Limit.PORT_LIMIT:
        raise IllegalSpreadAddress(
            f"address {address!r}: port {port} outside 1..{Limit.PORT_LIMIT - 1}"
            " (the daemon keeps its port in a signed 16-bit variable)"
        )
    return SpreadAddress(port, host if at else None)


async def connect(
    address: str = "",
    *,
    name: str = "",
    membership: bool = True,
    timeout: float = 5.0,
    send_timeout: float = 30.0,
) -> SpreadConnection:
    """Open a session with the daemon at ``address`` using NULL authentication.

    ``name`` is the private name (0..10 bytes of 0x24..0x7E; empty lets the
    daemon pick one). ``membership=False`` turns off membership messages.
    The socket connect and the whole handshake must finish within
    ``timeout`` seconds, else :class:`ConnectTimeout`. ``send_timeout``
    bounds how long one send may wait for a daemon that stopped reading
    before the session is declared lost.

    Raises :class:`IllegalSpreadAddress`, :class:`IllegalName`,
    :class:`CouldNotConnect` (or :class:`ConnectTimeout`), a
    :class:`ConnectionRejected` subclass for each daemon refusal, or
    :class:`ConnectionLost` if the daemon closes without a word (for
    example when the connect message arrived after its 1-second window).
    """
    parsed = parse_address(address)
    request = ConnectRequest(name, membership=membership)
    logger = log.bind(address=str(parsed), private_name=name)
    try:
        with trio.fail_after(timeout):
            stream = await _open_stream(parsed)
            try:
                handshake = Handshake(request)
                accepted = await _run_handshake(stream, handshake)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
                raise
    except trio.TooSlowError:
        raise ConnectTimeout(
            f"no session with the daemon at {parsed} within {timeout} s"
        ) from None
    connection = SpreadConnection(
        stream,
        address=parsed,
        private_group=accepted.private_group,
        daemon_version=accepted.daemon_version,
        membership=membership,
        initial_data=handshake.trailing_data,
        send_timeout=send_timeout,
    )
    logger.info(
        "spread.connected",
        private_group=accepted.private_group,
        daemon_version=".".join(map(str, accepted.daemon_version)),
    )
    return connection


async def _open_stream(address: SpreadAddress) -> trio.abc.Stream:
    try:
        if address.host is None:
            return await trio.open_unix_socket(address.unix_path)
        # Trio's TCP streams already set TCP_NODELAY.
        return await trio.open_tcp_stream(address.host, address.port)
    except OSError as exc:
        where = address.unix_path if address.host is None else str(address)
        raise CouldNotConnect(
            f"could not connect to the Spread daemon at {where}: {exc.strerror or exc}"
        ) from exc


async def _run_handshake(
    stream: trio.abc.Stream, handshake: Handshake
) -> SessionAccepted:
    # The daemon gives the connect message 1 s and reads it with a single
    # read, so it goes out in one write before anything else.
    await stream.send_all(handshake.connect_message())
    while True:
        event = handshake.next_event()
        if event is None:
            try:
                data = await stream.receive_some(_RECEIVE_SIZE)
            except trio.BrokenResourceError as exc:
                raise ConnectionLost(
                    f"the daemon reset the connection during the handshake ({exc})"
                ) from exc
            if not data:
                raise ConnectionLost(
                    "the daemon closed the connection during the handshake"
                    f" (at step {handshake.state.value!r}) without a reject code"
                )
            handshake.receive_data(data)
        elif isinstance(event, AuthMethodsOffered):
            # Only now: a pipelined auth choice would be read as part of the
            # private name and refused.
            await stream.send_all(handshake.auth_choice())
        elif isinstance(event, SessionRejected):
            raise rejection_for(event.code, event.detail)
        else:
            return event


class SpreadConnection:
    """An open session with a Spread daemon.

    Sends are serialised by a lock and each message is written under a
    cancel shield, so cancelling a sender never leaves half a message on the
    socket; the shield has its own deadline (``send_timeout``) so a daemon
    that stops reading cannot hang a task for ever. Once the socket fails,
    every call raises :class:`ConnectionLost`; after :meth:`aclose`, every
    call raises :class:`SessionClosed`.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        address: SpreadAddress,
        private_group: str,
        daemon_version: tuple[int, int, int],
        membership: bool = True,
        initial_data: bytes = b"",
        send_timeout: float = 30.0,
    ) -> None:
        self._stream = stream
        self.address = address
        #: This session's own group: ``#<private name>#<daemon name>``.
        self.private_group = private_group
        self.daemon_version = daemon_version
        #: Whether the daemon sends membership messages to this session.
        self.membership = membership
        self._decoder = MessageDecoder(initial_data)
        self._send_lock = trio.Lock()
        self._send_timeout = send_timeout
        self._receiving = False
        self._closed = False
        self._lost: ConnectionLost | None = None
        self._log = log.bind(address=str(address), private_group=private_group)

    @property
    def private_name(self) -> str:
        """The private name part of :attr:`private_group`."""
        return self.private_group.split("#")[1]

    @property
    def daemon_name(self) -> str:
        """The daemon's name part of :attr:`private_group`."""
        return self.private_group.split("#")[2]

    @property
    def closed(self) -> bool:
        """True once the session was closed here or lost."""
        return self._closed or self._lost is not None

    # -- sending ---------------------------------------------------------------------

    async def join(self, group: str) -> None:
        """Ask to join ``group``; the daemon confirms with a membership message."""
        await self._send(Join(group))
        self._log.debug("spread.join_sent", group=group)

    async def leave(self, group: str) -> None:
        """Ask to leave ``group``; the daemon confirms with :class:`SelfLeave`."""
        await self._send(Leave(group))
        self._log.debug("spread.leave_sent", group=group)

    async def multicast(
        self,
        service_type: ServiceType | int,
        groups: str | Iterable[str],
        payload: bytes,
        *,
        message_type: int = 0,
        self_discard: bool = False,
    ) -> None:
        """Send ``payload`` to one or more groups (private groups allowed).

        Everything is checked before a byte is written: an illegal group or
        service type, a message type outside int16, or a payload above
        :func:`~dvsd.transport.spread.constants.max_payload` raise a typed
        error and leave the session untouched.
        """
        operation = Multicast(
            service_type,
            groups,
            payload,
            message_type=message_type,
            self_discard=self_discard,
        )
        if not operation.groups:
            raise IllegalGroup("multicast needs at least one destination group")
        await self._send(operation)

    async def _send(self, operation: Operation) -> None:
        self._check_usable()
        data = encode_operation(operation, self.private_group)
        async with self._send_lock:
            self._check_usable()
            # Once the first byte may be out, the rest must follow whatever
            # happens to the caller; the deadline stops a stuck daemon from
            # holding us here for ever.
            with trio.CancelScope(shield=True) as shield:
                shield.deadline = trio.current_time() + self._send_timeout
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise self._lose(f"sending failed: {exc}") from exc
            if shield.cancelled_caught:
                await trio.aclose_forcefully(self._stream)
                raise self._lose(
                    f"the daemon did not take a {len(data)}-byte message"
                    f" within {self._send_timeout} s"
                )

    # -- receiving -------------------------------------------------------------------

    async def receive(self) -> Event:
        """Wait for the next message or membership event.

        Raises :class:`ConnectionLost` if the daemon goes away (also in the
        middle of a message) and :class:`SessionClosed` after :meth:`aclose`.
        Only one task may receive at a time (:class:`trio.BusyResourceError`).
        Cancelling a receive loses nothing.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving")
        self._receiving = True
        try:
            while True:
                self._check_usable()
                try:
                    event = self._decoder.next_event()
                except SpreadProtocolError as exc:
                    await trio.aclose_forcefully(self._stream)
                    raise self._lose(f"the daemon sent malformed bytes: {exc}") from exc
                if event is not None:
                    self._note_state_change(event)
                    return event
                try:
                    data = await self._stream.receive_some(_RECEIVE_SIZE)
                except trio.ClosedResourceError:
                    self._check_usable()
                    raise
                except trio.BrokenResourceError as exc:
                    raise self._lose(f"receiving failed: {exc}") from exc
                if not data:
                    self._check_usable()
                    partial = self._decoder.buffered
                    detail = (
                        f" in the middle of a message ({partial} bytes)"
                        if partial
                        else ""
                    )
                    raise self._lose(f"the daemon closed the connection{detail}")
                self._decoder.receive_data(data)
        finally:
            self._receiving = False

    def __aiter__(self) -> SpreadConnection:
        return self

    async def __anext__(self) -> Event:
        """Next event; iteration ends when this side closes the session."""
        try:
            return await self.receive()
        except SessionClosed:
            raise StopAsyncIteration from None

    # -- closing ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send a disconnect (KILL) if the session is up, then close the socket.

        Idempotent and safe to call while other tasks send or receive: a
        receiving task then gets :class:`SessionClosed` (or its iteration
        ends). The goodbye is best effort and bounded by a short deadline;
        closing the socket alone has the same effect for the other members.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._lost is None:
                with trio.move_on_after(1.0) as scope:
                    scope.shield = True
                    async with self._send_lock:
                        data = encode_operation(Disconnect(), self.private_group)
                        await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(self._stream)
        self._log.info("spread.closed")

    async def __aenter__(self) -> SpreadConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- helpers ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise SessionClosed(f"the session {self.private_group} was closed")
        if self._lost is not None:
            raise ConnectionLost(str(self._lost))

    def _lose(self, reason: str) -> ConnectionLost:
        if self._lost is None:
            self._lost = ConnectionLost(
                f"lost the session {self.private_group} with the daemon at"
                f" {self.address}: {reason}"
            )
            self._log.warning("spread.lost", reason=reason)
        return ConnectionLost(str(self._lost))

    def _note_state_change(self, event: Event) -> None:
        # Our own joins and leaves change this session's state; other
        # members' changes and data messages are not logged (per message).
        if isinstance(event, SelfLeave):
            self._log.info("spread.left", group=event.group)
        elif (
            isinstance(event, MembershipMessage)
            and event.reason is MembershipReason.JOIN
            and event.changed_member == self.private_group
        ):
            self._log.info(
                "spread.joined",
                group=event.group,
                members=len(event.members),
                group_index=event.group_id.index,
            )
