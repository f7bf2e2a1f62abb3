"""Shared Spread daemon fixtures.

``spread_daemon`` runs each test twice: against the stand-in (always) and
against a private real Spread daemon (skipped with a reason when none is
installed). ``standin_daemon`` and ``real_spread_daemon`` give one kind only;
``spread_daemon_factory`` starts as many as a test needs. Every daemon is
stopped by PID at teardown. See tests/spread_standin/launch.py for
``SpreadDaemon``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The stand-in is imported as ``tests.spread_standin`` (the name it runs under
# with ``python -m``), so the repository root must be importable.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.spread_standin.launch import (  # noqa: E402
    NO_DAEMON_REASON,
    SpreadDaemon,
    find_spread_binary,
    start_real_daemon,
    start_standin,
)


class SpreadDaemonFactory:
    """Starts daemons under one test's tmp_path and stops them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.daemons: list[SpreadDaemon] = []

    def start(
        self,
        kind: str = "standin",
        daemon_name: str = "localhost",
        byte_order: str = "little",
    ) -> SpreadDaemon:
        """Start a ``"standin"`` or ``"real"`` daemon; real skips when none exists.

        ``byte_order="big"`` (stand-in only) imitates a big-endian daemon.
        """
        workdir = self._tmp_path / f"spread-{kind}-{len(self.daemons)}"
        if kind == "standin":
            daemon = start_standin(workdir, daemon_name, byte_order)
        elif kind == "real":
            binary = find_spread_binary()
            if binary is None:
                pytest.skip(NO_DAEMON_REASON)
            daemon = start_real_daemon(workdir, binary, daemon_name)
        else:
            raise ValueError(f"kind must be 'standin' or 'real', not {kind!r}")
        self.daemons.append(daemon)
        return daemon

    def stop_all(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


@pytest.fixture
def spread_daemon_factory(tmp_path):
    factory = SpreadDaemonFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(params=["standin", "real"])
def spread_daemon(request, spread_daemon_factory) -> SpreadDaemon:
    """A stand-in, then a real daemon (skipped when none is installed)."""
    return spread_daemon_factory.start(request.param)


@pytest.fixture
def standin_daemon(spread_daemon_factory) -> SpreadDaemon:
    return spread_daemon_factory.start("standin")


@pytest.fixture
def real_spread_daemon(spread_daemon_factory) -> SpreadDaemon:
    return spread_daemon_factory.start("real")
