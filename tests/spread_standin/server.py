"""The stand-in's I/O: listeners, the session handshake, readers and writers.

One Trio task owns each socket. Handshake reads use non-blocking ``recv`` on
whatever has arrived, exactly as the real daemon does (reference §2, §8.3), so
split or pipelined connect messages fail the same way. All group state lives
in ``StandinState``; its outputs are queued per session in one pass, which
gives every session the same total order.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import socket
import struct
import sys
from collections import deque

import structlog
import trio

from .state import Output, StandinState
from .wire import (
    ALLOWED_AUTH_LIST,
    AUTH_CHOICE_SIZE,
    AUTH_SLOT,
    DAEMON_VERSION,
    HEADER_SIZE,
    MAX_PRIVATE_NAME,
    MAX_SESSION_MESSAGES,
    NAME_SLOT,
    ByteOrder,
    ClientHeader,
    HeaderError,
    ServiceType,
    SessionReply,
    legal_name_bytes,
    parse_client_header,
    private_group_name,
    slot_name,
)

log = structlog.get_logger("spread_standin")

CONNECT_WAIT_SECONDS = 1.0  # the daemon's wait for the connect message (§6)


def _version_number(major: int, minor: int, patch: int) -> int:
    return major * 10000 + minor * 100 + patch


class _Closed(Exception):
    """The session's socket is gone; the caller forgets the session."""


class SessionConnection:
    """One operational session: its socket, queued output, and its tasks."""

    def __init__(self, sock: socket.socket, session_id: int, private_name: bytes):
        self.sock = sock
        self.session_id = session_id
        self.private_name = private_name
        self.outbox: deque[bytes] = deque()
        self.wakeup = trio.Event()
        self.cancel_scope = trio.CancelScope()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cancel_scope.cancel()
            with contextlib.suppress(OSError):
                self.sock.close()


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]


def _try_recv(sock: socket.socket, size: int) -> bytes | None:
    """One non-blocking recv; None stands for the daemon's ``ret < 0``."""
    try:
        return sock.recv(size)
    except OSError:
        return None


class StandinServer:
    """Serves one stand-in daemon on TCP 127.0.0.1:port and /tmp/<port>."""

    def __init__(
        self,
        port: int,
        daemon_name: bytes,
        control_path: str | None = None,
        order: ByteOrder = ByteOrder.LITTLE,
    ) -> None:
        self.requested_port = port
        self.port = port
        self.daemon_name = daemon_name
        self.control_path = control_path
        self.state = StandinState(daemon_name, order)
        self.connections: dict[int, SessionConnection] = {}
        self._accept_lock = trio.Lock()
        self._unix_path: str | None = None
        self._nursery: trio.Nursery | None = None
        # Library version of each session still in its handshake.
        self._library: dict[int, int] = {}

    # -- listening ---------------------------------------------------------

    def _bind_tcp(self) -> socket.socket:
        # Kernel-chosen ports are >= 32768, which Spread cannot use (§1), so
        # port 0 means a random port from 20000..32767 instead.
        port = self.requested_port or random.randrange(20000, 32768)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            listener.close()
            raise
        listener.listen(64)
        listener.setblocking(False)
        return listener

    @staticmethod
    def _bind_unix(path: str) -> socket.socket:
        if os.path.exists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket file from an earlier run
            else:
                raise OSError(errno.EADDRINUSE, f"{path} is served by another process")
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def _bind_session_listeners(self) -> tuple[socket.socket, socket.socket]:
        # Port 0 asks for any free TCP port whose /tmp/<port> is also free.
        for _ in range(50):
            try:
                tcp = self._bind_tcp()
            except OSError:
                if self.requested_port:
                    raise
                continue
            self.port = tcp.getsockname()[1]
            path = f"/tmp/{self.port}"
            try:
                unix = self._bind_unix(path)
            except OSError:
                tcp.close()
                if self.requested_port:
                    raise
                continue
            self._unix_path = path
            return tcp, unix
        raise OSError(errno.EADDRINUSE, "no free port with a free /tmp/<port>")

    async def serve(self, ready=None) -> None:
        """Listen, report ``ready`` with the port, then serve until cancelled."""
        tcp, unix = self._bind_session_listeners()
        control = self._bind_control() if self.control_path else None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._accept_loop, tcp, socket.AF_INET)
                nursery.start_soon(self._accept_loop, unix, socket.AF_UNIX)
                if control is not None:
                    nursery.start_soon(self._control_loop, control)
                log.info("listening", port=self.port, unix=self._unix_path)
                if ready is not None:
                    ready(self.port)
        finally:
            for listener in (tcp, unix, control):
                if listener is not None:
                    listener.close()
            for path in (self._unix_path, self.control_path):
                if path:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    async def _accept_loop(self, listener: socket.socket, family: int) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            sock.setblocking(False)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The daemon stops accepting while it waits for one connect message.
            async with self._accept_lock:
                session_id = await self._read_connect_message(sock)
            if session_id is not None:
                self._nursery.start_soon(self._finish_handshake, sock, session_id)

    # -- handshake ---------------------------------------------------------

    @staticmethod
    def _reject(sock: socket.socket, reply: SessionReply, reason: str) -> None:
        log.info("session_rejected", reply=reply.name, reason=reason)
        with contextlib.suppress(OSError):
            sock.send(reply.to_byte())
        sock.close()

    async def _read_connect_message(self, sock: socket.socket) -> int | None:
        """§2.2: returns the new session's id, or None after a reject/close."""
        if self.state.is_full():
            self._reject(sock, SessionReply.REJECT_QUOTA, "997 sessions already")
            return None
        with trio.move_on_after(CONNECT_WAIT_SECONDS):
            await trio.lowlevel.wait_readable(sock)
        version = _try_recv(sock, 2)
        if version is None:
            log.info("session_closed", reason="no connect message within 1 s")
            sock.close()
            return None
        major, minor = struct.unpack("bb", version.ljust(2, b"\0"))
        patch = 0
        if _version_number(major, minor, 0) > 31400:
            patch_byte = _try_recv(sock, 1)
            if patch_byte is None:
                log.info("session_closed", reason="patch version byte missing")
                sock.close()
                return None
            (patch,) = struct.unpack("b", patch_byte.ljust(1, b"\0"))
        library = _version_number(major, minor, patch)
        if library < 30100:
            self._reject(sock, SessionReply.REJECT_VERSION, f"library {library}")
            return None

        flags_and_length = _try_recv(sock, 2)
        if flags_and_length is None:
            sock.close()
            return None
        if len(flags_and_length) < 2:
            self._reject(sock, SessionReply.REJECT_NO_NAME, "no flags/length bytes")
            return None
        flags, name_len = struct.unpack("bb", flags_and_length)
        # C's (signed char) % 2 == 1: negative flags never ask for membership.
        wants_membership = flags > 0 and flags % 2 == 1
        if not 0 <= name_len <= MAX_PRIVATE_NAME:
            self._reject(sock, SessionReply.REJECT_ILLEGAL_NAME, f"length {name_len}")
            return None

        if name_len == 0:
            while True:
                private_name = f"r{random.randrange(9999)}-{sock.fileno()}".encode()
                if not self.state.name_taken(private_name):
                    break
        else:
            private_name = _try_recv(sock, MAX_PRIVATE_NAME)
            if private_name is None:
                sock.close()
                return None
            if len(private_name) != name_len:
                self._reject(
                    sock,
                    SessionReply.REJECT_ILLEGAL_NAME,
                    f"{len(private_name)} name bytes readable, length says {name_len}",
                )
                return None
            if not legal_name_bytes(private_name):
                self._reject(
                    sock, SessionReply.REJECT_ILLEGAL_NAME, f"name {private_name!r}"
                )
                return None
            if self.state.name_taken(private_name):
                self._reject(
                    sock, SessionReply.REJECT_NOT_UNIQUE, f"name {private_name!r}"
                )
                return None

        session_id = self.state.add_session(private_name, wants_membership)
        self._library[session_id] = library
        if library >= 31600:
            # The daemon writes the length and the list with separate sends.
            with contextlib.suppress(OSError):
                sock.send(bytes([len(ALLOWED_AUTH_LIST)]))
                sock.send(ALLOWED_AUTH_LIST)
        return session_id

    def _deny(self, sock: socket.socket, session_id: int, reason: str) -> None:
        self.state.disconnect(session_id)
        self._reject(sock, SessionReply.REJECT_AUTH, reason)

    async def _finish_handshake(self, sock: socket.socket, session_id: int) -> None:
        library = self._library.pop(session_id)
        if library >= 31600:
            # The real daemon waits without limit here; so do we.
            await trio.lowlevel.wait_readable(sock)
            choice = _try_recv(sock, AUTH_CHOICE_SIZE)
            if choice is None or len(choice) < AUTH_CHOICE_SIZE:
                self._deny(sock, session_id, "auth choice shorter than 90 bytes")
                return
            methods = []
            for slot in range(AUTH_CHOICE_SIZE // AUTH_SLOT):
                if choice[slot * AUTH_SLOT] == 0:
                    break
                methods.append(slot_name(choice[slot * AUTH_SLOT :]))
            if not methods:
                self._deny(sock, session_id, "no auth method chosen")
                return
            refused = [m for m in methods if m != b"NULL"]
            if refused:
                self._deny(sock, session_id, f"auth methods {refused} not allowed")
                return

        private_name = self.state.sessions[session_id].private_name
        group_name = private_group_name(private_name, self.daemon_name)
        items = [
            SessionReply.ACCEPT_SESSION.to_byte(),
            bytes([DAEMON_VERSION[0]]),
            bytes([DAEMON_VERSION[1]]),
        ]
        if library >= 31500:
            items.append(bytes([DAEMON_VERSION[2]]))
        items += [bytes([len(group_name)]), group_name]
        try:
            for item in items:  # one send each, as the daemon does (§8.2)
                await _send_all(sock, item)
        except OSError:
            self.state.disconnect(session_id)
            sock.close()
            return

        connection = SessionConnection(sock, session_id, private_name)
        self.connections[session_id] = connection
        self.state.mark_operational(session_id)
        log.info(
            "session_accepted",
            session=private_name.decode(),
            membership=self.state.sessions[session_id].wants_membership,
        )
        with connection.cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, connection)
                nursery.start_soon(self._reader, connection)

    # -- operational sessions ---------------------------------------------

    def kill(self, session_id: int, reason: str) -> None:
        """Close a session and tell the peers, as the daemon does on any kill."""
        pending = [(session_id, reason)]
        while pending:
            victim, why = pending.pop()
            connection = self.connections.pop(victim, None)
            if connection is None:
                continue
            log.info(
                "session_killed", session=connection.private_name.decode(), reason=why
            )
            connection.close()
            pending += self._dispatch(self.state.disconnect(victim))

    def apply(self, output: Output) -> None:
        """Queue the state's output; kills slow readers like the daemon (§6)."""
        for victim in self._dispatch(output):
            self.kill(*victim)

    def _dispatch(self, output: Output) -> list[tuple[int, str]]:
        overflowing = []
        for session_id, message in output:
            connection = self.connections.get(session_id)
            if connection is None or connection.closed:
                continue
            connection.outbox.append(message)
            connection.wakeup.set()
            if len(connection.outbox) >= MAX_SESSION_MESSAGES:
                overflowing.append((session_id, "1000 messages queued, not reading"))
        return overflowing

    async def _writer(self, connection: SessionConnection) -> None:
        while True:
            while connection.outbox:
                try:
                    await _send_all(connection.sock, connection.outbox[0])
                except OSError as error:
                    self.kill(connection.session_id, f"write failed: {error}")
                    return
                connection.outbox.popleft()
            connection.wakeup = trio.Event()
            await connection.wakeup.wait()

    async def _reader(self, connection: SessionConnection) -> None:
        buffer = bytearray()
        header: ClientHeader | None = None
        while True:
            await trio.lowlevel.wait_readable(connection.sock)
            try:
                chunk = connection.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError as error:
                self.kill(connection.session_id, f"read failed: {error}")
                return
            if not chunk:
                self.kill(connection.session_id, "closed by client")
                return
            buffer += chunk
            while True:
                if header is None:
                    if len(buffer) < HEADER_SIZE:
                        break
                    try:
                        header = parse_client_header(
                            bytes(buffer[:HEADER_SIZE]),
                            private_name=connection.private_name,
                            daemon_name=self.daemon_name,
                        )
                    except HeaderError as error:
                        self.kill(connection.session_id, f"bad header: {error}")
                        return
                    del buffer[:HEADER_SIZE]
                if len(buffer) < header.body_len:
                    break
                groups_len = header.num_groups * NAME_SLOT
                groups_blob = bytes(buffer[:groups_len])
                data = bytes(buffer[groups_len : header.body_len])
                del buffer[: header.body_len]
                current, header = header, None
                if not self._handle(connection, current, groups_blob, data):
                    return

    def _handle(
        self,
        connection: SessionConnection,
        header: ClientHeader,
        groups_blob: bytes,
        data: bytes,
    ) -> bool:
        """Act on one whole client message; False once the session is gone."""
        session_id = connection.session_id
        kind = header.service_type
        if kind & ServiceType.KILL_MESS:
            self.kill(session_id, "KILL_MESS")
            return False
        if kind & (ServiceType.JOIN_MESS | ServiceType.LEAVE_MESS):
            if header.num_groups < 1:
                # A real 4.0.0 daemon takes the group name from stale buffer
                # memory here (it joined the group slot of an earlier message
                # when tried); there is nothing faithful to copy, so ignore it.
                return True
            # A full 32-byte name without NUL is used whole, as the daemon does.
            group = slot_name(groups_blob[:NAME_SLOT])
            if kind & ServiceType.JOIN_MESS:
                self.apply(self.state.join(session_id, group))
            else:
                self.apply(self.state.leave(session_id, group))
            return not connection.closed
        self.apply(self.state.multicast(session_id, header, groups_blob, data))
        # Our own copy may have overflowed our queue and killed us (§6).
        return not connection.closed

    # -- control channel ---------------------------------------------------

    def _bind_control(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.control_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.control_path)
        listener.listen(8)
        listener.setblocking(False)
        return listener

    async def _control_loop(self, listener: socket.socket) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            sock.setblocking(False)
            self._nursery.start_soon(self._control_session, sock)

    async def _control_session(self, sock: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                await trio.lowlevel.wait_readable(sock)
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        reply = self.control(line)
                        await _send_all(sock, json.dumps(reply).encode() + b"\n")
        except OSError:
            return
        finally:
            sock.close()

    def control(self, line: bytes) -> dict:
        """Run one JSON control request; the reply says ``ok`` or names the error."""
        try:
            request = json.loads(line)
        except ValueError as error:
            return {"ok": False, "error": f"request is not JSON: {error}"}
        if not isinstance(request, dict) or "op" not in request:
            return {"ok": False, "error": 'request must be an object with an "op"'}
        op = request["op"]
        if op == "status":
            return {"ok": True, "status": self.state.describe()}
        if op == "partition":
            sets = request.get("sets")
            problem = _check_sets(sets)
            if problem:
                return {"ok": False, "error": problem}
            encoded = [[name.encode() for name in names] for names in sets]
            log.info("partition", sets=sets)
            self.apply(
                self.state.reconfigure(
                    encoded, force_transition=bool(request.get("force_transition"))
                )
            )
            return {"ok": True, "status": self.state.describe()}
        if op == "merge":
            log.info("merge")
            self.apply(
                self.state.reconfigure(
                    [[]], force_transition=bool(request.get("force_transition"))
                )
            )
            return {"ok": True, "status": self.state.describe()}
        if op == "kill":
            name = request.get("name")
            if not isinstance(name, str):
                return {"ok": False, "error": '"name" must be a private name string'}
            target = [
                sid
                for sid, conn in self.connections.items()
                if conn.private_name == name.encode()
            ]
            if not target:
                return {"ok": False, "error": f"no operational session named {name!r}"}
            self.kill(target[0], "killed through the control channel")
            return {"ok": True}
        return {
            "ok": False,
            "error": f"unknown op {op!r}; use status, partition, merge or kill",
        }


def _check_sets(sets) -> str | None:
    if not isinstance(sets, list) or not sets:
        return '"sets" must be a non-empty list of lists of private names'
    seen: set[str] = set()
    for names in sets:
        if not isinstance(names, list):
            return f"every set must be a list of private names, got {names!r}"
        for name in names:
            if not isinstance(name, str) or not 1 <= len(name) <= MAX_PRIVATE_NAME:
                return f"private name {name!r} must be a string of 1..10 characters"
            if name in seen:
                return f"private name {name!r} appears in two sets"
            seen.add(name)
    return None


def configure_logging() -> None:
    # stdout carries only the ready line; the log goes to stderr.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
