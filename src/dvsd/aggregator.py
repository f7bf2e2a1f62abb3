"""Gathering the replies of one request: who must answer, who did, who cannot.

An :class:`Aggregation` is plain state, fed by the daemon's event loop:
the request's own delivery fixes the nodes that must answer (the members of
the view it was delivered in, limited to its destinations); each reply, each
view change and finally the deadline settle one node at a time.  The client
always gets an answer: every expected node ends up either in ``replies`` or
in ``missing`` with a reason.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from dvsd.rqst import ReturnCode, request_type_name
from dvsd.wire import ReplyFlag, RequestId, WireReply


@attrs.frozen
class NodeResult:
    """One node's outcome of one request, as a handler sees sub-request results."""

    node: int
    rcode: int
    items: list[Any] = attrs.field(factory=list)
    error: str | None = None
    missing_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.missing_reason is None and self.rcode >= 0


@attrs.define
class Aggregation:
    id: RequestId
    rqst_type: int
    destinations: tuple[int, ...] | None
    deadline: float
    expected: frozenset[int] | None = None
    replies: dict[int, WireReply] = attrs.field(factory=dict)
    missing: dict[int, str] = attrs.field(factory=dict)
    #: A request-level failure (the group went away, the request was refused).
    failure: tuple[int, str] | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    def delivered(self, members: frozenset[int]) -> None:
        """Our own request came back: the view it came in decides who answers."""
        if self.expected is not None:
            return
        wanted = members if self.destinations is None else frozenset(self.destinations)
        self.expected = wanted
        for node in wanted - members:
            self.missing[node] = "not a member of the current view"
        self._check()

    def reply(self, reply: WireReply) -> bool:
        """Record one reply; False if nobody waits for it from that node."""
        node = reply.responder
        if self.expected is None or node not in self.expected:
            return False
        if node in self.replies or node in self.missing:
            return False
        self.replies[node] = reply
        self._check()
        return True

    def view_changed(self, members: frozenset[int], reason: str) -> list[int]:
        """Nodes that left without answering are settled as left; returns them."""
        if self.expected is None:
            return []
        gone = sorted(
            node
            for node in self.expected - members
            if node not in self.replies and node not in self.missing
        )
        for node in gone:
            self.missing[node] = f"left ({reason})"
        self._check()
        return gone

    def fail(self, rcode: int, sentence: str) -> None:
        self.failure = (rcode, sentence)
        self.done.set()

    def time_out(self, members: frozenset[int] = frozenset()) -> None:
        """The deadline passed: whoever has not answered is reported as timed out.

        If even our own copy of the request had not come back, nobody can have
        answered: the nodes it was meant for (its destinations, else the
        ``members`` of the current view) are all reported as timed out.
        """
        if self.expected is None:
            self.expected = (
                frozenset(self.destinations)
                if self.destinations is not None
                else members
            )
        for node in self.outstanding():
            self.missing[node] = "timeout"
        self.done.set()

    def outstanding(self) -> list[int]:
        if self.expected is None:
            return []
        return sorted(self.expected - set(self.replies) - set(self.missing))

    def _check(self) -> None:
        if self.expected is not None and not self.outstanding():
            self.done.set()

    def result(self) -> dict[str, Any]:
        """The answer for the client (msgpack-able)."""
        if self.failure is not None:
            rcode, error = self.failure
        elif self.expected is None:
            rcode, error = (
                ReturnCode.TIMEOUT,
                "the request was not delivered before its deadline",
            )
        else:
            rcode, error = ReturnCode.OK, None
        return {
            "request": request_type_name(self.rqst_type),
            "rqst_type": self.rqst_type,
            "seq": self.id.seq,
            "rcode": int(rcode),
            "error": error,
            "replies": [
                {
                    "node": node,
                    "rcode": reply.rcode,
                    "items": reply.items,
                    "error": reply.error,
                    "truncated": bool(reply.flags & ReplyFlag.TRUNCATED),
                    "full_size": reply.full_size or None,
                }
                for node, reply in sorted(self.replies.items())
            ],
            "missing": [
                {"node": node, "reason": reason}
                for node, reason in sorted(self.missing.items())
            ],
        }

    def node_results(self) -> list[NodeResult]:
        """The same outcome as :meth:`result`, one :class:`NodeResult` a node."""
        results = [
            NodeResult(node, reply.rcode, list(reply.items), reply.error)
            for node, reply in sorted(self.replies.items())
        ]
        results += [
            NodeResult(
                node,
                ReturnCode.NODE_LEFT
                if reason.startswith("left")
                else ReturnCode.TIMEOUT,
                error=reason,
                missing_reason=reason,
            )
            for node, reason in sorted(self.missing.items())
        ]
        if self.failure is not None and not results:
            rcode, error = self.failure
            results = [
                NodeResult(node, rcode, error=error, missing_reason=error)
                for node in (self.destinations or ())
            ]
        return results
