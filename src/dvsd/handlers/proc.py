"""GETPROCINFO, GETPRIV, SETPRIV, MIGRATE and MIGRATE's per-node steps.

MIGRATE is coordinated by the dvsd that receives it:

1. MIGR_START on the old node (the descriptor is marked MIGRATING there);
2. MIGR_COMMIT on every node of the DC, in one sub-request, because commit
   does something different on each node (reference 4.14): the old node
   makes the descriptor remote, the new node binds ``pid`` to it, the others
   record the new location;
3. if any node fails to commit (or does not answer), MIGR_ROLLBACK on the
   old node.

The reply lists one outcome per node and step.  Its rcode is 0 when every
commit succeeded, otherwise the first failure's code.  A rollback cannot
undo a commit that already succeeded elsewhere; the outcome list shows which
nodes hold the new location so an administrator can repair them.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import msgpack
import trio

from dvsd.kernel import KernelError, abi
from dvsd.kernel.models import PrivUpdate
from dvsd.registry import (
    MAX_REPLY_BYTES,
    HandlerContext,
    Reply,
    RequestError,
    handler,
    unstructure_items,
)
from dvsd.rqst import RequestType, ReturnCode
from dvsd.validators import in_range

INT_MAX = 2**31 - 1
# Room for the reply header and the framing of the item list.
REPLY_MARGIN = 2_000
# Seconds MIGRATE keeps for its own reply after the last step.
DEADLINE_MARGIN = 0.2
MIN_STEP_TIMEOUT = 0.1


def _endpoint(_instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an integer, got {value!r}")
    slot = abi.endpoint_slot(value)
    if not -abi.NR_TASKS <= value <= INT_MAX or not (
        -abi.NR_TASKS <= slot < abi.NR_PROCS
    ):
        raise ValueError(
            f"{attribute.name} must designate a slot in"
            f" {-abi.NR_TASKS}..{abi.NR_PROCS - 1}, got {value}"
        )


def _dcid():
    return attrs.field(validator=in_range(0, abi.NR_DCS - 1))


@attrs.frozen
class ProcInfoParams:
    """One slot (``slot``), or every slot of the DC when ``slot`` is None."""

    dcid: int = _dcid()
    slot: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(in_range(-abi.NR_TASKS, abi.NR_PROCS - 1)),
    )
    include_free: bool = False


@attrs.frozen
class EndpointParams:
    dcid: int = _dcid()
    endpoint: int = attrs.field(validator=_endpoint)


@attrs.frozen
class SetPrivParams:
    """The four fields set-privilege applies; an omitted one stays as it is."""

    dcid: int = _dcid()
    endpoint: int = attrs.field(validator=_endpoint)
    warn: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            in_range(-abi.NR_TASKS, abi.NR_SYS_PROCS - 1)
        ),
    )
    level: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            in_range(abi.PrivLevel.USER, abi.PrivLevel.PROXY)
        ),
    )
    ipc_to: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(in_range(0, 2**64 - 1))
    )
    dvk_allowed: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(in_range(0, 2**48 - 1))
    )


@attrs.frozen
class CommitParams:
    pid: int = attrs.field(validator=in_range(-1, INT_MAX))
    dcid: int = _dcid()
    endpoint: int = attrs.field(validator=_endpoint)
    new_node: int = attrs.field(validator=in_range(0, abi.NR_NODES - 1))


@attrs.frozen
class MigrateParams:
    """Move ``endpoint`` of DC ``dcid`` to ``new_node``, bound there to ``pid``.

    ``old_node`` defaults to where the coordinating node's kernel says the
    process runs.
    """

    dcid: int = _dcid()
    endpoint: int = attrs.field(validator=_endpoint)
    new_node: int = attrs.field(validator=in_range(0, abi.NR_NODES - 1))
    pid: int = attrs.field(validator=in_range(1, INT_MAX))
    old_node: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(in_range(0, abi.NR_NODES - 1)),
    )

    def __attrs_post_init__(self) -> None:
        if self.old_node is not None and self.old_node == self.new_node:
            raise ValueError(
                f"new_node must differ from old_node, both are {self.new_node}"
            )


def _encoded_size(item: Any) -> int:
    return len(msgpack.packb(unstructure_items([item])[0], use_bin_type=True))


@handler(
    RequestType.GETPROCINFO,
    params=ProcInfoParams,
    many_lines=True,
    summary="Show one process slot, or the used slots of a DC",
)
async def get_proc_info(ctx: HandlerContext, params: ProcInfoParams) -> Reply:
    kernel = ctx.kernel
    if params.slot is not None:
        return Reply(items=[kernel.get_proc_info(params.dcid, params.slot)])
    dc = kernel.get_dc_info(params.dcid)
    if not dc.running:
        raise KernelError(abi.Edvs.DCNOTRUN, f"get_proc_info dcid={params.dcid}")
    items, size, full_size, truncated = [], 0, 0, False
    budget = MAX_REPLY_BYTES - REPLY_MARGIN
    for slot in range(-dc.nr_tasks, dc.nr_procs):
        proc = kernel.get_proc_info(params.dcid, slot)
        if proc.free and not params.include_free:
            continue
        encoded = _encoded_size(proc)
        full_size += encoded
        if size + encoded > budget:
            truncated = True
            continue
        size += encoded
        items.append(proc)
    return Reply(
        items=items, truncated=truncated, full_size=full_size if truncated else None
    )


@handler(
    RequestType.GETPRIV, params=EndpointParams, summary="Show a process's privileges"
)
async def get_priv(ctx: HandlerContext, params: EndpointParams) -> Reply:
    return Reply(items=[ctx.kernel.get_priv(params.dcid, params.endpoint)])


@handler(
    RequestType.SETPRIV, params=SetPrivParams, summary="Change a process's privileges"
)
async def set_priv(ctx: HandlerContext, params: SetPrivParams) -> Reply:
    update = PrivUpdate(
        warn=params.warn,
        level=params.level,
        ipc_to=params.ipc_to,
        dvk_allowed=params.dvk_allowed,
    )
    if update == PrivUpdate():
        raise RequestError(
            ReturnCode.BAD_REQUEST,
            "SETPRIV needs at least one of warn, level, ipc_to, dvk_allowed",
        )
    ctx.kernel.set_priv(params.dcid, params.endpoint, update)
    ctx.log.info("priv_set", dcid=params.dcid, endpoint=params.endpoint)
    return Reply(items=[ctx.kernel.get_priv(params.dcid, params.endpoint)])


# -- MIGRATE's steps: plain single-node handlers ------------------------------


@handler(RequestType.MIGR_START, params=EndpointParams, summary="Migration step: start")
async def migr_start(ctx: HandlerContext, params: EndpointParams) -> Reply:
    ctx.kernel.migr_start(params.dcid, params.endpoint)
    return Reply()


@handler(RequestType.MIGR_COMMIT, params=CommitParams, summary="Migration step: commit")
async def migr_commit(ctx: HandlerContext, params: CommitParams) -> Reply:
    ctx.kernel.migr_commit(params.pid, params.dcid, params.endpoint, params.new_node)
    return Reply()


@handler(
    RequestType.MIGR_ROLLBACK,
    params=EndpointParams,
    summary="Migration step: roll back",
)
async def migr_rollback(ctx: HandlerContext, params: EndpointParams) -> Reply:
    ctx.kernel.migr_rollback(params.dcid, params.endpoint)
    return Reply()


# -- MIGRATE: the coordinator ---------------------------------------------------


def _outcome(step: str, result: Any) -> dict[str, Any]:
    missing = getattr(result, "missing_reason", None)
    return {
        "node": result.node,
        "step": step,
        "rcode": result.rcode,
        "ok": missing is None and result.rcode >= 0,
        "error": missing or result.error,
    }


def _time_share(ctx: HandlerContext, fraction: float) -> dict[str, float]:
    """A ``timeout`` for the next sub-request: a share of what is left.

    MIGRATE sends up to three sub-requests one after another and must still
    answer by its own deadline, so none may take the whole remaining time.
    """
    remaining = ctx.deadline - trio.current_time() - DEADLINE_MARGIN
    if not math.isfinite(remaining):
        return {}
    return {"timeout": max(remaining * fraction, MIN_STEP_TIMEOUT)}


def _failure_code(result: Any) -> int:
    if result.rcode < 0:
        return result.rcode
    return ReturnCode.NODE_LEFT


@handler(
    RequestType.MIGRATE,
    params=MigrateParams,
    summary="Migrate a process to another node (coordinates every node of the DC)",
)
async def migrate(ctx: HandlerContext, params: MigrateParams) -> Reply:
    if ctx.request is None:
        raise RequestError(
            ReturnCode.NOT_SUPPORTED,
            "this dvsd cannot send the sub-requests MIGRATE needs",
        )
    dcid, endpoint = params.dcid, params.endpoint
    dc = ctx.kernel.get_dc_info(dcid)
    if not dc.running:
        raise RequestError(
            abi.Edvs.DCNOTRUN,
            f"{abi.describe_error(abi.Edvs.DCNOTRUN)}: DC {dcid} does not run on"
            f" node {ctx.node_id}, which coordinates the migration; send MIGRATE to"
            " a node of the DC",
        )
    dc_nodes = set(dc.nodes)
    if params.new_node not in dc_nodes:
        raise RequestError(
            abi.Edvs.DCNODE,
            f"{abi.describe_error(abi.Edvs.DCNODE)}: new_node {params.new_node} is"
            f" not a member of DC {dcid} (members: {sorted(dc_nodes)})",
        )
    old_node = params.old_node
    if old_node is None:
        proc = ctx.kernel.get_proc_info(dcid, abi.endpoint_slot(endpoint))
        if proc.free:
            raise KernelError(
                abi.Edvs.DSTDIED, f"migrate dcid={dcid} endpoint={endpoint}"
            )
        old_node = proc.nodeid
    if old_node == params.new_node:
        raise RequestError(
            ReturnCode.BAD_REQUEST,
            f"endpoint {endpoint} already runs on node {old_node}",
        )
    log = ctx.log.bind(
        dcid=dcid, endpoint=endpoint, old_node=old_node, new_node=params.new_node
    )
    slot_params = {"dcid": dcid, "endpoint": endpoint}
    outcomes: list[dict[str, Any]] = []

    started = await ctx.request(
        RequestType.MIGR_START,
        slot_params,
        nodes={old_node},
        **_time_share(ctx, 1 / 3),
    )
    outcomes.extend(_outcome("start", result) for result in started)
    failed = [result for result in started if not _outcome("start", result)["ok"]]
    if failed or not started:
        code = _failure_code(failed[0]) if failed else ReturnCode.NODE_LEFT
        log.warning("migration_not_started", rcode=code)
        return Reply(
            rcode=code,
            items=outcomes,
            error=f"migration did not start on old node {old_node}",
        )

    # The old node commits last: until then it still holds the process, so
    # a failure anywhere can be undone without touching it.
    others = dc_nodes - {old_node}
    commit_params = {
        "pid": params.pid,
        "dcid": dcid,
        "endpoint": endpoint,
        "new_node": params.new_node,
    }
    committed = await _step(
        ctx, outcomes, "commit", RequestType.MIGR_COMMIT, commit_params, others, 1 / 3
    )
    failed = sorted(others - committed)
    if not failed:
        on_old = await _step(
            ctx,
            outcomes,
            "commit",
            RequestType.MIGR_COMMIT,
            commit_params,
            {old_node},
            1 / 2,
        )
        if on_old:
            log.info("migration_committed", nodes=sorted(dc_nodes))
            return Reply(items=outcomes)
        failed = [old_node]

    # Undo: the nodes that already committed point back at the old node, and
    # the old node (which never committed) leaves its MIGRATING state.
    undo_params = dict(commit_params, new_node=old_node)
    undone = await _step(
        ctx, outcomes, "undo", RequestType.MIGR_COMMIT, undo_params, committed, 1 / 2
    )
    rolled = await _step(
        ctx, outcomes, "rollback", RequestType.MIGR_ROLLBACK, slot_params, {old_node}, 1
    )
    stranded = sorted(committed - undone)
    commit_failures = [o for o in outcomes if o["step"] == "commit" and not o["ok"]]
    code = commit_failures[0]["rcode"] if commit_failures else ReturnCode.NODE_LEFT
    if code >= 0:  # the node did not answer: no kernel code to give
        code = ReturnCode.NODE_LEFT
    sentence = f"commit failed on node(s) {', '.join(map(str, failed))}"
    sentence += (
        f"; rolled back: endpoint {endpoint} stays on node {old_node}"
        if rolled and not stranded
        else f"; NOT fully rolled back: node(s)"
        f" {', '.join(map(str, stranded + ([] if rolled else [old_node])))}"
        " need attention (see the per-node steps)"
    )
    log.warning("migration_failed", failed_nodes=failed, stranded=stranded, rcode=code)
    return Reply(rcode=code, items=outcomes, error=sentence)


async def _step(
    ctx: HandlerContext,
    outcomes: list[dict[str, Any]],
    step: str,
    rqst_type: RequestType,
    step_params: dict[str, Any],
    nodes: set[int],
    share: float,
) -> set[int]:
    """Send one migration step to ``nodes``; record outcomes; return the ok nodes."""
    if not nodes:
        return set()
    results = await ctx.request(
        rqst_type, step_params, nodes=set(nodes), **_time_share(ctx, share)
    )
    recorded = [_outcome(step, result) for result in results]
    outcomes.extend(recorded)
    return {outcome["node"] for outcome in recorded if outcome["ok"]}
