"""DVSNODES: the handler's item and dvsctl's rendering of it."""

from __future__ import annotations

import structlog

from dvsd.cli.cluster import render_dvs_nodes
from dvsd.config import ClusterConfig, Config
from dvsd.handlers.cluster import dvs_nodes
from dvsd.membership import Membership
from dvsd.registry import HandlerContext, NoParams, View
from dvsd.transport.group import ChangeReason, ViewChanged


def context(config: Config, membership=None, members=frozenset({0, 1})):
    return HandlerContext(
        node_id=0,
        kernel=None,
        config=config,
        log=structlog.get_logger("test"),
        requester=0,
        view=View(members=members, view_id="v.2"),
        deadline=0.0,
        membership=membership,
    )


def network_view(view_id, members, vs_sets):
    return ViewChanged(
        view_id=view_id,
        members={node: f"#node.{node}#h" for node in members},
        reason=ChangeReason.NETWORK,
        vs_sets=tuple(frozenset(s) for s in vs_sets),
    )


async def test_reply_is_the_membership_view():
    config = Config(cluster=ClusterConfig(nodes=(0, 1, 2)))
    layer = Membership(config=config)
    layer.on_view(network_view("v.1", {0, 1, 2}, [{0, 1, 2}]))
    layer.on_view(network_view("v.2", {0, 1}, [{0, 1}]))
    reply = await dvs_nodes(context(config, layer), NoParams())
    (item,) = reply.items
    assert item["view_id"] == "v.2" and item["previous_view_id"] == "v.1"
    assert item["majority"] is True
    assert [(n["node"], n["state"], n["how"]) for n in item["nodes"]] == [
        (0, "up", "join"),
        (1, "up", "present"),
        (2, "unreachable", "partition"),
    ]
    text = render_dvs_nodes(reply.items)
    assert text.startswith("view v.2  majority yes (of configured nodes)\n")
    assert text.splitlines()[-1].split() == [
        "2",
        "unreachable",
        "no",
        "partition",
        "v.2",
    ]


async def test_without_the_membership_layer_the_current_view_answers():
    config = Config(cluster=ClusterConfig(nodes=(0, 1, 2, 3)))
    reply = await dvs_nodes(context(config), NoParams())
    (item,) = reply.items
    assert item["majority"] is False  # 2 of 4 configured
    assert [(n["node"], n["state"]) for n in item["nodes"]] == [
        (0, "up"),
        (1, "up"),
        (2, "unreachable"),
        (3, "unreachable"),
    ]
