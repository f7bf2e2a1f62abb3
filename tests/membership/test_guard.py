"""The guard as dvsd starts it: a real process, a real lifeline."""

from __future__ import annotations

import os
import select
import signal
import subprocess

import pytest

from dvsd.guard import Guard
from dvsd.scripts import run_script

HANG = "sleep 300 & echo $!; wait"


def start_guard(timeout: float, *program: str) -> tuple[subprocess.Popen, Guard]:
    """The guard in its own session, as dvsd runs it (timeout is dvsd's own)."""
    guard = Guard(program, timeout)
    process = subprocess.Popen(
        guard.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=guard.pass_fds,
    )
    return process, guard


def ended_within(pid: int, seconds: float) -> bool:
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([descriptor], [], [], seconds)[0])
    finally:
        os.close(descriptor)


@pytest.fixture
def guards():
    started: list[subprocess.Popen] = []
    yield started
    for guard in started:
        if guard.poll() is None:
            os.killpg(guard.pid, signal.SIGKILL)
        guard.wait(10)
        for stream in (guard.stdout, guard.stderr):
            stream.close()


def test_a_closed_lifeline_ends_the_script_and_its_children(guards):
    process, guard = start_guard(300, "sh", "-c", HANG)
    guards.append(process)
    child = int(process.stdout.readline())
    assert process.poll() is None
    guard.close()  # what the kernel does when dvsd dies
    assert process.wait(5) == -signal.SIGKILL
    assert ended_within(child, 5)


def test_the_deadline_ends_the_group_when_nobody_else_does(guards):
    # dvsd's timeout 0.1 s, the guard's own 2.1 s: dvsd does not kill here.
    process, guard = start_guard(0.1, "sh", "-c", HANG)
    guards.append(process)
    child = int(process.stdout.readline())
    try:
        assert process.wait(10) == -signal.SIGKILL
        assert ended_within(child, 5)
    finally:
        guard.close()


@pytest.mark.parametrize(
    ("program", "status"),
    [("exit 3", 3), ("exit 0", 0), ("kill -TERM $$", -signal.SIGTERM)],
)
def test_the_guard_ends_as_the_script_ended(guards, program, status):
    process, guard = start_guard(60, "sh", "-c", program)
    guards.append(process)
    try:
        assert process.wait(10) == status
        assert guard.start_error() is None
    finally:
        guard.close()


def test_a_program_that_cannot_start_is_said_on_the_lifeline(guards, tmp_path):
    not_a_program = tmp_path / "data"
    not_a_program.write_bytes(b"\x7fELF garbage")
    not_a_program.chmod(0o755)
    process, guard = start_guard(60, str(not_a_program))
    guards.append(process)
    try:
        assert process.wait(10) == 127
        assert guard.start_error() == "Exec format error"
    finally:
        guard.close()


async def test_run_script_reports_the_signal_that_ended_the_script(tmp_path):
    script = tmp_path / "self-kill.sh"
    script.write_text("#!/bin/sh\nkill -USR1 $$\n")
    script.chmod(0o755)
    result = await run_script(str(script), dict(os.environ), b"", timeout=10)
    assert result.exit_status == -signal.SIGUSR1 and not result.timed_out


async def test_a_script_without_execute_permission_is_refused(tmp_path):
    script = tmp_path / "plain.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    result = await run_script(str(script), dict(os.environ), b"", timeout=10)
    assert result.exit_status is None
    assert result.error == f"Permission denied: {script}"
