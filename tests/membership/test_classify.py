"""classify(): which events one regular view carries, from one node's side."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvsd.config import MembershipEvent as E
from dvsd.membership import Classification, Occurrence, classify, has_majority
from dvsd.transport.group import ChangeReason, ViewChanged


def view(members, reason=ChangeReason.JOIN, changed=(), vs_sets=(), my_vs_set=0):
    return ViewChanged(
        view_id="v",
        members={node: f"#node.{node}#h{node}" for node in members},
        reason=reason,
        changed=tuple(changed),
        vs_sets=tuple(frozenset(vs) for vs in vs_sets),
        my_vs_set=my_vs_set,
    )


def kinds(result: Classification):
    return [(o.event, o.nodes, o.self_changed) for o in result.events]


def test_first_view_after_start_is_own_join_whatever_the_cause():
    for reason in ChangeReason:
        result = classify(1, None, view({0, 1, 2}, reason, changed=(0,)))
        assert kinds(result) == [(E.JOIN, (1,), True)]
        assert result.joined == ((1, "join"),)
        assert result.left == ()


def test_join_of_another_node():
    result = classify(0, frozenset({0, 1}), view({0, 1, 2}, changed=(2,)))
    assert kinds(result) == [(E.JOIN, (2,), False)]
    assert result.joined == ((2, "join"),)


def test_own_join_listed_in_changed_is_self_join():
    result = classify(2, frozenset({0, 1}), view({0, 1, 2}, changed=(2,)))
    assert kinds(result) == [(E.JOIN, (2,), True)]


def test_join_of_a_member_that_is_not_a_dvsd_node_gives_nothing():
    # a monitoring client in the group: the session maps it to no node id
    result = classify(0, frozenset({0, 1}), view({0, 1}, changed=()))
    assert result.events == ()


def test_leave():
    result = classify(
        0, frozenset({0, 1, 2}), view({0, 2}, ChangeReason.LEAVE, changed=(1,))
    )
    assert kinds(result) == [(E.LEAVE, (1,), False)]
    assert result.left == ((1, "leave"),)


def test_disconnect():
    result = classify(
        1, frozenset({0, 1, 2}), view({0, 1}, ChangeReason.DISCONNECT, changed=(2,))
    )
    assert kinds(result) == [(E.DISCONNECT, (2,), False)]
    assert result.left == ((2, "disconnect"),)
    assert result.joined == ()


def test_disconnect_without_a_named_node_uses_the_difference():
    result = classify(
        1, frozenset({0, 1, 2}), view({0, 1}, ChangeReason.DISCONNECT, changed=())
    )
    assert kinds(result) == [(E.DISCONNECT, (2,), False)]


def test_network_loss_is_partition():
    # §5.4: after a one-sided partition, k = 1 and the set holds our side
    result = classify(
        0,
        frozenset({0, 1, 2}),
        view({0, 1}, ChangeReason.NETWORK, vs_sets=[{0, 1}]),
    )
    assert kinds(result) == [(E.PARTITION, (2,), False)]
    assert result.left == ((2, "partition"),)
    # the cut-off side sees the other two lost
    alone = classify(
        2, frozenset({0, 1, 2}), view({2}, ChangeReason.NETWORK, vs_sets=[{2}])
    )
    assert kinds(alone) == [(E.PARTITION, (0, 1), False)]


def test_network_gain_is_merge_on_both_sides():
    # §7h: two VS sets, each side's offset points at its own set
    sets = [{0, 1}, {2}]
    side_a = classify(
        0, frozenset({0, 1}), view({0, 1, 2}, ChangeReason.NETWORK, vs_sets=sets)
    )
    side_b = classify(
        2,
        frozenset({2}),
        view({0, 1, 2}, ChangeReason.NETWORK, vs_sets=sets, my_vs_set=1),
    )
    assert kinds(side_a) == [(E.MERGE, (2,), False)]
    assert side_a.joined == ((2, "merge"),)
    assert kinds(side_b) == [(E.MERGE, (0, 1), False)]


def test_loss_and_gain_in_one_change_is_partition_then_merge():
    # 3 was lost and 4 came in with one network change
    result = classify(
        0,
        frozenset({0, 1, 3}),
        view({0, 1, 4}, ChangeReason.NETWORK, vs_sets=[{0, 1}, {4}]),
    )
    assert kinds(result) == [(E.PARTITION, (3,), False), (E.MERGE, (4,), False)]
    assert result.left == ((3, "partition"),)
    assert result.joined == ((4, "merge"),)


def test_node_that_dropped_and_came_back_within_one_change_is_in_both():
    # the set is unchanged, but 2 arrived from another daemon membership
    result = classify(
        0,
        frozenset({0, 1, 2}),
        view({0, 1, 2}, ChangeReason.NETWORK, vs_sets=[{0, 1}, {2}]),
    )
    assert kinds(result) == [(E.PARTITION, (2,), False), (E.MERGE, (2,), False)]


def test_network_change_that_changes_nothing_gives_no_event():
    result = classify(
        0, frozenset({0, 1}), view({0, 1}, ChangeReason.NETWORK, vs_sets=[{0, 1}])
    )
    assert result.events == ()


def test_bare_network_view_without_transitional_on_the_side_that_lost_nobody():
    # §8 item 4: the side that lost nobody gets only REG_MEMB|NETWORK.  The
    # classification has no transitional input at all, so the result is the
    # same MERGE the other side computes after its TRANSITION_MESS.
    result = classify(
        0,
        frozenset({0, 1}),
        view({0, 1, 2}, ChangeReason.NETWORK, vs_sets=[{0, 1}, {2}]),
    )
    assert kinds(result) == [(E.MERGE, (2,), False)]


def test_network_view_without_vs_sets_uses_set_difference():
    result = classify(0, frozenset({0, 1, 3}), view({0, 1, 4}, ChangeReason.NETWORK))
    assert kinds(result) == [(E.PARTITION, (3,), False), (E.MERGE, (4,), False)]


def test_vs_set_that_does_not_hold_us_is_not_trusted():
    result = classify(
        0,
        frozenset({0, 1}),
        view({0, 1, 2}, ChangeReason.NETWORK, vs_sets=[{2}], my_vs_set=0),
    )
    assert kinds(result) == [(E.MERGE, (2,), False)]


def test_transitional_joiner_in_its_own_last_set_is_a_merge():
    result = classify(
        0,
        frozenset({0, 1, 2}),
        view({0, 1, 5}, ChangeReason.NETWORK, vs_sets=[{0, 1}, {5}]),
    )
    assert kinds(result) == [(E.PARTITION, (2,), False), (E.MERGE, (5,), False)]


@pytest.mark.parametrize(
    ("members", "configured", "largest", "expected"),
    [
        ({0, 1}, (0, 1, 2), 3, True),
        ({2}, (0, 1, 2), 3, False),
        ({0, 1}, (0, 1, 2, 3), 4, False),  # a tie is no majority
        ({0, 1, 9}, (0, 1, 2, 3), 4, False),  # 9 is not configured
        ({0, 1}, (), 3, True),
        ({0}, (), 3, False),
        ({0}, (), 1, True),
        (set(), (), 0, False),
    ],
)
def test_majority(members, configured, largest, expected):
    assert has_majority(frozenset(members), configured, largest) is expected


nodes = st.frozensets(st.integers(0, 8), max_size=6)


@given(previous=nodes, current=nodes, me=st.integers(0, 8), moved=nodes)
def test_network_events_account_for_every_difference(previous, current, me, moved):
    previous, current = previous | {me}, current | {me}
    mine = (previous & current) - (moved - {me})
    others = current - mine
    result = classify(
        me,
        previous,
        view(
            current, ChangeReason.NETWORK, vs_sets=[mine, others] if others else [mine]
        ),
    )
    lost = {n for o in result.events if o.event is E.PARTITION for n in o.nodes}
    gained = {n for o in result.events if o.event is E.MERGE for n in o.nodes}
    assert previous - current <= lost
    assert current - previous <= gained
    assert me not in lost | gained
    assert lost <= previous and gained <= current
    order = [o.event for o in result.events]
    assert order in ([], [E.PARTITION], [E.MERGE], [E.PARTITION, E.MERGE])
    assert all(isinstance(o, Occurrence) and o.nodes for o in result.events)
