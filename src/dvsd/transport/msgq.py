"""The local link between ``dvsctl`` and ``dvsd``: two SysV message queues.

Requests go on the request queue with message type 1.  Replies go on the
reply queue with the *client's pid* as message type, so each ``dvsctl``
receives only its own replies however many run at once.  A reply larger than
the kernel's message limit (``/proc/sys/kernel/msgmax``, 8192 bytes by
default) is cut into numbered chunks and put together again by the client.

The codec part (:func:`encode_client_message`, :func:`split_reply`,
:class:`Reassembler`) is plain functions on bytes; :class:`DaemonQueues`
wraps the queues for the Trio daemon, :class:`ClientQueues` for the blocking
CLI.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import math
import os
import random
import struct
import tempfile
import threading
import time
from typing import Any

import attrs
import msgpack
import structlog
import sysv_ipc
import trio

from dvsd.logsetup import EventLimiter

log = structlog.get_logger("dvsd.msgq")

REQUEST_MTYPE = 1
#: Message type dvsd sends itself to unblock its own receiving thread at exit.
WAKE_MTYPE = 2

#: Low bits of a reply type that hold the client's pid (Linux pid_max <= 2**22).
PID_BITS = 22
PID_MASK = (1 << PID_BITS) - 1
#: The largest message type sysv_ipc takes: it passes types as a C int.
MAX_MTYPE = 2**31 - 1
#: The most requests one client may have in flight under reply types of their
#: own, ``pid | k << 22`` for k in 1..MAX_SLOT, every one below 2**31.
MAX_SLOT = MAX_MTYPE >> PID_BITS

#: Seconds after it was queued that an unread reply counts as abandoned and
#: is removed: a dvsctl reads its reply at once, and the kernel's queue
#: (16 KiB by default) is shared by every client.
REPLY_LIFETIME = 3.0
#: Seconds a full reply queue may go without any chunk being taken before
#: the replies that sat on it that long count as abandoned: a reading
#: dvsctl takes each chunk within milliseconds, and waiting REPLY_LIFETIME
#: for every client that does not read would hold all the others up.
READ_GRACE = 0.5
#: Seconds dvsd waits for room on a full reply queue before dropping a reply;
#: longer than REPLY_LIFETIME, so abandoned replies are swept away meanwhile.
DELIVERY_PATIENCE = 5.0
#: Seconds during which a client that left a reply unread gets no more.
SHUN_TIME = 60.0
#: The longest deadline a request may ask for, in seconds (one day).
MAX_TIMEOUT = 86400.0

# cseq (the client's id for this request), chunk index, chunk count
_CHUNK_HEADER = struct.Struct("!IHH")


class MsgqError(Exception):
    """Bytes on a queue that are not a message of this protocol.

    ``answer_to`` is ``(client, reply_type, cseq)`` when the message said who
    sent it well enough to be answered with the error; else ``None``.
    """

    def __init__(
        self, message: str, answer_to: tuple[int, int, int] | None = None
    ) -> None:
        super().__init__(message)
        self.answer_to = answer_to


class Op(enum.StrEnum):
    REQUEST = "request"
    STATUS = "status"
    WAKE = "wake"


def message_limit() -> int:
    """The kernel's largest SysV message (``msgmax``), 8192 where unreadable."""
    try:
        with open("/proc/sys/kernel/msgmax") as source:
            return int(source.read())
    except (OSError, ValueError):
        return 8192


@attrs.frozen
class ClientMessage:
    """One message from ``dvsctl`` to ``dvsd``.

    ``destinations`` is ``None`` for all nodes, else a list of node ids
    (``[]`` means "this node").  ``timeout`` overrides the configured
    request timeout.  ``reply_type`` is the message type the reply is queued
    under: the client's pid, or ``pid | k << 22`` for the k-th of several
    requests one client has in flight at once (pids stay below 2**22).
    ``sent_at`` is the wall-clock time (``time.time()``) the client sent the
    message, ``None`` when it did not say (dvsctl before this field).
    """

    op: Op
    client: int
    cseq: int
    reply_type: int = 0
    rqst_type: int = 0
    destinations: list[int] | None = None
    params: Any = attrs.field(factory=dict)
    timeout: float | None = None
    sent_at: float | None = None

    def age(self, now: float) -> float:
        """Seconds since the client sent this, at wall-clock time ``now``.

        0 when the client did not say, or when ``now`` is earlier than
        ``sent_at`` (the clock was set back): never a reason to drop it.
        """
        if self.sent_at is None:
            return 0.0
        return max(0.0, now - self.sent_at)


def reply_type_for(client: int, slot: int) -> int:
    """The reply type of a client's request in ``slot``: 0 is the pid alone.

    ValueError beyond :data:`MAX_SLOT`, where the type would not fit a C int.
    """
    if not 0 <= slot <= MAX_SLOT:
        raise ValueError(
            f"one client can have at most {MAX_SLOT} requests in flight under"
            f" reply types of their own; slot {slot} is beyond that"
        )
    return client | slot << PID_BITS


def encode_client_message(message: ClientMessage) -> bytes:
    """The bytes of one client message.

    ValueError for a value msgpack cannot hold, or a reply type that no
    queue message can carry.
    """
    reply_type = message.reply_type or message.client
    if not 0 < reply_type <= MAX_MTYPE:
        raise ValueError(f"reply_type {reply_type} must be in 1..{MAX_MTYPE} (a C int)")
    try:
        return _pack_client_message(message)
    except (OverflowError, TypeError, ValueError) as error:
        raise ValueError(f"request cannot be encoded: {error}") from None


def _pack_client_message(message: ClientMessage) -> bytes:
    return msgpack.packb(
        {
            "op": str(message.op),
            "client": message.client,
            "cseq": message.cseq,
            "reply_type": message.reply_type or message.client,
            "rqst_type": message.rqst_type,
            "destinations": message.destinations,
            "params": message.params,
            "timeout": message.timeout,
            "sent_at": message.sent_at,
        },
        use_bin_type=True,
    )


def decode_client_message(data: bytes) -> ClientMessage:
    """Decode a client message; raises :class:`MsgqError` naming what is wrong."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises several unrelated types
        raise MsgqError(
            f"request is not valid MessagePack: {_unpack_failure(error)}"
        ) from None
    if not isinstance(raw, dict):
        raise MsgqError("request must be a map")
    try:
        op = Op(raw.get("op"))
    except ValueError:
        raise MsgqError(f"unknown op {raw.get('op')!r}") from None
    client, cseq = raw.get("client"), raw.get("cseq")
    for name, value, low, high in (
        ("client", client, 1, PID_MASK),
        ("cseq", cseq, 0, 2**32 - 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise MsgqError(f"{name} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise MsgqError(f"{name} must be in {low}..{high}, got {value}")
    reply_type = raw.get("reply_type") or client
    if (
        isinstance(reply_type, bool)
        or not isinstance(reply_type, int)
        or reply_type <= 0
        or reply_type & PID_MASK != client
    ):
        raise MsgqError(f"reply_type {reply_type!r} does not belong to client {client}")
    if reply_type > MAX_MTYPE:
        # No queue message can carry this type; the pid alone can.
        raise MsgqError(
            f"reply_type {reply_type} must be below 2**31"
            f" (pid | k << {PID_BITS} with k at most {MAX_SLOT})",
            answer_to=(client, client, cseq),
        )
    try:
        return _decode_request_fields(raw, op, client, cseq, reply_type)
    except MsgqError as error:
        raise MsgqError(str(error), answer_to=(client, reply_type, cseq)) from None


#: What msgpack's errors that carry no message of their own mean.
_SILENT_UNPACK_ERRORS = {
    msgpack.FormatError: "a byte that starts no MessagePack value",
    msgpack.StackError: "values nested too deeply",
}


def _unpack_failure(error: Exception) -> str:
    """Name why unpacking failed; some msgpack errors have an empty message."""
    name = type(error).__name__
    if str(error):
        return f"{error} ({name})"
    for kind, meaning in _SILENT_UNPACK_ERRORS.items():
        if isinstance(error, kind):
            return f"{meaning} ({name})"
    return name


def _decode_request_fields(
    raw: dict[Any, Any], op: Op, client: int, cseq: int, reply_type: int
) -> ClientMessage:
    """The rest of a client message, once we know whom to answer."""
    rqst_type = raw.get("rqst_type", 0)
    if isinstance(rqst_type, bool) or not isinstance(rqst_type, int):
        raise MsgqError(f"rqst_type must be an integer, got {rqst_type!r}")
    if op is Op.REQUEST and not 0 < rqst_type <= 0xFFFF:
        raise MsgqError(f"rqst_type must be in 1..65535, got {rqst_type}")
    destinations = raw.get("destinations")
    if destinations is not None and (
        not isinstance(destinations, list)
        or not all(
            isinstance(node, int) and not isinstance(node, bool)
            for node in destinations
        )
    ):
        raise MsgqError("destinations must be null or a list of node ids")
    timeout = raw.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise MsgqError(
            f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:.0f}],"
            f" got {timeout!r}"
        )
    sent_at = raw.get("sent_at")
    if sent_at is not None and (
        isinstance(sent_at, bool)
        or not isinstance(sent_at, int | float)
        or not math.isfinite(sent_at)
    ):
        raise MsgqError(
            f"sent_at must be null or seconds since the epoch, got {sent_at!r}"
        )
    return ClientMessage(
        op=op,
        client=client,
        cseq=cseq,
        reply_type=reply_type,
        rqst_type=rqst_type,
        destinations=destinations,
        params=raw.get("params") or {},
        timeout=timeout,
        sent_at=sent_at,
    )


def split_reply(cseq: int, payload: bytes, limit: int) -> list[bytes]:
    """Cut a reply into queue messages of at most ``limit`` bytes each."""
    room = limit - _CHUNK_HEADER.size
    count = max(1, math.ceil(len(payload) / room))
    if count > 0xFFFF:
        raise MsgqError(f"reply of {len(payload)} bytes needs more than 65535 chunks")
    return [
        _CHUNK_HEADER.pack(cseq, index, count)
        + payload[index * room : (index + 1) * room]
        for index in range(count)
    ]


@attrs.define
class Reassembler:
    """Collects the chunks of one reply; chunks of other requests are ignored.

    A pid can be reused by a later ``dvsctl``, so stale chunks of an earlier
    client with the same pid may still sit on the queue; the ``cseq`` tells
    them apart.
    """

    cseq: int
    _parts: dict[int, bytes] = attrs.field(factory=dict)
    _count: int | None = None

    def feed(self, message: bytes) -> bytes | None:
        """Take one queue message; return the whole reply once complete."""
        if len(message) < _CHUNK_HEADER.size:
            return None
        cseq, index, count = _CHUNK_HEADER.unpack_from(message)
        if cseq != self.cseq or count == 0 or index >= count:
            return None
        if self._count is not None and count != self._count:
            return None
        self._count = count
        self._parts[index] = message[_CHUNK_HEADER.size :]
        if len(self._parts) == count:
            return b"".join(self._parts[i] for i in range(count))
        return None


def open_queue(key: int, mode: int, *, create: bool) -> sysv_ipc.MessageQueue:
    flags = sysv_ipc.IPC_CREAT if create else 0
    # sysv_ipc's own cap (2048 bytes by default) is raised to the kernel's.
    return sysv_ipc.MessageQueue(
        key, flags, mode=mode, max_message_size=message_limit()
    )


class QueuesTaken(Exception):
    """Another dvsd already serves these queues."""


class DaemonQueues:
    """The daemon's side: receive client messages, deliver replies, never block.

    Receiving runs in a worker thread (``msgrcv`` has no non-blocking wait
    that Trio could poll); sending uses ``IPC_NOWAIT`` and backs off while the
    reply queue is full.  Anyone who may write to the queues can put anything
    on them, so nothing a client sends may stop dvsd or hold the reply queue
    for long: stray message types are dropped, only dvsd's own wake message
    (carrying a token only it knows) stops the reader, and replies nobody
    reads are removed after :data:`REPLY_LIFETIME` seconds, or after
    :data:`READ_GRACE` seconds when they fill the queue and nobody reads.
    """

    def __init__(self, request_key: int, reply_key: int, mode: int = 0o660) -> None:
        self._lock = _take_lock(request_key)
        self.requests = open_queue(request_key, mode, create=True)
        self.replies = open_queue(reply_key, mode, create=True)
        for queue in (self.requests, self.replies):
            if queue.mode & 0o777 != mode:
                log.info(
                    "msgq_mode_changed",
                    key=queue.key,
                    was=oct(queue.mode & 0o777),
                    now=oct(mode),
                )
                queue.mode = mode
        self.limit = message_limit()
        self._token = os.urandom(16)
        self._closing = threading.Event()
        #: Reply types with chunks we may have left on the queue, and when
        #: (``time.monotonic``) the latest of them was queued.
        self.pending: dict[int, float] = {}
        #: Reply types swept as abandoned while their delivery was under way:
        #: the rest of that reply is not sent.
        self.abandoned: set[int] = set()
        self._delivering: set[int] = set()
        #: Client pids that left a reply unread, and until when (monotonic)
        #: their further replies are dropped instead of queued: a dvsctl reads
        #: its replies at once, so a pid that did not is stopped or hostile.
        self.not_reading: dict[int, float] = {}
        self._turn = trio.Lock()
        #: Anyone may put junk on the request queue at any rate: its warnings
        #: are limited (flushed by the daemon's sweep, closed at exit).
        self.stray_warnings = EventLimiter(log, "stray_queue_message_dropped")

    def receive_blocking(self) -> bytes | None:
        """Block until a client request arrives; ``None`` once :meth:`wake` ran.

        Messages of any other type are read and dropped, so none can sit on
        the queue and fill it.
        """
        while True:
            try:
                data, mtype = self.requests.receive()
            except sysv_ipc.ExistentialError:
                return None
            if self._closing.is_set():
                return None
            if mtype == REQUEST_MTYPE:
                return data
            if mtype == WAKE_MTYPE and data == self._token:
                return None
            self.stray_warnings.warning(mtype=mtype, size=len(data))

    def wake(self) -> None:
        """Unblock :meth:`receive_blocking` so the daemon can exit."""
        self._closing.set()
        with contextlib.suppress(sysv_ipc.Error):
            self.requests.send(self._token, block=False, type=WAKE_MTYPE)

    async def deliver(
        self, client: int, reply_type: int, cseq: int, payload: bytes
    ) -> bool:
        """Queue one reply under ``reply_type`` for ``client``; False if dropped.

        While the queue is full this waits in short, growing steps (the
        kernel offers no readiness event for SysV queues), first removing
        replies that are abandoned.  It gives up when ``client`` has exited
        or no room appeared for :data:`DELIVERY_PATIENCE` seconds.
        """
        self._delivering.add(reply_type)
        try:
            return await self._deliver(client, reply_type, cseq, payload)
        finally:
            self._delivering.discard(reply_type)
            self.abandoned.discard(reply_type)

    async def _deliver(
        self, client: int, reply_type: int, cseq: int, payload: bytes
    ) -> bool:
        for chunk in split_reply(cseq, payload, self.limit):
            # Deliveries take turns, first come first served, one chunk each:
            # room freed on the queue goes to whoever has waited longest.
            async with self._turn:
                if self._shunned(client):
                    self.purge(reply_type)
                    log.warning(
                        "reply_dropped",
                        client=client,
                        cseq=cseq,
                        reason="client leaves its replies unread",
                    )
                    return False
                if not await self._send_chunk(client, reply_type, cseq, chunk):
                    return False
            self.pending[reply_type] = time.monotonic()
        return True

    async def _send_chunk(
        self, client: int, reply_type: int, cseq: int, chunk: bytes
    ) -> bool:
        """Put one chunk on the queue, waiting for room; False if dropped."""
        waiting_since = time.monotonic()
        pause = 0.001
        # While we wait, the queue's message count falls only when a client
        # takes a chunk or a purge makes room (the turn keeps the other
        # deliveries off): the lowest count seen, and since when, tells how
        # long nobody has read.
        fewest: int | None = None
        fewest_since = waiting_since
        while True:
            try:
                self.replies.send(chunk, block=False, type=reply_type)
            except sysv_ipc.ExistentialError:
                log.error("reply_queue_removed", client=client)
                return False
            except sysv_ipc.BusyError:
                self.sweep()
                now = time.monotonic()
                try:
                    count = self.replies.current_messages
                except sysv_ipc.ExistentialError:
                    log.error("reply_queue_removed", client=client)
                    return False
                if fewest is None or count < fewest:
                    fewest, fewest_since = count, now
                elif now - fewest_since >= READ_GRACE:
                    self.drop_unread(queued_before=now - READ_GRACE)
                    fewest = None
                gone = (
                    not pid_alive(client)
                    or reply_type in self.abandoned
                    or self._shunned(client)
                )
                if gone or time.monotonic() - waiting_since > DELIVERY_PATIENCE:
                    self.purge(reply_type)
                    log.warning(
                        "reply_dropped",
                        client=client,
                        cseq=cseq,
                        reason="client gone or not reading"
                        if gone
                        else "reply queue full",
                    )
                    return False
                await trio.sleep(pause)
                pause = min(pause * 2, 0.05)
            else:
                return True

    def _shunned(self, client: int) -> bool:
        """True while ``client`` is known to leave its replies unread."""
        until = self.not_reading.get(client)
        return until is not None and time.monotonic() < until

    def purge(self, reply_type: int) -> int:
        """Remove every chunk still queued under ``reply_type``; returns how many."""
        removed = 0
        while True:
            try:
                self.replies.receive(block=False, type=reply_type)
            except (sysv_ipc.BusyError, sysv_ipc.ExistentialError):
                break
            removed += 1
        self.pending.pop(reply_type, None)
        return removed

    def sweep(self) -> int:
        """Purge replies whose client exited or left them unread too long."""
        now = time.monotonic()
        removed = 0
        for reply_type, queued in list(self.pending.items()):
            if now - queued <= REPLY_LIFETIME and pid_alive(reply_type & PID_MASK):
                continue
            removed += self._abandon(
                reply_type, now, f"replies left unread for {REPLY_LIFETIME:g} s"
            )
        for pid, until in list(self.not_reading.items()):
            if now > until or not pid_alive(pid):
                del self.not_reading[pid]
        return removed

    def drop_unread(self, queued_before: float) -> int:
        """Purge the replies queued before ``queued_before`` (monotonic).

        For a full queue from which nobody has taken a chunk since then:
        those replies are not being read, and their clients are shunned as
        :meth:`sweep` shuns them.  Returns how many chunks were removed.
        """
        now = time.monotonic()
        removed = 0
        for reply_type, queued in list(self.pending.items()):
            if queued < queued_before:
                removed += self._abandon(
                    reply_type,
                    now,
                    f"replies left unread on a full queue for {READ_GRACE:g} s",
                )
        return removed

    def _abandon(self, reply_type: int, now: float, reason: str) -> int:
        """Purge ``reply_type``; if chunks were left, its client is not reading."""
        left = self.purge(reply_type)
        # Nothing left means the client read every chunk sent so far: it is
        # waiting for the rest, not abandoning the reply.
        if left:
            client = reply_type & PID_MASK
            if not self._shunned(client) and pid_alive(client):
                log.warning(
                    "client_not_reading",
                    client=client,
                    reason=reason,
                    removed=left,
                    shunned_for=SHUN_TIME,
                )
            self.not_reading[client] = now + SHUN_TIME
            if reply_type in self._delivering:
                self.abandoned.add(reply_type)
        return left


def lock_path(request_key: int) -> str:
    """The file a serving dvsd holds locked; it also holds that dvsd's pid."""
    return os.path.join(tempfile.gettempdir(), f"dvsd-msgq-{request_key}.lock")


def _take_lock(request_key: int):
    """Hold the lock file of these queues for as long as this dvsd lives.

    It keeps a second dvsd off the same queues (even one started at the same
    instant), and tells ``dvsctl`` whether a dvsd serves them: the lock is
    released by the kernel whenever the process ends, however it ends.
    """
    path = lock_path(request_key)
    handle = open(path, "a+")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise QueuesTaken(
            f"another dvsd (pid {_pid_in(path)}) already serves request queue"
            f" {request_key} (lock {path})"
        ) from None
    os.chmod(path, 0o644)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _pid_in(path: str) -> int | None:
    try:
        with open(path) as source:
            return int(source.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def serving_daemon(request_key: int) -> int | None:
    """The pid of the dvsd serving ``request_key``, or None if none does."""
    path = lock_path(request_key)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(path) or -1  # held: a dvsd is alive
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: How often a waiting client checks that dvsd is still alive, in seconds.
DAEMON_CHECK_INTERVAL = 0.25


class DaemonUnreachable(Exception):
    """No dvsd serves these queues."""


class ClientQueues:
    """The CLI's side: one request out, one (possibly chunked) reply back."""

    def __init__(self, request_key: int, reply_key: int) -> None:
        try:
            self.requests = open_queue(request_key, 0, create=False)
            self.replies = open_queue(reply_key, 0, create=False)
        except sysv_ipc.ExistentialError:
            raise DaemonUnreachable(
                f"no dvsd queues with keys {request_key}/{reply_key}: is dvsd running?"
            ) from None
        except sysv_ipc.PermissionsError:
            raise DaemonUnreachable(
                f"no permission to use the dvsd queues {request_key}/{reply_key}"
            ) from None
        self.limit = message_limit()
        self.client = os.getpid()
        self.request_key = request_key

    def new_cseq(self) -> int:
        return random.getrandbits(32)

    def exchange(self, message: ClientMessage, wait: float) -> bytes:
        """Send one message and return its whole reply, waiting at most ``wait`` s.

        The message goes out stamped with the time it is sent, so a dvsd
        that reads it too late drops it instead of running it.
        """
        message = attrs.evolve(message, sent_at=time.time())
        data = encode_client_message(message)
        if len(data) > self.limit:
            raise ValueError(
                f"request is {len(data)} bytes; one queue message holds {self.limit}"
            )
        pid = serving_daemon(self.request_key)
        if pid is None:
            raise DaemonUnreachable(
                f"dvsd is not running (nothing holds {lock_path(self.request_key)})"
            )
        reply_type = message.reply_type or self.client
        result: list[bytes] = []
        failure: list[BaseException] = []

        def converse() -> None:
            try:
                self.requests.send(data, block=True, type=REQUEST_MTYPE)
                assembler = Reassembler(message.cseq)
                while True:
                    chunk, _ = self.replies.receive(block=True, type=reply_type)
                    whole = assembler.feed(chunk)
                    if whole is not None:
                        result.append(whole)
                        return
            except BaseException as error:  # handed to the waiting thread
                failure.append(error)

        worker = threading.Thread(target=converse, daemon=True)
        worker.start()
        # Wait in slices so a dvsd that dies meanwhile is noticed at once
        # rather than at the end of the whole wait.
        give_up = time.monotonic() + wait
        while worker.is_alive() and time.monotonic() < give_up:
            worker.join(
                min(DAEMON_CHECK_INTERVAL, max(0.0, give_up - time.monotonic()))
            )
            if worker.is_alive() and serving_daemon(self.request_key) is None:
                raise DaemonUnreachable(
                    f"dvsd (pid {pid}) exited while the request was in flight"
                )
        if failure:
            if isinstance(failure[0], sysv_ipc.ExistentialError):
                raise DaemonUnreachable("the dvsd queues were removed") from None
            raise failure[0]
        if not result:
            raise DaemonUnreachable(f"dvsd did not answer within {wait:.1f} s")
        return result[0]
