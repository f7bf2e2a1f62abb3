"""PS, KILL and PIDSTAT against this process and processes the tests start."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys

import attrs
import pytest
import trio

from dvsd.handlers import host as host_handlers
from dvsd.host import procs
from dvsd.host.errors import InvalidValue, NoSuchProcess, NotAllowed
from dvsd.hostpolicy import HostPolicy
from dvsd.registry import RequestError
from dvsd.rqst import ReturnCode


def own_stat() -> dict:
    with open(f"/proc/{os.getpid()}/stat") as stat_file:
        return procs.parse_stat(stat_file.read())


@pytest.fixture
def sleeper():
    """A child process that sleeps until the test ends it."""
    child = subprocess.Popen(["sleep", "300"])
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


def gone_pid() -> int:
    """A pid that no process holds: a child that has been started and reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- PS ------------------------------------------------------------------------


def test_ps_row_of_this_process_matches_proc():
    (row,) = procs.list_processes(pid=os.getpid())
    stat = own_stat()
    assert row.pid == os.getpid()
    assert row.ppid == stat["ppid"] == os.getppid()
    assert row.user == pwd.getpwuid(os.getuid()).pw_name
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as cmdline:
        argv = cmdline.read().rstrip(b"\0").decode().split("\0")
    assert row.cmdline == procs._cut_cmdline(argv)
    with open(f"/proc/{os.getpid()}/statm") as statm:
        size_pages, resident_pages = (int(value) for value in statm.read().split()[:2])
    page = os.sysconf("SC_PAGE_SIZE")
    # The two reads are not atomic; memory may move by a few pages between them.
    assert abs(row.rss - resident_pages * page) < 16 * 1024 * 1024
    assert abs(row.vsz - size_pages * page) < 64 * 1024 * 1024
    assert row.name == stat["comm"]


def test_ps_lists_a_child_and_filters(sleeper):
    every = procs.list_processes()
    pids = [row.pid for row in every]
    assert pids == sorted(pids)
    assert sleeper.pid in pids and os.getpid() in pids
    named = procs.list_processes(name="sleep")
    assert sleeper.pid in [row.pid for row in named]
    assert all(row.name == "sleep" or "sleep" in row.cmdline[0] for row in named)
    assert procs.list_processes(user="no-such-user-here") == []


def test_ps_unknown_pid():
    with pytest.raises(NoSuchProcess, match="no process with pid"):
        procs.list_processes(pid=gone_pid())


async def test_ps_handler_is_many_lines(ctx_factory):
    from dvsd.registry import REGISTRY

    assert REGISTRY.get(int(host_handlers.RequestType.PS)).many_lines
    reply = await host_handlers.ps(ctx_factory(), host_handlers.PsParams())
    assert any(row.pid == os.getpid() for row in reply.items)


# -- KILL ----------------------------------------------------------------------


def test_parse_signal_forms():
    assert procs.parse_signal("TERM") == signal.SIGTERM
    assert procs.parse_signal("sigkill") == signal.SIGKILL
    assert procs.parse_signal("9") == signal.SIGKILL
    assert procs.parse_signal("0") == 0
    with pytest.raises(InvalidValue, match="signal must be"):
        procs.parse_signal("NOPE")
    with pytest.raises(InvalidValue):
        host_handlers.KillParams(pid=5, signal="NOPE")


def test_kill_refuses_init_and_dvsd_without_force():
    with pytest.raises(NotAllowed, match="pid 1"):
        procs.send_signal(1, 0, dvsd_pid=os.getpid(), force=False)
    with pytest.raises(NotAllowed, match="dvsd itself"):
        procs.send_signal(os.getpid(), 0, dvsd_pid=os.getpid(), force=False)
    # Signal 0 only probes: forcing it is harmless and proves the gate opens.
    assert procs.send_signal(os.getpid(), 0, dvsd_pid=os.getpid(), force=True).sent


async def test_kill_handler_signals_a_child(sleeper, ctx_factory):
    params = host_handlers.KillParams(pid=sleeper.pid, signal="TERM")
    reply = await host_handlers.kill(ctx_factory(), params)
    assert reply.items[0].sent and reply.items[0].signal == "SIGTERM"
    assert await trio.to_thread.run_sync(sleeper.wait) == -signal.SIGTERM


async def test_kill_handler_errors(ctx_factory):
    ctx = ctx_factory()
    with pytest.raises(RequestError) as caught:
        await host_handlers.kill(ctx, host_handlers.KillParams(pid=gone_pid()))
    assert caught.value.rcode == ReturnCode.NO_SUCH_PROCESS
    with pytest.raises(RequestError) as caught:
        await host_handlers.kill(ctx, host_handlers.KillParams(pid=1))
    assert caught.value.rcode == ReturnCode.NOT_ALLOWED
    assert "pid 1" in caught.value.message
    with pytest.raises(RequestError) as caught:
        await host_handlers.kill(ctx, host_handlers.KillParams(pid=os.getpid()))
    assert caught.value.rcode == ReturnCode.NOT_ALLOWED
    with pytest.raises(RequestError) as caught:
        await host_handlers.kill(
            ctx, host_handlers.KillParams(name="no-such-process-name")
        )
    assert caught.value.rcode == ReturnCode.NO_SUCH_PROCESS


async def test_kill_policy(ctx_factory, sleeper):
    off = ctx_factory(HostPolicy(kill=False))
    with pytest.raises(RequestError) as caught:
        await host_handlers.kill(off, host_handlers.KillParams(pid=sleeper.pid))
    assert caught.value.rcode == ReturnCode.NOT_ALLOWED
    no_force = ctx_factory(HostPolicy(kill_force=False))
    with pytest.raises(RequestError) as caught:
        await host_handlers.kill(
            no_force, host_handlers.KillParams(pid=1, signal="0", force=True)
        )
    assert caught.value.rcode == ReturnCode.NOT_ALLOWED
    assert sleeper.poll() is None


def test_kill_permission_error_as_an_unprivileged_user():
    """Run the data layer as ``nobody`` in a child: the kernel refuses, EPERM."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this host")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    script = (
        "import os, sys\n"
        "from dvsd.host import procs\n"
        "from dvsd.host.errors import PermissionDenied\n"
        # Imports first: the interpreter's files may not be readable by nobody.
        f"os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid})\n"
        "try:\n"
        "    procs.send_signal(1, 0, dvsd_pid=os.getpid(), force=True)\n"
        "except PermissionDenied as error:\n"
        "    print('PERMISSION', error)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert done.stdout.startswith("PERMISSION not permitted to send 0 to pid 1"), (
        done.stdout + done.stderr
    )


async def test_kill_by_name_reports_each_process(tmp_path, ctx_factory):
    program = tmp_path / "dvsdtestsleep"
    shutil.copy(shutil.which("sleep"), program)
    children = [subprocess.Popen([str(program), "300"]) for _ in range(2)]
    try:
        params = host_handlers.KillParams(name="dvsdtestsleep", signal="KILL")
        reply = await host_handlers.kill(ctx_factory(), params)
        assert sorted(result.pid for result in reply.items) == sorted(
            child.pid for child in children
        )
        assert all(result.sent for result in reply.items)
        for child in children:
            assert await trio.to_thread.run_sync(child.wait) == -signal.SIGKILL
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


# -- PIDSTAT -------------------------------------------------------------------


def test_parse_stat_with_a_hostile_comm():
    text = "77 (a) b) (c) S 1 77 77 0 -1 0 5 0 2 0 30 40 0 0 20 0 1 0 999 0 12"
    text += " 0" * 30
    stat = procs.parse_stat(text)
    assert stat["comm"] == "a) b) (c"
    assert (stat["ppid"], stat["utime"], stat["stime"], stat["starttime"]) == (
        1,
        30,
        40,
        999,
    )


def test_pidstat_rows_skip_exited_and_reused_pids(fake_proc):
    for pid in (10, 11, 12):
        fake_proc.add(pid, comm=f"p{pid}")
    before = procs.sample_processes(proc_root=str(fake_proc.root))
    after = dict(before)
    del after[11]  # exited between the samples
    after[12] = attrs.evolve(before[12], start_ticks=5)
    ticks = os.sysconf("SC_CLK_TCK")
    after[10] = attrs.evolve(before[10], utime_ticks=before[10].utime_ticks + ticks)
    rows = procs.pidstat_rows(before, after, 2.0)
    assert [row.pid for row in rows] == [10]
    assert rows[0].usr_percent == 50.0 and rows[0].system_percent == 0.0
    assert rows[0].command == "p10"


def test_sample_of_a_gone_pid_is_empty():
    assert procs.sample_processes(gone_pid()) == {}


async def test_pidstat_handler_samples_a_busy_child(ctx_factory):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        params = host_handlers.PidstatParams(interval=0.3, count=2, pid=busy.pid)
        reply = await host_handlers.pidstat(ctx_factory(), params)
        assert [row.sample for row in reply.items] == [1, 2]
        assert all(row.pid == busy.pid for row in reply.items)
        assert max(row.cpu_percent for row in reply.items) > 20
    finally:
        busy.kill()
        busy.wait()


async def test_pidstat_refuses_more_sampling_than_the_deadline(ctx_factory):
    params = host_handlers.PidstatParams(interval=10, count=10)
    with pytest.raises(RequestError) as caught:
        await host_handlers.pidstat(ctx_factory(seconds=5), params)
    assert caught.value.rcode == ReturnCode.BAD_REQUEST
    assert "raise --timeout" in caught.value.message
