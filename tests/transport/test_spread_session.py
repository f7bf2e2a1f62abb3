"""Spread views as dvsd sees them: by node id, and two members with one id."""

from __future__ import annotations

import types

import pytest

from dvsd.transport import spread
from dvsd.transport.group import ChangeReason, Delivered, NodeIdTaken, ViewChanged
from dvsd.transport.spread_session import SpreadSession

GROUP = "dvs"
JOIN = spread.MembershipReason.JOIN
DISCONNECT = spread.MembershipReason.DISCONNECT
NETWORK = spread.MembershipReason.NETWORK


def session_of(private_group: str) -> SpreadSession:
    return SpreadSession(types.SimpleNamespace(private_group=private_group), GROUP)


def view(members, reason, changed=None, index=1):
    return spread.MembershipMessage(
        group=GROUP,
        group_id=spread.GroupId(0x0A000001, 1796334379, index),
        members=tuple(members),
        reason=reason,
        changed_member=changed,
        vs_sets=((changed,),) if changed else (tuple(members),),
        my_vs_set_index=0,
    )


def message(sender):
    return spread.RegularMessage(
        sender=sender,
        groups=(GROUP,),
        service_type=spread.ServiceType.SAFE,
        message_type=1,
        payload=b"x",
    )


def test_a_view_is_mapped_by_node_id():
    session = session_of("#node.1#b")
    mapped = session._map(view(["#node.0#a", "#node.1#b"], JOIN, "#node.1#b"))
    assert isinstance(mapped, ViewChanged)
    assert mapped.members == {0: "#node.0#a", 1: "#node.1#b"}
    assert (mapped.reason, mapped.changed) == (ChangeReason.JOIN, (1,))


def test_joining_where_the_node_id_is_taken_stops_the_newcomer():
    newcomer = session_of("#node.1#c")
    members = ["#node.0#a", "#node.1#b", "#node.1#c"]
    with pytest.raises(NodeIdTaken, match=r"node id 1 is already used .* #node\.1#b"):
        newcomer._map(view(members, JOIN, "#node.1#c"))


def test_the_others_ignore_the_duplicate_coming_and_going():
    holder = session_of("#node.0#a")
    first = holder._map(view(["#node.0#a", "#node.1#b"], JOIN, "#node.0#a"))
    assert first.members == {0: "#node.0#a", 1: "#node.1#b"}
    # the duplicate's join and its departure are not events of the DVS
    both = ["#node.0#a", "#node.1#b", "#node.1#c"]
    assert holder._map(view(both, JOIN, "#node.1#c", index=2)) is None
    assert holder._map(message("#node.1#c")) is None
    assert isinstance(holder._map(message("#node.1#b")), Delivered)
    back = ["#node.0#a", "#node.1#b"]
    assert holder._map(view(back, DISCONNECT, "#node.1#c", index=3)) is None
    # the real node 1 leaving still is
    gone = holder._map(view(["#node.0#a"], DISCONNECT, "#node.1#b", index=4))
    assert (gone.members, gone.changed) == ({0: "#node.0#a"}, (1,))


def test_a_merge_that_brings_a_duplicate_keeps_the_known_member():
    holder = session_of("#node.0#a")
    holder._map(view(["#node.0#a", "#node.1#b"], JOIN, "#node.0#a"))
    # a network merge lists the other side's node 1 first
    merged = holder._map(view(["#node.1#z", "#node.0#a", "#node.1#b"], NETWORK))
    assert merged.members == {0: "#node.0#a", 1: "#node.1#b"}


def test_a_merge_that_brings_our_own_id_keeps_ourselves():
    holder = session_of("#node.1#b")
    merged = holder._map(view(["#node.1#a", "#node.1#b"], NETWORK))
    assert merged.members == {1: "#node.1#b"}
