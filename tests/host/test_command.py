"""COMMAND: policy, byte-exact output, caps that fit a reply, timeouts leave nothing."""

from __future__ import annotations

import os
import shutil
import sys

import msgpack
import pytest
import trio
from tests.escapes import ESCAPES, escape, kill_strays

from dvsd.guarded import run_guarded
from dvsd.handlers import host as host_handlers
from dvsd.host.command import OutputBuffer, plan_command, split_cap
from dvsd.host.errors import InvalidValue, NotAllowed
from dvsd.hostpolicy import HostPolicy
from dvsd.registry import MAX_REPLY_BYTES, RequestError, converter
from dvsd.rqst import ReturnCode

ANY = HostPolicy(command="any")


def run(ctx, **params):
    return host_handlers.command(ctx, host_handlers.CommandParams(**params))


def encoded_reply_size(reply) -> int:
    return len(
        msgpack.packb(
            [converter.unstructure(item) for item in reply.items], use_bin_type=True
        )
    )


# -- policy --------------------------------------------------------------------


def test_default_policy_refuses():
    with pytest.raises(NotAllowed, match='command = "allow"'):
        plan_command(HostPolicy(), argv=["true"], shell=None, timeout=None)


def test_allow_list_by_name_and_path():
    policy = HostPolicy(command="allow", command_allow=("echo", "/bin/true"))
    plan = plan_command(policy, argv=["echo", "hi"], shell=None, timeout=None)
    assert plan.argv[0] == os.path.realpath(shutil.which("echo"))
    assert plan.argv[1:] == ["hi"]
    plan_command(policy, argv=["true"], shell=None, timeout=None)
    with pytest.raises(NotAllowed, match="not in host.command_allow"):
        plan_command(policy, argv=["cat", "/etc/passwd"], shell=None, timeout=None)


def test_allow_list_cannot_be_dodged_through_a_symlink(tmp_path):
    link = tmp_path / "echo"
    link.symlink_to(shutil.which("cat"))
    policy = HostPolicy(command="allow", command_allow=("echo",))
    with pytest.raises(NotAllowed):
        plan_command(policy, argv=[str(link), "/etc/passwd"], shell=None, timeout=None)


def test_shell_needs_its_own_switch():
    with pytest.raises(NotAllowed, match="command_shell"):
        plan_command(ANY, argv=[], shell="echo hi", timeout=None)
    policy = HostPolicy(command="any", command_shell=True)
    plan = plan_command(policy, argv=[], shell="echo hi", timeout=None)
    assert plan.argv[1:] == ["-c", "echo hi"]


def test_missing_executable_and_timeouts():
    with pytest.raises(InvalidValue, match="not an executable"):
        plan_command(ANY, argv=["no-such-program-xyz"], shell=None, timeout=None)
    plan = plan_command(ANY, argv=["true"], shell=None, timeout=500.0)
    assert plan.timeout == ANY.command_max_timeout
    plan = plan_command(ANY, argv=["true"], shell=None, timeout=5.0, time_left=2.0)
    assert plan.timeout == 2.0
    assert plan_command(ANY, argv=["true"], shell=None, timeout=None).timeout == 10.0


def test_params_need_argv_or_shell():
    with pytest.raises(ValueError, match="either argv"):
        host_handlers.CommandParams()
    with pytest.raises(ValueError, match="either argv"):
        host_handlers.CommandParams(argv=["ls"], shell="ls")


async def test_handler_refuses_under_default_policy(ctx_factory):
    with pytest.raises(RequestError) as caught:
        await run(ctx_factory(), argv=["true"])
    assert caught.value.rcode == ReturnCode.NOT_ALLOWED


# -- output --------------------------------------------------------------------


def test_split_cap_keeps_room_for_stderr():
    assert split_cap(10, 5, 100) == (10, 5)
    assert split_cap(1000, 1000, 100) == (75, 25)
    assert split_cap(1000, 10, 100) == (90, 10)
    assert split_cap(10, 1000, 100) == (10, 90)
    buffer = OutputBuffer(limit=4)
    buffer.feed(b"abc")
    buffer.feed(b"defg")
    assert (bytes(buffer.kept), buffer.total) == (b"abcd", 7)


async def test_exit_status_stdout_stderr(ctx_factory):
    reply = await run(
        ctx_factory(ANY),
        argv=[sys.executable, "-c", "import sys; print('out'); sys.exit(3)"],
    )
    result = reply.items[0]
    assert (result.exit_status, result.stdout, result.stderr) == (3, b"out\n", b"")
    assert not result.timed_out and not reply.truncated
    assert result.leftovers_killed == 0
    reply = await run(ctx_factory(ANY), argv=["ls", "/no/such/dir"])
    assert reply.items[0].exit_status != 0 and b"/no/such/dir" in reply.items[0].stderr


async def test_binary_output_arrives_byte_exact(ctx_factory, tmp_path):
    data = os.urandom(60_000)  # random bytes are not UTF-8
    (tmp_path / "blob").write_bytes(data)
    reply = await run(ctx_factory(ANY), argv=["cat", str(tmp_path / "blob")])
    result = reply.items[0]
    assert result.stdout == data
    assert result.stdout_size == len(data) and not result.stdout_truncated
    decoded = msgpack.unpackb(
        msgpack.packb(converter.unstructure(result), use_bin_type=True), raw=False
    )
    assert decoded["stdout"] == data


async def test_300kb_of_random_bytes_is_cut_and_flagged(ctx_factory, tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(data)
    reply = await run(ctx_factory(ANY), argv=["cat", str(tmp_path / "blob")])
    result = reply.items[0]
    assert result.stdout_truncated and reply.truncated
    assert result.stdout_size == 300_000 and reply.full_size == 300_000
    assert 0 < len(result.stdout) < 300_000
    assert result.stdout == data[: len(result.stdout)]
    assert result.exit_status == 0
    assert encoded_reply_size(reply) < MAX_REPLY_BYTES


async def test_both_streams_cut_together(ctx_factory):
    script = "import os; os.write(1, b'o' * 200000); os.write(2, b'e' * 200000)"
    reply = await run(ctx_factory(ANY), argv=[sys.executable, "-c", script])
    result = reply.items[0]
    assert result.stdout_truncated and result.stderr_truncated
    assert (result.stdout_size, result.stderr_size) == (200_000, 200_000)
    assert len(result.stderr) >= ANY.command_output_cap // 5
    assert encoded_reply_size(reply) < MAX_REPLY_BYTES


# -- timeouts and process groups -----------------------------------------------


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                text = stat_file.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.append((int(entry), fields[0]))
    return members


async def wait_group_gone(pgid: int, within: float = 5.0) -> list[tuple[int, str]]:
    """Poll /proc until no live (non-zombie) member is left or ``within`` passes.

    SIGKILL is delivered asynchronously, and the orphaned grandchildren are
    reaped by pid 1 when it gets to it, so zombies are accepted: they run
    nothing and hold nothing but a pid.
    """
    with trio.move_on_after(within):
        while True:
            alive = [m for m in group_members(pgid) if m[1] not in ("Z", "X")]
            if not alive:
                return []
            await trio.sleep(0.02)
    return [m for m in group_members(pgid) if m[1] not in ("Z", "X")]


async def test_timeout_kills_the_whole_process_group(ctx_factory, tmp_path):
    pid_file = tmp_path / "pids"
    script = (
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(300)\n"
    )
    started = trio.current_time()
    reply = await run(
        ctx_factory(ANY), argv=[sys.executable, "-c", script], timeout=1.0
    )
    result = reply.items[0]
    assert result.timed_out and result.exit_status == -9
    assert trio.current_time() - started < 10
    leader, grandchild = (int(pid) for pid in pid_file.read_text().split())
    assert os.getpgid(os.getpid()) != leader  # it ran in a session of its own
    assert await wait_group_gone(leader) == []
    assert not any(pid == grandchild for pid, _ in await wait_group_gone(leader))


async def test_background_children_do_not_outlive_the_command(ctx_factory, tmp_path):
    pid_file = tmp_path / "pid"
    script = (
        "import os, subprocess\n"
        "child = subprocess.Popen(['sleep', '300'], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
    )
    reply = await run(ctx_factory(ANY), argv=[sys.executable, "-c", script])
    assert reply.items[0].exit_status == 0 and not reply.items[0].timed_out
    assert await wait_group_gone(int(pid_file.read_text())) == []


async def test_a_running_command_does_not_block_other_requests(ctx_factory):
    ctx = ctx_factory(ANY)
    finished: list[str] = []

    async def slow() -> None:
        await run(ctx, argv=["sleep", "2"])
        finished.append("command")

    async def quick() -> None:
        await host_handlers.ps(ctx, host_handlers.PsParams(pid=os.getpid()))
        finished.append("ps")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow)
        await trio.sleep(0.1)  # let the command start first
        nursery.start_soon(quick)
    assert finished == ["ps", "command"]


async def test_cancelled_request_kills_its_command(ctx_factory, tmp_path):
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()));"
        " time.sleep(300)"
    )
    with trio.move_on_after(1.0):
        await run(ctx_factory(ANY), argv=[sys.executable, "-c", script], timeout=60)
    assert await wait_group_gone(int(pid_file.read_text())) == []


SHELL_ANY = HostPolicy(command="any", command_shell=True)


async def ends_soon(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` ends within ``within`` seconds (a pidfd becomes readable)."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        with trio.move_on_after(within):
            await trio.lowlevel.wait_readable(descriptor)
            return True
        return False
    finally:
        os.close(descriptor)


async def test_children_holding_stdout_get_a_grace_not_the_timeout(
    ctx_factory, tmp_path
):
    # The shell exits at once; its two background sleeps keep stdout open.
    pid_file = tmp_path / "pids"
    line = f"sleep 300 & echo $! >> {pid_file}; sleep 301 & echo $! >> {pid_file}"
    line += "; echo started"
    reply = await run(ctx_factory(SHELL_ANY), shell=line, timeout=20)
    result = reply.items[0]
    assert (result.exit_status, result.timed_out) == (0, False)
    assert result.stdout == b"started\n"
    assert result.duration < 10, "waited for the timeout, not the pipe grace"
    assert result.leftovers_killed == 2
    for pid in pid_file.read_text().split():
        assert await ends_soon(int(pid)), f"background child {pid} still runs"


@pytest.mark.parametrize("how", sorted(ESCAPES))
async def test_what_leaves_the_process_group_does_not_outlive_the_command(
    ctx_factory, how
):
    reply = await run(ctx_factory(ANY), argv=escape(how), timeout=20)
    result = reply.items[0]
    escapee = int(result.stdout)
    try:
        assert (result.exit_status, result.timed_out) == (0, False)
        assert result.leftovers_killed == 1
        assert await ends_soon(escapee), f"{how}: pid {escapee} outlived the command"
    finally:
        kill_strays(escapee)


@pytest.mark.parametrize("how", sorted(ESCAPES))
async def test_what_leaves_the_process_group_does_not_outlive_the_timeout(
    ctx_factory, how
):
    reply = await run(ctx_factory(ANY), argv=escape(how, stay=True), timeout=1)
    result = reply.items[0]
    escapee = int(result.stdout)
    try:
        assert (result.exit_status, result.timed_out) == (-9, True)
        assert result.leftovers_killed == 1  # the command itself is not counted
        assert await ends_soon(escapee), f"{how}: pid {escapee} outlived the timeout"
    finally:
        kill_strays(escapee)


async def test_what_leaves_the_process_group_does_not_outlive_a_cancel():
    # What a cancelled COMMAND request does, seen from inside: the run is
    # cancelled as soon as the escapee's pid arrives.
    found: list[int] = []

    def note(chunk: bytes) -> None:
        found.extend(int(word) for word in chunk.split())
        cancel_scope.cancel()

    plan = plan_command(
        ANY, argv=escape("setsid-double-fork", stay=True), shell=None, timeout=30
    )
    with trio.CancelScope() as cancel_scope:
        await run_guarded(
            plan.argv, timeout=30, stdout=note, stderr=lambda chunk: None, env=plan.env
        )
    try:
        assert cancel_scope.cancelled_caught and len(found) == 1
        assert await ends_soon(found[0])
    finally:
        kill_strays(*found)
