"""CONTAINER: containers recognised from the cgroup paths their processes are in.

Runtimes put each container in a cgroup whose name carries the container id
or name; dvsd reads ``/proc/<pid>/cgroup`` of every process and matches:

=================  =================================================
runtime            cgroup path (v1 or v2, cgroupfs or systemd driver)
=================  =================================================
docker             ``/docker/<id>``, ``/system.slice/docker-<id>.scope``
podman             ``/machine.slice/libpod-<id>.scope``, ``.../libpod-<id>``
containerd         ``.../cri-containerd-<id>.scope``, ``/kubepods.../<id>``
cri-o              ``.../crio-<id>.scope``
lxc                ``/lxc/<name>``, ``/lxc.payload.<name>``, ``/lxc.payload/<name>``
systemd-nspawn     ``/machine.slice/machine-<name>.scope``
=================  =================================================

The container's init process is the member whose parent is outside the
container (the lowest such pid); its namespaces are the container's.
"""

from __future__ import annotations

import re

import attrs

from dvsd.host.cgroups import parse_pid_cgroups
from dvsd.host.namespaces import process_namespaces
from dvsd.host.procs import list_pids, read_stat

_ID = r"[0-9a-f]{64}"
# Ordered: the first pattern that matches a path wins.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("docker", re.compile(rf"^(.*?/docker[-/]({_ID}))(?:\.scope)?(?:/|$)")),
    ("podman", re.compile(rf"^(.*?/libpod-({_ID}))(?:\.scope)?(?:/|$)")),
    ("containerd", re.compile(rf"^(.*?/cri-containerd[-:]({_ID}))(?:\.scope)?(?:/|$)")),
    ("cri-o", re.compile(rf"^(.*?/crio-({_ID}))(?:\.scope)?(?:/|$)")),
    ("containerd", re.compile(rf"^(/kubepods[^/]*(?:/[^/]+)*?/({_ID}))(?:/|$)")),
    ("lxc", re.compile(r"^(/lxc(?:\.payload)?[./]([^/]+))(?:/|$)")),
    ("systemd-nspawn", re.compile(r"^(/machine\.slice/machine-([^/]+)\.scope)(?:/|$)")),
]


@attrs.frozen
class Container:
    """One container seen on the node."""

    runtime: str
    id: str  # full id, or the name for lxc and nspawn
    name: str  # the short form administrators type (12 hex digits or the name)
    cgroup: str
    init_pid: int
    process_count: int
    command: str | None  # the init process's name
    namespaces: dict[str, int]


def _unescape_systemd(name: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})", lambda match: chr(int(match.group(1), 16)), name)


def match_container(cgroup_path: str) -> tuple[str, str, str] | None:
    """(runtime, id, container cgroup) for a path inside a container, else None."""
    if cgroup_path.endswith(".scope") and "libpod-conmon-" in cgroup_path:
        return None  # podman's monitor process, not the container
    for runtime, pattern in _PATTERNS:
        match = pattern.match(cgroup_path)
        if match:
            identifier = match.group(2)
            if runtime == "systemd-nspawn":
                identifier = _unescape_systemd(identifier)
            return runtime, identifier, match.group(1)
    return None


def _container_path(memberships: dict[str, str]) -> tuple[str, str, str] | None:
    # The v2 line first, then the named systemd hierarchy, then any controller.
    ordered = [memberships.get(""), memberships.get("name=systemd")]
    ordered += [path for key, path in sorted(memberships.items()) if key]
    for path in ordered:
        if path:
            found = match_container(path)
            if found:
                return found
    return None


def list_containers(proc_root: str = "/proc") -> list[Container]:
    """The containers of the node, sorted by runtime and name."""
    members: dict[tuple[str, str], list[int]] = {}
    paths: dict[tuple[str, str], str] = {}
    for pid in list_pids(proc_root):
        try:
            with open(f"{proc_root}/{pid}/cgroup") as cgroup_file:
                memberships = parse_pid_cgroups(cgroup_file.read())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited during the scan
        found = _container_path(memberships)
        if found is None:
            continue
        runtime, identifier, path = found
        members.setdefault((runtime, identifier), []).append(pid)
        paths.setdefault((runtime, identifier), path)

    containers = []
    for key, pids in members.items():
        runtime, identifier = key
        parents = {}
        for pid in pids:
            stat = read_stat(pid, proc_root)
            if stat is not None:
                parents[pid] = stat
        if not parents:
            continue  # every member exited meanwhile
        inside = set(parents)
        roots = [pid for pid, stat in parents.items() if stat["ppid"] not in inside]
        init_pid = min(roots or parents)
        try:
            namespaces = process_namespaces(init_pid, proc_root)
        except Exception:  # noqa: BLE001 - init exited between the two reads
            namespaces = {}
        short = identifier[:12] if re.fullmatch(_ID, identifier) else identifier
        containers.append(
            Container(
                runtime=runtime,
                id=identifier,
                name=short,
                cgroup=paths[key],
                init_pid=init_pid,
                process_count=len(parents),
                command=str(parents[init_pid]["comm"]),
                namespaces=namespaces,
            )
        )
    containers.sort(key=lambda container: (container.runtime, container.name))
    return containers
