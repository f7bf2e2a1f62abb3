"""NAMESPACES requests: NSCGROUP, NSIPC, NSNET, NSNS (mount), NSPID, NSUSER, NSUTS.

Each type reports one namespace kind: with a pid, the namespace that process
is in and every process sharing it; without, every namespace of that kind on
the node (as ``lsns -t KIND`` lists them).
"""

from __future__ import annotations

from typing import Any

import attrs

from dvsd.handlers.host import fit_items, host_call, policy_of
from dvsd.host.namespaces import describe_namespaces
from dvsd.registry import HandlerContext, Reply, handler
from dvsd.rqst import RequestType

#: Request type -> the /proc/<pid>/ns entry it reports.
NAMESPACE_REQUESTS: dict[RequestType, str] = {
    RequestType.NSCGROUP: "cgroup",
    RequestType.NSIPC: "ipc",
    RequestType.NSNET: "net",
    RequestType.NSNS: "mnt",
    RequestType.NSPID: "pid",
    RequestType.NSUSER: "user",
    RequestType.NSUTS: "uts",
}


def _pid(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise ValueError(f"{attribute.name} must be a process id >= 1, got {value!r}")


@attrs.frozen
class NamespaceParams:
    """``pid``: the process whose namespace to show; none: every namespace."""

    pid: int | None = attrs.field(default=None, validator=_pid)


def _make_handler(rqst: RequestType, kind: str) -> None:
    async def namespace_handler(ctx: HandlerContext, params: NamespaceParams) -> Reply:
        found = await host_call(
            describe_namespaces, kind, params.pid, policy_of(ctx).proc_root
        )
        return fit_items(found)

    namespace_handler.__name__ = f"ns_{kind}"
    namespace_handler.__qualname__ = f"ns_{kind}"
    handler(
        rqst,
        params=NamespaceParams,
        many_lines=True,
        summary=f"The {kind} namespace of a process and who shares it, or all of them",
    )(namespace_handler)


for _rqst, _kind in NAMESPACE_REQUESTS.items():
    _make_handler(_rqst, _kind)
