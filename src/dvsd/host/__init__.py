"""The data layer of the host requests: plain functions over /proc, psutil and cgroupfs.

Nothing here knows about Trio, the wire or the registry.  Each module reads
(or, for cgroups and signals, writes) one part of the node and returns frozen
attrs classes; the handlers in :mod:`dvsd.handlers.host`,
:mod:`dvsd.handlers.cgroup` and :mod:`dvsd.handlers.namespace` run these
functions in a worker thread and map :class:`~dvsd.host.errors.HostError`
subclasses to return codes.

Every function that reads the proc filesystem takes ``proc_root`` so tests can
point it at a fixture tree; the cgroup functions take a
:class:`~dvsd.host.cgroups.CgroupLayout` for the same reason.
"""
