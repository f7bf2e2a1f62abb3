"""Run a child program so that neither it nor anything it starts outlives the run.

Event scripts and COMMAND requests run under a guard: this file, run by the
same Python with the standard library only (``python -I -S guard.py``), as
the leader of a session of its own.  The guard starts the program and makes
itself the *child subreaper* of everything the program starts
(``PR_SET_CHILD_SUBREAPER``): a descendant whose parent exits is reparented
to the guard rather than to init, even if it left the process group or the
session (``setpgid``, ``setsid``, a double fork).  So the guard can find every
descendant at the end, in /proc, and kill it.

Between dvsd and the guard is a *lifeline*, a socket pair of which dvsd
holds one end.  The run ends when

* dvsd's end reaches end of file: dvsd ended the run (:meth:`Guard.finish`:
  its timeout passed, or the program exited and dvsd has read the output it
  wants), or dvsd died (SIGKILL, a crash);
* the guard's deadline passes: dvsd, when alive, ends the run before, so
  this only happens when dvsd cannot (stopped, or wedged);
* the program exited and left nothing running: nothing is left to wait for.

At the end the guard sends SIGKILL to every process left: its descendants,
and the members of its session, for a kernel without subreapers.  It reaps
what it can, then ends the way the program ended: the same exit code, or
killed by the same signal, so that the program and not the guard shows.

The guard tells dvsd on the lifeline, one line each: ``error <strerror>``
when the program could not start, ``exited <status>`` when it ended, and
``ended <count>`` when the rest is gone, with how many other processes it
killed.  :meth:`Guard.hear` reads them.  Standard input, output and error
pass to the program untouched; the guard drops its own copies, so the pipes
reach end of file when the program and its children are done with them.

Not covered: a process started by someone else on the program's behalf (a
service manager, ``at``, a container runtime) is not a descendant; one that
changed to another user cannot be killed by a guard that is not root; and
the guard can do nothing while it is itself stopped (SIGSTOP), in which case
dvsd kills its process group only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

#: How long after the caller's own timeout the guard's deadline comes, so
#: that dvsd, when alive, is the one that ends the run and reports the timeout.
GRACE = 2.0
#: How long the guard waits, after SIGKILL, for the processes it killed to
#: be reaped.  A killed process never runs again; one still there after this
#: is stuck in the kernel (a dead NFS server) and dies when it returns.
END_SECONDS = 3.0
#: prctl(2) option; see the module docstring.
PR_SET_CHILD_SUBREAPER = 36


class Guard:
    """dvsd's side of one guarded run: the command line and the lifeline.

    What the guard has said is in ``start_error``, ``exit_status`` and
    ``leftovers_killed``, each None until :meth:`hear` has read it.
    """

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
        #: Why the program could not be started (``strerror``).
        self.start_error: str | None = None
        #: The program's exit code, or minus the signal that ended it.
        self.exit_status: int | None = None
        #: How many processes other than the program the guard killed at the end.
        self.leftovers_killed: int | None = None
        self._partial = b""

    def fileno(self) -> int:
        """dvsd's end of the lifeline, to wait on until it is readable."""
        return self._ours.fileno()

    def launched(self) -> None:
        """The guard process has its end now; dvsd's copy of it is dropped.

        From then on the lifeline reaches end of file when the guard ends.
        """
        self._theirs.close()

    def hear(self) -> bool:
        """Take in what the guard has said so far; False once it can say no more."""
        while True:
            try:
                chunk = self._ours.recv(4096)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                self._note(line.decode("utf-8", "replace"))

    def _note(self, line: str) -> None:
        word, _, value = line.partition(" ")
        if word == "error":
            self.start_error = value
        elif word == "exited":
            self.exit_status = int(value)
        elif word == "ended":
            self.leftovers_killed = int(value)

    def finish(self) -> None:
        """Ask the guard to end the run now: whatever of it still runs is killed."""
        # Half-closed: the guard sees end of file and can still say how it ended.
        with contextlib.suppress(OSError):
            self._ours.shutdown(socket.SHUT_WR)

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


def _become_subreaper() -> bool:
    """Make orphaned descendants come to this process; False where impossible."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # prctl is variadic and reads its arguments as unsigned long.
        on, unused = ctypes.c_ulong(1), ctypes.c_ulong(0)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, on, unused, unused, unused) == 0
    except (ImportError, OSError, AttributeError):
        return False


def _let_go_of_stdio() -> None:
    # The program has its own copies of the pipes; ours would hold them open
    # after it exits, and dvsd would wait out its pipe grace for nothing.
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    os.close(null)


def _others() -> dict[int, str]:
    """Every other process of the run, with its state letter (``Z``: a zombie).

    That is every descendant of the guard, and every member of its session
    when the guard leads one.  One pass over /proc/*/stat:
    /proc/<pid>/task/<tid>/children would be cheaper, but not every kernel
    has it (it needs CONFIG_PROC_CHILDREN).
    """
    me = os.getpid()
    leads_session = os.getsid(0) == me
    states: dict[int, str] = {}
    children: dict[int, list[int]] = {}
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                text = stat_file.read()
        except OSError:
            continue  # it ended while we looked
        # The command name may hold spaces and parentheses: split after the last.
        fields = text[text.rindex(b")") + 2 :].split()
        pid, state = int(entry), fields[0].decode()
        states[pid] = state
        children.setdefault(int(fields[1]), []).append(pid)
        if leads_session and int(fields[3]) == me and pid != me:
            found[pid] = state
    below = list(children.get(me, ()))
    while below:
        pid = below.pop()
        found[pid] = states[pid]
        below.extend(children.get(pid, ()))
    return found


class _Run:
    """The guard's view of one run: the program, the lifeline, SIGCHLD."""

    def __init__(
        self, program: subprocess.Popen, lifeline: socket.socket, subreaper: bool
    ) -> None:
        self.program = program
        self.lifeline = lifeline
        self.subreaper = subreaper
        self._said_exit = False

    def say(self, word: str, value: object) -> None:
        # dvsd may be gone; what it would have heard no longer matters then.
        with contextlib.suppress(OSError):
            self.lifeline.sendall(f"{word} {value}\n".encode())

    def reap(self) -> bool:
        """Reap every child that ended; False once the guard has no child left.

        Orphans reparented to the guard end up here too, so this waits for
        any child, not only the program, and notes the program's status.
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.program.pid:
                self.program.returncode = os.waitstatus_to_exitcode(status)

    def _nothing_left(self, has_children: bool) -> bool:
        """Whether no other process of the run is left, zombies aside."""
        if has_children:
            return False
        # With the guard as subreaper every descendant has an ancestor among
        # its children, so no child means nothing is left, and no scan is
        # needed; without, members of the session may be nobody's child here.
        return self.subreaper or all(state == "Z" for state in _others().values())

    def _say_exit(self) -> None:
        if self.program.returncode is not None and not self._said_exit:
            self.say("exited", self.program.returncode)
            self._said_exit = True

    def wait_for_the_end(self, wake: int, deadline: float) -> None:
        """Return when the run is to end (see the module docstring)."""
        poller = select.poll()
        poller.register(self.lifeline, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while True:
            has_children = self.reap()
            self._say_exit()
            if self.program.returncode is not None and self._nothing_left(has_children):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for descriptor, _ in poller.poll(remaining * 1000):
                if descriptor == wake:
                    os.read(wake, 512)
                else:
                    return  # end of file: dvsd ended the run, or died

    def end_the_rest(self, wake: int) -> int:
        """SIGKILL every other process of the run and reap the guard's children.

        Returns how many were running, the program not counted.
        """
        killed: set[int] = set()
        leftovers = 0
        give_up = time.monotonic() + END_SECONDS
        while True:
            has_children = self.reap()
            if self._nothing_left(has_children):
                break
            # Zombies are signalled too: a zombie leader may still have threads.
            fresh = [
                (pid, state) for pid, state in _others().items() if pid not in killed
            ]
            for pid, state in fresh:
                # A pid is not reused before the number space wraps around,
                # and a zombie child of ours keeps its pid until reaped here.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                if state != "Z" and pid != self.program.pid:
                    leftovers += 1
            if not fresh and not has_children:
                break  # only killed session members are left, for init to reap
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                break
            # SIGCHLD wakes this at once; the short timeout is for a process
            # reparented to the guard in the middle of a scan, which the
            # scan missed and no SIGCHLD will announce.
            if select.select([wake], [], [], min(remaining, 0.05))[0]:
                os.read(wake, 512)
        self._say_exit()
        return leftovers


def _exit_like(returncode: int | None) -> NoReturn:
    if returncode is None:
        # The program was killed but could not be reaped in time.
        os.kill(os.getpid(), signal.SIGKILL)
    if returncode < 0:
        # Die of the program's signal, without leaving a core file of our own.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError):  # SIGKILL has no handler to reset
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


def _wake_on_signals() -> int:
    """A descriptor that becomes readable when a signal arrives."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # A program that signals its own process group (kill 0) must not end
    # the guard before the guard has ended what the program started.  A
    # handler, unlike SIG_IGN, is not inherited by the program.
    for number in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(number, lambda *_: None)
    return wake_read


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    lifeline = socket.socket(fileno=args.lifeline)
    wake = _wake_on_signals()
    # Where the kernel has no subreapers, the session scan still finds what
    # stayed in the session.
    subreaper = _become_subreaper()
    try:
        program = subprocess.Popen(args.program)
    except OSError as error:
        lifeline.sendall(f"error {error.strerror or error}\n".encode())
        sys.exit(127)
    _let_go_of_stdio()

    run = _Run(program, lifeline, subreaper)
    run.wait_for_the_end(wake, time.monotonic() + args.timeout)
    run.say("ended", run.end_the_rest(wake))
    _exit_like(program.returncode)


if __name__ == "__main__":
    main()
