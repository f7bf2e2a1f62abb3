"""The stand-in daemon's group state: sessions, groups, partitions. No I/O.

Every method runs to completion without waiting and returns the messages it
produced as ``(session_id, bytes)`` pairs, in the order they must be written.
Because one caller applies them one after the other, all sessions see every
change and every data message in one total order, which is what SAFE (and
every weaker service) promises on a single real daemon.

Partitions model several daemons that lost contact: each *component* is one
side of the partition, with its own daemon membership id. A session belongs to
the component its private name was assigned to; unlisted names go to the first
component. Group views, group ids and message delivery are per component.
Network changes follow the real daemon's groups.c rules as described in the
reference (§5.4, §5.6, §7h): a group gets a TRANSITION_MESS only where it lost
members, and a REG_MEMB|CAUSED_BY_NETWORK only where its view changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs

from .wire import (
    MAX_SESSIONS,
    NAME_SLOT,
    ByteOrder,
    ClientHeader,
    GroupId,
    ServiceType,
    forwarded_data,
    private_group_name,
    regular_membership,
    self_leave,
    slot_name,
    split_private_group,
    transitional_membership,
)

Output = list[tuple[int, bytes]]

LOOPBACK_PROC_ID = 0x7F000001  # 127.0.0.1, the daemon's address as an int


@attrs.define
class Session:
    """One client connection that passed the name checks."""

    session_id: int
    private_name: bytes
    wants_membership: bool
    component: int  # membership time of the component it lives in
    groups: set[bytes] = attrs.field(factory=set)
    operational: bool = False


@attrs.define
class GroupView:
    """The members of one group as one component sees them."""

    members: set[int]
    gid: GroupId


class StandinState:
    """All state of one stand-in daemon; see the module docstring."""

    def __init__(
        self,
        daemon_name: bytes,
        order: ByteOrder = ByteOrder.LITTLE,
        proc_id: int = LOOPBACK_PROC_ID,
        clock=time.time,
    ) -> None:
        self.daemon_name = daemon_name
        self.order = order
        self.proc_id = proc_id
        self._clock = clock
        self._last_memb_time = 0
        self.sessions: dict[int, Session] = {}
        self._by_name: dict[bytes, int] = {}
        self._views: dict[tuple[int, bytes], GroupView] = {}
        self._next_session_id = 1
        # One entry per component, in partition order; names map to an index.
        self.components: list[int] = [self._new_memb_time()]
        self._assignment: dict[bytes, int] = {}

    # -- bookkeeping -------------------------------------------------------

    def _new_memb_time(self) -> int:
        # Membership times must differ so that VS sets sort deterministically.
        memb_time = max(int(self._clock()), self._last_memb_time + 1)
        self._last_memb_time = memb_time
        return memb_time

    def _component_for(self, private_name: bytes) -> int:
        index = self._assignment.get(private_name, 0)
        return self.components[index]

    def private_group(self, session_id: int) -> bytes:
        return private_group_name(
            self.sessions[session_id].private_name, self.daemon_name
        )

    def _sorted_names(self, session_ids: Iterable[int]) -> list[bytes]:
        return sorted(self.private_group(sid) for sid in session_ids)

    def is_full(self) -> bool:
        return len(self.sessions) >= MAX_SESSIONS

    def name_taken(self, private_name: bytes) -> bool:
        return private_name in self._by_name

    def add_session(self, private_name: bytes, wants_membership: bool) -> int:
        """Reserve the name (before authentication, like the daemon)."""
        if self.name_taken(private_name):
            raise ValueError(f"private name {private_name!r} is already in use")
        session_id = self._next_session_id
        self._next_session_id += 1
        self.sessions[session_id] = Session(
            session_id=session_id,
            private_name=private_name,
            wants_membership=wants_membership,
            component=self._component_for(private_name),
        )
        self._by_name[private_name] = session_id
        return session_id

    def mark_operational(self, session_id: int) -> None:
        self.sessions[session_id].operational = True

    # -- group operations --------------------------------------------------

    def _notify(self, out: Output, view_members: Iterable[int], message: bytes) -> None:
        for sid in sorted(view_members):
            if self.sessions[sid].wants_membership:
                out.append((sid, message))

    def _lightweight(
        self,
        out: Output,
        group: bytes,
        view: GroupView,
        cause: ServiceType,
        changed: int,
    ) -> None:
        message = regular_membership(
            self.order,
            group,
            cause,
            self._sorted_names(view.members),
            view.gid,
            [[self.private_group(changed)]],
            0,
        )
        self._notify(out, view.members, message)

    def join(self, session_id: int, group: bytes) -> Output:
        out: Output = []
        session = self.sessions[session_id]
        if group in session.groups:
            return out  # the daemon ignores a second join (§3.5)
        session.groups.add(group)
        key = (session.component, group)
        view = self._views.get(key)
        if view is None:
            # A new group starts at index 0 and the join makes it 1 (§4, §5.5).
            view = GroupView(set(), GroupId(self.proc_id, session.component, 0))
            self._views[key] = view
        view.members.add(session_id)
        view.gid = attrs.evolve(view.gid, index=view.gid.index + 1)
        self._lightweight(out, group, view, ServiceType.CAUSED_BY_JOIN, session_id)
        return out

    def _remove_member(
        self, out: Output, session_id: int, group: bytes, cause: ServiceType
    ) -> None:
        session = self.sessions[session_id]
        session.groups.discard(group)
        key = (session.component, group)
        view = self._views[key]
        view.members.discard(session_id)
        view.gid = attrs.evolve(view.gid, index=view.gid.index + 1)
        if cause == ServiceType.CAUSED_BY_LEAVE and session.wants_membership:
            out.append((session_id, self_leave(self.order, group)))
        if view.members:
            self._lightweight(out, group, view, cause, session_id)
        else:
            del self._views[key]

    def leave(self, session_id: int, group: bytes) -> Output:
        out: Output = []
        if group in self.sessions[session_id].groups:
            self._remove_member(out, session_id, group, ServiceType.CAUSED_BY_LEAVE)
        return out

    def disconnect(self, session_id: int) -> Output:
        """Forget a session (KILL, close, or killed): peers see DISCONNECT."""
        out: Output = []
        session = self.sessions.get(session_id)
        if session is None:
            return out
        for group in sorted(session.groups):
            self._remove_member(
                out, session_id, group, ServiceType.CAUSED_BY_DISCONNECT
            )
        del self.sessions[session_id]
        del self._by_name[session.private_name]
        return out

    def multicast(
        self, session_id: int, header: ClientHeader, groups_blob: bytes, data: bytes
    ) -> Output:
        """Deliver one data message: one copy per recipient, same bytes for all."""
        sender = self.sessions[session_id]
        recipients: set[int] = set()
        for offset in range(0, len(groups_blob), NAME_SLOT):
            slot = groups_blob[offset : offset + NAME_SLOT]
            # Targets end at byte 31 (the daemon forces a NUL there), so a
            # group joined under a full 32-byte name is unreachable, as on a
            # real 4.0.0 daemon.
            name = slot_name(slot[: NAME_SLOT - 1])
            if name.startswith(b"#"):
                parsed = split_private_group(slot)
                if parsed is None or parsed[1] != self.daemon_name:
                    continue
                target = self._by_name.get(parsed[0])
                if target is not None and self._reachable(sender, target):
                    recipients.add(target)
            else:
                view = self._views.get((sender.component, name))
                if view is not None:
                    recipients |= view.members
        if header.service_type & ServiceType.SELF_DISCARD:
            recipients.discard(session_id)
        message = forwarded_data(self.order, header, groups_blob, data)
        return [(sid, message) for sid in sorted(recipients)]

    def _reachable(self, sender: Session, target_id: int) -> bool:
        target = self.sessions[target_id]
        return target.operational and target.component == sender.component

    # -- network changes ---------------------------------------------------

    def reconfigure(
        self, sets: list[list[bytes]], *, force_transition: bool = False
    ) -> Output:
        """Move to a new set of components: ``sets`` lists private names.

        One set means a merge. Names not listed land in the first set. With
        ``force_transition`` every changed group gets a TRANSITION_MESS first,
        even where it lost nobody (what a daemon that missed the partition
        sends, §7h); without it only sides that lost members get one (§5.6).
        """
        new_components = [self._new_memb_time() for _ in sets]
        assignment = {name: index for index, names in enumerate(sets) for name in names}
        old_component = {sid: s.component for sid, s in self.sessions.items()}
        new_component = {
            sid: new_components[assignment.get(s.private_name, 0)]
            for sid, s in self.sessions.items()
        }

        transitions: Output = []
        regulars: Output = []
        new_views: dict[tuple[int, bytes], GroupView] = {}
        group_names = sorted({group for (_, group) in self._views})
        for group in group_names:
            for component in new_components:
                members = {
                    sid
                    for sid, s in self.sessions.items()
                    if group in s.groups and new_component[sid] == component
                }
                if not members:
                    continue
                sources: dict[int, set[int]] = {}
                for sid in members:
                    sources.setdefault(old_component[sid], set()).add(sid)
                lost = {
                    source: any(
                        new_component[old] != component
                        for old in self._views[(source, group)].members
                    )
                    for source in sources
                }
                if len(sources) == 1 and not any(lost.values()):
                    (source,) = sources
                    new_views[(component, group)] = self._views[(source, group)]
                    continue
                for source, came in sorted(sources.items()):
                    if lost[source] or force_transition:
                        old_gid = self._views[(source, group)].gid
                        self._notify(
                            transitions,
                            came,
                            transitional_membership(self.order, group, old_gid),
                        )
                gid = GroupId(self.proc_id, component, 1)
                new_views[(component, group)] = GroupView(set(members), gid)
                # VS sets sort by previous membership id: here all ids share the
                # proc id, so by time, which grows with each component created.
                ordered_sources = sorted(sources)
                vs_sets = [self._sorted_names(sources[src]) for src in ordered_sources]
                for sid in sorted(members):
                    if not self.sessions[sid].wants_membership:
                        continue
                    regulars.append(
                        (
                            sid,
                            regular_membership(
                                self.order,
                                group,
                                ServiceType.CAUSED_BY_NETWORK,
                                self._sorted_names(members),
                                gid,
                                vs_sets,
                                ordered_sources.index(old_component[sid]),
                            ),
                        )
                    )

        self._views = new_views
        self.components = new_components
        self._assignment = assignment
        for sid, session in self.sessions.items():
            session.component = new_component[sid]
        return transitions + regulars

    def describe(self) -> dict:
        """A JSON-friendly snapshot for the control channel's ``status``."""
        return {
            "daemon": self.daemon_name.decode(),
            "components": [
                sorted(
                    s.private_name.decode()
                    for s in self.sessions.values()
                    if s.component == component
                )
                for component in self.components
            ],
            "sessions": {
                s.private_name.decode(): {
                    "membership": s.wants_membership,
                    "operational": s.operational,
                    "groups": sorted(g.decode("latin-1") for g in s.groups),
                }
                for s in self.sessions.values()
            },
        }
