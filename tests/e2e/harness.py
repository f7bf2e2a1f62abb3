"""Run real dvsd processes and real dvsctl commands, the way an administrator does.

Each node is ``python -m dvsd --config <file>`` with its own SysV queue keys;
its JSON log on stderr is read by a thread so a test can wait for an event
(``wait_for``) instead of sleeping.  Queues are removed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sysv_ipc

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"


def environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(PLUGIN_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("DVSD_CONFIG", None)
    return env


def free_queue_keys() -> tuple[int, int]:
    """Two adjacent SysV keys that no queue uses yet."""
    for _ in range(1000):
        key = random.randrange(0x10000000, 0x7FFFFFF0, 2)
        if all(_queue_absent(candidate) for candidate in (key, key + 1)):
            return key, key + 1
    raise RuntimeError("no free SysV queue keys found")


def _queue_absent(key: int) -> bool:
    try:
        sysv_ipc.MessageQueue(key)
    except sysv_ipc.ExistentialError:
        return True
    return False


def remove_queue(key: int) -> None:
    with contextlib.suppress(sysv_ipc.ExistentialError):
        sysv_ipc.MessageQueue(key).remove()


class LogWatcher:
    """Collects a process's JSON log lines and lets a test wait for one."""

    def __init__(self, stream) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            text = line.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.raw.append(text)
                with contextlib.suppress(json.JSONDecodeError):
                    self.events.append(json.loads(text))
                self._changed.notify_all()
        with self._changed:
            self.raw.append("<eof>")
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the log: ``wait_for(..., since=mark)`` looks only after it."""
        with self._changed:
            return len(self.events)

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 15.0,
        since: int = 0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = since
        with self._changed:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or (self.raw and self.raw[-1] == "<eof>"):
                    tail = "\n".join(self.raw[-30:])
                    raise AssertionError(f"log event not seen; last lines:\n{tail}")
                self._changed.wait(left)

    def count(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        with self._changed:
            return sum(1 for event in self.events if predicate(event))


class Node:
    """One dvsd process."""

    def __init__(
        self, workdir: Path, node_id: int, gcs: dict[str, Any], extra: str = ""
    ):
        self.node_id = node_id
        self.request_key, self.reply_key = free_queue_keys()
        self.config_path = workdir / f"node{node_id}.toml"
        lines = [f"node_id = {node_id}", "[gcs]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in gcs.items()]
        lines += [
            "[msgq]",
            f"request_key = {self.request_key}",
            f"reply_key = {self.reply_key}",
            "[kernel]",
            'backend = "emulated"',
        ]
        self.config_path.write_text("\n".join(lines) + "\n" + extra)
        self.process: subprocess.Popen | None = None
        self.log: LogWatcher | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dvsd",
                "--config",
                str(self.config_path),
                "--log-format",
                "json",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment(),
            cwd=REPO,
        )
        self.log = LogWatcher(self.process.stderr)

    def wait_view(self, size: int, timeout: float = 20.0) -> dict[str, Any]:
        return self.log.wait_for(
            lambda e: e.get("event") == "view_changed" and len(e["members"]) == size,
            timeout,
        )

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        self.stop()
        remove_queue(self.request_key)
        remove_queue(self.reply_key)

    def dvsctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        # A generous default deadline keeps a loaded test machine from turning
        # slow answers into failures; a test that passes --timeout wins.
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "dvsd.cli",
                "--config",
                str(self.config_path),
                "--timeout",
                "20",
                *args,
            ],
            capture_output=True,
            env=environment(),
            cwd=REPO,
            timeout=timeout,
            text=True,
        )

    def dvsctl_json(self, *args: str, **kwargs) -> tuple[int, dict[str, Any]]:
        done = self.dvsctl("--json", *args, **kwargs)
        try:
            return done.returncode, json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"dvsctl {args} gave no JSON (rc {done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            ) from None


def dvsctl_as_typed(node: Node, *args: str, timeout: float = 60.0):
    """dvsctl exactly as an administrator types it, without the harness's --timeout."""
    return subprocess.run(
        [sys.executable, "-m", "dvsd.cli", "--config", str(node.config_path), *args],
        capture_output=True,
        env=environment(),
        cwd=REPO,
        timeout=timeout,
        text=True,
    )


def queue_row(key: int) -> dict[str, int]:
    """The /proc/sysvipc/msg row of the queue with this key."""
    with open("/proc/sysvipc/msg") as table:
        header = table.readline().split()
        for line in table:
            row = dict(zip(header, map(int, line.split()), strict=False))
            if row["key"] == key:
                return row
    raise AssertionError(f"no queue with key {key}")


class PidPipe:
    """A FIFO a child writes its pid to; reading it waits for the child."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        # Non-blocking open for reading succeeds before any writer exists.
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def read_pid(self, timeout: float = 20.0) -> int:
        readable, _, _ = select.select([self.fd], [], [], timeout)
        assert readable, f"nothing wrote to {self.path} within {timeout} s"
        return int(os.read(self.fd, 64).split()[0])

    def close(self) -> None:
        os.close(self.fd)


def ends_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` terminates within ``seconds`` (pidfd, no polling)."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], seconds)
        return bool(readable)
    finally:
        os.close(descriptor)


def kill_group(pid: int) -> None:
    """End the process group of ``pid`` (so a failing test leaks nothing)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
