"""CONTROL GROUPS requests: CGCPU, CGMEM, CGIO and CGNET.

Each request names one cgroup, by its path in the hierarchy or by a pid in
it, and reads its settings; given any setting it first checks every value,
then writes, then answers with the settings read back.  Which cgroup version
serves each controller is decided per node (v1, v2 or hybrid).
"""

from __future__ import annotations

from typing import Any

import attrs

from dvsd.handlers.host import cgroup_layout, host_call, policy_of
from dvsd.host import cgroups
from dvsd.registry import HandlerContext, Reply, RequestError, handler
from dvsd.rqst import RequestType, ReturnCode


def _path(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        cgroups.check_cgroup_path(value)  # InvalidValue is a ValueError


def _pid(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise ValueError(f"{attribute.name} must be a process id >= 1, got {value!r}")


def _int_range(low: int, high: int):
    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an integer in {low}..{high}")
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} must be in {low}..{high}, got {value}")

    return check


def _with(check):
    """An attrs validator that applies a data-layer check to a given value."""

    def validate(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            check(value, attribute.name)

    return validate


def _target_post_init(self) -> None:
    if (self.path is None) == (self.pid is None):
        raise ValueError("give either path (a cgroup path) or pid (a process in it)")


def _may_write(ctx: HandlerContext, request: str) -> None:
    if not policy_of(ctx).cgroup_write:
        raise RequestError(
            ReturnCode.NOT_ALLOWED,
            f"{request} settings are read-only on this node"
            " (host.cgroup_write = false)",
        )


# -- CGCPU -----------------------------------------------------------------------


@attrs.frozen
class CgCpuParams:
    """A cgroup (path or pid) and, optionally, new CPU settings."""

    path: str | None = attrs.field(default=None, validator=_path)
    pid: int | None = attrs.field(default=None, validator=_pid)
    quota: str | None = attrs.field(
        default=None, validator=_with(lambda value, _: cgroups.check_quota(value))
    )
    period: int | None = attrs.field(
        default=None, validator=_int_range(1000, 1_000_000)
    )
    weight: int | None = attrs.field(default=None, validator=_int_range(1, 10_000))
    shares: int | None = attrs.field(default=None, validator=_int_range(2, 262_144))

    __attrs_post_init__ = _target_post_init

    @property
    def changes(self) -> dict[str, Any]:
        return {
            "quota": self.quota,
            "period": self.period,
            "weight": self.weight,
            "shares": self.shares,
        }


def _cpu(policy, params: CgCpuParams):
    layout = cgroup_layout(policy)
    where = cgroups.locate(
        layout,
        v1_controller="cpu",
        v2_controller="cpu",
        path=params.path,
        pid=params.pid,
        proc_root=policy.proc_root,
    )
    if any(value is not None for value in params.changes.values()):
        return cgroups.set_cpu(where, layout, **params.changes), True
    return cgroups.read_cpu(where, layout), False


@handler(
    RequestType.CGCPU,
    params=CgCpuParams,
    summary="Read or set a cgroup's CPU quota, period and weight/shares",
)
async def cg_cpu(ctx: HandlerContext, params: CgCpuParams) -> Reply:
    if any(value is not None for value in params.changes.values()):
        _may_write(ctx, "CPU")
    settings, written = await host_call(_cpu, policy_of(ctx), params)
    if written:
        ctx.log.info("cgroup_cpu_set", cgroup=settings.cgroup, version=settings.version)
    return Reply(items=[settings])


# -- CGMEM -----------------------------------------------------------------------


@attrs.frozen
class CgMemParams:
    """A cgroup and, optionally, a new limit and/or high mark (``512M``, ``max``)."""

    path: str | None = attrs.field(default=None, validator=_path)
    pid: int | None = attrs.field(default=None, validator=_pid)
    limit: str | None = attrs.field(default=None, validator=_with(cgroups.parse_size))
    high: str | None = attrs.field(default=None, validator=_with(cgroups.parse_size))

    __attrs_post_init__ = _target_post_init


def _memory(policy, params: CgMemParams):
    layout = cgroup_layout(policy)
    where = cgroups.locate(
        layout,
        v1_controller="memory",
        v2_controller="memory",
        path=params.path,
        pid=params.pid,
        proc_root=policy.proc_root,
    )
    if params.limit is not None or params.high is not None:
        return cgroups.set_memory(where, limit=params.limit, high=params.high), True
    return cgroups.read_memory(where), False


@handler(
    RequestType.CGMEM,
    params=CgMemParams,
    summary="Read or set a cgroup's memory limit and high mark",
)
async def cg_mem(ctx: HandlerContext, params: CgMemParams) -> Reply:
    if params.limit is not None or params.high is not None:
        _may_write(ctx, "memory")
    settings, written = await host_call(_memory, policy_of(ctx), params)
    if written:
        ctx.log.info("cgroup_memory_set", cgroup=settings.cgroup)
    return Reply(items=[settings])


# -- CGIO ------------------------------------------------------------------------


@attrs.frozen
class CgIoParams:
    """A cgroup and, optionally, throttles for one device (bytes/s, ops/s or max)."""

    path: str | None = attrs.field(default=None, validator=_path)
    pid: int | None = attrs.field(default=None, validator=_pid)
    device: str | None = attrs.field(
        default=None, validator=_with(cgroups.check_device)
    )
    rbps: str | None = attrs.field(
        default=None, validator=_with(cgroups.check_io_value)
    )
    wbps: str | None = attrs.field(
        default=None, validator=_with(cgroups.check_io_value)
    )
    riops: str | None = attrs.field(
        default=None, validator=_with(cgroups.check_io_value)
    )
    wiops: str | None = attrs.field(
        default=None, validator=_with(cgroups.check_io_value)
    )

    def __attrs_post_init__(self) -> None:
        _target_post_init(self)
        limits = (self.rbps, self.wbps, self.riops, self.wiops)
        if any(value is not None for value in limits) and self.device is None:
            raise ValueError("I/O limits need a device (major:minor, like 8:0)")
        if self.device is not None and all(value is None for value in limits):
            raise ValueError("give at least one of rbps, wbps, riops, wiops")

    @property
    def changes(self) -> dict[str, str | None]:
        return {
            "rbps": self.rbps,
            "wbps": self.wbps,
            "riops": self.riops,
            "wiops": self.wiops,
        }


def _io(policy, params: CgIoParams):
    layout = cgroup_layout(policy)
    where = cgroups.locate(
        layout,
        v1_controller="blkio",
        v2_controller="io",
        path=params.path,
        pid=params.pid,
        proc_root=policy.proc_root,
    )
    if params.device is not None:
        return cgroups.set_io(where, params.device, **params.changes), True
    return cgroups.read_io(where), False


@handler(
    RequestType.CGIO,
    params=CgIoParams,
    summary="Read or set a cgroup's block I/O limits; shows its I/O statistics",
)
async def cg_io(ctx: HandlerContext, params: CgIoParams) -> Reply:
    if params.device is not None:
        _may_write(ctx, "I/O")
    settings, written = await host_call(_io, policy_of(ctx), params)
    if written:
        ctx.log.info("cgroup_io_set", cgroup=settings.cgroup, device=params.device)
    return Reply(items=[settings])


# -- CGNET -----------------------------------------------------------------------


@attrs.frozen
class CgNetParams:
    """A cgroup and, optionally, a net_cls class id and/or one interface priority."""

    path: str | None = attrs.field(default=None, validator=_path)
    pid: int | None = attrs.field(default=None, validator=_pid)
    classid: str | None = attrs.field(
        default=None, validator=_with(lambda value, _: cgroups.parse_classid(value))
    )
    interface: str | None = None
    priority: int | None = attrs.field(default=None, validator=_int_range(0, 2**32 - 1))

    def __attrs_post_init__(self) -> None:
        _target_post_init(self)
        if (self.interface is None) != (self.priority is None):
            raise ValueError("give both interface and priority, or neither")


def _net(policy, params: CgNetParams):
    layout = cgroup_layout(policy)
    where = cgroups.locate_net(
        layout, path=params.path, pid=params.pid, proc_root=policy.proc_root
    )
    if params.classid is not None or params.priority is not None:
        settings = cgroups.set_net(
            where,
            layout,
            classid=params.classid,
            interface=params.interface,
            priority=params.priority,
        )
        return settings, True
    return cgroups.read_net(where, layout), False


@handler(
    RequestType.CGNET,
    params=CgNetParams,
    summary="Read or set a cgroup's net_cls class id and net_prio priorities (v1)",
)
async def cg_net(ctx: HandlerContext, params: CgNetParams) -> Reply:
    if params.classid is not None or params.priority is not None:
        _may_write(ctx, "network")
    settings, written = await host_call(_net, policy_of(ctx), params)
    if written:
        ctx.log.info("cgroup_net_set", cgroup=settings.cgroup)
    return Reply(items=[settings])
