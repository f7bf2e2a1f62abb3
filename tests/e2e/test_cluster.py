"""Three dvsd nodes on one Spread daemon (the stand-in, and a real one if installed)."""

from __future__ import annotations

import concurrent.futures

import msgpack

from dvsd.rqst import RequestType, ReturnCode
from dvsd.transport.msgq import ClientMessage, ClientQueues, Op


def test_all_nodes_answer_once(cluster):
    rc, result = cluster[0].dvsctl_json("--all", "dvs", "nodes")
    assert rc == 0, result
    assert [reply["node"] for reply in result["replies"]] == [0, 1, 2]
    assert result["missing"] == []
    for reply in result["replies"]:
        summary = reply["items"][0]
        assert [entry["node"] for entry in summary["nodes"]] == [0, 1, 2]
        assert summary["majority"] is True


def test_one_node_answers_alone(cluster):
    rc, result = cluster[0].dvsctl_json("--node", "2", "call", "TESTECHO", "size=10")
    assert rc == 0, result
    (reply,) = result["replies"]
    assert reply["node"] == 2
    assert reply["items"][0]["node"] == 2
    # node 1 was not asked, so it executed nothing
    assert cluster[1].log.count(lambda e: e.get("event") == "request_started") == 0


def test_node_set_and_absent_node(cluster):
    rc, result = cluster[1].dvsctl_json("--nodes", "0,2,7", "dvs", "nodes")
    assert rc == 4
    assert [reply["node"] for reply in result["replies"]] == [0, 2]
    assert result["missing"] == [
        {"node": 7, "reason": "not a member of the current view"}
    ]


def test_node_killed_mid_request_is_reported_as_left(cluster):
    victim = cluster[2]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(
            cluster[0].dvsctl_json,
            "--all",
            "--timeout",
            "20",
            "call",
            "TESTSLOW",
            "seconds=1.5",
        )
        victim.log.wait_for(lambda e: e.get("event") == "testslow_waiting")
        victim.kill()
        rc, result = pending.result(timeout=30)
    assert rc == 4
    assert [reply["node"] for reply in result["replies"]] == [0, 1]
    assert result["missing"] == [{"node": 2, "reason": "left (disconnect)"}]


def test_many_line_request_to_all_is_refused_by_the_daemon(cluster):
    # dvsctl fans many-line requests out per node; a client that sends one
    # to all nodes anyway is refused by the protocol rule.
    queues = ClientQueues(cluster[0].request_key, cluster[0].reply_key)
    message = ClientMessage(
        Op.REQUEST,
        queues.client,
        queues.new_cseq(),
        rqst_type=RequestType.PS,
        destinations=None,
    )
    result = msgpack.unpackb(queues.exchange(message, 10.0))
    assert result["rcode"] == ReturnCode.MANY_LINES_TO_ALL
    assert "only go to one node" in result["error"]
    assert result["replies"] == []


def test_many_line_request_fans_out_and_folds(cluster):
    rc, result = cluster[0].dvsctl_json("--all", "call", "PS")
    errors = [
        (r["node"], r["rcode"], r["error"]) for r in result["replies"] if r["error"]
    ]
    assert rc == 0, (errors, result["missing"])
    assert sorted(reply["node"] for reply in result["replies"]) == [0, 1, 2]
    done = cluster[0].dvsctl("--all", "call", "MOUNT")
    assert done.returncode == 0
    # the three nodes share this machine's mount table: one folded section
    assert done.stdout.startswith("nodes 0-2 (3):"), done.stdout
