"""Membership events: what each view of the dvsd group means for the DVS.

Two layers, as in the transport:

* :func:`classify` is pure.  It takes this node's previous view (or None
  when it has none) and one regular view, and says which events it carries:
  JOIN, LEAVE, DISCONNECT, PARTITION and MERGE, in the order their scripts
  run.  A network change that both loses and gains members gives PARTITION
  first, then MERGE.
* :class:`Membership` keeps this node's DVS view (each node's state), makes
  the kernel follow it, and queues the configured scripts for each event on
  its :class:`~dvsd.scripts.ScriptRunner`.  The daemon calls ``on_view`` for
  every regular view in delivery order; ``on_view`` never awaits, so neither
  a script nor a slow event holds up requests.

docs/membership.md describes the events, the DVS view rules and the script
interface for administrators.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import structlog
import trio

from dvsd.config import Config, MembershipEvent
from dvsd.kernel import KernelError
from dvsd.kernel.abi import NodeFlag
from dvsd.scripts import EventFacts, ScriptJob, ScriptRunner
from dvsd.transport.group import ChangeReason, Transitional, ViewChanged


class NodeState(enum.StrEnum):
    """A node's state in this node's DVS view (DVSNODES ``state``)."""

    #: In the current view of the group.
    UP = "up"
    #: Lost through a network change (partition), or this node lost its own
    #: Spread session: it may still run, out of our reach.
    UNREACHABLE = "unreachable"
    #: Left the group on purpose (dvsd stopped its session cleanly).
    LEFT = "left"
    #: Its session ended without a leave (dvsd or its Spread client died).
    DISCONNECTED = "disconnected"
    #: Named in [cluster] nodes but never seen by this dvsd.
    UNKNOWN = "unknown"


#: How a node entered or left the view, per event (``joined``/``left`` lists).
_HOW = {
    MembershipEvent.JOIN: "join",
    MembershipEvent.MERGE: "merge",
    MembershipEvent.LEAVE: "leave",
    MembershipEvent.DISCONNECT: "disconnect",
    MembershipEvent.PARTITION: "partition",
}

_STATE_AFTER = {
    MembershipEvent.JOIN: NodeState.UP,
    MembershipEvent.MERGE: NodeState.UP,
    MembershipEvent.LEAVE: NodeState.LEFT,
    MembershipEvent.DISCONNECT: NodeState.DISCONNECTED,
    MembershipEvent.PARTITION: NodeState.UNREACHABLE,
}


@attrs.frozen
class Occurrence:
    """One event of a view change: what happened, and to which nodes."""

    event: MembershipEvent
    nodes: tuple[int, ...]
    #: This node is one of ``nodes`` (only its own JOIN, the first view).
    self_changed: bool = False


@attrs.frozen
class Classification:
    """What one regular view means, from one node's side.

    ``events`` are in the order their scripts run.  ``joined`` and ``left``
    list ``(node, how)`` for the whole view change.
    """

    events: tuple[Occurrence, ...]
    joined: tuple[tuple[int, str], ...] = ()
    left: tuple[tuple[int, str], ...] = ()


def classify(
    node_id: int,
    previous: frozenset[int] | None,
    view: ViewChanged,
) -> Classification:
    """The events ``view`` carries for node ``node_id``.

    ``previous`` is the member set of this node's last regular view, or None
    when this is the first view of its session (after start or after the
    session was lost): that view is this node's own JOIN, whatever the cause
    says, and nothing before it is replayed.

    Causes JOIN, LEAVE and DISCONNECT name their node(s) in ``view.changed``;
    a change to a member that is not a dvsd node (``changed`` empty, set
    unchanged) gives no event.  For a NETWORK change the nodes that came
    with this node from its previous view are its VS set (reference §5.4);
    the rest of the previous view was lost (PARTITION) and the rest of the
    new view was gained (MERGE).  A node that left and came back within one
    network change is therefore in both.  Without usable VS sets the set
    difference is used.  Whether a transitional signal came first does not
    change the result: a side that lost nobody may get none (reference §8).
    """
    members = frozenset(view.members)
    if previous is None or node_id in view.changed:
        return Classification(
            events=(Occurrence(MembershipEvent.JOIN, (node_id,), self_changed=True),),
            joined=((node_id, "join"),),
        )

    if view.reason is ChangeReason.JOIN:
        nodes = _named_or(view.changed, members - previous, members)
        if not nodes:
            return Classification(events=())
        return Classification(
            events=(Occurrence(MembershipEvent.JOIN, nodes),),
            joined=tuple((node, "join") for node in nodes),
        )

    if view.reason in (ChangeReason.LEAVE, ChangeReason.DISCONNECT):
        event = MembershipEvent(view.reason.value)
        nodes = _named_or(
            view.changed, previous - members, frozenset(previous) | members
        )
        nodes = tuple(node for node in nodes if node not in members)
        if not nodes:
            return Classification(events=())
        return Classification(
            events=(Occurrence(event, nodes),),
            left=tuple((node, _HOW[event]) for node in nodes),
        )

    came_with_me = previous & members
    if 0 <= view.my_vs_set < len(view.vs_sets):
        my_set = view.vs_sets[view.my_vs_set]
        if node_id in my_set:
            came_with_me = my_set & previous
    lost = tuple(sorted(previous - came_with_me - {node_id}))
    gained = tuple(sorted(members - came_with_me - {node_id}))
    events = []
    if lost:
        events.append(Occurrence(MembershipEvent.PARTITION, lost))
    if gained:
        events.append(Occurrence(MembershipEvent.MERGE, gained))
    return Classification(
        events=tuple(events),
        joined=tuple((node, "merge") for node in gained),
        left=tuple((node, "partition") for node in lost),
    )


def _named_or(
    named: tuple[int, ...], difference: frozenset[int], allowed: frozenset[int]
) -> tuple[int, ...]:
    """The nodes a join/leave names, else the set difference (sorted)."""
    chosen = [node for node in named if node in allowed]
    return tuple(sorted(set(chosen))) if chosen else tuple(sorted(difference))


def has_majority(
    members: frozenset[int], configured: tuple[int, ...], largest_view: int
) -> bool:
    """More than half of [cluster] nodes, or of the largest view seen if none.

    Only configured nodes count towards a configured majority.  With neither
    (no view yet) there is no majority.
    """
    if configured:
        basis = frozenset(configured)
        return len(members & basis) * 2 > len(basis)
    return bool(members) and len(members) * 2 > largest_view


@attrs.frozen
class NodeRecord:
    """One node in this node's DVS view."""

    node: int
    state: NodeState
    #: The event that put it in this state (``join``, ``partition``, ...).
    how: str
    #: The view in which it happened ("" before any).
    since_view: str


def _kernel_name(node: int, member_name: str) -> str:
    # "#node.2#hostb" -> "hostb": the Spread daemon, i.e. the host, is what
    # an administrator recognises in the kernel's node table.
    parts = member_name.split("#")
    return parts[2] if len(parts) >= 3 and parts[2] else f"node{node}"


@attrs.define
class Membership:
    """This node's DVS view, the kernel actions and the scripts of each event.

    ``on_view``, ``on_transitional`` and ``on_session_lost`` are called by the
    daemon in delivery order and return without awaiting.  ``run`` is the
    script runner task; the daemon starts it first.
    """

    config: Config
    kernel: Any = None
    log: Any = None
    runner: ScriptRunner | None = None

    view_id: str = ""
    previous_view_id: str = ""
    members: dict[int, str] = attrs.field(factory=dict)
    records: dict[int, NodeRecord] = attrs.field(factory=dict)
    largest_view: int = 0
    sequence: int = 0
    #: The previous view's id named by a transitional signal not yet followed
    #: by its regular view.
    transitional: str | None = None
    #: Every event so far, ``(sequence, event, nodes, view_id)`` (recent ones).
    history: list[tuple[int, str, tuple[int, ...], str]] = attrs.field(factory=list)
    _in_view: bool = False

    def __attrs_post_init__(self) -> None:
        if self.log is None:
            self.log = structlog.get_logger("dvsd.membership").bind(
                node=self.config.node_id
            )
        if self.runner is None:
            self.runner = ScriptRunner(
                timeout=self.config.scripts.timeout,
                log=self.log,
            )

    @property
    def node_id(self) -> int:
        return self.config.node_id

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The script runner task (until cancelled)."""
        await self.runner.run(task_status=task_status)

    # -- events from the daemon ----------------------------------------------

    def on_transitional(self, event: Transitional) -> None:
        """A network change is coming; remember it for the next regular view."""
        if self._in_view and event.view_id != self.view_id:
            self.log.warning(
                "transitional_unexpected", named_view=event.view_id, view=self.view_id
            )
        self.transitional = event.view_id

    def on_session_lost(self) -> None:
        """Our own session is gone: others become unreachable; next view is a JOIN."""
        for node, record in list(self.records.items()):
            if node != self.node_id and record.state is NodeState.UP:
                self._set(node, NodeState.UNREACHABLE, "session lost")
        if self.node_id in self.records:
            self._set(self.node_id, NodeState.DISCONNECTED, "session lost")
        self._in_view = False
        self.transitional = None
        self.log.info("membership_session_lost", view=self.view_id)

    def on_view(self, event: ViewChanged, previous: Any = None) -> None:
        """Classify one regular view, apply it to the DVS, queue its scripts.

        ``previous`` (the daemon's view) is not needed: this object keeps its
        own, which survives the daemon's reset on session loss.
        """
        before = frozenset(self.members) if self._in_view else None
        previous_members = tuple(sorted(self.members)) if self._in_view else ()
        previous_view_id = self.view_id if self._in_view else ""
        transitional = self.transitional is not None
        classification = classify(self.node_id, before, event)

        self.previous_view_id = previous_view_id
        self.view_id = event.view_id
        self.members = dict(event.members)
        self._in_view = True
        self.transitional = None
        self.largest_view = max(self.largest_view, len(self.members))

        for occurrence in classification.events:
            self._apply(occurrence, event)
        # Nodes in the view are up whatever the cause said (a first view
        # lists every present member; a JOIN of a non-dvsd member lists none).
        for node in self.members:
            record = self.records.get(node)
            if record is None or record.state is not NodeState.UP:
                how = "join" if node == self.node_id else "present"
                self._set(node, NodeState.UP, how)

        names = tuple(occurrence.event.value for occurrence in classification.events)
        majority = self.majority
        for occurrence in classification.events:
            self.sequence += 1
            self.history.append(
                (self.sequence, occurrence.event.value, occurrence.nodes, self.view_id)
            )
            del self.history[:-64]
            self.log.info(
                "membership_event",
                membership_event=occurrence.event.value,
                nodes=list(occurrence.nodes),
                self_changed=occurrence.self_changed,
                view=self.view_id,
                previous_view=previous_view_id,
                majority=majority,
            )
            scripts = self.config.scripts.for_event(occurrence.event)
            if not scripts:
                continue
            self.runner.submit(
                ScriptJob(
                    facts=EventFacts(
                        event=occurrence.event.value,
                        node=self.node_id,
                        changed=occurrence.nodes,
                        self_changed=occurrence.self_changed,
                        cause=event.reason.value,
                        view_id=self.view_id,
                        previous_view_id=previous_view_id,
                        members=tuple(sorted(self.members)),
                        previous_members=previous_members,
                        joined=classification.joined,
                        left=classification.left,
                        transitional=transitional,
                        majority=majority,
                        sequence=self.sequence,
                        events=names,
                    ),
                    scripts=scripts,
                )
            )

    # -- the DVS view ----------------------------------------------------------

    def _set(self, node: int, state: NodeState, how: str) -> None:
        self.records[node] = NodeRecord(node, state, how, self.view_id)

    def _apply(self, occurrence: Occurrence, view: ViewChanged) -> None:
        state = _STATE_AFTER[occurrence.event]
        for node in occurrence.nodes:
            self._set(node, state, _HOW[occurrence.event])
        if occurrence.self_changed:
            arriving = [node for node in sorted(view.members) if node != self.node_id]
            self._kernel_up(arriving, view.members)
            # After a lost session, nodes that were up before and are absent
            # now stay unreachable and leave the kernel, as in a partition.
            absent = [
                node
                for node, record in sorted(self.records.items())
                if node not in view.members
                and node != self.node_id
                and record.state is NodeState.UNREACHABLE
            ]
            self._kernel_down(absent)
        elif state is NodeState.UP:
            self._kernel_up(list(occurrence.nodes), view.members)
        else:
            self._kernel_down(list(occurrence.nodes))

    @property
    def majority(self) -> bool:
        return has_majority(
            frozenset(self.members) if self._in_view else frozenset(),
            self.config.cluster.nodes,
            self.largest_view,
        )

    def snapshot(self) -> dict[str, Any]:
        """DVSNODES' item: the view, the majority and every node's record."""
        configured = tuple(sorted(set(self.config.cluster.nodes)))
        nodes = sorted(set(self.records) | set(configured))
        entries = []
        for node in nodes:
            record = self.records.get(node) or NodeRecord(
                node, NodeState.UNKNOWN, "configured", ""
            )
            entries.append(
                {
                    "node": node,
                    "state": record.state.value,
                    "member": self._in_view and node in self.members,
                    "how": record.how,
                    "since_view": record.since_view,
                }
            )
        return {
            "view_id": self.view_id if self._in_view else "",
            "previous_view_id": self.previous_view_id,
            "majority": self.majority,
            "configured": list(configured),
            "majority_basis": "configured nodes" if configured else "largest view",
            "largest_view": self.largest_view,
            "members": sorted(self.members) if self._in_view else [],
            "events": self.sequence,
            "nodes": entries,
        }

    # -- the kernel --------------------------------------------------------------

    def _kernel_ready(self, action: str, nodes: list[int]) -> bool:
        if self.kernel is None or not nodes:
            return False
        try:
            self.kernel.get_dvs_info()
        except KernelError as error:
            # Not fatal: the DVS may be started later; this event is skipped.
            self.log.info(
                "dvs_view_not_applied", action=action, nodes=nodes, reason=str(error)
            )
            return False
        return True

    def _running_dcs(self) -> list[Any]:
        """The [cluster] dcs that are running on this node (their DcInfo)."""
        running = []
        for dcid in self.config.cluster.dcs:
            try:
                info = self.kernel.get_dc_info(dcid)
            except KernelError as error:
                self.log.warning("dc_unusable", dcid=dcid, error=str(error))
                continue
            if info.running:
                running.append(info)
        return running

    def _kernel_call(self, call: str, function: Any, *args: Any) -> bool:
        try:
            function(*args)
        except KernelError as error:
            self.log.warning("dvs_view_call_failed", call=call, error=str(error))
            return False
        except Exception as error:  # noqa: BLE001 - a kernel fault is never fatal here
            self.log.exception("dvs_view_call_failed", call=call, error=repr(error))
            return False
        return True

    def _dc_nodes(self, dcid: int) -> tuple[int, ...]:
        try:
            return self.kernel.get_dc_info(dcid).nodes
        except KernelError:
            return ()

    def _node_is_up(self, node: int) -> bool:
        try:
            return self.kernel.get_node_info(node).flags != NodeFlag.FREE
        except KernelError:
            return False

    def apply_current_view(self, cause: str) -> None:
        """Bring every current member up in the kernel now.

        The kernel only follows view changes once the DVS runs; DVSINIT and
        DCINIT call this so that members already present when the DVS (or a
        [cluster] DC) starts are brought up too, as a JOIN would have done.
        """
        if not self._in_view:
            return
        others = [node for node in sorted(self.members) if node != self.node_id]
        self.log.info("dvs_view_reapplied", cause=cause, nodes=others)
        self._kernel_up(others, self.members)

    def _kernel_up(self, nodes: list[int], members: dict[int, str]) -> None:
        """Bring ``nodes`` up and add them to every running [cluster] DC."""
        if not self._kernel_ready("add", nodes):
            return
        dcs = self._running_dcs()
        for node in nodes:
            if not self._node_is_up(node):
                name = _kernel_name(node, members.get(node, ""))
                if not self._kernel_call(
                    f"attach_node nodeid={node}", self.kernel.attach_node, node, name
                ):
                    continue
            added = []
            for dc in dcs:
                if node in self._dc_nodes(dc.dcid):
                    continue
                if self._kernel_call(
                    f"add_node dcid={dc.dcid} nodeid={node}",
                    self.kernel.add_node,
                    dc.dcid,
                    node,
                ):
                    added.append(dc.dcid)
            self.log.info("dvs_node_added", dvs_node=node, dcs=added)

    def _kernel_down(self, nodes: list[int]) -> None:
        """Take ``nodes`` out of every running [cluster] DC, then node down."""
        if not self._kernel_ready("remove", nodes):
            return
        dcs = self._running_dcs()
        for node in nodes:
            removed = []
            for dc in dcs:
                if node not in self._dc_nodes(dc.dcid):
                    continue
                if self._kernel_call(
                    f"del_node dcid={dc.dcid} nodeid={node}",
                    self.kernel.del_node,
                    dc.dcid,
                    node,
                ):
                    removed.append(dc.dcid)
            if self._node_is_up(node):
                self._kernel_call(
                    f"detach_node nodeid={node}", self.kernel.detach_node, node
                )
            self.log.info("dvs_node_removed", dvs_node=node, dcs=removed)
