"""HOST requests: COMMAND, PS, VMSTAT, IFCONFIG, NETSTAT, DF, MOUNT, KILL,
PIDSTAT, CONTAINER and CONTROLLER.

The handlers are thin: they check the ``[host]`` policy, run a function of
:mod:`dvsd.host` in a worker thread (reading /proc or cgroupfs blocks), and
fit the items into one reply.  COMMAND is the exception: it spawns the
process with Trio and reads its pipes on the event loop, so a long command
never holds up other requests.  :func:`host_call` and :func:`fit_items` are
shared with the cgroup and namespace families.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import msgpack
import trio

from dvsd.guarded import run_guarded
from dvsd.host import containers, disks, net, procs, stats
from dvsd.host.cgroups import CgroupLayout, detect_layout, list_controllers, v2_layout
from dvsd.host.command import (
    CommandPlan,
    CommandResult,
    OutputBuffer,
    build_result,
    plan_command,
)
from dvsd.host.errors import (
    HostError,
    InvalidValue,
    NoSuchProcess,
    NotAllowed,
    NotSupported,
    PermissionDenied,
)
from dvsd.hostpolicy import HostPolicy
from dvsd.registry import (
    MAX_REPLY_BYTES,
    HandlerContext,
    NoParams,
    Reply,
    RequestError,
    converter,
    handler,
)
from dvsd.rqst import RequestType, ReturnCode
from dvsd.validators import in_range, one_of

T = TypeVar("T")

#: Room left in a reply for its header, the node's group name and msgpack
#: framing around the items.
REPLY_MARGIN = 2_000

#: Seconds kept back from the request's deadline to send the reply itself.
DEADLINE_MARGIN = 0.5

_RCODES: dict[type[HostError], ReturnCode] = {
    InvalidValue: ReturnCode.BAD_REQUEST,
    NoSuchProcess: ReturnCode.NO_SUCH_PROCESS,
    PermissionDenied: ReturnCode.PERMISSION,
    NotAllowed: ReturnCode.NOT_ALLOWED,
    NotSupported: ReturnCode.NOT_SUPPORTED,
}


def request_error(error: HostError) -> RequestError:
    """The reply error for a data-layer failure (HOST_ERROR if nothing closer)."""
    for kind, rcode in _RCODES.items():
        if isinstance(error, kind):
            return RequestError(rcode, str(error))
    return RequestError(ReturnCode.HOST_ERROR, str(error))


async def host_call(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking data-layer function in a worker thread.

    A :class:`HostError` comes back as the matching :class:`RequestError`.
    """
    try:
        return await trio.to_thread.run_sync(
            functools.partial(function, *args, **kwargs)
        )
    except HostError as error:
        raise request_error(error) from None


def policy_of(ctx: HandlerContext) -> HostPolicy:
    """The node's ``[host]`` policy, or the safe defaults when none is configured."""
    policy = getattr(ctx.config, "host", None)
    return policy if isinstance(policy, HostPolicy) else HostPolicy()


def cgroup_layout(policy: HostPolicy) -> CgroupLayout:
    """The node's cgroup layout (blocking: call it through :func:`host_call`)."""
    if policy.cgroup_v2_root:
        return v2_layout(policy.cgroup_v2_root)
    return detect_layout(policy.proc_root)


def encoded_size(value: Any) -> int:
    """Bytes ``value`` takes in a reply (attrs instances as the registry sends them)."""
    return len(msgpack.packb(converter.unstructure(value), use_bin_type=True))


def fit_items(items: list[Any], budget: int | None = None) -> Reply:
    """A Reply with as many leading items as fit one message.

    When items are left out the reply says so: ``truncated=True`` and
    ``full_size`` = the encoded size in bytes of all the items.
    """
    if budget is None:
        budget = MAX_REPLY_BYTES - REPLY_MARGIN
    sizes = [encoded_size(item) for item in items]
    total = sum(sizes) + 5  # the array header
    if total <= budget:
        return Reply(items=items)
    used, kept = 5, 0
    for size in sizes:
        if used + size > budget:
            break
        used += size
        kept += 1
    return Reply(items=items[:kept], truncated=True, full_size=total)


def time_left(ctx: HandlerContext) -> float:
    return ctx.deadline - trio.current_time() - DEADLINE_MARGIN


def _optional(validator):
    return attrs.validators.optional(validator)


#: Linux pids never exceed 2**22 (PID_MAX_LIMIT); anything above cannot exist.
PID_LIMIT = 2**22


def _positive_pid(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= PID_LIMIT
    ):
        raise ValueError(
            f"{attribute.name} must be a process id in 1..{PID_LIMIT}, got {value!r}"
        )


def _seconds(low: float, high: float):
    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{attribute.name} must be a number of seconds")
        if not low <= value <= high:
            raise ValueError(
                f"{attribute.name} must be in {low:g}..{high:g} seconds, got {value}"
            )

    return check


# -- COMMAND ---------------------------------------------------------------------


@attrs.frozen
class CommandParams:
    """An argument vector to run, or (if the node allows it) one shell line."""

    argv: list[str] = attrs.field(factory=list)
    shell: str | None = None
    timeout: float | None = attrs.field(default=None, validator=_seconds(0.01, 3600))

    def __attrs_post_init__(self) -> None:
        if bool(self.argv) == (self.shell is not None):
            raise ValueError(
                "give either argv (the command and its arguments) or shell"
            )


async def run_command(plan: CommandPlan, log: Any = None) -> CommandResult:
    """Run ``plan`` in its own session; never outlives its timeout.

    On timeout, on cancellation, and when the command finishes while its
    background children still run (they get the pipe grace of
    :func:`dvsd.guarded.run_guarded` if they hold its output), every process
    it started is killed, whether or not it left the process group, so a
    COMMAND leaves nothing behind on the node; the guard does the same
    should dvsd die first.
    """
    stdout = OutputBuffer(limit=plan.output_cap)
    stderr = OutputBuffer(limit=plan.output_cap)
    run = await run_guarded(
        plan.argv,
        timeout=plan.timeout,
        stdout=stdout.feed,
        stderr=stderr.feed,
        env=plan.env,
        cwd=plan.cwd,
        log=log,
    )
    if run.start_error is not None:
        raise _cannot_start(plan, run.start_error)
    if (run.timed_out or run.leftovers_killed) and log is not None:
        log.info(
            "command_group_killed",
            timed_out=run.timed_out,
            leftovers_killed=run.leftovers_killed,
        )
    return build_result(
        plan.argv,
        returncode=run.exit_status,
        timed_out=run.timed_out,
        duration=run.duration,
        stdout=stdout,
        stderr=stderr,
        cap=plan.output_cap,
        leftovers_killed=run.leftovers_killed,
    )


def _cannot_start(plan: CommandPlan, why: str) -> RequestError:
    return RequestError(ReturnCode.HOST_ERROR, f"cannot start {plan.argv[0]}: {why}")


@handler(
    RequestType.COMMAND,
    params=CommandParams,
    summary="Run a command on the node (if its [host] policy allows it)",
)
async def command(ctx: HandlerContext, params: CommandParams) -> Reply:
    policy = policy_of(ctx)
    try:
        plan = await trio.to_thread.run_sync(
            functools.partial(
                plan_command,
                policy,
                argv=list(params.argv),
                shell=params.shell,
                timeout=params.timeout,
                time_left=time_left(ctx),
            )
        )
    except HostError as error:
        raise request_error(error) from None
    # The output cap also has to leave room for the rest of the item.
    room = MAX_REPLY_BYTES - REPLY_MARGIN - encoded_size(plan.argv) - 400
    if room <= 0:
        raise RequestError(
            ReturnCode.TOO_LARGE, "the argument vector alone does not fit one reply"
        )
    plan = attrs.evolve(plan, output_cap=min(plan.output_cap, room))
    ctx.log.info("command_start", argv=plan.argv, timeout=plan.timeout)
    result = await run_command(plan, ctx.log)
    ctx.log.info(
        "command_done",
        exit_status=result.exit_status,
        timed_out=result.timed_out,
        leftovers_killed=result.leftovers_killed,
        stdout_size=result.stdout_size,
        stderr_size=result.stderr_size,
    )
    cut = result.stdout_truncated or result.stderr_truncated
    return Reply(
        items=[result],
        truncated=cut,
        full_size=result.stdout_size + result.stderr_size if cut else None,
    )


# -- PS, VMSTAT, PIDSTAT -----------------------------------------------------------


@attrs.frozen
class PsParams:
    """Filters; with none, every process."""

    pid: int | None = attrs.field(default=None, validator=_positive_pid)
    user: str | None = None
    name: str | None = None


@handler(RequestType.PS, params=PsParams, many_lines=True, summary="List processes")
async def ps(ctx: HandlerContext, params: PsParams) -> Reply:
    rows = await host_call(
        procs.list_processes, pid=params.pid, user=params.user, name=params.name
    )
    return fit_items(rows)


@attrs.frozen
class VmstatParams:
    """``interval`` 0 gives one line of averages since boot, like ``vmstat``."""

    interval: float = attrs.field(default=0.0, validator=_seconds(0, 60))
    count: int = attrs.field(default=1, validator=in_range(1, 60))


@handler(
    RequestType.VMSTAT,
    params=VmstatParams,
    summary="Memory, swap, I/O and CPU activity (vmstat)",
)
async def vmstat(ctx: HandlerContext, params: VmstatParams) -> Reply:
    proc_root = policy_of(ctx).proc_root
    if params.count > 1 and params.interval <= 0:
        raise RequestError(ReturnCode.BAD_REQUEST, "count > 1 needs an interval > 0")
    _check_sampling_time(ctx, params.interval * (params.count - 1))
    previous = await host_call(stats.read_snapshot, proc_root)
    rows = [stats.vmstat_row(None, previous)]
    for _ in range(params.count - 1):
        await trio.sleep(params.interval)  # the sampling interval itself
        current = await host_call(stats.read_snapshot, proc_root)
        rows.append(stats.vmstat_row(previous, current))
        previous = current
    return Reply(items=rows)


def _check_sampling_time(ctx: HandlerContext, needed: float) -> None:
    left = time_left(ctx)
    if needed > left:
        raise RequestError(
            ReturnCode.BAD_REQUEST,
            f"sampling takes {needed:g} s but the request allows {max(left, 0):.1f} s;"
            " lower interval or count, or raise --timeout",
        )


@attrs.frozen
class PidstatParams:
    """``count`` intervals of ``interval`` seconds, for one pid or all active ones."""

    interval: float = attrs.field(default=1.0, validator=_seconds(0.1, 60))
    count: int = attrs.field(default=1, validator=in_range(1, 60))
    pid: int | None = attrs.field(default=None, validator=_positive_pid)


@handler(
    RequestType.PIDSTAT,
    params=PidstatParams,
    many_lines=True,
    summary="Per-process CPU, faults and I/O over an interval (pidstat)",
)
async def pidstat(ctx: HandlerContext, params: PidstatParams) -> Reply:
    proc_root = policy_of(ctx).proc_root
    _check_sampling_time(ctx, params.interval * params.count)
    before = await host_call(procs.sample_processes, params.pid, proc_root)
    if params.pid is not None and not before:
        raise RequestError(
            ReturnCode.NO_SUCH_PROCESS, f"no process with pid {params.pid}"
        )
    taken = trio.current_time()
    rows: list[procs.PidstatRow] = []
    for sample in range(1, params.count + 1):
        await trio.sleep(params.interval)  # the sampling interval itself
        after = await host_call(procs.sample_processes, params.pid, proc_root)
        now = trio.current_time()
        rows += procs.pidstat_rows(
            before,
            after,
            now - taken,
            sample=sample,
            active_only=params.pid is None,
        )
        before, taken = after, now
    return fit_items(rows)


# -- KILL --------------------------------------------------------------------------


@attrs.frozen
class KillParams:
    """A signal for one pid, or for every process with a name."""

    pid: int | None = attrs.field(default=None, validator=_positive_pid)
    name: str | None = None
    signal: str = "TERM"
    force: bool = False

    def __attrs_post_init__(self) -> None:
        if (self.pid is None) == (self.name is None):
            raise ValueError("give either pid or name")
        procs.parse_signal(self.signal)  # InvalidValue is a ValueError


@handler(
    RequestType.KILL,
    params=KillParams,
    summary="Send a signal to a process by pid or name",
)
async def kill(ctx: HandlerContext, params: KillParams) -> Reply:
    policy = policy_of(ctx)
    if not policy.kill:
        raise RequestError(
            ReturnCode.NOT_ALLOWED, "KILL is disabled on this node (host.kill = false)"
        )
    if params.force and not policy.kill_force:
        raise RequestError(
            ReturnCode.NOT_ALLOWED,
            "KILL with force is disabled on this node (host.kill_force = false)",
        )
    signum = procs.parse_signal(params.signal)
    dvsd_pid = os.getpid()
    if params.pid is not None:
        result = await host_call(
            procs.send_signal,
            params.pid,
            signum,
            dvsd_pid=dvsd_pid,
            force=params.force,
        )
        results = [result]
    else:
        results = await host_call(
            procs.signal_by_name,
            params.name,
            signum,
            dvsd_pid=dvsd_pid,
            force=params.force,
        )
    ctx.log.info(
        "signal_sent",
        signal=procs.signal_name(signum),
        pids=[result.pid for result in results if result.sent],
        refused=[result.pid for result in results if not result.sent],
    )
    return fit_items(results)


# -- IFCONFIG, NETSTAT, DF, MOUNT ----------------------------------------------------


@attrs.frozen
class IfconfigParams:
    interface: str | None = None


@handler(
    RequestType.IFCONFIG,
    params=IfconfigParams,
    many_lines=True,
    summary="Network interfaces, addresses and counters",
)
async def ifconfig(ctx: HandlerContext, params: IfconfigParams) -> Reply:
    return fit_items(await host_call(net.list_interfaces, params.interface))


@attrs.frozen
class NetstatParams:
    kind: str = attrs.field(default="inet", validator=one_of(net.NETSTAT_KINDS))
    listening: bool = False


@handler(
    RequestType.NETSTAT,
    params=NetstatParams,
    many_lines=True,
    summary="Sockets with their state and process",
)
async def netstat(ctx: HandlerContext, params: NetstatParams) -> Reply:
    rows = await host_call(
        net.list_connections, params.kind, listening=params.listening
    )
    return fit_items(rows)


@attrs.frozen
class DfParams:
    all: bool = False
    fstype: str | None = None
    path: str | None = None


@handler(
    RequestType.DF,
    params=DfParams,
    many_lines=True,
    summary="Space and inodes of mounted filesystems",
)
async def df(ctx: HandlerContext, params: DfParams) -> Reply:
    rows = await host_call(
        disks.disk_free,
        policy_of(ctx).proc_root,
        include_all=params.all,
        fstype=params.fstype,
        path=params.path,
    )
    return fit_items(rows)


@attrs.frozen
class MountParams:
    fstype: str | None = None


@handler(
    RequestType.MOUNT,
    params=MountParams,
    many_lines=True,
    summary="The mount table",
)
async def mount(ctx: HandlerContext, params: MountParams) -> Reply:
    rows = await host_call(
        disks.list_mounts, policy_of(ctx).proc_root, fstype=params.fstype
    )
    return fit_items(rows)


# -- CONTAINER, CONTROLLER -------------------------------------------------------------


@attrs.frozen
class ContainerParams:
    runtime: str | None = None


@handler(
    RequestType.CONTAINER,
    params=ContainerParams,
    many_lines=True,
    summary="Containers on the node, from their cgroups",
)
async def container(ctx: HandlerContext, params: ContainerParams) -> Reply:
    found = await host_call(containers.list_containers, policy_of(ctx).proc_root)
    if params.runtime is not None:
        found = [entry for entry in found if entry.runtime == params.runtime]
    return fit_items(found)


def _controllers(policy: HostPolicy):
    return list_controllers(cgroup_layout(policy), policy.proc_root)


@handler(
    RequestType.CONTROLLER,
    params=NoParams,
    many_lines=True,
    summary="cgroup controllers: where they are mounted and whether enabled",
)
async def controller(ctx: HandlerContext, params: NoParams) -> Reply:
    return fit_items(await host_call(_controllers, policy_of(ctx)))
