"""Membership: the DVS view, the kernel it drives, and the jobs it queues."""

from __future__ import annotations

import attrs
import pytest
import structlog.testing

from dvsd.config import ClusterConfig, Config, ScriptsConfig
from dvsd.kernel.emulated import EmulatedKernel
from dvsd.kernel.models import DcParams
from dvsd.membership import Membership, NodeState
from dvsd.transport.group import ChangeReason, Transitional, ViewChanged


class RecordingRunner:
    """Stands in for the ScriptRunner: keeps the submitted jobs."""

    def __init__(self) -> None:
        self.jobs = []

    def submit(self, job) -> None:
        self.jobs.append(job)


def make_view(view_id, members, reason=ChangeReason.JOIN, changed=(), vs_sets=()):
    return ViewChanged(
        view_id=view_id,
        members={node: f"#node.{node}#host{node}" for node in members},
        reason=reason,
        changed=tuple(changed),
        vs_sets=tuple(frozenset(vs) for vs in vs_sets),
        my_vs_set=0,
    )


def every_event_scripts() -> ScriptsConfig:
    return ScriptsConfig(
        join=("j",), leave=("l",), disconnect=("d",), partition=("p",), merge=("m",)
    )


@pytest.fixture
def kernel():
    """An emulated DVK of node 0 with DCs 1 and 2 running (3 is not).

    A DC always holds its local node, so node 0 is in both.
    """
    dvk = EmulatedKernel()
    dvk.dvs_init(0)
    dvk.dc_init(DcParams(dcid=1, name="web"))
    dvk.dc_init(DcParams(dcid=2, name="db"))
    return dvk


def membership(kernel=None, nodes=(), dcs=(1, 3), scripts=None):
    config = Config(
        node_id=0,
        cluster=ClusterConfig(nodes=tuple(nodes), dcs=tuple(dcs)),
        scripts=scripts or every_event_scripts(),
    )
    return Membership(config=config, kernel=kernel, runner=RecordingRunner())


def states(layer: Membership) -> dict[int, str]:
    return {entry["node"]: entry["state"] for entry in layer.snapshot()["nodes"]}


def test_first_view_joins_everyone_present_into_the_running_dcs(kernel):
    layer = membership(kernel)
    layer.on_view(make_view("a.1", {0, 1, 2}, changed=(2,)))

    assert states(layer) == {0: "up", 1: "up", 2: "up"}
    assert kernel.get_dc_info(1).nodes == (0, 1, 2)
    assert kernel.get_dc_info(2).nodes == (0,)  # not named in [cluster] dcs
    assert kernel.get_node_info(1).name == "host1"
    (job,) = layer.runner.jobs
    facts = job.facts
    assert (facts.event, facts.changed, facts.self_changed) == ("join", (0,), True)
    assert facts.previous_view_id == "" and facts.members == (0, 1, 2)
    assert job.scripts == ("j",)


def test_join_disconnect_leave_follow_the_seed(kernel):
    layer = membership(kernel)
    layer.on_view(make_view("a.1", {0}, changed=(0,)))
    layer.on_view(make_view("a.2", {0, 1}, changed=(1,)))
    assert kernel.get_dc_info(1).nodes == (0, 1)
    layer.on_view(make_view("a.3", {0, 1, 2}, changed=(2,)))
    layer.on_view(make_view("a.4", {0, 1}, ChangeReason.DISCONNECT, changed=(2,)))
    assert states(layer)[2] == "disconnected"
    assert kernel.get_dc_info(1).nodes == (0, 1)
    assert kernel.get_node_info(2).flags == 0  # node down, pair freed
    layer.on_view(make_view("a.5", {0}, ChangeReason.LEAVE, changed=(1,)))
    assert states(layer) == {0: "up", 1: "left", 2: "disconnected"}
    assert kernel.get_dc_info(1).nodes == (0,)

    events = [(j.facts.event, j.facts.changed) for j in layer.runner.jobs]
    assert events == [
        ("join", (0,)),
        ("join", (1,)),
        ("join", (2,)),
        ("disconnect", (2,)),
        ("leave", (1,)),
    ]
    last = layer.runner.jobs[-1].facts
    assert (last.view_id, last.previous_view_id) == ("a.5", "a.4")
    assert last.left == ((1, "leave"),)
    assert [j.facts.sequence for j in layer.runner.jobs] == [1, 2, 3, 4, 5]


def test_partition_then_merge_marks_unreachable_and_back_up(kernel):
    layer = membership(kernel, nodes=(0, 1, 2))
    layer.on_view(make_view("a.1", {0, 1, 2}))
    layer.on_transitional(Transitional("a.1"))
    layer.on_view(make_view("b.1", {0}, ChangeReason.NETWORK, vs_sets=[{0}]))
    snap = layer.snapshot()
    assert states(layer) == {0: "up", 1: "unreachable", 2: "unreachable"}
    assert snap["majority"] is False and snap["view_id"] == "b.1"
    assert kernel.get_dc_info(1).nodes == (0,)

    layer.on_view(
        make_view("c.1", {0, 1, 2}, ChangeReason.NETWORK, vs_sets=[{0}, {1, 2}])
    )
    assert states(layer) == {0: "up", 1: "up", 2: "up"}
    assert layer.snapshot()["majority"] is True
    assert kernel.get_dc_info(1).nodes == (0, 1, 2)

    partition, merge = layer.runner.jobs[1:]
    assert (partition.facts.event, partition.facts.changed) == ("partition", (1, 2))
    assert partition.facts.transitional is True and partition.facts.majority is False
    assert (merge.facts.event, merge.facts.changed) == ("merge", (1, 2))
    assert merge.facts.transitional is False  # none came before this one


def test_loss_and_gain_queue_partition_then_merge_with_the_same_view(kernel):
    layer = membership(kernel)
    layer.on_view(make_view("a.1", {0, 1, 3}))
    layer.on_view(
        make_view("b.1", {0, 1, 4}, ChangeReason.NETWORK, vs_sets=[{0, 1}, {4}])
    )
    first, second = layer.runner.jobs[1:]
    assert [first.facts.event, second.facts.event] == ["partition", "merge"]
    assert first.facts.events == second.facts.events == ("partition", "merge")
    assert first.facts.view_id == second.facts.view_id == "b.1"
    assert first.facts.left == ((3, "partition"),)
    assert first.facts.joined == ((4, "merge"),)
    assert kernel.get_dc_info(1).nodes == (0, 1, 4)


def test_session_loss_then_reconnect_is_a_fresh_self_join(kernel):
    layer = membership(kernel)
    layer.on_view(make_view("a.1", {0, 1, 2}))
    layer.on_session_lost()
    assert states(layer) == {0: "disconnected", 1: "unreachable", 2: "unreachable"}
    assert layer.snapshot()["view_id"] == "" and layer.majority is False

    layer.on_view(make_view("z.1", {0, 1}, changed=(0,)))
    facts = layer.runner.jobs[-1].facts
    assert (facts.event, facts.self_changed, facts.previous_view_id) == (
        "join",
        True,
        "",
    )
    assert states(layer) == {0: "up", 1: "up", 2: "unreachable"}
    assert kernel.get_dc_info(1).nodes == (0, 1)  # 2 is out of the kernel


def test_kernel_errors_are_logged_not_raised(kernel):
    with structlog.testing.capture_logs() as logs:
        layer = membership(kernel)
        layer.on_view(make_view("a.1", {0, 1}))
        # node 1 is already in DC 1; a repeated JOIN of it calls nothing
        layer.on_view(make_view("a.2", {0, 1}, changed=(1,)))
        assert kernel.get_dc_info(1).nodes == (0, 1)
        assert not [e for e in logs if e["event"] == "dvs_view_call_failed"]
        # a node id beyond the DVS's nr_nodes is refused by the kernel
        layer.on_view(make_view("a.3", {0, 1, 5000}, changed=(5000,)))
    assert states(layer)[5000] == "up"
    (failure,) = [e for e in logs if e["event"] == "dvs_view_call_failed"]
    assert failure["call"] == "attach_node nodeid=5000"
    assert "EDVSBADNODEID" in failure["error"]


def test_no_dvs_yet_changes_only_the_view():
    layer = membership(EmulatedKernel())  # dvs_init never ran
    layer.on_view(make_view("a.1", {0, 1}))
    layer.on_view(make_view("a.2", {0}, ChangeReason.DISCONNECT, changed=(1,)))
    assert states(layer) == {0: "up", 1: "disconnected"}


def test_configured_nodes_never_seen_are_unknown_and_count_for_majority():
    layer = membership(nodes=(0, 1, 2, 3))
    layer.on_view(make_view("a.1", {0, 1}))
    snap = layer.snapshot()
    assert states(layer) == {0: "up", 1: "up", 2: "unknown", 3: "unknown"}
    assert snap["majority"] is False
    assert snap["majority_basis"] == "configured nodes"


def test_largest_view_is_the_basis_without_configured_nodes():
    layer = membership()
    layer.on_view(make_view("a.1", {0, 1, 2}))
    layer.on_view(make_view("b.1", {0}, ChangeReason.NETWORK, vs_sets=[{0}]))
    snap = layer.snapshot()
    assert (snap["largest_view"], snap["majority"]) == (3, False)
    layer.on_view(make_view("c.1", {0, 1}, ChangeReason.NETWORK, vs_sets=[{0}, {1}]))
    assert layer.snapshot()["majority"] is True


def test_events_without_scripts_queue_nothing():
    layer = membership(scripts=ScriptsConfig())
    layer.on_view(make_view("a.1", {0, 1}))
    assert layer.runner.jobs == []
    assert layer.sequence == 1  # the event still happened


def test_config_is_not_mutated():
    layer = membership()
    before = attrs.asdict(layer.config)
    layer.on_view(make_view("a.1", {0, 1}))
    assert attrs.asdict(layer.config) == before
    assert layer.snapshot()["members"] == [0, 1]
    assert NodeState("up") is NodeState.UP
