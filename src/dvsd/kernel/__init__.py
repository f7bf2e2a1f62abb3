"""The DVK as dvsd uses it: one :class:`Kernel` interface, two backends.

* ``dvk`` (:class:`~dvsd.kernel.cffi_backend.DvkKernel`): the real kernel
  module behind ``/dev/dvk``, reached with ioctls through cffi.
* ``emulated`` (:class:`~dvsd.kernel.emulated.EmulatedKernel`): an in-process
  model of the DVK tables that keeps the kernel's checks, return values and
  error codes, for hosts without the module.

The daemon picks one backend at start with :func:`open_kernel` and keeps it;
``kernel.backend_name`` says which one, for ``dvsctl status`` and the log.
A kernel error is raised as :class:`KernelError`, a
:class:`~dvsd.registry.RequestError` whose ``rcode`` is the negative EDVS
code, so a handler can let it propagate.  See docs/kernel.md.
"""

from __future__ import annotations

import os
from typing import Literal, Protocol, runtime_checkable

from dvsd.kernel import abi
from dvsd.kernel.models import (
    DcInfo,
    DcParams,
    DvsInfo,
    DvsParams,
    NodeInfo,
    PrivInfo,
    PrivUpdate,
    ProcInfo,
    ProxyStatus,
)
from dvsd.registry import RequestError
from dvsd.rqst import ReturnCode

__all__ = [
    "BACKEND_CHOICES",
    "DEFAULT_DEVICE",
    "Kernel",
    "KernelError",
    "KernelUnavailable",
    "NotSupportedByKernel",
    "open_kernel",
]

DEFAULT_DEVICE = "/dev/dvk"
BACKEND_CHOICES = ("auto", "emulated", "dvk")


class KernelError(RequestError):
    """The kernel refused a call; ``rcode`` is the negative EDVS code.

    The sentence starts with the code's name, number and meaning
    (``"EDVSBADDCID (-302): bad DC id"``) and ends with the call that failed.
    """

    def __init__(self, code: int, call: str = "") -> None:
        sentence = abi.describe_error(code)
        if call:
            sentence = f"{sentence} ({call})"
        super().__init__(code, sentence)
        self.code = int(code)
        self.call = call


class NotSupportedByKernel(RequestError):
    """The running kernel has no way to answer this (rcode NOT_SUPPORTED)."""

    def __init__(self, message: str) -> None:
        super().__init__(ReturnCode.NOT_SUPPORTED, message)


class KernelUnavailable(Exception):
    """The configured backend cannot be opened (daemon start-up error)."""


@runtime_checkable
class Kernel(Protocol):
    """What dvsd asks of the DVK.  Both backends implement all of it.

    Every method raises :class:`KernelError` with the kernel's code when the
    kernel refuses.  Methods are synchronous and fast (one ioctl or one table
    look-up); none blocks on another node.
    """

    backend_name: str

    # DVS
    def dvs_init(self, nodeid: int, params: DvsParams | None = None) -> int:
        """Initialise the DVS with this node as ``nodeid``; returns ``nodeid``."""

    def dvs_end(self) -> None: ...

    def get_dvs_info(self) -> DvsInfo:
        """The DVS parameters and the local node id (DVSINIT if not started)."""

    # DCs
    def dc_init(self, params: DcParams) -> int:
        """Start a DC on this node; returns the local node id (kernel value)."""

    def dc_end(self, dcid: int) -> None: ...

    def get_dc_info(self, dcid: int) -> DcInfo: ...

    # nodes and proxy pairs
    def add_node(self, dcid: int, nodeid: int) -> None: ...

    def del_node(self, dcid: int, nodeid: int) -> None: ...

    def get_node_info(self, nodeid: int) -> NodeInfo: ...

    def node_up(self, nodeid: int, name: str, pxid: int) -> None: ...

    def node_down(self, nodeid: int) -> None: ...

    def proxies_bind(
        self,
        pxid: int,
        name: str,
        sender_pid: int,
        receiver_pid: int,
        max_bytes: int = abi.MAXCOPYBUF,
    ) -> None: ...

    def proxies_unbind(self, pxid: int) -> None: ...

    def proxy_conn(self, pxid: int, status: abi.ProxyConn) -> None: ...

    def get_proxy_info(self, pxid: int) -> tuple[ProcInfo, ProcInfo]:
        """(sender proxy, receiver proxy) descriptors of pair ``pxid``."""

    def get_proxy_status(self, pxid: int) -> ProxyStatus:
        """The pair record; NOT_SUPPORTED where the kernel cannot show it."""

    # membership helpers (see docs/kernel.md)
    def attach_node(self, nodeid: int, name: str) -> NodeInfo:
        """Make a joined node usable for ADDNODE; returns its node record."""

    def detach_node(self, nodeid: int) -> None:
        """Undo :meth:`attach_node` after the node left (best effort)."""

    # processes
    def bind(
        self, dcid: int, endpoint: int, pid: int, nodeid: int = -1, name: str = ""
    ) -> int:
        """Bind a slot (local: nodeid -1; remote: another node); -> endpoint."""

    def get_proc_info(self, dcid: int, slot: int) -> ProcInfo: ...

    def get_priv(self, dcid: int, endpoint: int) -> PrivInfo: ...

    def set_priv(self, dcid: int, endpoint: int, update: PrivUpdate) -> None: ...

    def migr_start(self, dcid: int, endpoint: int) -> None: ...

    def migr_commit(
        self, pid: int, dcid: int, endpoint: int, new_node: int
    ) -> None: ...

    def migr_rollback(self, dcid: int, endpoint: int) -> None: ...

    def close(self) -> None: ...


def open_kernel(
    choice: Literal["auto", "emulated", "dvk"] | str = "auto",
    *,
    device: str = DEFAULT_DEVICE,
) -> Kernel:
    """Open the backend named by ``choice`` (config key ``kernel.backend``).

    ``auto`` takes ``dvk`` when ``device`` exists and ``emulated`` otherwise.
    ``dvk`` without the device raises :class:`KernelUnavailable`; there is no
    silent fall-back from one backend to the other.
    """
    if choice not in BACKEND_CHOICES:
        raise KernelUnavailable(
            f"kernel backend must be one of {', '.join(BACKEND_CHOICES)},"
            f" got {choice!r}"
        )
    if choice == "auto":
        choice = "dvk" if os.path.exists(device) else "emulated"
    if choice == "emulated":
        from dvsd.kernel.emulated import EmulatedKernel

        return EmulatedKernel()
    from dvsd.kernel.cffi_backend import DvkKernel

    return DvkKernel.open(device)
