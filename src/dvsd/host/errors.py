"""The failures of host operations, one class per return code the handlers send.

The data layer raises these instead of the registry's ``RequestError`` so it
stays usable (and testable) without the daemon; the handlers translate them
in one table, :func:`dvsd.handlers.host.request_error`.
"""

from __future__ import annotations


class HostError(Exception):
    """A host operation failed for a reason the requester should read.

    ``str(error)`` is a whole sentence naming the pid, path or value involved.
    """


class InvalidValue(HostError, ValueError):
    """A value to be written or a parameter is out of its allowed range."""


class NoSuchProcess(HostError):
    """The process (or every process matching a name) does not exist."""


class PermissionDenied(HostError):
    """The kernel refused the operation to dvsd's user."""


class NotAllowed(HostError):
    """The ``[host]`` policy of this node refuses the operation."""


class NotSupported(HostError):
    """The node's kernel or cgroup layout does not offer this."""


class OsFailure(HostError):
    """Another OS call failed; the sentence carries the errno name."""


def describe_os_error(action: str, error: OSError) -> HostError:
    """Turn an ``OSError`` into the matching :class:`HostError` with a sentence."""
    import errno

    name = errno.errorcode.get(error.errno or 0, "error")
    text = f"{action}: {error.strerror or error} ({name})"
    if error.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        return PermissionDenied(text)
    if error.errno == errno.ESRCH:
        return NoSuchProcess(text)
    if error.errno in (errno.EINVAL, errno.ERANGE):
        return InvalidValue(text)
    return OsFailure(text)
