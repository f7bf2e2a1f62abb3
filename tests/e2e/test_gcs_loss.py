"""The Spread daemon goes away under dvsd, and comes back."""

from __future__ import annotations

from tests.e2e.conftest import start_cluster
from tests.spread_standin.launch import start_standin


def test_daemon_loss_is_reported_and_dvsd_reconnects(tmp_path, spread_daemon_factory):
    daemon = spread_daemon_factory.start("standin")
    nodes = start_cluster(tmp_path, daemon, size=2)
    try:
        marks = [node.log.mark() for node in nodes]
        daemon.stop()
        for node in nodes:
            node.log.wait_for(
                lambda e: e.get("event") == "gcs_state" and e["state"] == "lost"
            )
        rc, status = nodes[0].dvsctl_json("status")
        assert rc == 0
        assert status["gcs"] in {"lost", "unreachable"}
        assert status["view"]["members"] == []

        rc, result = nodes[0].dvsctl_json("--all", "dvs", "nodes")
        assert rc == 1
        assert result["rcode"] == -1006  # GCS_DOWN
        assert "has no spread session" in result["error"]

        # Back on the same port: both nodes reconnect on their own.
        revived = start_standin(tmp_path / "revived", port=daemon.port)
        try:
            for node, mark in zip(nodes, marks, strict=True):
                node.log.wait_for(
                    lambda e: (
                        e.get("event") == "view_changed" and len(e["members"]) == 2
                    ),
                    timeout=30,
                    since=mark,
                )
            rc, result = nodes[0].dvsctl_json("--all", "dvs", "nodes")
            assert rc == 0, result
            assert [reply["node"] for reply in result["replies"]] == [0, 1]
        finally:
            revived.stop()
    finally:
        for node in nodes:
            node.cleanup()
