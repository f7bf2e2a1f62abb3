"""How a request family declares its ``dvsctl`` subcommands.

A family module (``dvsd/cli/dc.py`` …) decorates one function per
subcommand with :func:`command`; the function turns parsed arguments into the
request's parameter dict, and an optional renderer turns one node's reply
items into text for people.  Everything else — options, validation before
sending, the queue exchange, gathering, ``--json``, exit codes — is done once
in :mod:`dvsd.cli`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from tabulate import tabulate

Builder = Callable[[argparse.Namespace], dict[str, Any]]
Renderer = Callable[[list[Any]], str]


@attrs.frozen
class Argument:
    """One argparse argument: the names and keyword arguments of ``add_argument``."""

    names: tuple[str, ...]
    options: dict[str, Any]


def Arg(*names: str, **options: Any) -> Argument:  # noqa: N802 - reads as a declaration
    """Declare an argument exactly as ``parser.add_argument`` would take it."""
    return Argument(names=names, options=options)


@attrs.define
class Command:
    """One ``dvsctl <group> [<name>]`` subcommand bound to one request type."""

    group: str
    name: str | None
    rqst: int
    help: str
    args: Sequence[Argument]
    build: Builder
    render: Renderer | None = None
    #: What a positive return code is (``"local node"`` for the init calls);
    #: None: a return code above 0 is shown as it is.
    rcode_means: str | None = None

    def renderer(self, function: Renderer) -> Renderer:
        """Decorator: use ``function`` to show this command's reply items."""
        self.render = function
        return function

    @property
    def words(self) -> str:
        return self.group if self.name is None else f"{self.group} {self.name}"


COMMANDS: list[Command] = []


def command(
    group: str,
    name: str | None = None,
    *,
    rqst: int,
    help: str,
    args: Iterable[Argument] = (),
    rcode_means: str | None = None,
) -> Callable[[Builder], Command]:
    """Declare ``dvsctl group [name]`` for request type ``rqst``."""

    def declare(build: Builder) -> Command:
        entry = Command(
            group=group,
            name=name,
            rqst=int(rqst),
            help=help,
            args=tuple(args),
            build=build,
            rcode_means=rcode_means,
        )
        COMMANDS.append(entry)
        return entry

    return declare


def table(
    items: Sequence[Any],
    columns: Sequence[str] | None = None,
    headers: Sequence[str] | None = None,
) -> str:
    """A plain, column-aligned table of dict items (as ``ps`` or ``df`` print)."""
    if not items:
        return "(none)"
    rows = [item if isinstance(item, dict) else {"value": item} for item in items]
    if columns is None:
        columns = list(rows[0])
    shown_headers = [header.upper() for header in (headers or columns)]
    return tabulate(
        [[_cell(row.get(column)) for column in columns] for row in rows],
        headers=shown_headers,
        tablefmt="plain",
        disable_numparse=True,
    )


def fields(item: dict[str, Any], names: Sequence[str] | None = None) -> str:
    """One item as ``name: value`` lines, for replies that are a single record."""
    names = list(item) if names is None else names
    width = max((len(name) for name in names), default=0)
    return "\n".join(f"{name.ljust(width)}  {_cell(item.get(name))}" for name in names)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return ",".join(_cell(part) for part in value) or "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def default_render(items: list[Any]) -> str:
    """Show items with no renderer of their own: a table, or fields for one item."""
    if not items:
        return ""
    if len(items) == 1 and isinstance(items[0], dict):
        return fields(items[0])
    if all(isinstance(item, dict) for item in items):
        columns: list[str] = []
        for item in items:
            columns.extend(key for key in item if key not in columns)
        return table(items, columns)
    return "\n".join(_cell(item) for item in items)
