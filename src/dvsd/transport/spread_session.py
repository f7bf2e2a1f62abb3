"""The Spread transport: this node's session with its local Spread daemon.

Requests go to the dvsd group with SAFE delivery (one total order, delivered
only once every member has them); replies go to the requester's private group
with AGREED delivery.  Spread's events are mapped to :mod:`dvsd.transport.group`.
"""

from __future__ import annotations

import structlog

from dvsd.transport import spread
from dvsd.transport.group import (
    ChangeReason,
    Delivered,
    GroupEvent,
    NodeIdTaken,
    SessionLost,
    Transitional,
    ViewChanged,
    node_of,
)

log = structlog.get_logger("dvsd.gcs")

_REASONS = {
    spread.MembershipReason.JOIN: ChangeReason.JOIN,
    spread.MembershipReason.LEAVE: ChangeReason.LEAVE,
    spread.MembershipReason.DISCONNECT: ChangeReason.DISCONNECT,
    spread.MembershipReason.NETWORK: ChangeReason.NETWORK,
}

#: Errors that mean "no session": the daemon is away or refused us.
SESSION_ERRORS = (spread.SpreadError, OSError)


def view_id_of(group_id: spread.GroupId) -> str:
    return f"{group_id.proc_id:08x}.{group_id.time}.{group_id.index}"


class SpreadSession:
    transport_name = "spread"

    def __init__(self, connection: spread.SpreadConnection, group: str) -> None:
        self.connection = connection
        self.group = group
        self.private_group = connection.private_group
        #: The member name behind each node id in the last view.
        self._names: dict[int, str] = {}

    @classmethod
    async def open(cls, address: str, node_id: int, group: str) -> SpreadSession:
        connection = await spread.connect(address, name=f"node.{node_id}")
        try:
            await connection.join(group)
        except BaseException:
            await connection.aclose()
            raise
        return cls(connection, group)

    async def multicast(self, payload: bytes, message_type: int) -> None:
        await self.connection.multicast(
            spread.ServiceType.SAFE, self.group, payload, message_type=message_type
        )

    async def unicast(
        self, private_group: str, payload: bytes, message_type: int
    ) -> None:
        await self.connection.multicast(
            spread.ServiceType.AGREED, private_group, payload, message_type=message_type
        )

    async def receive(self) -> GroupEvent:
        while True:
            try:
                event = await self.connection.receive()
            except SESSION_ERRORS as error:
                return SessionLost(str(error) or type(error).__name__)
            mapped = self._map(event)
            if mapped is not None:
                return mapped

    def _map(self, event: spread.Event) -> GroupEvent | None:
        if isinstance(event, spread.RegularMessage):
            node = node_of(event.sender)
            if node is not None and self._names.get(node, event.sender) != event.sender:
                log.warning("duplicate_node_id_message", node=node, sender=event.sender)
                return None
            return Delivered(event.sender, node, event.message_type, event.payload)
        if isinstance(event, spread.MembershipMessage) and event.group == self.group:
            return self._map_view(event)
        if (
            isinstance(event, spread.TransitionalMembership)
            and event.group == self.group
        ):
            return Transitional(view_id_of(event.group_id))
        return None

    def _map_view(self, event: spread.MembershipMessage) -> ViewChanged | None:
        """The view by node id.

        Two members with one node id are a configuration error.  The one that
        joins second stops (:class:`NodeIdTaken`); until it has gone, the
        others keep the member they knew, and its joining, leaving and
        messages are not events of the DVS (they are logged).
        """
        own = node_of(self.private_group)
        joined_now = (
            event.reason is spread.MembershipReason.JOIN
            and event.changed_member == self.private_group
        )
        names: dict[int, list[str]] = {}
        for name in event.members:
            node = node_of(name)
            if node is not None:
                names.setdefault(node, []).append(name)
        if joined_now and len(names.get(own, ())) > 1:
            taken = next(name for name in names[own] if name != self.private_group)
            raise NodeIdTaken(
                f"node id {own} is already used in group {self.group!r} by {taken};"
                " give every node its own [node] id"
            )
        members: dict[int, str] = {}
        for node, candidates in names.items():
            preferred = self.private_group if node == own else self._names.get(node)
            kept = preferred if preferred in candidates else candidates[0]
            if len(candidates) > 1:
                ignored = [name for name in candidates if name != kept]
                log.warning("duplicate_node_id", node=node, kept=kept, ignored=ignored)
            members[node] = kept
        changed_name = event.changed_member or ""
        changed = node_of(changed_name) if changed_name else None
        if changed is not None and self._names.get(changed, changed_name) != (
            changed_name
        ):
            log.warning(
                "duplicate_node_id_change",
                node=changed,
                name=changed_name,
                reason=event.reason.name.lower(),
            )
            return None
        self._names = members
        return ViewChanged(
            view_id=view_id_of(event.group_id),
            members=members,
            reason=_REASONS[event.reason],
            changed=() if changed is None else (changed,),
            vs_sets=tuple(
                frozenset(n for n in map(node_of, vs_set) if n is not None)
                for vs_set in event.vs_sets
            ),
            my_vs_set=event.my_vs_set_index or 0,
            raw=event,
        )

    async def aclose(self) -> None:
        await self.connection.aclose()
