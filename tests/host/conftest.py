"""Fixtures of the host family: cgroup v2 trees, fake proc trees, a handler context.

The cgroup v2 tree is copied from ``fixtures/cgroup2`` (file contents as a
real v2 host writes them) so tests may write into it.  ``FakeProc`` builds
``/proc/<pid>/{stat,comm,cgroup,ns/*}`` with the same formats the kernel
uses, for the scans (containers, namespaces) that cannot be staged on the
real /proc.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import structlog
import trio

from dvsd.hostpolicy import HostPolicy
from dvsd.registry import HandlerContext, View

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def cgroup2_root(tmp_path: Path) -> Path:
    """A writable copy of the cgroup v2 fixture tree."""
    root = tmp_path / "cgroup2"
    shutil.copytree(FIXTURES / "cgroup2", root)
    return root


class FakeProc:
    """A proc-like tree: add processes with their cgroup lines and namespaces."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "self").mkdir(exist_ok=True)

    def add(
        self,
        pid: int,
        *,
        ppid: int = 1,
        comm: str = "proc",
        cgroup: str = "0::/\n",
        namespaces: dict[str, int] | None = None,
    ) -> None:
        directory = self.root / str(pid)
        directory.mkdir()
        (directory / "comm").write_text(comm + "\n")
        # The 52 fields of proc(5) stat; the ones dvsd reads are set, the rest 0.
        rest = ["S", str(ppid), str(pid), str(pid)] + ["0"] * 48
        rest[7] = "11"  # minflt
        rest[9] = "1"  # majflt
        rest[11] = "7"  # utime
        rest[12] = "3"  # stime
        rest[19] = str(1000 + pid)  # starttime
        rest[21] = "100"  # rss pages
        (directory / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
        (directory / "cgroup").write_text(cgroup)
        ns_dir = directory / "ns"
        ns_dir.mkdir()
        for kind, inode in (namespaces or {}).items():
            os.symlink(f"{kind}:[{inode}]", ns_dir / kind)

    def write_self(self, name: str, text: str) -> None:
        (self.root / "self" / name).write_text(text)


@pytest.fixture
def fake_proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def make_ctx(policy: HostPolicy | None = None, *, seconds: float = 30.0):
    """A HandlerContext as the daemon builds one, for calling handlers directly."""
    return HandlerContext(
        node_id=0,
        kernel=None,
        config=SimpleNamespace(host=policy or HostPolicy()),
        log=structlog.get_logger("test").bind(node=0, seq=1),
        requester=0,
        view=View(members=frozenset({0}), view_id="test"),
        deadline=trio.current_time() + seconds,
    )


@pytest.fixture
def ctx_factory():
    return make_ctx
