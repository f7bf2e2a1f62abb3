"""The dispatch table: one decorated handler function per request type.

A handler module declares its request types with :func:`handler`; importing
the module registers them in :data:`REGISTRY`.  The built-in families are the
modules of :mod:`dvsd.handlers`; third parties add theirs through the entry
point group ``dvsd.handlers`` (see ``docs/plugins.md``).  The same table
serves both ends: ``dvsctl`` reads it to validate parameters and to know
which requests have many-line replies, and ``dvsd`` reads it to execute.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import traceback
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import cattrs
import structlog

from dvsd.rqst import FIRST_PLUGIN_TYPE, LAST_REQUEST_TYPE, RequestType, ReturnCode

#: The largest encoded reply (header and items) a handler may produce.  A
#: Spread message holds 143551 bytes of groups and data (see the transport);
#: this leaves room for the reply header and one 32-byte group name.
MAX_REPLY_BYTES = 120_000

ENTRY_POINT_GROUP = "dvsd.handlers"

log = structlog.get_logger("dvsd.registry")

# One converter for the edges: wire dicts in, attrs instances; items out, dicts.
converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(kind: type, accepted: tuple[type, ...], label: str):
    """A structure hook that takes only ``accepted`` types, never a conversion.

    cattrs would otherwise turn ``True`` into ``"True"`` for a string field,
    or ``"false"`` into ``True`` for a boolean one: a request whose value has
    the wrong type is refused, not guessed at.
    """

    def structure(value: Any, _type: type) -> Any:
        if isinstance(value, bool) and bool not in accepted:
            raise TypeError(f"expected {label}, got {value!r}")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {label}, got {value!r} ({type(value).__name__})")
        return kind(value)

    return structure


converter.register_structure_hook(str, _strict(str, (str,), "a string"))
converter.register_structure_hook(bool, _strict(bool, (bool,), "true or false"))
converter.register_structure_hook(int, _strict(int, (int,), "an integer"))
converter.register_structure_hook(float, _strict(float, (int, float), "a number"))
converter.register_structure_hook(bytes, _strict(bytes, (bytes,), "bytes"))


def _is_sequence(kind: Any) -> bool:
    return typing.get_origin(kind) in (list, tuple) or kind in (list, tuple)


def _structure_sequence(value: Any, kind: Any) -> Any:
    """Lists and tuples from lists only: a string is not a list of characters."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {value!r}")
    origin = typing.get_origin(kind) or kind
    args = typing.get_args(kind)
    if origin is list:
        item = args[0] if args else Any
        return [converter.structure(part, item) for part in value]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(converter.structure(part, args[0]) for part in value)
    if args:
        if len(args) != len(value):
            raise TypeError(f"expected {len(args)} values, got {len(value)}")
        return tuple(
            converter.structure(v, a) for v, a in zip(value, args, strict=True)
        )
    return tuple(value)


converter.register_structure_hook_func(_is_sequence, _structure_sequence)


class RequestError(Exception):
    """A request failed on this node; the reply carries ``rcode`` and the sentence.

    Raise it from a handler with a sentence that names the field or the
    resource that is wrong.
    """

    def __init__(self, rcode: int, message: str) -> None:
        super().__init__(message)
        self.rcode = int(rcode)
        self.message = message


@attrs.frozen
class NoParams:
    """The parameters of a request that takes none."""


@attrs.frozen
class Reply:
    """What a handler returns: a return code and the reply items.

    ``items`` are attrs instances or plain dicts of msgpack-able values.
    ``truncated`` and ``full_size`` say that the handler cut its output to fit
    one message; ``error`` is the sentence that goes with a negative rcode.
    """

    rcode: int = 0
    items: list[Any] = attrs.field(factory=list)
    truncated: bool = False
    full_size: int | None = None
    error: str | None = None


@attrs.frozen
class View:
    """The membership view a request was delivered in."""

    members: frozenset[int] = frozenset()
    view_id: str = ""


@attrs.frozen
class HandlerContext:
    """What a handler may use while it executes one request on this node."""

    node_id: int
    kernel: Any
    config: Any
    log: Any
    requester: int
    view: View
    deadline: float
    #: ``await ctx.request(rqst_type, params, nodes=...)`` sends a sub-request
    #: from this node and returns one result per node (used by MIGRATE).
    request: Callable[..., Awaitable[list[Any]]] | None = None
    #: The membership layer of this node (``dvsd.membership``), if running.
    membership: Any = None


HandlerFunction = Callable[[HandlerContext, Any], Awaitable[Reply]]


@attrs.frozen
class Handler:
    """One entry of the dispatch table."""

    rqst_type: int
    name: str
    function: HandlerFunction
    params: type
    many_lines: bool
    summary: str
    module: str


class DuplicateHandler(Exception):
    """Two modules claim the same request type."""


@attrs.define
class Registry:
    """Request type -> handler.  Registration refuses duplicates."""

    handlers: dict[int, Handler] = attrs.field(factory=dict)

    def add(self, entry: Handler) -> None:
        existing = self.handlers.get(entry.rqst_type)
        if existing is not None and existing.function is not entry.function:
            raise DuplicateHandler(
                f"request type {entry.rqst_type} is registered by {existing.module}"
                f" and again by {entry.module}"
            )
        self.handlers[entry.rqst_type] = entry

    def get(self, rqst_type: int) -> Handler | None:
        return self.handlers.get(rqst_type)

    def by_name(self, name: str) -> Handler | None:
        for entry in self.handlers.values():
            if entry.name == name.upper():
                return entry
        return None

    def __iter__(self):
        return iter(sorted(self.handlers.values(), key=lambda entry: entry.rqst_type))


REGISTRY = Registry()


def handler(
    rqst_type: int,
    *,
    params: type = NoParams,
    many_lines: bool = False,
    summary: str = "",
    name: str | None = None,
    registry: Registry | None = None,
) -> Callable[[HandlerFunction], HandlerFunction]:
    """Register an async handler function for ``rqst_type``.

    ``params`` is a frozen attrs class built from the request's parameters;
    ``many_lines`` marks requests whose reply has many lines, which the
    protocol only allows to a single node.  Plugins use numbers from
    :data:`~dvsd.rqst.FIRST_PLUGIN_TYPE` on and give a ``name``.
    """
    if not 0 < int(rqst_type) <= LAST_REQUEST_TYPE:
        raise ValueError(f"request type must be in 1..{LAST_REQUEST_TYPE}")
    if name is None:
        try:
            name = RequestType(rqst_type).name
        except ValueError:
            raise ValueError(
                f"request type {rqst_type} is not built in: give the handler a name"
            ) from None
    elif int(rqst_type) < FIRST_PLUGIN_TYPE:
        try:
            RequestType(rqst_type)
        except ValueError:
            raise ValueError(
                f"plugin request types start at {FIRST_PLUGIN_TYPE}, got {rqst_type}"
            ) from None
    if not attrs.has(params):
        raise TypeError(f"params of {name} must be an attrs class, got {params!r}")

    def register(function: HandlerFunction) -> HandlerFunction:
        (registry or REGISTRY).add(
            Handler(
                rqst_type=int(rqst_type),
                name=name.upper(),
                function=function,
                params=params,
                many_lines=many_lines,
                summary=summary or (function.__doc__ or "").strip().split("\n")[0],
                module=function.__module__,
            )
        )
        return function

    return register


def load_handlers(
    registry: Registry | None = None, *, plugins: bool = True
) -> Registry:
    """Import the built-in handler modules and, if asked, the installed plugins.

    A plugin that fails to import is logged and skipped: one broken third-party
    package must not stop a node from answering the built-in requests.
    """
    importlib.import_module("dvsd.handlers")
    if plugins:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry_point.load()
            except Exception as error:  # noqa: BLE001 - any plugin failure is reported
                log.error(
                    "plugin_load_failed",
                    plugin=entry_point.name,
                    target=entry_point.value,
                    error=repr(error),
                )
            else:
                log.info("plugin_loaded", plugin=entry_point.name)
    return registry or REGISTRY


def build_params(entry: Handler, raw: Any) -> Any:
    """Build the handler's params instance from a decoded dict.

    Raises :class:`RequestError` with ``BAD_REQUEST`` and a sentence naming
    the field when the dict does not fit the class.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise RequestError(
            ReturnCode.BAD_REQUEST,
            f"{entry.name} parameters must be a map of names to values,"
            f" got {type(raw).__name__}",
        )
    known = {field.name for field in attrs.fields(entry.params)}
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise RequestError(
            ReturnCode.BAD_REQUEST,
            f"{entry.name} does not take parameter {', '.join(unknown)}"
            f" (it takes: {allowed})",
        )
    try:
        return converter.structure(dict(raw), entry.params)
    except (ValueError, TypeError) as error:
        raise RequestError(ReturnCode.BAD_REQUEST, f"{entry.name}: {error}") from None
    except cattrs.BaseValidationError as error:
        raise RequestError(
            ReturnCode.BAD_REQUEST, f"{entry.name}: {describe_validation(error)}"
        ) from None


def describe_validation(error: cattrs.BaseValidationError) -> str:
    """One sentence out of a cattrs error group: the innermost messages, joined."""
    messages: list[str] = []
    for inner, note in _leaves(error):
        text = str(inner)
        if isinstance(inner, KeyError):
            text = f"missing parameter {note}" if note else "a parameter is missing"
        elif note and note not in text:
            text = f"{note}: {text}"
        messages.append(text)
    return "; ".join(messages) or str(error)


def _leaves(error: BaseException, note: str = ""):
    if isinstance(error, BaseExceptionGroup):
        notes = getattr(error, "__notes__", [])
        for inner in error.exceptions:
            inner_notes = getattr(inner, "__notes__", [])
            name = _field_from_notes(inner_notes) or _field_from_notes(notes)
            yield from _leaves(inner, name or note)
    else:
        yield error, note


def _field_from_notes(notes: list[Any]) -> str:
    for item in notes:
        name = getattr(item, "name", None)
        if name:
            return str(name)
        text = str(item)
        if text.startswith("Structuring class") and "@ attribute" in text:
            return text.rsplit("@ attribute", 1)[1].strip()
    return ""


def unstructure_items(items: list[Any]) -> list[Any]:
    """Turn reply items into msgpack-able values (attrs instances become dicts)."""
    return [converter.unstructure(item) for item in items]


async def execute(
    registry: Registry, rqst_type: int, raw_params: Any, ctx: HandlerContext
) -> Reply:
    """Run the handler for one request and always come back with a :class:`Reply`.

    Nothing a handler raises escapes: a :class:`RequestError` becomes its
    rcode and sentence, anything else becomes ``INTERNAL`` and is logged with
    its traceback, so one broken handler never takes the daemon down.
    """
    entry = registry.get(rqst_type)
    if entry is None:
        return Reply(
            rcode=ReturnCode.BAD_REQUEST,
            error=f"unknown request type {rqst_type}: node {ctx.node_id} has no"
            " handler for it",
        )
    try:
        params = build_params(entry, raw_params)
        reply = await entry.function(ctx, params)
    except RequestError as error:
        return Reply(rcode=error.rcode, error=error.message)
    except Exception as error:  # noqa: BLE001 - reported to the client, logged here
        ctx.log.error(
            "handler_crashed", error=repr(error), traceback=traceback.format_exc()
        )
        return Reply(
            rcode=ReturnCode.INTERNAL,
            error=f"{entry.name} failed on node {ctx.node_id}: {error!r}",
        )
    if not isinstance(reply, Reply):
        return Reply(
            rcode=ReturnCode.INTERNAL,
            error=f"{entry.name} handler returned {type(reply).__name__}, not a Reply",
        )
    return reply
