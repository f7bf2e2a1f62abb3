"""A deliberately plain, blocking Spread client for byte-level tests.

It builds and reads the bytes of the reference directly (no codec), so tests
can assert exact bytes against both the stand-in and a real daemon. It is also
what the fixtures use to see that a real daemon is fully up.
"""

from __future__ import annotations

import socket
import struct
import time

import attrs

AUTH_NULL = b"NULL".ljust(90, b"\0")
LE_MARKER = 0x80000080


def slot(name: bytes) -> bytes:
    return name.ljust(32, b"\0")


def hint_for(message_type: int, order: str = "<") -> bytes:
    marker = LE_MARKER if order == "<" else 0
    return struct.pack(order + "I", ((message_type & 0xFFFF) << 8) | marker)


def client_message(
    service_type: int,
    sender: bytes,
    groups: list[bytes],
    data: bytes = b"",
    *,
    message_type: int = 0,
    order: str = "<",
    hint: bytes | None = None,
) -> bytes:
    """One client message in the given order, the marker set for LE (§3.3)."""
    marker = LE_MARKER if order == "<" else 0
    head = struct.pack(
        order + "I32si", service_type | marker, slot(sender), len(groups)
    )
    head += hint if hint is not None else hint_for(message_type, order)
    head += struct.pack(order + "i", len(data))
    return head + b"".join(slot(g) for g in groups) + data


@attrs.frozen
class RawMessage:
    """One message as received: the exact bytes plus a decoded view."""

    raw: bytes
    service_type: int
    sender: bytes
    groups: list[bytes]
    hint: bytes
    data: bytes

    @property
    def header(self) -> bytes:
        return self.raw[:48]


class RawSession:
    """A connected socket with exact-length reads and clear timeouts."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.private_group: bytes | None = None

    @classmethod
    def open(cls, address: str | tuple[str, int], timeout: float = 10.0) -> RawSession:
        if isinstance(address, tuple):
            sock = socket.create_connection(address, timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address)
        return cls(sock, timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, size: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        data = b""
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(data)} of {size} bytes: {data!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError(f"EOF after {len(data)} of {size} bytes: {data!r}")
            data += chunk
        return data

    def handshake(self, name: bytes, flags: int = 1) -> bytes:
        """Full 4.0.0 NULL-auth handshake; returns everything the daemon sent."""
        self.send(bytes([4, 0, 0, flags, len(name)]) + name)
        length = self.recv_exact(1)
        if length[0] >= 0x80:
            return length
        methods = self.recv_exact(length[0])
        self.send(AUTH_NULL)
        accept = self.recv_exact(1)
        if accept != b"\x01":
            return length + methods + accept
        version_and_len = self.recv_exact(4)
        group = self.recv_exact(version_and_len[3])
        self.private_group = group
        return length + methods + accept + version_and_len + group

    def recv_message(self) -> RawMessage:
        header = self.recv_exact(48)
        order = "<" if header[0] & 0x80 else ">"
        service_type, sender, num_groups, _, data_len = struct.unpack(
            order + "I32siIi", header
        )
        extra = self.recv_exact(4) if service_type & 0x00400000 else b""
        groups_blob = self.recv_exact(32 * num_groups)
        data = self.recv_exact(data_len)
        return RawMessage(
            raw=header + extra + groups_blob + data,
            service_type=service_type & ~LE_MARKER & 0xFFFFFFFF,
            sender=sender.split(b"\0", 1)[0],
            groups=[
                groups_blob[i : i + 32].split(b"\0", 1)[0]
                for i in range(0, len(groups_blob), 32)
            ],
            hint=header[40:44],
            data=data,
        )

    def closed_by_peer(self) -> bool:
        """True when the next read sees EOF or a reset within the timeout."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True
        return False

    def join(self, group: bytes) -> None:
        self.send(client_message(0x00010000, self.private_group, [group]))

    def leave(self, group: bytes) -> None:
        self.send(client_message(0x00020000, self.private_group, [group]))

    def kill(self) -> None:
        self.send(client_message(0x00040000, self.private_group, [self.private_group]))

    def close(self) -> None:
        self.sock.close()
