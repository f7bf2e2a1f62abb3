"""The guard as dvsd starts it: a real process, a real lifeline."""

from __future__ import annotations

import os
import select
import signal
import subprocess

import pytest
import structlog.testing
from tests.escapes import ESCAPES, escape, kill_strays, parent_of

from dvsd.guard import Guard
from dvsd.guarded import run_guarded
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
        guard.hear()
        assert guard.start_error is None and guard.exit_status == status
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
        guard.hear()
        assert guard.start_error == "Exec format error"
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


# -- descendants that leave the process group ------------------------------------


@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_a_closed_lifeline_ends_what_left_the_group(guards, how):
    process, guard = start_guard(300, *escape(how, stay=True))
    guards.append(process)
    escapee = int(process.stdout.readline())
    try:
        assert os.getpgid(escapee) != process.pid  # it did leave the group
        guard.close()  # what the kernel does when dvsd dies
        assert process.wait(5) == -signal.SIGKILL
        assert ended_within(escapee, 5), f"{how}: pid {escapee} outlived dvsd"
    finally:
        kill_strays(escapee)


def test_orphans_come_to_the_guard_and_go_when_dvsd_finishes(guards):
    process, guard = start_guard(300, *escape("setsid-double-fork"))
    guards.append(process)
    escapee = int(process.stdout.readline())
    try:
        # The program has exited; its grandchild, an orphan, is the guard's.
        guard.launched()
        while guard.hear() and guard.exit_status is None:
            select.select([guard], [], [], 5)
        assert guard.exit_status == 0
        assert parent_of(escapee) == process.pid
        assert process.poll() is None  # the guard waits for dvsd
        guard.finish()
        assert process.wait(5) == 0  # and then ends as the program did
        assert ended_within(escapee, 5)
        while guard.hear():
            select.select([guard], [], [], 5)
        assert guard.leftovers_killed == 1
    finally:
        kill_strays(escapee)
        guard.close()


def test_the_deadline_ends_what_left_the_group(guards):
    # dvsd's timeout 0.1 s, the guard's own 2.1 s: dvsd does not finish here.
    process, guard = start_guard(0.1, *escape("setpgid"))
    guards.append(process)
    escapee = int(process.stdout.readline())
    try:
        assert process.wait(10) == 0
        assert ended_within(escapee, 5)
    finally:
        kill_strays(escapee)
        guard.close()


def test_a_signal_to_the_whole_group_does_not_end_the_guard_first(guards):
    # kill 0 reaches the guard as well; the setsid'd sleep is in another group.
    process, guard = start_guard(
        300, "sh", "-c", "setsid sleep 300 & echo $!; kill -TERM 0; sleep 300"
    )
    guards.append(process)
    escapee = int(process.stdout.readline())
    try:
        assert process.wait(5) == -signal.SIGTERM  # as the shell ended
        assert ended_within(escapee, 5)
    finally:
        kill_strays(escapee)
        guard.close()


def test_a_program_that_leaves_nothing_ends_the_guard_at_once(guards):
    process, guard = start_guard(300, "sh", "-c", "sleep 0.2 & exit 4")
    guards.append(process)
    try:
        # Nobody finishes this run: the guard ends when the background sleep does.
        assert process.wait(10) == 4
        guard.hear()
        assert (guard.exit_status, guard.leftovers_killed) == (4, 0)
    finally:
        guard.close()


async def test_dvsd_kills_the_group_of_a_guard_that_cannot_act():
    # The script stops its own guard: the guard can neither report nor kill.
    said = bytearray()
    with structlog.testing.capture_logs() as logs:
        run = await run_guarded(
            ["sh", "-c", "sleep 300 & echo $!; kill -STOP $PPID; wait"],
            timeout=0.5,
            stdout=said.extend,
            stderr=lambda chunk: None,
            log=structlog.get_logger("test"),
        )
    child = int(said)
    try:
        assert run.timed_out and run.exit_status == -signal.SIGKILL
        assert [e["event"] for e in logs] == ["guard_failed"]
        assert ended_within(child, 5)
    finally:
        kill_strays(child)
