"""Running one program under :mod:`dvsd.guard` from Trio, for scripts and COMMAND.

:func:`run_guarded` is the one place that spawns the guard, feeds standard
input, pumps standard output and error to the caller, and decides when the
run is over: the program exits (then the pipes get :data:`PIPE_GRACE`), its
timeout passes, or the caller is cancelled.  Then it asks the guard to kill
whatever the program left and waits for the guard to say so.  Event scripts
(:mod:`dvsd.scripts`) and COMMAND (:mod:`dvsd.handlers.host`) differ only in
what they keep of the output and how they report the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from dvsd.guard import END_SECONDS, Guard

#: How long the output pipes may stay open after the program itself exited:
#: long enough for a background child to write its last line, short enough
#: that one holding the pipe for good does not hold the run to its timeout.
PIPE_GRACE = 1.0
#: How long to wait for the guard to end the run once asked to (it gives
#: the processes it killed END_SECONDS to be reaped), and then to be reaped.
REAP_SECONDS = END_SECONDS + 2.0


@attrs.frozen
class GuardedRun:
    """How one guarded run ended.

    ``exit_status`` is the program's exit code, or minus the signal number
    that ended it, or None when it was never started (``start_error`` says
    why, as ``strerror`` does).  ``timed_out`` means the program had not
    exited when the timeout passed, so it was killed.  ``leftovers_killed``
    counts the other processes still running at the end, all killed: its
    background children and whatever left its process group or session.
    """

    exit_status: int | None
    timed_out: bool
    duration: float
    leftovers_killed: int = 0
    start_error: str | None = None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


async def _hear_exit(guard: Guard) -> None:
    """Return once the guard said the program exited, or ended without saying so."""
    while guard.hear() and guard.exit_status is None:
        await trio.lowlevel.wait_readable(guard.fileno())


async def _hear_end(guard: Guard) -> None:
    """Return once the guard has said all it will (its end of the lifeline closed)."""
    while guard.hear():
        await trio.lowlevel.wait_readable(guard.fileno())


async def _pump(
    stream: trio.abc.ReceiveStream, sink: Callable[[bytes], object]
) -> None:
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        if not chunk:
            return
        sink(chunk)


async def _feed(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the program need not read its standard input
    finally:
        await stream.aclose()


async def run_guarded(
    program: Sequence[str],
    *,
    timeout: float,
    stdout: Callable[[bytes], object],
    stderr: Callable[[bytes], object],
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    log: Any = None,
) -> GuardedRun:
    """Run ``program`` to its end or its timeout; never raises for the program's faults.

    Output arrives in order through ``stdout`` and ``stderr`` (called with
    each chunk as read); standard input is ``stdin`` then end of file, or
    /dev/null when it is None.  The program runs in a session of its own
    under :mod:`dvsd.guard`.  When the run ends (the program exited and its
    pipes reached end of file or had their grace, the timeout passed, or
    the caller was cancelled) every process the program started is killed
    with SIGKILL before this returns or re-raises, in its process group or
    not; the guard's docstring says what cannot be caught.  ``log``, when
    given, hears of a guard that failed to do its part.
    """
    with contextlib.closing(Guard(program, timeout)) as guard:
        return await _run(guard, timeout, stdout, stderr, stdin, env, cwd, log)


async def _run(
    guard: Guard,
    timeout: float,
    stdout: Callable[[bytes], object],
    stderr: Callable[[bytes], object],
    stdin: bytes | None,
    env: Mapping[str, str] | None,
    cwd: str | None,
    log: Any,
) -> GuardedRun:
    started = trio.current_time()
    try:
        process = await trio.lowlevel.open_process(
            guard.argv,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=guard.pass_fds,
        )
    except OSError as error:
        return GuardedRun(None, False, 0.0, start_error=error.strerror or str(error))

    guard.launched()
    exited = False
    try:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                if process.stdin is not None:
                    nursery.start_soon(_feed, process.stdin, stdin)
                nursery.start_soon(_pump, process.stdout, stdout)
                nursery.start_soon(_pump, process.stderr, stderr)
                await _hear_exit(guard)
                exited = True
                # The pipes normally reach EOF with the program; a background
                # child that keeps them open gets PIPE_GRACE, not the timeout
                # (which still bounds the grace, through the scope around).
                nursery.cancel_scope.deadline = trio.current_time() + PIPE_GRACE
    finally:
        # Whether the program ended before the deadline, not whether we had
        # heard of it when we looked: one that exits at the last moment did.
        timed_out = not exited
        with trio.CancelScope(shield=True):
            guard.finish()
            with trio.move_on_after(REAP_SECONDS):
                await _hear_end(guard)
            if guard.leftovers_killed is None and guard.start_error is None:
                # The guard did not end the run: it is stopped or wedged, or
                # was killed from outside.  Its process group is what is
                # left to kill; it is not reaped yet, so its pid, the group
                # id, names no stranger.
                _kill_group(process.pid)
                if log is not None:
                    log.warning("guard_failed", pid=process.pid, action="group killed")
            with trio.move_on_after(REAP_SECONDS):
                await process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()

    if guard.start_error is not None:
        return GuardedRun(None, False, 0.0, start_error=guard.start_error)
    return GuardedRun(
        exit_status=(
            process.returncode if guard.exit_status is None else guard.exit_status
        ),
        timed_out=timed_out,
        duration=round(trio.current_time() - started, 3),
        leftovers_killed=guard.leftovers_killed or 0,
    )
