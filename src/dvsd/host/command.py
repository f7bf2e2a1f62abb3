"""COMMAND without the I/O: who may run what, and how output is kept and cut.

The Trio side (spawning, reading the pipes, the timeout) lives in
:mod:`dvsd.handlers.host`; this module decides whether an argument vector may
run under the node's :class:`~dvsd.hostpolicy.HostPolicy`, collects output up
to a cap while still counting what was dropped, and shapes the result item.
"""

from __future__ import annotations

import os
import shutil

import attrs

from dvsd.host.errors import InvalidValue, NotAllowed
from dvsd.hostpolicy import HostPolicy

SHELL = "/bin/sh"


@attrs.frozen
class CommandPlan:
    """What will be executed: the resolved argument vector and its limits."""

    argv: list[str]
    timeout: float
    output_cap: int
    cwd: str
    env: dict[str, str]


def resolve_executable(name: str, search_path: str) -> str | None:
    """The real path of ``name`` (a path, or a name looked up in ``search_path``)."""
    if "/" in name:
        found = name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    else:
        found = shutil.which(name, path=search_path)
    return None if found is None else os.path.realpath(found)


def _allowed_paths(policy: HostPolicy) -> set[str]:
    allowed = set()
    for entry in policy.command_allow:
        resolved = resolve_executable(entry, policy.command_path)
        if resolved is not None:
            allowed.add(resolved)
    return allowed


def plan_command(
    policy: HostPolicy,
    *,
    argv: list[str],
    shell: str | None,
    timeout: float | None,
    time_left: float | None = None,
) -> CommandPlan:
    """Check a COMMAND request against the policy and build what to run.

    Exactly one of ``argv`` (non-empty) and ``shell`` is given.  Raises
    :class:`NotAllowed` when the policy refuses it (the sentence names the
    ``[host]`` key to change) and :class:`InvalidValue` for a malformed
    request or an executable that is not on this node.  ``time_left`` is
    what remains before the request's deadline; the timeout never outlives it.
    """
    if policy.command == "off":
        raise NotAllowed(
            'COMMAND is disabled on this node (set command = "allow" or "any"'
            " in its [host] configuration)"
        )
    if bool(argv) == (shell is not None):
        raise InvalidValue("COMMAND needs either an argument vector or a shell line")
    if shell is not None:
        if not policy.command_shell:
            raise NotAllowed(
                "shell lines are refused on this node (host.command_shell is false);"
                " send an argument vector"
            )
        if "\0" in shell:
            raise InvalidValue("the shell line contains a NUL byte")
        argv = [SHELL, "-c", shell]
    if any("\0" in argument for argument in argv):
        raise InvalidValue("an argument contains a NUL byte")

    executable = resolve_executable(argv[0], policy.command_path)
    if executable is None:
        raise InvalidValue(
            f"{argv[0]!r} is not an executable on this node"
            f" (looked in {policy.command_path})"
        )
    if (
        policy.command == "allow"
        and shell is None
        and executable not in _allowed_paths(policy)
    ):
        raise NotAllowed(
            f"{argv[0]!r} ({executable}) is not in host.command_allow on this node"
        )

    limit = policy.command_max_timeout
    if time_left is not None:
        limit = min(limit, time_left)
    if limit <= 0:
        raise InvalidValue("no time is left before the request's deadline")
    chosen = policy.command_timeout if timeout is None else timeout
    if chosen <= 0:
        raise InvalidValue(f"timeout must be greater than 0 seconds, got {chosen}")
    return CommandPlan(
        argv=[executable, *argv[1:]],
        timeout=min(chosen, limit),
        output_cap=policy.command_output_cap,
        cwd=policy.command_cwd,
        env={"PATH": policy.command_path, "LANG": "C.UTF-8", "HOME": "/"},
    )


@attrs.define
class OutputBuffer:
    """Keeps the first ``limit`` bytes of a stream and counts all of them."""

    limit: int
    kept: bytearray = attrs.field(factory=bytearray)
    total: int = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]


@attrs.frozen
class CommandResult:
    """What COMMAND reports per node.  Output is bytes, exactly as produced.

    ``exit_status`` is the process's exit code, or minus the signal number
    that ended it (so -9 after a timeout).  ``stdout_size``/``stderr_size``
    are the full sizes the command wrote; ``*_truncated`` say a stream was cut
    to fit one reply.  ``leftovers_killed`` counts the other processes the
    command had started that were still running when it ended, and were
    killed; it comes last and defaults to 0, so replies from a dvsd that
    does not send it still decode.
    """

    argv: list[str]
    exit_status: int | None
    timed_out: bool
    duration: float
    stdout: bytes
    stderr: bytes
    stdout_size: int
    stderr_size: int
    stdout_truncated: bool
    stderr_truncated: bool
    leftovers_killed: int = 0


def split_cap(stdout_size: int, stderr_size: int, cap: int) -> tuple[int, int]:
    """How many bytes of each stream fit ``cap`` together.

    stderr keeps at least a quarter of the cap when it has that much, so an
    error message is not drowned by a long stdout; what one stream does not
    need goes to the other.
    """
    if stdout_size + stderr_size <= cap:
        return stdout_size, stderr_size
    stderr_share = min(stderr_size, max(cap - stdout_size, cap // 4))
    stdout_share = min(stdout_size, cap - stderr_share)
    stderr_share = min(stderr_size, cap - stdout_share)
    return stdout_share, stderr_share


def build_result(
    argv: list[str],
    *,
    returncode: int | None,
    timed_out: bool,
    duration: float,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
    cap: int,
    leftovers_killed: int = 0,
) -> CommandResult:
    """Shape the result, cutting the two streams to ``cap`` bytes together."""
    out_keep, err_keep = split_cap(len(stdout.kept), len(stderr.kept), cap)
    out = bytes(stdout.kept[:out_keep])
    err = bytes(stderr.kept[:err_keep])
    return CommandResult(
        argv=argv,
        exit_status=returncode,
        timed_out=timed_out,
        duration=round(duration, 3),
        stdout=out,
        stderr=err,
        stdout_size=stdout.total,
        stderr_size=stderr.total,
        stdout_truncated=len(out) < stdout.total,
        stderr_truncated=len(err) < stderr.total,
        leftovers_killed=leftovers_killed,
    )
