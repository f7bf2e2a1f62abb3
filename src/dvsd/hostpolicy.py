"""The ``[host]`` section of the dvsd configuration: what host requests may do.

The host requests (COMMAND, KILL, the cgroup setters) act on the node with
dvsd's own privileges, usually root.  This section decides how far a request
that arrives over the cluster may go.  The defaults are the safe ones: no
remote command execution at all, signals allowed but never to pid 1 or dvsd
itself without ``force``, cgroup settings writable.

TOML keys (all optional)::

    [host]
    command = "off"            # "off" | "allow" | "any"
    command_allow = []         # executables COMMAND may run when command = "allow"
    command_shell = false      # may COMMAND run a shell line (/bin/sh -c)?
    command_timeout = 10.0     # seconds, when the request gives none
    command_max_timeout = 60.0 # seconds, the most a request may ask for
    command_output_cap = 100000  # bytes of stdout+stderr kept per command
    command_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    command_cwd = "/"
    kill = true                # may KILL send signals at all?
    kill_force = true          # may KILL's force flag reach pid 1 and dvsd?
    cgroup_write = true        # may CG* requests change settings?
    proc_root = "/proc"        # where the proc filesystem is (tests move it)
    cgroup_v2_root = ""        # a cgroup v2 tree to use instead of detecting one
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import attrs

COMMAND_MODES = ("off", "allow", "any")

#: The reply of one COMMAND must fit one Spread message together with its
#: header; this is the most output a configuration may ask to keep.
COMMAND_OUTPUT_CAP_LIMIT = 110_000

DEFAULT_COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HostPolicyError(ValueError):
    """A ``[host]`` key has a value dvsd cannot use; the message names the key."""


def _check_mode(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in COMMAND_MODES:
        raise HostPolicyError(
            f"host.{attribute.name} must be one of {', '.join(COMMAND_MODES)},"
            f" got {value!r}"
        )


def _check_allow(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    for entry in value:
        if not isinstance(entry, str) or not entry:
            raise HostPolicyError(
                f"host.{attribute.name} must list executable names or paths,"
                f" got {entry!r}"
            )


def _check_seconds(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HostPolicyError(f"host.{attribute.name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise HostPolicyError(
            f"host.{attribute.name} must be greater than 0 seconds, got {value}"
        )


def _check_cap(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostPolicyError(f"host.{attribute.name} must be an integer of bytes")
    if not 0 <= value <= COMMAND_OUTPUT_CAP_LIMIT:
        raise HostPolicyError(
            f"host.{attribute.name} must be in 0..{COMMAND_OUTPUT_CAP_LIMIT},"
            f" got {value}"
        )


def _check_bool(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise HostPolicyError(f"host.{attribute.name} must be true or false")


def _check_abs_path(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or (value and not os.path.isabs(value)):
        raise HostPolicyError(
            f"host.{attribute.name} must be an absolute path, got {value!r}"
        )


def _check_search_path(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not all(
        os.path.isabs(part) for part in value.split(":")
    ):
        raise HostPolicyError(
            f"host.{attribute.name} must be absolute directories joined by ':',"
            f" got {value!r}"
        )


@attrs.frozen
class HostPolicy:
    """What host requests may do on this node (the ``[host]`` table).

    Instances are valid by construction: a bad value raises
    :class:`HostPolicyError` naming the ``host.<key>``.
    """

    command: str = attrs.field(default="off", validator=_check_mode)
    command_allow: tuple[str, ...] = attrs.field(
        default=(), converter=tuple, validator=_check_allow
    )
    command_shell: bool = attrs.field(default=False, validator=_check_bool)
    command_timeout: float = attrs.field(default=10.0, validator=_check_seconds)
    command_max_timeout: float = attrs.field(default=60.0, validator=_check_seconds)
    command_output_cap: int = attrs.field(default=100_000, validator=_check_cap)
    command_path: str = attrs.field(
        default=DEFAULT_COMMAND_PATH, validator=_check_search_path
    )
    command_cwd: str = attrs.field(default="/", validator=_check_abs_path)
    kill: bool = attrs.field(default=True, validator=_check_bool)
    kill_force: bool = attrs.field(default=True, validator=_check_bool)
    cgroup_write: bool = attrs.field(default=True, validator=_check_bool)
    proc_root: str = attrs.field(default="/proc", validator=_check_abs_path)
    #: Empty means: detect the cgroup layout from the proc root's mountinfo.
    cgroup_v2_root: str = attrs.field(default="", validator=_check_abs_path)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any] | None) -> HostPolicy:
        """Build the policy from the parsed ``[host]`` TOML table.

        Unknown keys are refused by name so a misspelt ``comand = "any"``
        does not silently leave the default in force.
        """
        if table is None:
            return cls()
        if not isinstance(table, Mapping):
            raise HostPolicyError("[host] must be a table")
        known = {field.name for field in attrs.fields(cls)}
        unknown = sorted(str(key) for key in table if key not in known)
        if unknown:
            raise HostPolicyError(
                f"[host] has unknown key {', '.join(unknown)}"
                f" (known: {', '.join(sorted(known))})"
            )
        values = dict(table)
        if "command_allow" in values and isinstance(values["command_allow"], str):
            raise HostPolicyError("host.command_allow must be a list of executables")
        if isinstance(values.get("command_timeout"), int) and not isinstance(
            values.get("command_timeout"), bool
        ):
            values["command_timeout"] = float(values["command_timeout"])
        return cls(**values)
