"""An in-process model of the DVK tables, used where /dev/dvk does not exist.

It keeps the kernel's rules as the DVK ABI reference states them: the same
range checks in the same order, the same return values (init calls return
the local node id) and the same EDVS codes, so a handler cannot tell the two
backends apart except by ``backend_name``.  ``tests/kernel/test_contract.py``
runs one suite against this class and against the cffi binding (over a C
test double of /dev/dvk) to hold both to that.

What the emulation adds, because it has no proxy programs and no DVK
processes of its own (docs/kernel.md):

* :meth:`EmulatedKernel.attach_node` binds proxy pair ``nodeid`` with this
  process's PID for both proxies, connects both directions and runs node-up,
  which is what the proxy programs and dvsd together do on a real cluster.
* :meth:`EmulatedKernel.bind` accepts remote binds (the cffi binding cannot
  pass the process name on LP64) so MIGRATE can be exercised on several
  emulated nodes.

What it leaves out: privilege checks (CAP_SYS_ADMIN), IPC, copies, timers,
PID namespaces (``vpid`` = ``lpid``) and /proc/dvs files.
"""

from __future__ import annotations

import os
import threading

import attrs

from dvsd.kernel import KernelError, abi
from dvsd.kernel.models import (
    DcInfo,
    DcParams,
    DvsInfo,
    DvsParams,
    NodeInfo,
    PrivInfo,
    PrivUpdate,
    ProcInfo,
    ProxyStatus,
)

Edvs = abi.Edvs

#: d_size_proc as this model reports it: the real value depends on the
#: kernel's build; any power of two >= a cache line is plausible.
EMULATED_SIZE_PROC = 1024


def _cpu_count() -> int:
    return os.cpu_count() or 1


def _pid_exists(pid: int) -> bool:
    return pid > 0 and os.path.exists(f"/proc/{pid}")


def _process_name(pid: int) -> str:
    """The Linux command name of ``pid``, as the kernel's ``task->comm``."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()[: abi.MAX_NAME_CHARS]
    except OSError:
        return abi.FREE_PROC_NAME


def _proc_record(**fields) -> dict:
    record = {
        "slot": 0,
        "endpoint": 0,
        "dcid": abi.PROXY_NO_DC,
        "rts_flags": int(abi.RtsFlag.SLOT_FREE),
        "lpid": abi.PROC_NO_PID,
        "vpid": abi.PROC_NO_PID,
        "nodeid": abi.LOCALNODE,
        "nodemap": 0,
        "misc_flags": 0,
        "getfrom": abi.NONE,
        "sendto": abi.NONE,
        "waitmigr": abi.NONE,
        "waitunbind": abi.NONE,
        "proxy": abi.NONE,
        "local_sent": 0,
        "remote_sent": 0,
        "local_copies": 0,
        "remote_copies": 0,
        "name": abi.FREE_PROC_NAME,
        "cpus": (),
    }
    record.update(fields)
    return record


def _proc_info(record: dict) -> ProcInfo:
    fields = dict(record)
    fields["nodemap"] = _bits(record["nodemap"])
    return ProcInfo(**fields)


def _bits(bitmap: int) -> tuple[int, ...]:
    return tuple(bit for bit in range(bitmap.bit_length()) if bitmap >> bit & 1)


@attrs.define
class _Dc:
    dcid: int
    flags: int = int(abi.DcState.FREE)
    nr_procs: int = 0
    nr_tasks: int = 0
    nr_sysprocs: int = 0
    nr_nodes: int = 0
    nodes: int = 0
    warn2proc: int = 0
    warnmsg: int = 0
    pid: int = 0
    name: str = ""
    cpus: tuple[int, ...] = ()
    procs: dict[int, dict] = attrs.Factory(dict)
    privs: dict[int, dict] = attrs.Factory(dict)

    @property
    def running(self) -> bool:
        return self.flags == abi.DcState.RUNNING


@attrs.define
class _Node:
    nodeid: int
    flags: int = int(abi.NodeFlag.FREE)
    pxid: int = abi.NO_PROXIES
    dcs: int = 0
    name: str = abi.FREE_NODE_NAME


@attrs.define
class _Pair:
    pxid: int
    flags: int = int(abi.ProxyFlag.FREE)
    max_bytes: int = abi.MAXCOPYBUF
    max_batch_cmds: int = 0
    name: str = abi.FREE_PROXY_NAME
    sender: dict = attrs.Factory(_proc_record)
    receiver: dict = attrs.Factory(_proc_record)


class EmulatedKernel:
    """The DVK tables of one node, in memory.  See the module docstring."""

    backend_name = "emulated"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = abi.LOCALNODE  # DVS_NO_INIT
        # The parameters survive dvs-end: a later dvs-init without a block
        # keeps them, as the kernel does.
        self._params = DvsParams()
        self._flags = int(abi.DvsFlag.IPC)
        self._dcs = [_Dc(dcid) for dcid in range(abi.NR_DCS)]
        self._nodes = [_Node(nodeid) for nodeid in range(abi.NR_NODES)]
        self._pairs = [_Pair(pxid) for pxid in range(abi.NR_NODES)]
        self._attached: set[int] = set()

    # -- helpers ---------------------------------------------------------

    def _fail(self, code: Edvs, call: str) -> KernelError:
        return KernelError(code, call)

    def _need_init(self, call: str) -> None:
        if self._local == abi.LOCALNODE:
            raise self._fail(Edvs.DVSINIT, call)

    def _dc(self, dcid: int, call: str, *, running: bool = True) -> _Dc:
        if not 0 <= dcid < self._params.nr_dcs:
            raise self._fail(Edvs.BADDCID, call)
        dc = self._dcs[dcid]
        if running and not dc.running:
            raise self._fail(Edvs.DCNOTRUN, call)
        return dc

    def _node_in_range(self, nodeid: int, call: str) -> _Node:
        if not 0 <= nodeid < self._params.nr_nodes:
            raise self._fail(Edvs.BADNODEID, call)
        return self._nodes[nodeid]

    def _remote_node(self, nodeid: int, call: str) -> _Node:
        node = self._node_in_range(nodeid, call)
        if nodeid == self._local:
            raise self._fail(Edvs.BADNODEID, call)
        return node

    def _pair(self, pxid: int, call: str, *, bound: bool = True) -> _Pair:
        if not 0 <= pxid < self._params.nr_nodes:
            raise self._fail(Edvs.PROXYID, call)
        pair = self._pairs[pxid]
        if bound and pair.flags == abi.ProxyFlag.FREE:
            raise self._fail(Edvs.PROXYFREE, call)
        return pair

    def _slot(self, dc: _Dc, slot: int, code: Edvs, call: str) -> dict:
        if not -dc.nr_tasks <= slot < dc.nr_procs:
            raise self._fail(code, call)
        return dc.procs[slot]

    def _free_slot(self, dc: _Dc, slot: int) -> None:
        dc.procs[slot] = _proc_record(
            slot=slot, endpoint=slot, dcid=dc.dcid, cpus=dc.cpus
        )
        dc.privs[slot] = {
            "priv_id": slot + dc.nr_tasks,
            "warn": abi.NONE,
            "level": int(abi.PrivLevel.TASK if slot < 0 else abi.PrivLevel.USER),
            "trap_mask": 0,
            "ipc_from": 0,
            "ipc_to": 0,
            "dvk_allowed": 0,
        }

    def _clear_dc(self, dc: _Dc) -> None:
        self._dcs[dc.dcid] = _Dc(dc.dcid)
        for node in self._nodes:
            node.dcs &= ~(1 << dc.dcid)

    # -- DVS -------------------------------------------------------------

    def dvs_init(self, nodeid: int, params: DvsParams | None = None) -> int:
        """dvs-init: returns the local node id.  See reference 1.1 and 4.1."""
        call = f"dvs_init nodeid={nodeid}"
        with self._lock:
            if self._local != abi.LOCALNODE:
                raise self._fail(Edvs.DVSBUSY, call)
            # The kernel checks nodeid against the node count it has now,
            # before it applies the new block.
            if not 0 <= nodeid < self._params.nr_nodes:
                raise self._fail(Edvs.BADNODEID, call)
            if params is not None:
                self._check_dvs_params(params, call)
                self._params = attrs.evolve(
                    params, name=params.name[: abi.MAX_NAME_CHARS]
                )
                caller_flags = params.flags & abi.DVS_CALLER_FLAGS
            else:
                caller_flags = int(abi.DvsFlag.IPC)
            own_flags = abi.DvsFlag.IOCTL | abi.DvsFlag.INITIALIZED
            self._flags = int(caller_flags | own_flags)
            self._dcs = [_Dc(dcid) for dcid in range(abi.NR_DCS)]
            self._nodes = [_Node(index) for index in range(abi.NR_NODES)]
            self._pairs = [_Pair(index) for index in range(abi.NR_NODES)]
            self._attached.clear()
            local = self._nodes[nodeid]
            local.name = f"node{nodeid}"
            # The kernel sets SCONNECTED twice where RCONNECTED was meant.
            local.flags = int(abi.NodeFlag.ATTACHED | abi.NodeFlag.SCONNECTED)
            self._local = nodeid
            return nodeid

    def _check_dvs_params(self, params: DvsParams, call: str) -> None:
        limits = (
            (params.nr_dcs, abi.NR_DCS),
            (params.nr_nodes, abi.NR_NODES),
            (params.nr_procs, abi.NR_PROCS),
            (params.nr_tasks, abi.NR_TASKS),
            (params.nr_sysprocs, abi.NR_SYS_PROCS),
        )
        for value, limit in limits:
            if not 1 <= value <= limit:
                raise self._fail(Edvs.BADRANGE, call)
        if not params.nr_tasks < params.nr_sysprocs < params.nr_procs + params.nr_tasks:
            raise self._fail(Edvs.BADRANGE, call)
        if (
            params.max_copybuf > abi.MAXCOPYBUF
            or params.max_copylen > abi.MAXCOPYLEN
            or params.max_copylen < params.max_copybuf
        ):
            raise self._fail(Edvs.BADVALUE, call)

    def dvs_end(self) -> None:
        with self._lock:
            self._need_init("dvs_end")
            self._dcs = [_Dc(dcid) for dcid in range(abi.NR_DCS)]
            self._nodes = [_Node(nodeid) for nodeid in range(abi.NR_NODES)]
            self._pairs = [_Pair(pxid) for pxid in range(abi.NR_NODES)]
            self._attached.clear()
            self._flags &= ~abi.DvsFlag.INITIALIZED
            self._local = abi.LOCALNODE

    def get_dvs_info(self) -> DvsInfo:
        """The DVS block and local node id; DVSINIT before dvs-init.

        The kernel answers -1 (the number of EDVSPERM) when the DVS is not
        initialised; both backends report that as EDVSDVSINIT.
        """
        with self._lock:
            self._need_init("get_dvs_info")
            params = self._params
            return DvsInfo(
                local_node=self._local,
                name=params.name,
                nr_dcs=params.nr_dcs,
                nr_nodes=params.nr_nodes,
                nr_procs=params.nr_procs,
                nr_tasks=params.nr_tasks,
                nr_sysprocs=params.nr_sysprocs,
                max_copybuf=params.max_copybuf,
                max_copylen=params.max_copylen,
                debug_level=params.debug_level,
                version=abi.DVS_VERSION,
                flags=self._flags,
                size_proc=EMULATED_SIZE_PROC,
            )

    # -- DCs -------------------------------------------------------------

    def dc_init(self, params: DcParams) -> int:
        """dc-init: returns the local node id (reference 4.4), not the dcid."""
        call = f"dc_init dcid={params.dcid}"
        with self._lock:
            self._need_init(call)
            dvs = self._params
            in_range = (
                0 <= params.dcid < dvs.nr_dcs
                and 1 <= params.nr_procs <= dvs.nr_procs
                and 0 <= params.nr_tasks <= dvs.nr_tasks
                and 0 <= params.nr_sysprocs <= dvs.nr_sysprocs
                and 1 <= params.nr_nodes <= dvs.nr_nodes
                and params.nr_tasks
                < params.nr_sysprocs
                < params.nr_procs + params.nr_tasks
            )
            if not in_range:
                raise self._fail(Edvs.BADRANGE, call)
            if len(params.name.encode()) >= abi.MAXNAME:
                raise self._fail(Edvs.NAMESIZE, call)
            for dc in self._dcs:
                if dc.running and (dc.dcid == params.dcid or dc.name == params.name):
                    raise self._fail(Edvs.RSCBUSY, call)
            all_cpus = set(range(_cpu_count()))
            cpus = tuple(sorted(set(params.cpus)))
            if not cpus or not set(cpus) <= all_cpus:
                cpus = tuple(sorted(all_cpus))
            dc = _Dc(
                dcid=params.dcid,
                flags=int(abi.DcState.RUNNING),
                nr_procs=params.nr_procs,
                nr_tasks=params.nr_tasks,
                nr_sysprocs=params.nr_sysprocs,
                nr_nodes=params.nr_nodes,
                nodes=1 << self._local,
                warn2proc=params.warn2proc,
                warnmsg=params.warnmsg,
                pid=os.getpid(),
                name=params.name,
                cpus=cpus,
            )
            for slot in range(-dc.nr_tasks, dc.nr_procs):
                self._free_slot(dc, slot)
            self._dcs[dc.dcid] = dc
            self._nodes[self._local].dcs |= 1 << dc.dcid
            return self._local

    def dc_end(self, dcid: int) -> None:
        call = f"dc_end dcid={dcid}"
        with self._lock:
            self._need_init(call)
            self._clear_dc(self._dc(dcid, call))

    def get_dc_info(self, dcid: int) -> DcInfo:
        call = f"get_dc_info dcid={dcid}"
        with self._lock:
            self._need_init(call)
            # dcid -1 means "the caller's DC"; dvsd is never bound to one.
            dc = self._dc(dcid, call, running=False)
            return DcInfo(
                dcid=dc.dcid,
                flags=dc.flags,
                nr_procs=dc.nr_procs,
                nr_tasks=dc.nr_tasks,
                nr_sysprocs=dc.nr_sysprocs,
                nr_nodes=dc.nr_nodes,
                nodes=_bits(dc.nodes),
                warn2proc=dc.warn2proc,
                warnmsg=dc.warnmsg,
                pid=dc.pid,
                name=dc.name,
                cpus=dc.cpus,
            )

    # -- nodes and proxy pairs -------------------------------------------

    def add_node(self, dcid: int, nodeid: int) -> None:
        call = f"add_node dcid={dcid} nodeid={nodeid}"
        with self._lock:
            self._need_init(call)
            dc = self._dc(dcid, call, running=False)
            node = self._remote_node(nodeid, call)
            if node.flags == abi.NodeFlag.FREE:
                raise self._fail(Edvs.NODEFREE, call)
            if not dc.running:
                raise self._fail(Edvs.DCNOTRUN, call)
            if dc.nodes >> nodeid & 1:
                raise self._fail(Edvs.DCNODE, call)
            if dc.nodes.bit_count() >= dc.nr_nodes:
                raise self._fail(Edvs.RSCBUSY, call)
            dc.nodes |= 1 << nodeid
            node.dcs |= 1 << dcid

    def del_node(self, dcid: int, nodeid: int) -> None:
        call = f"del_node dcid={dcid} nodeid={nodeid}"
        with self._lock:
            self._need_init(call)
            dc = self._dc(dcid, call, running=False)
            node = self._remote_node(nodeid, call)
            if not dc.running:
                raise self._fail(Edvs.DCNOTRUN, call)
            if not dc.nodes >> nodeid & 1:
                raise self._fail(Edvs.DCNODE, call)
            dc.nodes &= ~(1 << nodeid)
            node.dcs &= ~(1 << dcid)

    def get_node_info(self, nodeid: int) -> NodeInfo:
        call = f"get_node_info nodeid={nodeid}"
        with self._lock:
            self._need_init(call)
            if nodeid == abi.LOCALNODE:
                nodeid = self._local
            node = self._node_in_range(nodeid, call)
            return NodeInfo(
                nodeid=node.nodeid,
                flags=node.flags,
                pxid=node.pxid,
                dcs=_bits(node.dcs),
                last_sent=0.0,
                last_received=0.0,
                proxy_sent=0,
                proxy_received=0,
                name=node.name,
            )

    def proxies_bind(
        self,
        pxid: int,
        name: str,
        sender_pid: int,
        receiver_pid: int,
        max_bytes: int = abi.MAXCOPYBUF,
    ) -> None:
        call = f"proxies_bind pxid={pxid}"
        with self._lock:
            self._need_init(call)
            pair = self._pair(pxid, call, bound=False)
            if max_bytes > abi.MAXCOPYBUF:
                raise self._fail(Edvs.TOOBIG, call)
            if not (_pid_exists(sender_pid) and _pid_exists(receiver_pid)):
                raise self._fail(Edvs.BADPID, call)
            if pair.flags != abi.ProxyFlag.FREE:
                raise self._fail(Edvs.RSCBUSY, call)
            short = name[: abi.MAX_NAME_CHARS]
            pair.flags = int(abi.ProxyFlag.INUSE)
            pair.name = short
            pair.max_bytes = max_bytes
            pair.max_batch_cmds = 0
            for which, pid in (("sender", sender_pid), ("receiver", receiver_pid)):
                setattr(
                    pair,
                    which,
                    _proc_record(
                        slot=pxid,
                        endpoint=abi.NONE,
                        rts_flags=0,
                        lpid=pid,
                        vpid=pid,
                        nodeid=self._local,
                        misc_flags=int(abi.MiscFlag.PROXY),
                        name=short,
                    ),
                )

    def proxies_unbind(self, pxid: int) -> None:
        call = f"proxies_unbind pxid={pxid}"
        with self._lock:
            self._need_init(call)
            pair = self._pair(pxid, call)
            for nodeid in _bits(pair.sender["nodemap"]):
                self._nodes[nodeid].flags &= ~(
                    abi.NodeFlag.SCONNECTED | abi.NodeFlag.RCONNECTED
                )
            self._pairs[pxid] = _Pair(pxid)

    def proxy_conn(self, pxid: int, status: abi.ProxyConn | int) -> None:
        call = f"proxy_conn pxid={pxid} status={int(status)}"
        with self._lock:
            self._need_init(call)
            pair = self._pair(pxid, call)
            if int(status) not in set(abi.ProxyConn):
                raise self._fail(Edvs.BADVALUE, call)
            status = abi.ProxyConn(status)
            sender_side = status in (
                abi.ProxyConn.CONNECT_SPROXY,
                abi.ProxyConn.DISCONNECT_SPROXY,
            )
            connect = status in (
                abi.ProxyConn.CONNECT_SPROXY,
                abi.ProxyConn.CONNECT_RPROXY,
            )
            proxy = pair.sender if sender_side else pair.receiver
            pair_bit = (
                abi.ProxyFlag.SCONNECTED if sender_side else abi.ProxyFlag.RCONNECTED
            )
            node_bit = (
                abi.NodeFlag.SCONNECTED if sender_side else abi.NodeFlag.RCONNECTED
            )
            if connect:
                pair.flags |= pair_bit
                proxy["misc_flags"] |= abi.MiscFlag.CONNECTED
            else:
                pair.flags &= ~pair_bit
                proxy["misc_flags"] &= ~abi.MiscFlag.CONNECTED
            for nodeid in _bits(proxy["nodemap"]):
                if connect:
                    self._nodes[nodeid].flags |= node_bit
                else:
                    self._nodes[nodeid].flags &= ~node_bit

    def node_up(self, nodeid: int, name: str, pxid: int) -> None:
        call = f"node_up nodeid={nodeid} pxid={pxid}"
        with self._lock:
            self._need_init(call)
            node = self._remote_node(nodeid, call)
            pair = self._pair(pxid, call)
            flags = abi.NodeFlag.ATTACHED
            if pair.flags & abi.ProxyFlag.SCONNECTED:
                flags |= abi.NodeFlag.SCONNECTED
            if pair.flags & abi.ProxyFlag.RCONNECTED:
                flags |= abi.NodeFlag.RCONNECTED
            pair.sender["nodemap"] |= 1 << nodeid
            pair.receiver["nodemap"] |= 1 << nodeid
            node.flags = int(flags)
            node.pxid = pxid
            node.name = name[: abi.MAX_NAME_CHARS]

    def node_down(self, nodeid: int) -> None:
        """Clear a remote node: out of its pair's node maps and of every DC.

        This is what node-down is meant to do; the shipped kernel's node-down
        leaves an up node alone (reference 4.11), see docs/kernel.md.
        """
        call = f"node_down nodeid={nodeid}"
        with self._lock:
            self._need_init(call)
            node = self._remote_node(nodeid, call)
            if node.flags == abi.NodeFlag.FREE:
                raise self._fail(Edvs.NODEFREE, call)
            self._clear_node(node)

    def _clear_node(self, node: _Node) -> None:
        if node.pxid != abi.NO_PROXIES:
            pair = self._pairs[node.pxid]
            pair.sender["nodemap"] &= ~(1 << node.nodeid)
            pair.receiver["nodemap"] &= ~(1 << node.nodeid)
        for dc in self._dcs:
            dc.nodes &= ~(1 << node.nodeid)
        self._nodes[node.nodeid] = _Node(node.nodeid)

    def get_proxy_info(self, pxid: int) -> tuple[ProcInfo, ProcInfo]:
        call = f"get_proxy_info pxid={pxid}"
        with self._lock:
            self._need_init(call)
            pair = self._pair(pxid, call)
            return _proc_info(pair.sender), _proc_info(pair.receiver)

    def get_proxy_status(self, pxid: int) -> ProxyStatus:
        """The pair record (the emulation keeps it, so every field is known)."""
        call = f"get_proxy_status pxid={pxid}"
        with self._lock:
            self._need_init(call)
            pair = self._pair(pxid, call, bound=False)
            bound = pair.flags != abi.ProxyFlag.FREE
            return ProxyStatus(
                pxid=pair.pxid,
                flags=pair.flags,
                max_bytes=pair.max_bytes,
                max_batch_cmds=pair.max_batch_cmds,
                name=pair.name,
                sender_pid=pair.sender["lpid"] if bound else None,
                receiver_pid=pair.receiver["lpid"] if bound else None,
                nodes=_bits(pair.sender["nodemap"]) if bound else None,
            )

    # -- membership helpers ----------------------------------------------

    def attach_node(self, nodeid: int, name: str) -> NodeInfo:
        """Bring a joined node up: bind pair ``nodeid``, connect it, node-up.

        An emulated cluster has no proxy programs, so this process stands in
        for both proxies.  A pair that is already bound is reused as it is.
        """
        with self._lock:
            self._need_init(f"attach_node nodeid={nodeid}")
            self._remote_node(nodeid, f"attach_node nodeid={nodeid}")
            pair_free = self._pairs[nodeid].flags == abi.ProxyFlag.FREE
        if pair_free:
            pid = os.getpid()
            self.proxies_bind(nodeid, f"emulated{nodeid}", pid, pid)
            self._attached.add(nodeid)
            self.proxy_conn(nodeid, abi.ProxyConn.CONNECT_SPROXY)
            self.proxy_conn(nodeid, abi.ProxyConn.CONNECT_RPROXY)
        self.node_up(nodeid, name, nodeid)
        return self.get_node_info(nodeid)

    def detach_node(self, nodeid: int) -> None:
        """Forget a node that left: out of every DC, node cleared, pair freed."""
        with self._lock:
            self._need_init(f"detach_node nodeid={nodeid}")
            node = self._remote_node(nodeid, f"detach_node nodeid={nodeid}")
            self._clear_node(node)
            if nodeid in self._attached:
                self._attached.discard(nodeid)
                self._pairs[nodeid] = _Pair(nodeid)

    # -- processes ---------------------------------------------------------

    def bind(
        self, dcid: int, endpoint: int, pid: int, nodeid: int = -1, name: str = ""
    ) -> int:
        """Bind a slot: local (``nodeid`` -1, ``pid`` must exist) or remote.

        Returns the endpoint.  On a remote bind ``pid`` is ignored and
        ``name`` (default "remote") becomes the descriptor's name.
        """
        call = f"bind dcid={dcid} endpoint={endpoint} nodeid={nodeid}"
        with self._lock:
            self._need_init(call)
            dc = self._dc(dcid, call)
            slot = abi.endpoint_slot(endpoint)
            record = self._slot(dc, slot, Edvs.BADPROC, call)
            if nodeid == abi.LOCALNODE:
                if not _pid_exists(pid):
                    raise self._fail(Edvs.BADPID, call)
            else:
                self._remote_node(nodeid, call)
                if not dc.nodes >> nodeid & 1:
                    raise self._fail(Edvs.NODCNODE, call)
            if not record["rts_flags"] & abi.RtsFlag.SLOT_FREE:
                raise self._fail(Edvs.SLOTUSED, call)
            if nodeid == abi.LOCALNODE:
                record.update(
                    endpoint=endpoint,
                    rts_flags=0,
                    lpid=pid,
                    vpid=pid,
                    nodeid=self._local,
                    nodemap=1 << self._local,
                    misc_flags=int(abi.MiscFlag.GRPLEADER),
                    name=(name or _process_name(pid))[: abi.MAX_NAME_CHARS],
                )
            else:
                record.update(
                    endpoint=endpoint,
                    rts_flags=int(abi.RtsFlag.REMOTE),
                    nodeid=nodeid,
                    nodemap=1 << nodeid,
                    name=(name or abi.REMOTE_PROC_NAME)[: abi.MAX_NAME_CHARS],
                )
            return endpoint

    def get_proc_info(self, dcid: int, slot: int) -> ProcInfo:
        call = f"get_proc_info dcid={dcid} slot={slot}"
        with self._lock:
            self._need_init(call)
            dc = self._dc(dcid, call)
            return _proc_info(self._slot(dc, slot, Edvs.BADPROC, call))

    def _bound_slot(self, dcid: int, endpoint: int, range_code: Edvs, call: str):
        self._need_init(call)
        dc = self._dc(dcid, call)
        slot = abi.endpoint_slot(endpoint)
        record = self._slot(dc, slot, range_code, call)
        if record["rts_flags"] & abi.RtsFlag.SLOT_FREE:
            raise self._fail(Edvs.DSTDIED, call)
        return dc, slot, record

    def get_priv(self, dcid: int, endpoint: int) -> PrivInfo:
        call = f"get_priv dcid={dcid} endpoint={endpoint}"
        with self._lock:
            dc, slot, _ = self._bound_slot(dcid, endpoint, Edvs.BADPROC, call)
            return PrivInfo(**dc.privs[slot])

    def set_priv(self, dcid: int, endpoint: int, update: PrivUpdate) -> None:
        call = f"set_priv dcid={dcid} endpoint={endpoint}"
        with self._lock:
            dc, slot, _ = self._bound_slot(dcid, endpoint, Edvs.BADPROC, call)
            priv = dc.privs[slot]
            warn = priv["warn"] if update.warn is None else update.warn
            level = priv["level"] if update.level is None else update.level
            if not -dc.nr_tasks <= warn < dc.nr_sysprocs:
                raise self._fail(Edvs.BADPROC, call)
            if level not in set(abi.PrivLevel):
                raise self._fail(Edvs.BADVALUE, call)
            priv["warn"] = warn
            priv["level"] = level
            if update.ipc_to is not None:
                priv["ipc_to"] = update.ipc_to & ((1 << 64) - 1)
            if update.dvk_allowed is not None:
                priv["dvk_allowed"] = update.dvk_allowed & ((1 << 48) - 1)

    def _migrating_slot(self, dcid: int, endpoint: int, call: str) -> dict:
        _, _, record = self._bound_slot(dcid, endpoint, Edvs.RANGE, call)
        if record["endpoint"] != endpoint:
            raise self._fail(Edvs.BADPROC, call)
        return record

    def migr_start(self, dcid: int, endpoint: int) -> None:
        """Mark the descriptor MIGRATING (IPC to it queues until commit)."""
        call = f"migr_start dcid={dcid} endpoint={endpoint}"
        with self._lock:
            record = self._migrating_slot(dcid, endpoint, call)
            record["rts_flags"] |= abi.RtsFlag.MIGRATING

    def migr_rollback(self, dcid: int, endpoint: int) -> None:
        call = f"migr_rollback dcid={dcid} endpoint={endpoint}"
        with self._lock:
            record = self._migrating_slot(dcid, endpoint, call)
            record["rts_flags"] &= ~abi.RtsFlag.MIGRATING

    def migr_commit(self, pid: int, dcid: int, endpoint: int, new_node: int) -> None:
        """Record the new location; the effect depends on this node's role.

        Old node: the descriptor becomes remote.  New node (``new_node`` is
        this node): ``pid`` is bound to it.  Any other node: only the
        location changes.  Every node ends with MIGRATING cleared.
        """
        call = f"migr_commit dcid={dcid} endpoint={endpoint} new_node={new_node}"
        with self._lock:
            record = self._migrating_slot(dcid, endpoint, call)
            dc = self._dcs[dcid]
            if not 0 <= new_node < self._params.nr_nodes:
                raise self._fail(Edvs.NOPROXY, call)
            if (
                new_node != self._local
                and self._nodes[new_node].flags == abi.NodeFlag.FREE
            ):
                raise self._fail(Edvs.NOPROXY, call)
            if not dc.nodes >> new_node & 1:
                raise self._fail(Edvs.DCNODE, call)
            flags = record["rts_flags"] & ~abi.RtsFlag.MIGRATING
            is_local = not flags & abi.RtsFlag.REMOTE
            if new_node == self._local:
                if is_local:
                    raise self._fail(Edvs.LCLPROC, call)
                if not _pid_exists(pid):
                    raise self._fail(Edvs.BADPID, call)
                record.update(
                    rts_flags=int(flags & ~abi.RtsFlag.REMOTE),
                    lpid=pid,
                    vpid=pid,
                    nodeid=self._local,
                    nodemap=1 << self._local,
                    misc_flags=int(abi.MiscFlag.GRPLEADER),
                    name=_process_name(pid),
                )
            elif is_local:
                record.update(
                    rts_flags=int(flags | abi.RtsFlag.REMOTE),
                    lpid=abi.PROC_NO_PID,
                    vpid=abi.PROC_NO_PID,
                    nodeid=new_node,
                    nodemap=1 << new_node,
                    misc_flags=0,
                )
            else:
                record.update(
                    rts_flags=int(flags), nodeid=new_node, nodemap=1 << new_node
                )

    def close(self) -> None:
        """Nothing to release; present for the :class:`Kernel` interface."""
