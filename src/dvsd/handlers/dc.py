"""DCINIT, GETDCINFO, DCEND: distributed containers on one node.

DCINIT answers rcode = dcid as the DVSD specification asks (the kernel call
itself returns the local node id).
"""

from __future__ import annotations

import attrs

from dvsd.kernel import abi
from dvsd.kernel.models import DcParams
from dvsd.registry import HandlerContext, Reply, handler
from dvsd.rqst import RequestType
from dvsd.validators import check_sysprocs, in_range, kernel_name

MAX_CPU = 1023  # glibc cpu_set_t holds CPUs 0..1023


def _cpu_list(_instance, attribute, value) -> None:
    for cpu in value:
        if isinstance(cpu, bool) or not isinstance(cpu, int):
            raise TypeError(f"{attribute.name} must list CPU numbers, got {cpu!r}")
        if not 0 <= cpu <= MAX_CPU:
            raise ValueError(f"{attribute.name} must be in 0..{MAX_CPU}, got {cpu}")


def _non_empty(_instance, attribute, value) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen
class DcIdParams:
    dcid: int = attrs.field(validator=in_range(0, abi.NR_DCS - 1))


@attrs.frozen
class DcInitParams:
    """``dc_usr_t`` in-fields; counts default to the compiled-in limits."""

    dcid: int = attrs.field(validator=in_range(0, abi.NR_DCS - 1))
    name: str = attrs.field(validator=[_non_empty, kernel_name(abi.MAX_NAME_CHARS)])
    nr_procs: int = attrs.field(
        default=abi.NR_PROCS, validator=in_range(1, abi.NR_PROCS)
    )
    nr_tasks: int = attrs.field(
        default=abi.NR_TASKS, validator=in_range(0, abi.NR_TASKS)
    )
    nr_sysprocs: int = attrs.field(
        default=abi.NR_SYS_PROCS, validator=in_range(0, abi.NR_SYS_PROCS)
    )
    nr_nodes: int = attrs.field(
        default=abi.NR_NODES, validator=in_range(1, abi.NR_NODES)
    )
    warn2proc: int = attrs.field(
        default=abi.NONE, validator=in_range(-(2**31), 2**31 - 1)
    )
    warnmsg: int = attrs.field(default=0, validator=in_range(-(2**31), 2**31 - 1))
    cpus: list[int] = attrs.field(factory=list, validator=_cpu_list)

    def __attrs_post_init__(self) -> None:
        check_sysprocs(self.nr_sysprocs, self.nr_tasks, self.nr_procs)

    def to_kernel(self) -> DcParams:
        return DcParams(
            dcid=self.dcid,
            name=self.name,
            nr_procs=self.nr_procs,
            nr_tasks=self.nr_tasks,
            nr_sysprocs=self.nr_sysprocs,
            nr_nodes=self.nr_nodes,
            warn2proc=self.warn2proc,
            warnmsg=self.warnmsg,
            cpus=tuple(self.cpus),
        )


@handler(
    RequestType.DCINIT,
    params=DcInitParams,
    summary="Start a distributed container on the node (rcode = dcid)",
)
async def dc_init(ctx: HandlerContext, params: DcInitParams) -> Reply:
    ctx.kernel.dc_init(params.to_kernel())
    ctx.log.info("dc_started", dcid=params.dcid, dc_name=params.name)
    if ctx.membership is not None and params.dcid in ctx.config.cluster.dcs:
        # A [cluster] DC gains the members that are already up.
        ctx.membership.apply_current_view(f"dc init {params.dcid}")
    return Reply(rcode=params.dcid)


@handler(RequestType.GETDCINFO, params=DcIdParams, summary="Show one DC slot")
async def get_dc_info(ctx: HandlerContext, params: DcIdParams) -> Reply:
    return Reply(items=[ctx.kernel.get_dc_info(params.dcid)])


@handler(RequestType.DCEND, params=DcIdParams, summary="End a DC on the node")
async def dc_end(ctx: HandlerContext, params: DcIdParams) -> Reply:
    ctx.kernel.dc_end(params.dcid)
    ctx.log.info("dc_ended", dcid=params.dcid)
    return Reply()
