"""attrs validators whose messages name the field and the allowed values.

A request's parameters are checked twice with the same classes: by ``dvsctl``
before anything is sent, and by the node that executes it.  The messages are
shown to administrators as they are, so they say which argument is wrong,
what is allowed and what was given.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection
from typing import Any

import attrs


def in_range(low: int, high: int) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Accept integers from ``low`` to ``high``, both included."""

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attribute.name} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{attribute.name} must be in {low}..{high}, got {value}")

    return check


def kernel_name(limit: int) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Accept a name a kernel ``char[]`` buffer holds: ``limit`` UTF-8 bytes at
    most, with no NUL or other control character.

    The kernel keeps names as C strings, so a NUL would silently end the name
    there (``"ab\\0"`` and ``"ab"`` would be two names that are one), and the
    limit is the buffer's, in bytes, not in characters.
    """

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{attribute.name} must be a string, got {value!r}")
        control = next(
            (char for char in value if unicodedata.category(char) == "Cc"), None
        )
        if control is not None:
            raise ValueError(
                f"{attribute.name} must not contain control characters,"
                f" got {control!r} in {value!r}"
            )
        size = len(value.encode())
        if size > limit:
            raise ValueError(
                f"{attribute.name} must be at most {limit} bytes in UTF-8,"
                f" got {size} ({value!r})"
            )

    return check


def one_of(allowed: Collection[Any]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Accept only the listed values."""
    shown = ", ".join(repr(value) for value in allowed)

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            raise ValueError(f"{attribute.name} must be one of {shown}, got {value!r}")

    return check


def positive(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Accept numbers greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value}")


def check_sysprocs(nr_sysprocs: int, nr_tasks: int, nr_procs: int) -> None:
    """The DVK's rule for privileged slots, in DVS and DC parameters alike.

    There must be more privileged slots than task slots, and fewer than all
    slots together (``nr_tasks < nr_sysprocs < nr_procs + nr_tasks``).
    """
    if not nr_tasks < nr_sysprocs < nr_procs + nr_tasks:
        raise ValueError(
            f"nr_sysprocs must be greater than nr_tasks ({nr_tasks}) and"
            f" less than nr_procs + nr_tasks ({nr_procs + nr_tasks}),"
            f" got {nr_sysprocs}"
        )
