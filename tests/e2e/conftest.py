from __future__ import annotations

import json

import pytest
from tests.e2e.harness import Node


def start_policy_node(tmp_path, allowed: list[str]) -> Node:
    """A single-node dvsd whose [host] policy lets COMMAND run ``allowed``."""
    node = Node(
        tmp_path,
        0,
        {"transport": "single-node"},
        # a JSON array of strings is a TOML array too
        extra=f'[host]\ncommand = "allow"\ncommand_allow = {json.dumps(allowed)}\n',
    )
    node.start()
    node.wait_view(1)
    return node


@pytest.fixture
def node(tmp_path):
    """One single-node dvsd whose [host] policy allows `head` and `sleep`."""
    node = start_policy_node(tmp_path, ["head", "sleep"])
    yield node
    node.cleanup()


@pytest.fixture
def single_node(tmp_path):
    """One dvsd on the single-node transport."""
    node = Node(tmp_path, 0, {"transport": "single-node"})
    node.start()
    node.wait_view(1)
    yield node
    node.cleanup()


def start_cluster(tmp_path, daemon, size: int = 3) -> list[Node]:
    nodes = [
        Node(tmp_path, node_id, {"transport": "spread", "daemon": daemon.tcp_address})
        for node_id in range(size)
    ]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_view(size)
    return nodes


@pytest.fixture(params=["standin", "real"])
def cluster(request, tmp_path, spread_daemon_factory):
    """Three dvsd processes on one Spread daemon (stand-in, then real)."""
    daemon = spread_daemon_factory.start(request.param)
    nodes = start_cluster(tmp_path, daemon)
    yield nodes
    for node in nodes:
        node.cleanup()
