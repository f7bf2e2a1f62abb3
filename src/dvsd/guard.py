"""Run a child program so that it can outlive neither its timeout nor dvsd.

Event scripts and COMMAND requests run under a guard: this file, run by the
same Python with the standard library only (``python -I -S guard.py``), in a
session of its own.  The guard leads the session's process group; the
program it starts, and whatever that starts in the background, stay in the
group.  Between dvsd and the guard is a *lifeline*, a socket pair of which
dvsd holds one end for as long as the run lasts.  The guard ends the whole
group with SIGKILL when

* its end of the lifeline reaches end of file: dvsd died (SIGKILL, a crash)
  while the program ran, or
* its deadline passes: dvsd, when alive, has killed the group before, so this
  only happens when dvsd cannot (stopped, or wedged).

When the program ends, the guard ends the same way: the same exit code, or
killed by the same signal, so dvsd reports the program and not the guard.
When the program cannot be started, the guard writes why on the lifeline,
where :meth:`Guard.start_error` finds it.  Standard input, output and error
pass to the program untouched.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

#: How long after the caller's own timeout the guard's deadline comes, so
#: that dvsd, when alive, is the one that kills and reports the timeout.
GRACE = 2.0


class Guard:
    """dvsd's side of one guarded run: the command line and the lifeline."""

    def __init__(self, program: Sequence[str], timeout: float) -> None:
        timeout += GRACE
        self._ours, self._theirs = socket.socketpair()
        self._ours.setblocking(False)
        descriptor = self._theirs.fileno()
        self.argv = [sys.executable, "-I", "-S", __file__]
        self.argv += ["--lifeline", str(descriptor), "--timeout", repr(timeout)]
        self.argv += ["--", *program]
        #: Give these to the process as ``pass_fds``.
        self.pass_fds = (descriptor,)

    def start_error(self) -> str | None:
        """Why the program could not be started (``strerror``), once the guard ended."""
        try:
            said = self._ours.recv(4096)
        except (BlockingIOError, OSError):
            return None
        return said.decode("utf-8", "replace") or None

    def close(self) -> None:
        self._theirs.close()
        self._ours.close()


# The guard process itself, from here on.


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dvsd-guard")
    parser.add_argument("--lifeline", type=int, required=True, metavar="FD")
    parser.add_argument("--timeout", type=float, required=True, metavar="SECONDS")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.program[:1] == ["--"]:
        args.program = args.program[1:]
    if not args.program:
        parser.error("no program to run")
    return args


def _end_group() -> None:
    # Ends the program, its children and this guard with one signal.
    os.killpg(0, signal.SIGKILL)


def _exit_like(returncode: int) -> None:
    if returncode < 0:
        # Die of the program's signal, without leaving a core file of our own.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    lifeline = socket.socket(fileno=args.lifeline)
    # SIGCHLD wakes the poll below through this pipe: no polling interval.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    try:
        program = subprocess.Popen(args.program)
    except OSError as error:
        lifeline.sendall((error.strerror or str(error)).encode())
        sys.exit(127)

    deadline = time.monotonic() + args.timeout
    poller = select.poll()
    poller.register(lifeline, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    while program.poll() is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _end_group()
        for descriptor, _ in poller.poll(remaining * 1000):
            if descriptor == wake_read:
                os.read(wake_read, 512)
            else:
                _end_group()  # dvsd's end closed: dvsd is gone
    _exit_like(program.returncode)


if __name__ == "__main__":
    main()
