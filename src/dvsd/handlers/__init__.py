"""The built-in request families.  Importing this package registers them all.

Each module holds one family; its decorated functions land in
:data:`dvsd.registry.REGISTRY` when it is imported.
"""

import importlib

BUILTIN_MODULES = (
    "dvs",
    "cluster",
    "dc",
    "node",
    "proc",
    "host",
    "cgroup",
    "namespace",
)

for _module in BUILTIN_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
