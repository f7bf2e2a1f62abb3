"""dvsd: one Trio program, one nursery, three jobs.

* intake: client messages from the SysV request queue, one task each;
* the group session (Spread or single-node): requests and replies from the
  other nodes, membership views, reconnection with backoff;
* aggregation: each request in flight waits, with its own deadline, for the
  replies of the nodes that were members when it was delivered.

No lock is held across a request: many run at once, from many clients.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import msgpack
import structlog
import trio

from dvsd import config as config_module
from dvsd import logsetup
from dvsd.aggregator import Aggregation, NodeResult
from dvsd.registry import (
    MAX_REPLY_BYTES,
    REGISTRY,
    HandlerContext,
    Registry,
    Reply,
    View,
    execute,
    load_handlers,
    unstructure_items,
)
from dvsd.rqst import ReturnCode, request_type_name
from dvsd.transport.group import (
    GroupEvent,
    GroupSession,
    NodeIdTaken,
    SessionLost,
    Transitional,
    ViewChanged,
)
from dvsd.transport.msgq import (
    ClientMessage,
    DaemonQueues,
    MsgqError,
    Op,
    QueuesTaken,
    decode_client_message,
    pid_alive,
)
from dvsd.wire import (
    Kind,
    ReplyFlag,
    RequestFlag,
    RequestId,
    WireError,
    WireReply,
    WireRequest,
    decode,
    encode_reply,
    encode_request,
)

#: How many executed request ids each node remembers to refuse duplicates.
DEDUP_MEMORY = 65536
#: How often the reply queue is swept of chunks left for exited clients.
SWEEP_INTERVAL = 10.0

SessionOpener = Callable[[], Awaitable[GroupSession]]


class QueueLost(Exception):
    """The request queue went away under the daemon."""


@attrs.define
class Daemon:
    """The state of one dvsd and the tasks that change it."""

    config: config_module.Config
    kernel: Any
    registry: Registry = REGISTRY
    open_session: SessionOpener | None = None
    incarnation: int = attrs.field(factory=lambda: random.getrandbits(32))
    log: Any = None

    session: GroupSession | None = None
    gcs_state: str = "connecting"
    #: Why the session is not connected (the daemon's refusal, the error).
    gcs_detail: str = ""
    view: View = View()
    members: dict[int, str] = attrs.field(factory=dict)
    in_flight: dict[tuple[int, int], Aggregation] = attrs.field(factory=dict)
    executed: collections.OrderedDict = attrs.field(factory=collections.OrderedDict)
    #: The membership layer (:class:`dvsd.membership.Membership`), if any:
    #: told of every view, transitional signal and session loss, in order.
    membership: Any = None
    limiter: trio.CapacityLimiter = attrs.field(init=False)
    #: Malformed client messages come at whatever rate a writer sends them.
    rejections: logsetup.EventLimiter = attrs.field(init=False)
    _seq: Any = attrs.field(factory=lambda: itertools.count(1))
    _nursery: trio.Nursery | None = None

    def __attrs_post_init__(self) -> None:
        self.limiter = trio.CapacityLimiter(self.config.requests.concurrency)
        if self.log is None:
            self.log = structlog.get_logger("dvsd").bind(node=self.config.node_id)
        self.rejections = logsetup.EventLimiter(self.log, "client_message_rejected")
        if self.open_session is None:
            self.open_session = default_session_opener(self.config, self.incarnation)

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def transport_name(self) -> str:
        return self.config.gcs.transport.value

    # -- the tasks ---------------------------------------------------------

    async def run(
        self,
        queues: DaemonQueues | None = None,
        *,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until cancelled.  ``task_status.started()`` once serving clients."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.membership is not None:
                await nursery.start(self.membership.run)
            nursery.start_soon(self.gcs_loop)
            if threading.current_thread() is threading.main_thread():
                nursery.start_soon(self.stop_on_signal, nursery.cancel_scope)
            if queues is not None:
                nursery.start_soon(self.intake, queues)
                nursery.start_soon(self.sweep_replies, queues)
            self.log.info(
                "dvsd_started",
                incarnation=self.incarnation,
                transport=self.transport_name,
                kernel=getattr(self.kernel, "backend_name", "none"),
            )
            task_status.started()

    async def stop_on_signal(self, scope: trio.CancelScope) -> None:
        """SIGTERM or SIGINT ends the daemon cleanly (also when started with ``&``,
        where the shell leaves SIGINT ignored)."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for number in signals:
                self.log.info("dvsd_stopping", signal=signal.Signals(number).name)
                scope.cancel()
                return

    async def intake(self, queues: DaemonQueues) -> None:
        """Read client messages from the request queue; serve each in its own task."""
        try:
            while True:
                data = await trio.to_thread.run_sync(
                    queues.receive_blocking, abandon_on_cancel=True
                )
                if data is None:
                    # Only the queue's removal ends the reader without our
                    # own wake; without its queue this dvsd serves nobody.
                    self.log.error("msgq_removed")
                    raise QueueLost("the request queue was removed while dvsd ran")
                try:
                    message = decode_client_message(data)
                except MsgqError as error:
                    self.rejections.warning(error=str(error))
                    if error.answer_to is not None:
                        self._nursery.start_soon(self.refuse_client, queues, error)
                    continue
                self._nursery.start_soon(self.serve_client, queues, message)
        finally:
            queues.wake()
            # Nothing counted may go unsaid when dvsd stops.
            self.rejections.close()
            queues.stray_warnings.close()

    async def refuse_client(self, queues: DaemonQueues, error: MsgqError) -> None:
        """Answer a malformed client message with the reason, so it need not wait."""
        client, reply_type, cseq = error.answer_to
        await self.answer_unserved(
            queues,
            client,
            reply_type,
            cseq,
            ReturnCode.BAD_REQUEST,
            f"bad request message: {error}",
        )

    async def answer_unserved(
        self,
        queues: DaemonQueues,
        client: int,
        reply_type: int,
        cseq: int,
        rcode: ReturnCode,
        error: str,
    ) -> None:
        """Answer a client message that was not run with ``rcode`` and why."""
        answer = {
            "request": None,
            "rqst_type": 0,
            "seq": 0,
            "rcode": int(rcode),
            "error": error,
            "replies": [],
            "missing": [],
        }
        payload = msgpack.packb(answer, use_bin_type=True)
        await queues.deliver(client, reply_type, cseq, payload)

    async def sweep_replies(self, queues: DaemonQueues) -> None:
        """Every SWEEP_INTERVAL: sweep the reply queue, report counted junk."""
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            self.rejections.flush()
            queues.stray_warnings.flush()
            removed = queues.sweep()
            if removed:
                self.log.info("reply_chunks_swept", removed=removed)

    async def serve_client(self, queues: DaemonQueues, message: ClientMessage) -> None:
        """Answer one client; a failure here is logged, never fatal to the daemon."""
        try:
            await self._serve_client(queues, message)
        except Exception as error:  # noqa: BLE001 - one client must not stop the rest
            self.log.exception(
                "client_serve_failed", client=message.client, error=repr(error)
            )

    async def _serve_client(self, queues: DaemonQueues, message: ClientMessage) -> None:
        timeout = message.timeout or self.config.requests.timeout
        age = message.age(time.time())
        stale = stale_reason(message, timeout, age)
        if stale is not None:
            self.log.warning(
                "request_stale_dropped",
                client=message.client,
                cseq=message.cseq,
                rqst=request_type_name(message.rqst_type)
                if message.op is Op.REQUEST
                else str(message.op),
                reason=stale,
                age=round(age, 3),
                timeout=timeout,
            )
            if stale == "deadline passed":
                await self.answer_unserved(
                    queues,
                    message.client,
                    message.reply_type,
                    message.cseq,
                    ReturnCode.TIMEOUT,
                    f"the request waited {age:.1f} s for dvsd, past its"
                    f" {timeout:g} s timeout: it was not run",
                )
            return
        if message.op is Op.STATUS:
            answer = self.status()
        else:
            destinations = message.destinations
            if destinations == []:
                destinations = [self.node_id]
            # The nodes get the time the client has left, not the whole timeout.
            answer = await self.submit(
                message.rqst_type, message.params, destinations, timeout - age
            )
        payload = msgpack.packb(answer, use_bin_type=True)
        await queues.deliver(message.client, message.reply_type, message.cseq, payload)

    async def gcs_loop(self) -> None:
        """Keep a session with the group; on loss, fail what is in flight, retry."""
        pause = self.config.gcs.reconnect_min
        while True:
            try:
                session = await self.open_session()
            except Exception as error:  # noqa: BLE001 - every failure is retried
                self._set_gcs_state("unreachable", str(error) or repr(error))
                await trio.sleep(pause)
                pause = min(pause * 2, self.config.gcs.reconnect_max)
                continue
            pause = self.config.gcs.reconnect_min
            self.session = session
            self._set_gcs_state("connected", session.private_group)
            try:
                while True:
                    event = await session.receive()
                    if isinstance(event, SessionLost):
                        self._set_gcs_state("lost", event.reason)
                        break
                    self.handle_event(event)
            finally:
                self.session = None
                self._session_gone()
                # The session is already gone; closing it cannot fail usefully.
                with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await session.aclose()

    def _set_gcs_state(self, state: str, detail: str = "") -> None:
        """Record and log a change of the session's state (repeats are not logged)."""
        if (state, detail) == (self.gcs_state, self.gcs_detail):
            return
        self.gcs_state, self.gcs_detail = state, detail
        emit = self.log.info if state == "connected" else self.log.warning
        emit("gcs_state", state=state, detail=detail, transport=self.transport_name)

    def _session_gone(self) -> None:
        for aggregation in list(self.in_flight.values()):
            aggregation.fail(
                ReturnCode.GCS_DOWN,
                f"the {self.transport_name} session of node {self.node_id} was lost"
                " while the request was in flight",
            )
        self.view = View()
        self.members = {}
        if self.membership is not None:
            self.membership.on_session_lost()

    # -- events from the group ---------------------------------------------

    def handle_event(self, event: GroupEvent) -> None:
        if isinstance(event, ViewChanged):
            self.on_view(event)
        elif isinstance(event, Transitional):
            self.log.info("view_transitional", view=event.view_id)
            if self.membership is not None:
                self.membership.on_transitional(event)
        else:
            self.on_message(event.sender, event.message_type, event.payload)

    def on_view(self, event: ViewChanged) -> None:
        previous = self.view
        self.members = dict(event.members)
        self.view = View(members=frozenset(event.members), view_id=event.view_id)
        self.log.info(
            "view_changed",
            view=event.view_id,
            reason=event.reason.value,
            members=sorted(event.members),
            changed=list(event.changed),
        )
        for aggregation in self.in_flight.values():
            gone = aggregation.view_changed(self.view.members, event.reason.value)
            if gone:
                self.log.info(
                    "nodes_left_request",
                    seq=aggregation.id.seq,
                    rqst=request_type_name(aggregation.rqst_type),
                    nodes=gone,
                )
        if self.membership is not None:
            self.membership.on_view(event, previous)

    def on_message(self, sender: str, message_type: int, payload: bytes) -> None:
        try:
            message = decode(payload)
        except WireError as error:
            self.log.warning("wire_message_rejected", sender=sender, error=str(error))
            return
        if isinstance(message, WireRequest):
            self.on_request(sender, message)
        else:
            self.on_reply(message)

    def on_request(self, sender: str, request: WireRequest) -> None:
        key = (request.id.incarnation, request.id.seq)
        if request.id.requester == self.node_id and key in self.in_flight:
            self.in_flight[key].delivered(self.view.members)
        if not request.addressed_to(self.node_id):
            return
        identity = (request.id.requester, request.id.incarnation, request.id.seq)
        if identity in self.executed:
            self.log.info(
                "duplicate_request_ignored",
                requester=request.id.requester,
                seq=request.id.seq,
                rqst=request_type_name(request.rqst_type),
            )
            return
        self.executed[identity] = True
        if len(self.executed) > DEDUP_MEMORY:
            self.executed.popitem(last=False)
        self._nursery.start_soon(self.execute_request, sender, request)

    def on_reply(self, reply: WireReply) -> None:
        if reply.id.requester != self.node_id:
            return
        aggregation = self.in_flight.get((reply.id.incarnation, reply.id.seq))
        if aggregation is None:
            self.log.debug(
                "late_reply_dropped", seq=reply.id.seq, responder=reply.responder
            )
            return
        aggregation.reply(reply)

    # -- executing a request on this node ------------------------------------

    async def execute_request(self, sender: str, request: WireRequest) -> None:
        log = self.log.bind(
            seq=request.id.seq,
            requester=request.id.requester,
            rqst=request_type_name(request.rqst_type),
        )
        log.info("request_started")
        ctx = HandlerContext(
            node_id=self.node_id,
            kernel=self.kernel,
            config=self.config,
            log=log,
            requester=request.id.requester,
            view=self.view,
            deadline=trio.current_time() + request.timeout_ms / 1000,
            request=self.sub_request,
            membership=self.membership,
        )
        # At most [requests] concurrency handlers run at once on this node; the
        # others wait for a turn, and nothing runs past its request's deadline.
        reply = None
        with trio.move_on_at(ctx.deadline):
            async with self.limiter:
                reply = await execute(
                    self.registry, request.rqst_type, request.params, ctx
                )
        if reply is None:
            reply = Reply(
                rcode=ReturnCode.TIMEOUT,
                error=f"node {self.node_id} could not finish before the deadline"
                f" ({self.limiter.borrowed_tokens} requests were running)",
            )
        data = self._encode_reply(request, reply, log)
        log.info("request_done", rcode=reply.rcode)
        session = self.session
        if session is None:
            log.warning("reply_lost", reason="no group session")
            return
        try:
            await session.unicast(sender, data, Kind.REPLY)
        except Exception as error:  # noqa: BLE001 - the session loop reports the loss
            log.warning("reply_send_failed", error=str(error) or repr(error))

    def _encode_reply(self, request: WireRequest, reply: Reply, log: Any) -> bytes:
        def wire(rcode: int, items: list[Any], error: str | None) -> WireReply:
            return WireReply(
                rqst_type=request.rqst_type,
                id=request.id,
                responder=self.node_id,
                rcode=rcode,
                items=items,
                error=error,
                flags=ReplyFlag.TRUNCATED if reply.truncated else ReplyFlag.NONE,
                full_size=reply.full_size or 0,
            )

        try:
            data = encode_reply(
                wire(reply.rcode, unstructure_items(reply.items), reply.error)
            )
        except (WireError, TypeError, ValueError) as error:
            log.error("reply_unencodable", error=str(error))
            return encode_reply(
                wire(ReturnCode.INTERNAL, [], f"reply could not be encoded: {error}")
            )
        if len(data) > MAX_REPLY_BYTES:
            log.warning("reply_too_large", size=len(data))
            return encode_reply(
                wire(
                    ReturnCode.TOO_LARGE,
                    [],
                    f"the reply is {len(data)} bytes; one message holds"
                    f" {MAX_REPLY_BYTES}: ask for less",
                )
            )
        return data

    # -- sending a request ---------------------------------------------------

    async def submit(
        self,
        rqst_type: int,
        params: Any,
        destinations: list[int] | None,
        timeout: float,
        flags: RequestFlag = RequestFlag.NONE,
    ) -> dict[str, Any]:
        """Send one request to the group and gather its answer (never raises)."""
        return (
            await self._submit(rqst_type, params, destinations, timeout, flags)
        ).result()

    async def sub_request(
        self,
        rqst_type: int,
        params: Any,
        nodes: Any = "all",
        timeout: float | None = None,
    ) -> list[NodeResult]:
        """``HandlerContext.request``: a request sent on this node's own behalf."""
        destinations = None if nodes == "all" else sorted(nodes)
        if attrs.has(type(params)):
            params = attrs.asdict(params)
        aggregation = await self._submit(
            rqst_type,
            params,
            destinations,
            timeout or self.config.requests.timeout,
            RequestFlag.INTERNAL,
        )
        return aggregation.node_results()

    async def _submit(
        self,
        rqst_type: int,
        params: Any,
        destinations: list[int] | None,
        timeout: float,
        flags: RequestFlag,
    ) -> Aggregation:
        seq = next(self._seq)
        request_id = RequestId(self.node_id, self.incarnation, seq)
        deadline = trio.current_time() + timeout
        aggregation = Aggregation(
            id=request_id,
            rqst_type=rqst_type,
            destinations=None
            if destinations is None
            else tuple(sorted(set(destinations))),
            deadline=deadline,
        )
        log = self.log.bind(seq=seq, rqst=request_type_name(rqst_type))

        entry = self.registry.get(rqst_type)
        several = destinations is None or len(set(destinations)) > 1
        if entry is not None and entry.many_lines and several:
            aggregation.fail(
                ReturnCode.MANY_LINES_TO_ALL,
                f"{entry.name} replies with many lines: it may only go to one node",
            )
            return aggregation
        session = self.session
        if session is None:
            aggregation.fail(
                ReturnCode.GCS_DOWN,
                f"node {self.node_id} has no {self.transport_name} session"
                f" ({self.gcs_state}); try again when it reconnects",
            )
            log.info("request_refused", reason="no session")
            return aggregation
        request = WireRequest(
            rqst_type=rqst_type,
            id=request_id,
            destinations=aggregation.destinations,
            timeout_ms=math.ceil(timeout * 1000),
            params=params,
            flags=flags,
        )
        try:
            data = encode_request(request)
        except WireError as error:
            aggregation.fail(
                ReturnCode.BAD_REQUEST, f"request cannot be encoded: {error}"
            )
            return aggregation
        self.in_flight[(self.incarnation, seq)] = aggregation
        log.info("request_sent", destinations=request.destinations)
        try:
            try:
                await session.multicast(data, Kind.REQUEST)
            except Exception as error:  # noqa: BLE001 - any send failure is a GCS failure
                aggregation.fail(
                    ReturnCode.GCS_DOWN
                    if not isinstance(error, ValueError)
                    else ReturnCode.TOO_LARGE,
                    f"the request could not be sent: {error}",
                )
                return aggregation
            with trio.move_on_at(deadline):
                await aggregation.done.wait()
            if not aggregation.done.is_set():
                aggregation.time_out(self.view.members)
        finally:
            del self.in_flight[(self.incarnation, seq)]
        log.info(
            "request_answered",
            replies=len(aggregation.replies),
            missing=len(aggregation.missing),
            failure=aggregation.failure[0] if aggregation.failure else None,
        )
        return aggregation

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "pid": os.getpid(),
            "transport": self.transport_name,
            "gcs": self.gcs_state,
            "gcs_detail": self.gcs_detail,
            "daemon": self.config.gcs.daemon
            if self.config.gcs.transport is config_module.Transport.SPREAD
            else None,
            "group": self.config.gcs.group,
            "private_group": self.session.private_group if self.session else None,
            "view": {
                "view_id": self.view.view_id,
                "members": sorted(self.view.members),
            },
            "kernel": getattr(self.kernel, "backend_name", "none"),
            "in_flight": len(self.in_flight),
            "incarnation": self.incarnation,
            "handlers": len(self.registry.handlers),
            "config": self.config.source,
        }


def stale_reason(message: ClientMessage, timeout: float, age: float) -> str | None:
    """Why a client message ``age`` seconds old must not be run, or None.

    A message can wait on the queue while dvsd is stopped, busy or being
    restarted, and its client may meanwhile have given up and reported a
    failure: running it then would run it twice if the user tries again.
    """
    if not pid_alive(message.client):
        return "client gone"
    if age >= timeout:
        return "deadline passed"
    return None


def default_session_opener(
    config: config_module.Config, incarnation: int
) -> SessionOpener:
    """The configured transport, and only that one: no fallback between them."""
    if config.gcs.transport is config_module.Transport.SINGLE_NODE:
        from dvsd.transport.single_node import SingleNodeSession

        async def open_single() -> GroupSession:
            return SingleNodeSession(config.node_id, incarnation)

        return open_single

    from dvsd.transport.spread_session import SpreadSession

    async def open_spread() -> GroupSession:
        return await SpreadSession.open(
            config.gcs.daemon, config.node_id, config.gcs.group
        )

    return open_spread


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dvsd",
        description="DVS cluster management daemon (runs in the foreground).",
    )
    parser.add_argument("--config", help="configuration file (TOML)")
    parser.add_argument("--node-id", type=int, help="override node_id from the file")
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="log output",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logsetup.configure(args.log_format)
    try:
        settings = config_module.load(args.config or config_module.default_path())
        if args.node_id is not None:
            settings = config_module.with_node_id(settings, args.node_id)
    except config_module.ConfigError as error:
        print(f"dvsd: configuration error: {error}", file=sys.stderr)
        return 2

    from dvsd.kernel import KernelUnavailable, open_kernel

    try:
        kernel = open_kernel(
            settings.kernel.backend.value, device=settings.kernel.device
        )
    except KernelUnavailable as error:
        print(f"dvsd: kernel: {error}", file=sys.stderr)
        return 2
    load_handlers(plugins=True)
    try:
        queues = DaemonQueues(
            settings.msgq.request_key, settings.msgq.reply_key, settings.msgq.mode
        )
    except QueuesTaken as error:
        print(f"dvsd: {error}; stop it or configure other [msgq] keys", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - sysv_ipc errors share no base with OSError
        print(f"dvsd: cannot open the message queues: {error}", file=sys.stderr)
        return 2
    from dvsd.membership import Membership

    daemon = Daemon(
        config=settings,
        kernel=kernel,
        membership=Membership(config=settings, kernel=kernel),
    )
    status = 0
    try:
        trio.run(daemon.run, queues)
    except* KeyboardInterrupt:
        pass
    except* QueueLost as group:
        print(f"dvsd: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    except* NodeIdTaken as group:
        daemon.log.error("node_id_taken", error=str(group.exceptions[0]))
        print(f"dvsd: {group.exceptions[0]}", file=sys.stderr)
        status = 2
    daemon.log.info("dvsd_stopped", status=status)
    return status
