"""The single-node transport: this dvsd alone, with loopback delivery.

It lets a machine with no Spread daemon run the whole request path.  The
view is always this node alone; every message comes straight back, in the
order it was sent, like a group of one.
"""

from __future__ import annotations

import math

import trio

from dvsd.transport.group import (
    ChangeReason,
    Delivered,
    GroupEvent,
    SessionLost,
    ViewChanged,
)


class SingleNodeSession:
    transport_name = "single-node"

    def __init__(self, node_id: int, incarnation: int) -> None:
        self.node_id = node_id
        self.private_group = f"#node.{node_id}#single"
        self._send, self._receive = trio.open_memory_channel[GroupEvent](math.inf)
        self._send.send_nowait(
            ViewChanged(
                view_id=f"single.{incarnation}.1",
                members={node_id: self.private_group},
                reason=ChangeReason.JOIN,
                changed=(node_id,),
            )
        )

    async def multicast(self, payload: bytes, message_type: int) -> None:
        await self._deliver(payload, message_type)

    async def unicast(
        self, private_group: str, payload: bytes, message_type: int
    ) -> None:
        if private_group == self.private_group:
            await self._deliver(payload, message_type)

    async def _deliver(self, payload: bytes, message_type: int) -> None:
        try:
            self._send.send_nowait(
                Delivered(self.private_group, self.node_id, message_type, payload)
            )
        except trio.ClosedResourceError:
            raise SessionClosed("single-node session is closed") from None

    async def receive(self) -> GroupEvent:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return SessionLost("single-node session closed")

    async def aclose(self) -> None:
        await self._send.aclose()


class SessionClosed(Exception):
    pass
