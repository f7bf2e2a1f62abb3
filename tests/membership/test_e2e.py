"""Membership events with real dvsd processes on one Spread daemon.

Disconnect and rejoin run against the stand-in and a real daemon; partition
and merge need the stand-in's control channel (tests/membership/test_netns.py
makes real partitions with real daemons in network namespaces).
"""

from __future__ import annotations

import concurrent.futures


def only(records, event):
    return [record for record in records if record["DVSD_EVENT"] == event]


def dvs_nodes(node, target: int) -> dict:
    rc, result = node.dvsctl_json("--node", str(target), "dvs", "nodes")
    assert rc == 0, result
    return result["replies"][0]["items"][0]


def test_start_reports_each_node_its_own_join(scripted_cluster):
    for node in scripted_cluster:
        first = node.records()[0]
        assert first["DVSD_EVENT"] == "join"
        assert first["DVSD_SELF_CHANGED"] == "1"
        assert first["DVSD_CHANGED"] == str(node.node_id)
        assert first["DVSD_NODE"] == str(node.node_id)
        assert first["DVSD_PREVIOUS_VIEW_ID"] == ""
        assert first["DVSD_SEQUENCE"] == "1"
        assert first["stdin"]["self_changed"] is True
        assert first["stdin"]["previous_view_id"] is None


def test_kill_runs_disconnect_once_then_restart_runs_join(scripted_cluster):
    survivors, victim = scripted_cluster[:2], scripted_cluster[2]
    victim.kill()
    for node in survivors:
        node.wait_script("disconnect")

    views = set()
    for node in survivors:
        (record,) = only(node.records(), "disconnect")
        assert record["DVSD_CHANGED"] == "2"
        assert record["DVSD_SELF_CHANGED"] == "0"
        assert record["DVSD_CAUSE"] == "disconnect"
        assert record["DVSD_MEMBERS"] == "0 1"
        assert record["DVSD_PREVIOUS_MEMBERS"] == "0 1 2"
        assert record["DVSD_LEFT"] == "2"
        assert record["DVSD_LEFT_HOW"] == "2:disconnect"
        assert record["DVSD_JOINED"] == ""
        assert record["DVSD_MAJORITY"] == "1"
        assert record["stdin"]["left"] == [{"node": 2, "how": "disconnect"}]
        assert record["stdin"]["view_id"] == record["DVSD_VIEW_ID"]
        views.add((record["DVSD_PREVIOUS_VIEW_ID"], record["DVSD_VIEW_ID"]))
        states = {n["node"]: n["state"] for n in dvs_nodes(node, node.node_id)["nodes"]}
        assert states == {0: "up", 1: "up", 2: "disconnected"}
    assert len(views) == 1, f"the two survivors disagree on the views: {views}"

    before = len(victim.records())
    joins_before = [len(only(node.records(), "join")) for node in survivors]
    victim.start()
    victim.wait_script("join")
    for node, count in zip(survivors, joins_before, strict=True):
        node.wait_script("join", count + 1)
        record = only(node.records(), "join")[-1]
        assert record["DVSD_CHANGED"] == "2"
        assert record["DVSD_SELF_CHANGED"] == "0"
        assert record["DVSD_MEMBERS"] == "0 1 2"
        assert record["DVSD_JOINED_HOW"] == "2:join"
        # and still exactly one disconnect, nothing replayed
        assert len(only(node.records(), "disconnect")) == 1

    (rejoined,) = victim.records()[before:]
    assert rejoined["DVSD_EVENT"] == "join"
    assert rejoined["DVSD_SELF_CHANGED"] == "1"
    assert rejoined["DVSD_CHANGED"] == "2"
    assert rejoined["DVSD_PREVIOUS_VIEW_ID"] == ""
    assert rejoined["DVSD_SEQUENCE"] == "1"
    assert rejoined["DVSD_MEMBERS"] == "0 1 2"

    for node in scripted_cluster:
        assert node.script_failures() == []
        assert "event=join" in node.sample_log.read_text()
    summary = dvs_nodes(scripted_cluster[0], 0)
    assert {n["node"]: n["state"] for n in summary["nodes"]} == {
        0: "up",
        1: "up",
        2: "up",
    }
    assert summary["majority"] is True


def test_partition_then_merge_on_every_node(scripted_standin_cluster):
    daemon, nodes = scripted_standin_cluster
    daemon.partition([["node.0", "node.1"], ["node.2"]])
    for node in nodes:
        node.wait_script("partition")

    expected = {0: ("2", "1"), 1: ("2", "1"), 2: ("0 1", "0")}
    for node in nodes:
        (record,) = only(node.records(), "partition")
        changed, majority = expected[node.node_id]
        assert record["DVSD_CHANGED"] == changed
        assert record["DVSD_MAJORITY"] == majority
        assert record["DVSD_CAUSE"] == "network"
        assert record["DVSD_TRANSITIONAL"] == "1"  # each side lost someone
        assert record["DVSD_SELF_CHANGED"] == "0"
    minority = dvs_nodes(nodes[2], 2)
    assert minority["majority"] is False
    assert {n["node"]: n["state"] for n in minority["nodes"]} == {
        0: "unreachable",
        1: "unreachable",
        2: "up",
    }
    assert dvs_nodes(nodes[0], 0)["majority"] is True

    daemon.merge()
    for node in nodes:
        node.wait_script("merge")
    merge_views = set()
    for node in nodes:
        records = node.records()
        assert [r["DVSD_EVENT"] for r in records[-2:]] == ["partition", "merge"]
        merge = records[-1]
        assert merge["DVSD_CHANGED"] == ("2" if node.node_id < 2 else "0 1")
        assert merge["DVSD_MEMBERS"] == "0 1 2"
        assert merge["DVSD_MAJORITY"] == "1"
        merge_views.add(merge["DVSD_VIEW_ID"])
        summary = dvs_nodes(node, node.node_id)
        assert summary["view_id"] == merge["DVSD_VIEW_ID"]
        assert {n["state"] for n in summary["nodes"]} == {"up"}
    assert len(merge_views) == 1, f"views disagree after the merge: {merge_views}"
    for node in nodes:
        # every transitional signal named the view it ended
        assert not node.log.count(lambda e: e["event"] == "transitional_unexpected")
    for node in nodes:
        assert node.script_failures() == []
    # the side that lost nobody got no transitional signal before the merge
    assert only(nodes[0].records(), "merge")[0]["DVSD_TRANSITIONAL"] == "0"


def test_in_flight_request_reports_the_partitioned_node(scripted_standin_cluster):
    daemon, nodes = scripted_standin_cluster
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(
            nodes[0].dvsctl_json,
            "--all",
            "--timeout",
            "20",
            "call",
            "TESTSLOW",
            "seconds=3",
        )
        nodes[2].log.wait_for(lambda e: e.get("event") == "testslow_waiting")
        daemon.partition([["node.0", "node.1"], ["node.2"]])
        rc, result = pending.result(timeout=30)
    assert rc == 4, result
    assert [reply["node"] for reply in result["replies"]] == [0, 1]
    assert result["missing"] == [{"node": 2, "reason": "left (network)"}]
    nodes[0].wait_script("partition")
