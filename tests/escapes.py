"""Programs whose descendants try to outlive them, for the guard's tests.

Each program prints the pid of one descendant that left its process group
(a ``sleep 300``) and then exits, or, with ``stay=True``, keeps running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

# The escapee keeps the program's stdout and stderr: it holds the pipes.
_SETPGID = """\
import os, time
child = os.fork()
if child == 0:
    os.setpgid(0, 0)
    os.execvp("sleep", ["sleep", "300"])
os.setpgid(child, child)  # as a shell does: the pid printed has left already
print(child, flush=True)
"""

# A daemon in the classic shape: a new session, a second fork, the first
# child gone (so the escapee is an orphan), standard streams on /dev/null.
_DOUBLE_FORK = """\
import os, time
read, write = os.pipe()
child = os.fork()
if child == 0:
    os.setsid()
    grandchild = os.fork()
    if grandchild == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for descriptor in (0, 1, 2):
            os.dup2(null, descriptor)
        os.execvp("sleep", ["sleep", "300"])
    os.write(write, str(grandchild).encode())
    os._exit(0)
os.close(write)
os.waitpid(child, 0)
print(os.read(read, 32).decode(), flush=True)
"""

ESCAPES = {"setpgid": _SETPGID, "setsid-double-fork": _DOUBLE_FORK}


def escape(how: str, *, stay: bool = False) -> list[str]:
    """The argument vector of the program ``how`` (a key of :data:`ESCAPES`)."""
    return [sys.executable, "-c", ESCAPES[how] + ("time.sleep(300)\n" if stay else "")]


def kill_strays(*pids: int) -> None:
    """SIGKILL what a failed test left running (nothing, when the guard works)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def parent_of(pid: int) -> int:
    """The parent pid of a running process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat_file:
        text = stat_file.read()
    return int(text[text.rindex(b")") + 2 :].split()[1])
