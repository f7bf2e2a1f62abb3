"""The daemon's configuration: one TOML file, one frozen attrs class per section.

``load(path)`` reads and checks the file; anything wrong raises
:class:`ConfigError` whose message names the key (``gcs.transport``), the
allowed values and what the file said, so the daemon can exit with it.
"""

from __future__ import annotations

import enum
import os
import shlex
import tomllib
from pathlib import Path
from typing import Any

import attrs

from dvsd.kernel.abi import NR_DCS, NR_NODES

#: The longest time any setting may name, in seconds (one day).
MAX_SECONDS = 86400.0

#: Where dvsd and dvsctl look when no ``--config`` is given and
#: ``DVSD_CONFIG`` is not set.  A missing file means the built-in defaults.
DEFAULT_PATH = Path("/etc/dvsd/dvsd.toml")


class ConfigError(Exception):
    """The configuration file cannot be used; the message says which key and why."""


class Transport(enum.StrEnum):
    SPREAD = "spread"
    SINGLE_NODE = "single-node"


class KernelBackend(enum.StrEnum):
    AUTO = "auto"
    EMULATED = "emulated"
    DVK = "dvk"


class MembershipEvent(enum.StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    DISCONNECT = "disconnect"
    PARTITION = "partition"
    MERGE = "merge"


@attrs.frozen
class GcsConfig:
    """``[gcs]``: the group communication system that links the nodes."""

    transport: Transport = Transport.SINGLE_NODE
    daemon: str = "4803@127.0.0.1"
    group: str = "DVS"
    #: Seconds between reconnection attempts grow from ``reconnect_min`` to
    #: ``reconnect_max`` while the Spread daemon is away.
    reconnect_min: float = 0.2
    reconnect_max: float = 5.0


@attrs.frozen
class MsgqConfig:
    """``[msgq]``: the SysV message queues between dvsctl and dvsd."""

    request_key: int = 7000
    reply_key: int = 7001
    #: Permission bits of the queues dvsd creates.
    mode: int = 0o660


@attrs.frozen
class RequestsConfig:
    """``[requests]``: defaults for every request."""

    timeout: float = 5.0
    #: Handlers that may run at once on this node; more wait for a turn.
    concurrency: int = 64


@attrs.frozen
class KernelConfig:
    """``[kernel]``: which DVK backend executes kernel requests."""

    backend: KernelBackend = KernelBackend.AUTO
    device: str = "/dev/dvk"


@attrs.frozen
class ScriptsConfig:
    """``[scripts]``: programs run for each membership event, in order."""

    join: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()
    disconnect: tuple[str, ...] = ()
    partition: tuple[str, ...] = ()
    merge: tuple[str, ...] = ()
    timeout: float = 30.0

    def for_event(self, event: MembershipEvent) -> tuple[str, ...]:
        return getattr(self, event.value)


@attrs.frozen
class ClusterConfig:
    """``[cluster]``: what the DVS looks like when it is whole."""

    #: The node ids the DVS is configured with; a partition holds a majority
    #: when it sees more than half of them.  Empty means "whoever is present".
    nodes: tuple[int, ...] = ()
    #: DCs every joining node is added to.
    dcs: tuple[int, ...] = ()


@attrs.frozen
class Config:
    node_id: int = 0
    gcs: GcsConfig = GcsConfig()
    msgq: MsgqConfig = MsgqConfig()
    requests: RequestsConfig = RequestsConfig()
    kernel: KernelConfig = KernelConfig()
    scripts: ScriptsConfig = ScriptsConfig()
    cluster: ClusterConfig = ClusterConfig()
    host: Any = None
    source: str = "built-in defaults"

    @property
    def member_name(self) -> str:
        """The Spread private name of this node: ``node.<id>``."""
        return f"node.{self.node_id}"


def default_path() -> Path | None:
    """The file to read when none is named: ``DVSD_CONFIG``, then /etc/dvsd."""
    named = os.environ.get("DVSD_CONFIG")
    if named:
        return Path(named)
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read and check a configuration file (``None`` gives the defaults)."""
    if path is None:
        return from_mapping({}, source="built-in defaults")
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        return from_mapping(raw, source=str(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def from_mapping(raw: dict[str, Any], *, source: str = "mapping") -> Config:
    """Build a :class:`Config` from parsed TOML, checking every key."""
    sections = {
        "gcs": GcsConfig,
        "msgq": MsgqConfig,
        "requests": RequestsConfig,
        "kernel": KernelConfig,
        "scripts": ScriptsConfig,
        "cluster": ClusterConfig,
    }
    allowed_top = {"node_id", "host", *sections}
    _reject_unknown(raw, allowed_top, "")
    node_id = raw.get("node_id", 0)
    if isinstance(node_id, bool) or not isinstance(node_id, int):
        raise ConfigError(f"key node_id must be an integer, got {node_id!r}")
    check_node_id(node_id, "key node_id")

    built = {name: _section(raw, name, cls) for name, cls in sections.items()}
    _check(built)
    return Config(
        node_id=node_id, host=_host_section(raw.get("host", {})), source=source, **built
    )


def with_node_id(settings: Config, node_id: int) -> Config:
    """The same configuration for another node id (``dvsd --node-id``)."""
    check_node_id(node_id, "node id")
    return attrs.evolve(settings, node_id=node_id)


def check_node_id(node_id: int, what: str) -> None:
    """A node id is a slot of the DVK's node table, so the kernel's compiled-in
    size bounds it (the wire could name more)."""
    if not 0 <= node_id < NR_NODES:
        raise ConfigError(
            f"{what} must be in 0..{NR_NODES - 1} (the DVK has {NR_NODES} node"
            f" slots), got {node_id}"
        )


def _reject_unknown(table: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}{key}"
            raise ConfigError(
                f"unknown key {where} (allowed here: {', '.join(sorted(allowed))})"
            )


def _section(raw: dict[str, Any], name: str, cls: type) -> Any:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"key {name} must be a table ([{name}]), got {table!r}")
    fields = {field.name: field for field in attrs.fields(cls)}
    _reject_unknown(table, set(fields), f"{name}.")
    values = {}
    for key, value in table.items():
        values[key] = _coerce(f"{name}.{key}", value, fields[key])
    return cls(**values)


def _coerce(key: str, value: Any, field: attrs.Attribute) -> Any:
    default = field.default
    if isinstance(default, enum.Enum):
        allowed = [member.value for member in type(default)]
        if value not in allowed:
            shown = ", ".join(f'"{item}"' for item in allowed)
            raise ConfigError(f"key {key} must be one of {shown}, got {value!r}")
        return type(default)(value)
    if isinstance(default, tuple):
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"key {key} must be a list, got {value!r}")
        wanted = int if key.startswith("cluster.") else str
        for item in value:
            if isinstance(item, bool) or not isinstance(item, wanted):
                raise ConfigError(
                    f"key {key} must hold {wanted.__name__} values, got {item!r}"
                )
            if key.startswith("scripts."):
                _check_script_entry(key, item)
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"key {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= MAX_SECONDS
        ):
            raise ConfigError(
                f"key {key} must be a number of seconds in (0, {MAX_SECONDS:.0f}],"
                f" got {value!r}"
            )
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"key {key} must be a non-negative integer, got {value!r}"
            )
        return value
    if isinstance(default, str):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"key {key} must be a non-empty string, got {value!r}")
        return value
    return value  # pragma: no cover - every field has one of the types above


def _check_script_entry(key: str, entry: str) -> None:
    """A script entry is split like a shell word list; it must give a program."""
    try:
        words = shlex.split(entry)
    except ValueError as error:
        raise ConfigError(f"key {key}: cannot split {entry!r}: {error}") from None
    if not words:
        raise ConfigError(f"key {key} holds an empty script entry")


def _check(built: dict[str, Any]) -> None:
    gcs: GcsConfig = built["gcs"]
    if not 1 <= len(gcs.group) <= 31 or any(
        not 0x24 <= ord(char) <= 0x7E for char in gcs.group
    ):
        raise ConfigError(
            "key gcs.group must be 1..31 printable characters without space, '!',"
            f" '\"' or '#', got {gcs.group!r}"
        )
    if gcs.transport is Transport.SPREAD:
        from dvsd.transport.spread import IllegalSpreadAddress, parse_address

        try:
            parse_address(gcs.daemon)
        except IllegalSpreadAddress as error:
            raise ConfigError(
                f"key gcs.daemon must be '<port>' (unix socket) or '<port>@<host>'"
                f" (TCP): {error}"
            ) from None
    if gcs.reconnect_min > gcs.reconnect_max:
        raise ConfigError("key gcs.reconnect_min must not exceed gcs.reconnect_max")
    msgq: MsgqConfig = built["msgq"]
    for key in ("request_key", "reply_key"):
        value = getattr(msgq, key)
        if not 1 <= value <= 0x7FFFFFFF:
            raise ConfigError(f"key msgq.{key} must be in 1..2147483647, got {value}")
    if msgq.request_key == msgq.reply_key:
        raise ConfigError("keys msgq.request_key and msgq.reply_key must differ")
    if msgq.mode > 0o777:
        raise ConfigError(
            f"key msgq.mode must be permission bits <= 0o777, got 0o{msgq.mode:o}"
        )
    if not 1 <= built["requests"].concurrency <= 100_000:
        raise ConfigError(
            "key requests.concurrency must be in 1..100000,"
            f" got {built['requests'].concurrency}"
        )
    cluster: ClusterConfig = built["cluster"]
    for key, ids, highest in (
        ("nodes", cluster.nodes, NR_NODES - 1),
        ("dcs", cluster.dcs, NR_DCS - 1),
    ):
        wrong = [value for value in ids if not 0 <= value <= highest]
        if wrong:
            raise ConfigError(
                f"key cluster.{key} must hold ids in 0..{highest}, got {wrong}"
            )


def _host_section(table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"key host must be a table ([host]), got {table!r}")
    try:
        from dvsd.hostpolicy import HostPolicy
    except ImportError:  # the host family is not installed in this build
        _reject_unknown(table, set(), "host.")
        return None
    try:
        return HostPolicy.from_mapping(table)
    except (ValueError, TypeError, KeyError) as error:
        message = str(error)
        # the policy's own messages already name their key (host.x, [host])
        if not message.startswith(("host.", "[host]")):
            message = f"[host]: {message}"
        raise ConfigError(message) from None
