"""Running one program under :mod:`dvsd.guard` from Trio, for scripts and COMMAND.

:func:`run_guarded` is the one place that spawns the guard, feeds standard
input, pumps standard output and error to the caller, and decides when the
run is over: the program exits (then the pipes get :data:`PIPE_GRACE`), its
timeout passes, or the caller is cancelled.  Event scripts
(:mod:`dvsd.scripts`) and COMMAND (:mod:`dvsd.handlers.host`) differ only in
what they keep of the output and how they report the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from dvsd.guard import Guard

#: How long the output pipes may stay open after the program itself exited:
#: long enough for a background child to write its last line, short enough
#: that one holding the pipe for good does not hold the run to its timeout.
PIPE_GRACE = 1.0
#: After SIGKILL to the group, how long to wait for the guard to be reaped.
REAP_SECONDS = 5.0


@attrs.frozen
class GuardedRun:
    """How one guarded run ended.

    ``exit_status`` is the program's exit code, or minus the signal number
    that ended it, or None when it was never started (``start_error`` says
    why, as ``strerror`` does).  ``timed_out`` means the program had not
    exited when the timeout passed, so it was killed.  ``leftovers_killed``
    means the program had exited but processes it started were still there
    at the end and were killed.
    """

    exit_status: int | None
    timed_out: bool
    duration: float
    leftovers_killed: bool = False
    start_error: str | None = None


def _kill_group(pgid: int) -> bool:
    """SIGKILL every process of the group; False if none was left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


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
) -> GuardedRun:
    """Run ``program`` to its end or its timeout; never raises for the program's faults.

    Output arrives in order through ``stdout`` and ``stderr`` (called with
    each chunk as read); standard input is ``stdin`` then end of file, or
    /dev/null when it is None.  The program runs in a session and process
    group of its own, and whatever is left of that group when the run ends
    (timeout, cancellation, or children that outlived the program) is
    killed with SIGKILL before this returns or re-raises.
    """
    guard = Guard(program, timeout)
    try:
        return await _run(guard, timeout, stdout, stderr, stdin, env, cwd)
    finally:
        guard.close()


async def _run(
    guard: Guard,
    timeout: float,
    stdout: Callable[[bytes], object],
    stderr: Callable[[bytes], object],
    stdin: bytes | None,
    env: Mapping[str, str] | None,
    cwd: str | None,
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

    exited = False
    try:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                if process.stdin is not None:
                    nursery.start_soon(_feed, process.stdin, stdin)
                nursery.start_soon(_pump, process.stdout, stdout)
                nursery.start_soon(_pump, process.stderr, stderr)
                await process.wait()
                exited = True
                # The pipes normally reach EOF with the program; a background
                # child that keeps them open gets PIPE_GRACE, not the timeout
                # (which still bounds the grace, through the scope around).
                nursery.cancel_scope.deadline = trio.current_time() + PIPE_GRACE
    finally:
        # Whether the program ended before the deadline, not whether it had
        # been reaped when we looked: one that exits at the last moment did.
        timed_out = not exited
        with trio.CancelScope(shield=True):
            # The guard leads the group, so its pid is the group id; the id
            # stays reserved while any member lives, so it names no stranger.
            group_was_left = _kill_group(process.pid)
            with trio.move_on_after(REAP_SECONDS):
                await process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    await stream.aclose()

    start_error = guard.start_error()
    if start_error is not None:
        return GuardedRun(None, False, 0.0, start_error=start_error)
    return GuardedRun(
        exit_status=process.returncode,
        timed_out=timed_out,
        duration=round(trio.current_time() - started, 3),
        leftovers_killed=exited and group_was_left,
    )
