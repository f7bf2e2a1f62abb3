"""DVSINIT, GETDVSINFO, DVSEND: the DVS itself on one node.

DVSINIT initialises this node's DVK with this node's id (``ctx.node_id``);
addressed to all nodes, every node initialises itself.  Its rcode is the
local node id the kernel returns.
"""

from __future__ import annotations

import attrs

from dvsd.kernel import abi
from dvsd.kernel.models import DvsParams
from dvsd.registry import HandlerContext, NoParams, Reply, handler
from dvsd.rqst import RequestType
from dvsd.validators import check_sysprocs, in_range, kernel_name

ULONG_MAX = (1 << 64) - 1


@attrs.frozen
class DvsInitParams:
    """``dvs_usr_t`` in-fields; defaults are the compiled-in limits."""

    name: str = attrs.field(
        default=abi.DEFAULT_DVS_NAME, validator=kernel_name(abi.MAX_NAME_CHARS)
    )
    nr_dcs: int = attrs.field(default=abi.NR_DCS, validator=in_range(1, abi.NR_DCS))
    nr_nodes: int = attrs.field(
        default=abi.NR_NODES, validator=in_range(1, abi.NR_NODES)
    )
    nr_procs: int = attrs.field(
        default=abi.NR_PROCS, validator=in_range(1, abi.NR_PROCS)
    )
    nr_tasks: int = attrs.field(
        default=abi.NR_TASKS, validator=in_range(1, abi.NR_TASKS)
    )
    nr_sysprocs: int = attrs.field(
        default=abi.NR_SYS_PROCS, validator=in_range(1, abi.NR_SYS_PROCS)
    )
    max_copybuf: int = attrs.field(
        default=abi.MAXCOPYBUF, validator=in_range(1, abi.MAXCOPYBUF)
    )
    max_copylen: int = attrs.field(
        default=abi.MAXCOPYLEN, validator=in_range(1, abi.MAXCOPYLEN)
    )
    debug_level: int = attrs.field(default=0, validator=in_range(0, ULONG_MAX))

    def __attrs_post_init__(self) -> None:
        # The kernel's cross-field rules (reference 1.1), checked before sending.
        check_sysprocs(self.nr_sysprocs, self.nr_tasks, self.nr_procs)
        if self.max_copylen < self.max_copybuf:
            raise ValueError(
                f"max_copylen must be at least max_copybuf ({self.max_copybuf}),"
                f" got {self.max_copylen}"
            )

    def to_kernel(self) -> DvsParams:
        return DvsParams(
            name=self.name,
            nr_dcs=self.nr_dcs,
            nr_nodes=self.nr_nodes,
            nr_procs=self.nr_procs,
            nr_tasks=self.nr_tasks,
            nr_sysprocs=self.nr_sysprocs,
            max_copybuf=self.max_copybuf,
            max_copylen=self.max_copylen,
            debug_level=self.debug_level,
        )


@handler(
    RequestType.DVSINIT,
    params=DvsInitParams,
    summary="Initialise the DVS on the node (rcode = local node id)",
)
async def dvs_init(ctx: HandlerContext, params: DvsInitParams) -> Reply:
    local = ctx.kernel.dvs_init(ctx.node_id, params.to_kernel())
    ctx.log.info("dvs_initialised", local_node=local, backend=ctx.kernel.backend_name)
    if ctx.membership is not None:
        # Members present before the DVS existed are brought up now.
        ctx.membership.apply_current_view("dvs init")
    return Reply(rcode=local)


@handler(RequestType.GETDVSINFO, summary="Show the DVS parameters of the node")
async def get_dvs_info(ctx: HandlerContext, params: NoParams) -> Reply:
    return Reply(items=[ctx.kernel.get_dvs_info()])


@handler(RequestType.DVSEND, summary="End the DVS on the node")
async def dvs_end(ctx: HandlerContext, params: NoParams) -> Reply:
    ctx.kernel.dvs_end()
    ctx.log.info("dvs_ended")
    return Reply()
