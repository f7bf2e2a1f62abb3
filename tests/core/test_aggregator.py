"""Who must answer an all-nodes request, and how it ends."""

from __future__ import annotations

import trio

from dvsd.aggregator import Aggregation
from dvsd.wire import RequestId, WireReply

ID = RequestId(requester=0, incarnation=7, seq=1)


def reply(node: int, rcode: int = 0) -> WireReply:
    return WireReply(rqst_type=2, id=ID, responder=node, rcode=rcode, items=[node])


def aggregation(destinations=None) -> Aggregation:
    return Aggregation(id=ID, rqst_type=2, destinations=destinations, deadline=0.0)


def test_all_answered():
    gathering = aggregation()
    gathering.delivered(frozenset({0, 1, 2}))
    for node in (2, 0, 1):
        assert not gathering.done.is_set()
        assert gathering.reply(reply(node))
    assert gathering.done.is_set()
    result = gathering.result()
    assert [entry["node"] for entry in result["replies"]] == [0, 1, 2]
    assert result["missing"] == []


def test_one_left_is_reported_with_the_reason():
    gathering = aggregation()
    gathering.delivered(frozenset({0, 1, 2}))
    gathering.reply(reply(0))
    gathering.reply(reply(1))
    assert gathering.view_changed(frozenset({0, 1}), "disconnect") == [2]
    assert gathering.done.is_set()
    assert gathering.result()["missing"] == [{"node": 2, "reason": "left (disconnect)"}]


def test_node_that_answered_then_left_keeps_its_reply():
    gathering = aggregation()
    gathering.delivered(frozenset({0, 1}))
    gathering.reply(reply(1))
    assert gathering.view_changed(frozenset({0}), "network") == []
    assert not gathering.done.is_set()


def test_one_timed_out():
    gathering = aggregation()
    gathering.delivered(frozenset({0, 1, 2}))
    gathering.reply(reply(0))
    gathering.reply(reply(2))
    gathering.time_out()
    assert gathering.result()["missing"] == [{"node": 1, "reason": "timeout"}]


def test_node_joining_mid_request_is_not_waited_for():
    gathering = aggregation()
    gathering.delivered(frozenset({0, 1}))
    gathering.view_changed(frozenset({0, 1, 5}), "join")
    assert not gathering.reply(reply(5))  # not expected: joined after delivery
    gathering.reply(reply(0))
    gathering.reply(reply(1))
    assert gathering.done.is_set()
    assert [entry["node"] for entry in gathering.result()["replies"]] == [0, 1]


def test_destination_outside_the_view_is_missing_at_once():
    gathering = aggregation(destinations=(1, 9))
    gathering.delivered(frozenset({0, 1}))
    assert gathering.result()["missing"] == [
        {"node": 9, "reason": "not a member of the current view"}
    ]
    gathering.reply(reply(1))
    assert gathering.done.is_set()


def test_duplicate_reply_is_ignored():
    gathering = aggregation()
    gathering.delivered(frozenset({0, 1}))
    assert gathering.reply(reply(0, rcode=0))
    assert not gathering.reply(reply(0, rcode=-5))
    assert gathering.replies[0].rcode == 0


def test_request_never_delivered_times_out_every_destination():
    gathering = aggregation(destinations=(1, 2))
    gathering.time_out(frozenset({0, 1, 2, 3}))
    assert gathering.result()["missing"] == [
        {"node": 1, "reason": "timeout"},
        {"node": 2, "reason": "timeout"},
    ]
    everyone = aggregation()
    everyone.time_out(frozenset({0, 3}))
    assert [entry["node"] for entry in everyone.result()["missing"]] == [0, 3]


def test_replies_before_delivery_are_not_counted():
    gathering = aggregation()
    assert not gathering.reply(reply(0))


async def test_failure_wakes_the_waiter():
    gathering = aggregation()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(gathering.done.wait)
        gathering.fail(-1006, "session lost")
    result = gathering.result()
    assert result["rcode"] == -1006
    assert result["error"] == "session lost"


def test_node_results_for_sub_requests():
    gathering = aggregation(destinations=(0, 1, 2))
    gathering.delivered(frozenset({0, 1, 2}))
    gathering.reply(reply(0))
    gathering.reply(reply(1, rcode=-303))
    gathering.view_changed(frozenset({0, 1}), "network")
    results = gathering.node_results()
    assert [(r.node, r.ok) for r in results] == [(0, True), (1, False), (2, False)]
    assert results[2].missing_reason == "left (network)"
