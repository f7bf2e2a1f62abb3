"""Start and stop Spread daemons for tests: the stand-in or a real one.

``SpreadDaemon`` is what the fixtures in tests/conftest.py hand out. Both
kinds listen on TCP 127.0.0.1:<port> and on the unix socket /tmp/<port>, with
a port below 32768 (Spread keeps ports in an int16, reference §1). Readiness is
a line on the stand-in's stdout, and for a real daemon a full probe session
(handshake, join, own membership message), both with a deadline.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import pytest

from .control import StandinControl
from .rawclient import RawSession

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_DAEMON_REASON = "no Spread daemon: set DVSD_SPREAD_DAEMON or put spread on PATH"
STANDIN_READY_SECONDS = 15.0
REAL_READY_SECONDS = 30.0
STOP_SECONDS = 5.0


class DaemonStartError(RuntimeError):
    """A daemon did not become ready; the message includes its log tail."""


@attrs.define(eq=False)
class SpreadDaemon:
    """One running Spread daemon (stand-in or real) owned by a test.

    ``tcp_address`` and ``unix_address`` are Spread name strings for a client.
    ``stop()`` kills the process by PID and removes its socket files; calling
    it twice is harmless. ``partition``/``merge`` work on the stand-in only.
    """

    kind: str  # "standin" or "real"
    port: int
    daemon_name: str
    process: subprocess.Popen
    log_path: Path
    control_path: str | None = None
    _scratch_dir: str | None = None
    _stopped: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def tcp_address(self) -> str:
        return f"{self.port}@127.0.0.1"

    @property
    def unix_address(self) -> str:
        return str(self.port)

    @property
    def unix_path(self) -> str:
        return f"/tmp/{self.port}"

    @property
    def control(self) -> StandinControl:
        if self.kind != "standin" or self.control_path is None:
            pytest.skip(f"a {self.kind} Spread daemon has no control channel")
        return StandinControl(self.control_path)

    def partition(
        self, sets: list[list[str]], *, force_transition: bool = False
    ) -> dict:
        """Split sessions by private name (stand-in only; see control.py)."""
        return self.control.partition(sets, force_transition=force_transition)

    def merge(self, *, force_transition: bool = False) -> dict:
        """Undo every partition (stand-in only)."""
        return self.control.merge(force_transition=force_transition)

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait(STOP_SECONDS)
        if self.process.stdout is not None:
            self.process.stdout.close()
        # The real daemon runs chrooted and cannot remove its own socket.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.unix_path)
        if self._scratch_dir:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)


def find_spread_binary() -> str | None:
    """DVSD_SPREAD_DAEMON if set (must be executable), else ``spread`` on PATH."""
    configured = os.environ.get("DVSD_SPREAD_DAEMON")
    if configured:
        if not os.access(configured, os.X_OK):
            raise DaemonStartError(
                f"DVSD_SPREAD_DAEMON={configured!r} is not an executable file"
            )
        return configured
    return shutil.which("spread")


def _port_is_free(port: int) -> bool:
    if os.path.exists(f"/tmp/{port}"):
        return False
    probes = [
        (socket.SOCK_STREAM, port),
        (socket.SOCK_DGRAM, port),
        (socket.SOCK_DGRAM, port + 1),  # a segment also uses port + 1
    ]
    for kind, number in probes:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("", number))
            except OSError:
                return False
    return True


def free_spread_port() -> int:
    """A port in 20000..32765 free for TCP, UDP port and port+1, and /tmp/<port>."""
    for _ in range(200):
        port = random.randrange(20000, 32766)
        if _port_is_free(port):
            return port
    raise DaemonStartError("found no free port below 32768 after 200 tries")


def _read_line(process: subprocess.Popen, deadline: float) -> bytes:
    """One stdout line from ``process``, or b"" on EOF or at the deadline."""
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return b""
            byte = os.read(process.stdout.fileno(), 1)
            if not byte:
                return b""
            line += byte
    return line


def start_standin(
    workdir: Path,
    daemon_name: str = "localhost",
    byte_order: str = "little",
    port: int = 0,
) -> SpreadDaemon:
    """Start ``python -m tests.spread_standin`` and wait for ``ready <port>``.

    ``byte_order="big"`` makes it write like a big-endian daemon (no marker).
    ``port`` 0 lets it choose; a test restarting a daemon passes the old one.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    scratch = tempfile.mkdtemp(prefix="standin-")
    control_path = os.path.join(scratch, "control")
    log_path = workdir / "standin.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src"), str(REPO_ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.spread_standin",
                "--port",
                str(port),
                "--name",
                daemon_name,
                "--control",
                control_path,
                "--byte-order",
                byte_order,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    line = _read_line(process, time.monotonic() + STANDIN_READY_SECONDS)
    words = line.split()
    daemon = SpreadDaemon(
        kind="standin",
        port=int(words[1]) if len(words) == 2 and words[0] == b"ready" else 0,
        daemon_name=daemon_name,
        process=process,
        log_path=log_path,
        control_path=control_path,
        scratch_dir=scratch,
    )
    if not daemon.port:
        daemon.stop()
        raise DaemonStartError(
            f"stand-in gave {line!r} instead of 'ready <port>' within "
            f"{STANDIN_READY_SECONDS} s; log:\n{daemon.log_tail()}"
        )
    return daemon


def _spread_conf(port: int, daemon_name: str, runtime_dir: Path) -> str:
    lines = [
        f"Spread_Segment 127.0.0.255:{port} {{",
        f"\t{daemon_name}\t127.0.0.1",
        "}",
    ]
    if os.geteuid() == 0:
        # As root the daemon chroots to RuntimeDir and drops to DaemonUser;
        # the default user "spread" rarely exists, so name one that does.
        user, group = "nobody", "nogroup"
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
        except KeyError:
            user, group = "root", "root"
        lines += [
            f'RuntimeDir = "{runtime_dir}"',
            f'DaemonUser = "{user}"',
            f'DaemonGroup = "{group}"',
        ]
    return "\n".join(lines) + "\n"


def _probe(daemon: SpreadDaemon, deadline: float) -> None:
    """Connect, join a group and read our own join: the daemon is operational."""
    session = RawSession.open(("127.0.0.1", daemon.port), timeout=2.0)
    try:
        reply = session.handshake(b"fxready")
        if session.private_group is None:
            raise DaemonStartError(f"probe session rejected: {reply!r}")
        session.timeout = max(0.5, deadline - time.monotonic())
        session.join(b"fxready")
        message = session.recv_message()
        if not message.service_type & 0x1000:
            raise DaemonStartError(f"probe got {message.raw!r}, not its membership")
        session.kill()
    finally:
        session.close()


def start_real_daemon(
    workdir: Path, binary: str, daemon_name: str = "localhost"
) -> SpreadDaemon:
    """Start a private real daemon on loopback and wait until a session works."""
    workdir.mkdir(parents=True, exist_ok=True)
    runtime_dir = workdir / "run"
    runtime_dir.mkdir(exist_ok=True)
    port = free_spread_port()
    conf_path = workdir / "spread.conf"
    conf_path.write_text(_spread_conf(port, daemon_name, runtime_dir))
    log_path = workdir / "spread.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [binary, "-n", daemon_name, "-c", str(conf_path)],
            cwd=workdir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    daemon = SpreadDaemon(
        kind="real",
        port=port,
        daemon_name=daemon_name,
        process=process,
        log_path=log_path,
    )
    # The daemon block-buffers its stdout when it is not a terminal, so its
    # "Membership id is" line cannot be waited for; a working session can.
    deadline = time.monotonic() + REAL_READY_SECONDS
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            daemon.stop()
            raise DaemonStartError(
                f"spread exited with {process.returncode} before it was ready; "
                f"config:\n{conf_path.read_text()}log:\n{daemon.log_tail()}"
            )
        try:
            _probe(daemon, deadline)
            return daemon
        except (OSError, EOFError) as error:
            last_error = error
            time.sleep(0.05)  # poll interval while the port is not connectable
    daemon.stop()
    raise DaemonStartError(
        f"spread on port {port} not operational within {REAL_READY_SECONDS} s "
        f"(last error: {last_error!r}); log:\n{daemon.log_tail()}"
    )
