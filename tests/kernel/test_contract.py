"""One contract for both kernel backends (the ``kernel`` fixture runs each).

Every expectation here comes from the DVK ABI reference (dvk-abi.md): the
checks, their error codes and the values calls return.  The cffi backend runs
over the C test double of /dev/dvk, so its structs and errno mapping are
exercised for real.
"""

from __future__ import annotations

import os

import pytest

from dvsd.kernel import Kernel, KernelError, abi
from dvsd.kernel.models import DcParams, DvsParams, PrivUpdate

Edvs = abi.Edvs
LOCAL = 0
MY_PID = os.getpid()


def code_of(call, *args, **kwargs) -> int:
    with pytest.raises(KernelError) as caught:
        call(*args, **kwargs)
    assert caught.value.rcode == caught.value.code
    return caught.value.code


def start(kernel, nodeid=LOCAL, **dc):
    kernel.dvs_init(nodeid)
    kernel.dc_init(DcParams(dcid=dc.pop("dcid", 0), name=dc.pop("name", "dc0"), **dc))


def bring_up(kernel, nodeid, name=None):
    """What the proxy programs and dvsd do: bind, connect, node-up."""
    kernel.proxies_bind(nodeid, f"px{nodeid}", MY_PID, MY_PID)
    kernel.proxy_conn(nodeid, abi.ProxyConn.CONNECT_SPROXY)
    kernel.proxy_conn(nodeid, abi.ProxyConn.CONNECT_RPROXY)
    kernel.node_up(nodeid, name or f"node{nodeid}", nodeid)


# -- DVS -----------------------------------------------------------------


def test_backend_implements_the_interface(kernel):
    assert isinstance(kernel, Kernel)
    assert kernel.backend_name in ("emulated", "dvk")


def test_calls_before_dvs_init_answer_dvsinit(kernel):
    assert code_of(kernel.get_dvs_info) == Edvs.DVSINIT
    assert code_of(kernel.dc_init, DcParams(dcid=0, name="a")) == Edvs.DVSINIT
    assert code_of(kernel.get_dc_info, 0) == Edvs.DVSINIT
    assert code_of(kernel.get_node_info, 0) == Edvs.DVSINIT
    assert code_of(kernel.dvs_end) == Edvs.DVSINIT


def test_dvs_init_returns_the_local_node_and_fills_the_block(kernel):
    assert kernel.dvs_init(3) == 3
    info = kernel.get_dvs_info()
    assert info.local_node == 3
    assert info.version == abi.DVS_VERSION
    assert info.flags & abi.DvsFlag.INITIALIZED
    assert info.flags & abi.DvsFlag.IOCTL
    assert (info.nr_dcs, info.nr_nodes, info.nr_procs) == (32, 32, 221)
    assert info.name == "DVS_IPC"
    node = kernel.get_node_info(-1)
    assert node.nodeid == 3
    assert node.name == "node3"
    assert node.flags == abi.NodeFlag.ATTACHED | abi.NodeFlag.SCONNECTED
    free = kernel.get_node_info(4)
    assert (free.flags, free.pxid, free.name) == (0, abi.NO_PROXIES, "NONAME")


def test_dvs_init_twice_is_busy(kernel):
    kernel.dvs_init(0)
    assert code_of(kernel.dvs_init, 1) == Edvs.DVSBUSY


@pytest.mark.parametrize("nodeid", [-1, 32, 1000])
def test_dvs_init_bad_node_id(kernel, nodeid):
    assert code_of(kernel.dvs_init, nodeid) == Edvs.BADNODEID


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"nr_dcs": 0}, Edvs.BADRANGE),
        ({"nr_dcs": 33}, Edvs.BADRANGE),
        ({"nr_nodes": 33}, Edvs.BADRANGE),
        ({"nr_procs": 222}, Edvs.BADRANGE),
        ({"nr_tasks": 36}, Edvs.BADRANGE),
        ({"nr_sysprocs": 35}, Edvs.BADRANGE),  # must be > nr_tasks
        ({"nr_sysprocs": 20, "nr_tasks": 10, "nr_procs": 10}, Edvs.BADRANGE),
        ({"max_copybuf": abi.MAXCOPYBUF + 1}, Edvs.BADVALUE),
        ({"max_copylen": abi.MAXCOPYLEN + 1}, Edvs.BADVALUE),
        ({"max_copybuf": 4096, "max_copylen": 1024}, Edvs.BADVALUE),
    ],
)
def test_dvs_init_checks_the_block(kernel, fields, code):
    assert code_of(kernel.dvs_init, 0, DvsParams(**fields)) == code
    assert code_of(kernel.get_dvs_info) == Edvs.DVSINIT  # nothing applied


def test_dvs_params_are_applied_and_kept_across_dvs_end(kernel):
    params = DvsParams(name="cluster", nr_dcs=4, nr_nodes=8, debug_level=7)
    assert kernel.dvs_init(1, params) == 1
    info = kernel.get_dvs_info()
    assert (info.name, info.nr_dcs, info.nr_nodes, info.debug_level) == (
        "cluster",
        4,
        8,
        7,
    )
    assert code_of(kernel.get_dc_info, 4) == Edvs.BADDCID
    assert code_of(kernel.get_node_info, 8) == Edvs.BADNODEID
    kernel.dvs_end()
    assert code_of(kernel.get_dvs_info) == Edvs.DVSINIT
    # no block: the kernel keeps what it has, and checks nodeid against it
    assert code_of(kernel.dvs_init, 8) == Edvs.BADNODEID
    assert kernel.dvs_init(2) == 2
    assert kernel.get_dvs_info().nr_nodes == 8


def test_long_dvs_name_is_cut_to_fifteen_characters(kernel):
    kernel.dvs_init(0, DvsParams(name="a-very-long-dvs-name"))
    assert kernel.get_dvs_info().name == "a-very-long-dvs"


# -- DCs -----------------------------------------------------------------


def test_dc_init_returns_the_local_node_and_sets_the_slot(kernel):
    kernel.dvs_init(5)
    assert kernel.get_dc_info(2).flags == abi.DcState.FREE
    params = DcParams(dcid=2, name="web", nr_procs=10, nr_tasks=4, nr_sysprocs=6)
    assert kernel.dc_init(params) == 5
    dc = kernel.get_dc_info(2)
    assert dc.running
    assert (dc.dcid, dc.name, dc.nr_procs, dc.nr_tasks, dc.nr_sysprocs) == (
        2,
        "web",
        10,
        4,
        6,
    )
    assert dc.nodes == (5,)
    assert dc.pid == os.getpid()
    assert dc.cpus == tuple(range(os.cpu_count()))  # empty mask = all CPUs
    assert kernel.get_node_info(5).dcs == (2,)


def test_dc_cpu_mask(kernel):
    kernel.dvs_init(0)
    kernel.dc_init(DcParams(dcid=0, name="pinned", cpus=(0,)))
    assert kernel.get_dc_info(0).cpus == (0,)
    # a mask naming CPUs the host does not have means "all CPUs"
    kernel.dc_init(DcParams(dcid=1, name="wide", cpus=(0, 1000)))
    assert kernel.get_dc_info(1).cpus == tuple(range(os.cpu_count()))


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"dcid": 32}, Edvs.BADRANGE),
        ({"dcid": -1}, Edvs.BADRANGE),
        ({"nr_procs": 0}, Edvs.BADRANGE),
        ({"nr_procs": 222}, Edvs.BADRANGE),
        ({"nr_tasks": 36}, Edvs.BADRANGE),
        ({"nr_nodes": 0}, Edvs.BADRANGE),
        ({"nr_sysprocs": 35}, Edvs.BADRANGE),
        ({"nr_sysprocs": 65}, Edvs.BADRANGE),
        ({"name": "sixteen-chars-xx"}, Edvs.NAMESIZE),
    ],
)
def test_dc_init_checks(kernel, fields, code):
    kernel.dvs_init(0)
    params = {"dcid": 1, "name": "dc"} | fields
    assert code_of(kernel.dc_init, DcParams(**params)) == code
    assert kernel.get_dc_info(1).flags == abi.DcState.FREE


def test_dc_name_of_fifteen_characters_fits(kernel):
    kernel.dvs_init(0)
    kernel.dc_init(DcParams(dcid=0, name="fifteen-chars-x"))
    assert kernel.get_dc_info(0).name == "fifteen-chars-x"


def test_dc_init_same_id_or_name_is_busy(kernel):
    start(kernel, dcid=0, name="one")
    assert code_of(kernel.dc_init, DcParams(dcid=0, name="two")) == Edvs.RSCBUSY
    assert code_of(kernel.dc_init, DcParams(dcid=1, name="one")) == Edvs.RSCBUSY


def test_dc_end(kernel):
    start(kernel, dcid=3, name="gone")
    assert code_of(kernel.dc_end, 32) == Edvs.BADDCID
    assert code_of(kernel.dc_end, 4) == Edvs.DCNOTRUN
    kernel.dc_end(3)
    assert kernel.get_dc_info(3).flags == abi.DcState.FREE
    assert kernel.get_node_info(LOCAL).dcs == ()
    assert code_of(kernel.dc_end, 3) == Edvs.DCNOTRUN


def test_get_dc_info_of_the_callers_dc_is_bad_for_dvsd(kernel):
    kernel.dvs_init(0)
    assert code_of(kernel.get_dc_info, -1) == Edvs.BADDCID


# -- proxies and nodes -------------------------------------------------------


def test_order_is_proxies_bind_then_node_up_then_add_node(kernel):
    start(kernel)
    assert code_of(kernel.add_node, 0, 1) == Edvs.NODEFREE
    assert code_of(kernel.node_up, 1, "n1", 1) == Edvs.PROXYFREE
    kernel.proxies_bind(1, "px1", MY_PID, MY_PID)
    kernel.node_up(1, "n1", 1)
    node = kernel.get_node_info(1)
    assert node.flags == abi.NodeFlag.ATTACHED  # pair not connected yet
    assert node.pxid == 1
    assert node.name == "n1"
    kernel.proxy_conn(1, abi.ProxyConn.CONNECT_SPROXY)
    kernel.proxy_conn(1, abi.ProxyConn.CONNECT_RPROXY)
    assert kernel.get_node_info(1).flags == (
        abi.NodeFlag.ATTACHED | abi.NodeFlag.SCONNECTED | abi.NodeFlag.RCONNECTED
    )
    kernel.add_node(0, 1)
    assert kernel.get_dc_info(0).nodes == (0, 1)
    assert kernel.get_node_info(1).dcs == (0,)


def test_add_node_checks(kernel):
    start(kernel, nr_nodes=2)
    bring_up(kernel, 1)
    bring_up(kernel, 2)
    assert code_of(kernel.add_node, 0, LOCAL) == Edvs.BADNODEID
    assert code_of(kernel.add_node, 0, 32) == Edvs.BADNODEID
    assert code_of(kernel.add_node, 32, 1) == Edvs.BADDCID
    assert code_of(kernel.add_node, 5, 1) == Edvs.DCNOTRUN
    kernel.add_node(0, 1)
    assert code_of(kernel.add_node, 0, 1) == Edvs.DCNODE
    assert code_of(kernel.add_node, 0, 2) == Edvs.RSCBUSY  # quota of 2 nodes


def test_del_node(kernel):
    start(kernel)
    bring_up(kernel, 1)
    assert code_of(kernel.del_node, 0, 1) == Edvs.DCNODE
    kernel.add_node(0, 1)
    assert code_of(kernel.del_node, 0, LOCAL) == Edvs.BADNODEID
    assert code_of(kernel.del_node, 1, 1) == Edvs.DCNOTRUN
    kernel.del_node(0, 1)
    assert kernel.get_dc_info(0).nodes == (LOCAL,)
    assert kernel.get_node_info(1).dcs == ()


def test_proxies_bind_checks(kernel):
    kernel.dvs_init(0)
    assert code_of(kernel.proxies_bind, 32, "p", MY_PID, MY_PID) == Edvs.PROXYID
    assert code_of(kernel.proxies_bind, 1, "p", 0, MY_PID) == Edvs.BADPID
    too_big = abi.MAXCOPYBUF + 1
    assert code_of(kernel.proxies_bind, 1, "p", MY_PID, MY_PID, too_big) == (
        Edvs.TOOBIG
    )
    kernel.proxies_bind(1, "p", MY_PID, MY_PID)
    assert code_of(kernel.proxies_bind, 1, "p", MY_PID, MY_PID) == Edvs.RSCBUSY
    assert code_of(kernel.proxy_conn, 1, 9) == Edvs.BADVALUE
    assert code_of(kernel.proxy_conn, 2, 1) == Edvs.PROXYFREE
    kernel.proxies_unbind(1)
    assert code_of(kernel.proxies_unbind, 1) == Edvs.PROXYFREE


def test_get_proxy_info_gives_sender_then_receiver(kernel):
    kernel.dvs_init(0)
    parent = os.getppid()
    kernel.proxies_bind(4, "pair4", MY_PID, parent)
    kernel.proxy_conn(4, abi.ProxyConn.CONNECT_SPROXY)
    kernel.node_up(4, "node-four", 4)
    sender, receiver = kernel.get_proxy_info(4)
    assert (sender.lpid, receiver.lpid) == (MY_PID, parent)
    assert sender.slot == receiver.slot == 4
    assert sender.endpoint == abi.NONE
    assert sender.dcid == abi.PROXY_NO_DC
    assert sender.misc_flags == abi.MiscFlag.PROXY | abi.MiscFlag.CONNECTED
    assert receiver.misc_flags == abi.MiscFlag.PROXY
    assert sender.nodemap == receiver.nodemap == (4,)
    assert code_of(kernel.get_proxy_info, 5) == Edvs.PROXYFREE
    assert code_of(kernel.get_proxy_info, 32) == Edvs.PROXYID


def test_get_proxy_status(kernel):
    kernel.dvs_init(0)
    bring_up(kernel, 6)
    status = kernel.get_proxy_status(6)
    assert status.pxid == 6
    assert status.flags == (
        abi.ProxyFlag.INUSE | abi.ProxyFlag.SCONNECTED | abi.ProxyFlag.RCONNECTED
    )
    assert status.name == "px6"
    assert (status.sender_pid, status.receiver_pid) == (MY_PID, MY_PID)
    assert status.nodes == (6,)
    assert status.max_bytes in (abi.MAXCOPYBUF, None)  # None: not shown by /proc
    free = kernel.get_proxy_status(7)
    assert (free.flags, free.name) == (abi.ProxyFlag.FREE, "NONAME")
    assert code_of(kernel.get_proxy_status, 32) == Edvs.PROXYID


def test_disconnect_clears_node_bits(kernel):
    kernel.dvs_init(0)
    bring_up(kernel, 2)
    kernel.proxy_conn(2, abi.ProxyConn.DISCONNECT_RPROXY)
    assert kernel.get_node_info(2).flags == (
        abi.NodeFlag.ATTACHED | abi.NodeFlag.SCONNECTED
    )


def test_attach_and_detach_node(kernel):
    start(kernel)
    kernel.proxies_bind(3, "px3", MY_PID, MY_PID)  # the proxy programs' part
    kernel.proxy_conn(3, abi.ProxyConn.CONNECT_SPROXY)
    kernel.proxy_conn(3, abi.ProxyConn.CONNECT_RPROXY)
    node = kernel.attach_node(3, "host3")
    assert node.up and node.name == "host3"
    kernel.add_node(0, 3)
    kernel.detach_node(3)
    assert not kernel.get_node_info(3).up
    assert kernel.get_dc_info(0).nodes == (LOCAL,)
    assert code_of(kernel.add_node, 0, 3) == Edvs.NODEFREE


# -- processes -----------------------------------------------------------


def test_free_slot_as_get_proc_info_shows_it(kernel):
    start(kernel, nr_procs=8, nr_tasks=2, nr_sysprocs=4)
    proc = kernel.get_proc_info(0, 3)
    assert proc.free
    assert (proc.slot, proc.endpoint, proc.dcid, proc.name) == (3, 3, 0, "$noname")
    assert kernel.get_proc_info(0, -2).slot == -2  # task slots are negative
    assert code_of(kernel.get_proc_info, 0, -3) == Edvs.BADPROC
    assert code_of(kernel.get_proc_info, 0, 8) == Edvs.BADPROC
    assert code_of(kernel.get_proc_info, 1, 0) == Edvs.DCNOTRUN
    assert code_of(kernel.get_proc_info, 32, 0) == Edvs.BADDCID
    assert code_of(kernel.get_proc_info, -1, 0) == Edvs.BADDCID


def test_local_bind(kernel):
    start(kernel, nr_procs=8, nr_tasks=2, nr_sysprocs=4)
    endpoint = abi.make_endpoint(2, 5)
    assert kernel.bind(0, endpoint, MY_PID) == endpoint
    proc = kernel.get_proc_info(0, 5)
    assert not proc.free
    assert (proc.endpoint, proc.lpid, proc.nodeid, proc.nodemap) == (
        endpoint,
        MY_PID,
        LOCAL,
        (LOCAL,),
    )
    with open(f"/proc/{MY_PID}/comm") as comm:
        assert proc.name == comm.read().strip()[:15]
    assert code_of(kernel.bind, 0, 5, MY_PID) == Edvs.SLOTUSED
    assert code_of(kernel.bind, 0, 8, MY_PID) == Edvs.BADPROC
    assert code_of(kernel.bind, 0, 6, 0) == Edvs.BADPID
    assert code_of(kernel.bind, 1, 6, MY_PID) == Edvs.DCNOTRUN


def test_privileges(kernel):
    start(kernel, nr_procs=8, nr_tasks=2, nr_sysprocs=4)
    assert code_of(kernel.get_priv, 0, 3) == Edvs.DSTDIED  # free slot
    assert code_of(kernel.get_priv, 0, 9) == Edvs.BADPROC
    kernel.bind(0, 3, MY_PID)
    priv = kernel.get_priv(0, 3)
    assert priv.level == abi.PrivLevel.USER
    kernel.set_priv(0, 3, PrivUpdate(warn=1, level=abi.PrivLevel.SERVER, ipc_to=5))
    priv = kernel.get_priv(0, 3)
    assert (priv.warn, priv.level, priv.ipc_to) == (1, abi.PrivLevel.SERVER, 5)
    assert code_of(kernel.set_priv, 0, 3, PrivUpdate(warn=4)) == Edvs.BADPROC
    assert code_of(kernel.set_priv, 0, 3, PrivUpdate(warn=-3)) == Edvs.BADPROC
    assert code_of(kernel.set_priv, 0, 3, PrivUpdate(level=6)) == Edvs.BADVALUE
    assert kernel.get_priv(0, 3).level == abi.PrivLevel.SERVER  # unchanged
    kernel.set_priv(0, 3, PrivUpdate(dvk_allowed=(1 << 40) | 1))
    assert kernel.get_priv(0, 3).dvk_allowed == (1 << 40) | 1


def test_migrate_start_and_rollback(kernel):
    start(kernel, nr_procs=8, nr_tasks=2, nr_sysprocs=4)
    kernel.bind(0, 4, MY_PID)
    kernel.migr_start(0, 4)
    assert kernel.get_proc_info(0, 4).rts_flags & abi.RtsFlag.MIGRATING
    kernel.migr_rollback(0, 4)
    assert not kernel.get_proc_info(0, 4).rts_flags & abi.RtsFlag.MIGRATING
    assert code_of(kernel.migr_start, 0, 9) == Edvs.RANGE
    assert code_of(kernel.migr_start, 0, 5) == Edvs.DSTDIED
    other_generation = abi.make_endpoint(1, 4)
    assert code_of(kernel.migr_start, 0, other_generation) == Edvs.BADPROC
    assert code_of(kernel.migr_start, 1, 4) == Edvs.DCNOTRUN


def test_migrate_commit_on_the_old_node_makes_the_process_remote(kernel):
    start(kernel, nr_procs=8, nr_tasks=2, nr_sysprocs=4)
    bring_up(kernel, 1)
    bring_up(kernel, 2)
    kernel.add_node(0, 1)
    kernel.bind(0, 4, MY_PID)
    kernel.migr_start(0, 4)
    assert code_of(kernel.migr_commit, -1, 0, 4, 2) == Edvs.DCNODE
    assert code_of(kernel.migr_commit, -1, 0, 4, 3) == Edvs.NOPROXY  # not up
    assert code_of(kernel.migr_commit, -1, 0, 4, 32) == Edvs.NOPROXY
    kernel.migr_commit(-1, 0, 4, 1)
    proc = kernel.get_proc_info(0, 4)
    assert proc.rts_flags == abi.RtsFlag.REMOTE
    assert (proc.nodeid, proc.nodemap, proc.lpid) == (1, (1,), abi.PROC_NO_PID)


def test_error_sentence_names_the_code(kernel):
    kernel.dvs_init(0)
    with pytest.raises(KernelError) as caught:
        kernel.get_dc_info(40)
    assert str(caught.value).startswith("EDVSBADDCID (-302): bad DC id")
    assert caught.value.rcode == -302


def test_dvs_end_clears_the_tables(kernel):
    start(kernel)
    bring_up(kernel, 1)
    kernel.dvs_end()
    kernel.dvs_init(0)
    assert kernel.get_dc_info(0).flags == abi.DcState.FREE
    assert not kernel.get_node_info(1).up
    assert code_of(kernel.get_proxy_info, 1) == Edvs.PROXYFREE
