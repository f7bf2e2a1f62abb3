"""What the daemon sees of a group transport, whichever one is configured.

A transport session delivers three kinds of events, in one total order that
every node shares: a message (:class:`Delivered`), a new membership view
(:class:`ViewChanged`), and the loss of the session itself
(:class:`SessionLost`).  Spread and single-node both produce exactly these.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Protocol

import attrs

# node.<id> with the id written as dvsd writes it (no leading zeros), so
# another program's session named "node.007" is not taken for node 7.
_MEMBER = re.compile(r"^#node\.(0|[1-9][0-9]{0,4})#")


def node_of(private_group: str) -> int | None:
    """The node id in a member name ``#node.<id>#<daemon>``; None for others."""
    match = _MEMBER.match(private_group)
    if match is None:
        return None
    node = int(match.group(1))
    return node if node <= 0xFFFE else None


class ChangeReason(enum.StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    DISCONNECT = "disconnect"
    NETWORK = "network"


@attrs.frozen
class Delivered:
    """A message delivered by the group, the sender's own copies included."""

    sender: str
    sender_node: int | None
    message_type: int
    payload: bytes


@attrs.frozen
class ViewChanged:
    """A regular membership view of the dvsd group.

    ``members`` maps node ids to their member names.  ``changed`` holds the
    nodes named by a join, leave or disconnect; ``vs_sets`` (network changes)
    holds the node ids of each virtual-synchrony set, and ``my_vs_set`` the
    index of ours.  ``raw`` is the transport's own event for layers that need
    more.
    """

    view_id: str
    members: dict[int, str]
    reason: ChangeReason
    changed: tuple[int, ...] = ()
    vs_sets: tuple[frozenset[int], ...] = ()
    my_vs_set: int = 0
    raw: Any = None


@attrs.frozen
class Transitional:
    """The view is about to change for a network reason (Spread's signal)."""

    view_id: str


@attrs.frozen
class SessionLost:
    """The session with the group is gone; ``reason`` says why."""

    reason: str


GroupEvent = Delivered | ViewChanged | Transitional | SessionLost


class NodeIdTaken(Exception):
    """Another member of the group already has this node's id.

    A configuration error that no reconnection can mend: dvsd stops.
    """


class GroupSession(Protocol):
    """One live connection of this node to the dvsd group."""

    transport_name: str
    private_group: str

    async def multicast(self, payload: bytes, message_type: int) -> None:
        """Send to every member of the group, this node included."""

    async def unicast(
        self, private_group: str, payload: bytes, message_type: int
    ) -> None:
        """Send to one member only."""

    async def receive(self) -> GroupEvent: ...

    async def aclose(self) -> None: ...
