"""dvsctl host/cgroup/ns: arguments become valid params; replies render as tables."""

from __future__ import annotations

import os
import threading

import msgpack
import pytest

import dvsd.cli.cgroup
import dvsd.cli.host
import dvsd.cli.namespace  # noqa: F401 - registers the ns commands
from dvsd.cli import UsageError, build_parser, fan_out
from dvsd.handlers import host as host_handlers
from dvsd.host.command import CommandResult
from dvsd.hostpolicy import HostPolicy
from dvsd.registry import (
    REGISTRY,
    RequestError,
    build_params,
    converter,
    unstructure_items,
)
from dvsd.rqst import RequestType, ReturnCode
from dvsd.transport.msgq import MAX_MTYPE, PID_MASK


def params_for(argv: list[str]):
    args = build_parser().parse_args(argv)
    entry = REGISTRY.get(args.command.rqst)
    return build_params(entry, args.command.build(args)), args.command


@pytest.mark.parametrize(
    "argv",
    [
        ["host", "ps"],
        ["host", "ps", "--pid", "1"],
        ["host", "command", "--", "ls", "-l", "/"],
        ["host", "command", "--shell", "ls | wc -l"],
        ["host", "kill", "1234", "-s", "HUP"],
        ["host", "kill", "nginx", "--force"],
        ["host", "vmstat", "1", "5"],
        ["host", "pidstat", "0.5", "2"],
        ["host", "ifconfig", "lo"],
        ["host", "netstat", "-l", "--kind", "tcp"],
        ["host", "df", "-a", "-t", "ext4"],
        ["host", "mount", "-t", "proc"],
        ["host", "containers"],
        ["cgroup", "cpu", "/system.slice", "--quota", "50000", "--period", "100000"],
        ["cgroup", "mem", "--pid", "1", "--limit", "512M"],
        ["cgroup", "io", "/", "--device", "8:0", "--rbps", "max"],
        ["cgroup", "net", "/", "--classid", "1:10"],
        ["cgroup", "controllers"],
        ["ns", "mnt", "--pid", "1"],
        ["ns", "uts"],
    ],
)
def test_arguments_build_valid_params(argv):
    params_for(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cgroup", "cpu", "/", "--weight", "0"], "weight must be in 1..10000"),
        (["cgroup", "cpu"], "either path"),
        (["cgroup", "mem", "/", "--limit", "lots"], "limit must be 'max' or a size"),
        (["host", "kill", "12", "-s", "BOGUS"], "signal must be"),
        (["host", "pidstat", "0", "1"], "interval must be in"),
        (["host", "netstat", "--kind", "sctp"], "kind must be one of"),
        (["host", "command"], "either argv"),
    ],
)
def test_bad_arguments_never_leave_the_host(argv, message):
    with pytest.raises(RequestError) as caught:
        params_for(argv)
    assert caught.value.rcode == ReturnCode.BAD_REQUEST
    assert message in caught.value.message


async def render(command_entry, reply) -> str:
    return command_entry.render(unstructure_items(reply.items))


async def test_ps_renders_like_ps(ctx_factory):
    params, entry = params_for(["host", "ps", "--pid", str(os.getpid())])
    text = await render(entry, await host_handlers.ps(ctx_factory(), params))
    header, line = text.splitlines()
    assert header.split()[:4] == ["USER", "PID", "%CPU", "%MEM"]
    assert str(os.getpid()) in line.split()


async def test_df_ifconfig_mount_render(ctx_factory):
    ctx = ctx_factory()
    params, entry = params_for(["host", "df", "/"])
    text = await render(entry, await host_handlers.df(ctx, params))
    assert text.splitlines()[0].split()[:3] == ["FILESYSTEM", "TYPE", "SIZE"]
    assert text.splitlines()[1].split()[-1] == "/"
    params, entry = params_for(["host", "ifconfig", "lo"])
    text = await render(entry, await host_handlers.ifconfig(ctx, params))
    assert text.startswith("lo: <") and "inet 127.0.0.1/8" in text
    params, entry = params_for(["host", "mount"])
    text = await render(entry, await host_handlers.mount(ctx, params))
    assert " on / type " in text


async def test_command_render_shows_non_utf8_bytes_escaped(ctx_factory):
    params, entry = params_for(["host", "command", "--", "printf", "ok\\377\\n"])
    reply = await host_handlers.command(ctx_factory(HostPolicy(command="any")), params)
    text = await render(entry, reply)
    assert text.startswith("exit 0")
    assert "ok\\xff" in text


async def test_command_render_says_how_many_leftovers_were_killed(ctx_factory):
    params, entry = params_for(
        ["host", "command", "--", "sh", "-c", "sleep 300 & sleep 301 & exit 2"]
    )
    reply = await host_handlers.command(ctx_factory(HostPolicy(command="any")), params)
    text = await render(entry, reply)
    assert text.startswith("exit 2 in ")
    assert text.endswith("s, 2 leftover processes killed")
    # A reply from a dvsd that does not send the count says nothing of it.
    (item,) = unstructure_items(reply.items)
    del item["leftovers_killed"]
    assert entry.render([item]) == text.split(",")[0]
    assert converter.structure(item, CommandResult).leftovers_killed == 0


async def test_vmstat_renders_vmstat_headers(ctx_factory):
    params, entry = params_for(["host", "vmstat"])
    text = await render(entry, await host_handlers.vmstat(ctx_factory(), params))
    assert text.splitlines()[0].split()[:6] == [
        "R",
        "B",
        "SWPD",
        "FREE",
        "BUFF",
        "CACHE",
    ]


class RecordingQueues:
    """Stands in for ClientQueues: answers every request at once, keeps it."""

    client = PID_MASK  # the highest pid Linux hands out

    def __init__(self) -> None:
        self.sent = []
        self._lock = threading.Lock()

    def new_cseq(self) -> int:
        return 1

    def exchange(self, message, wait: float) -> bytes:
        with self._lock:
            self.sent.append(message)
        node = message.destinations[0]
        return msgpack.packb(
            {"request": "PS", "replies": [{"node": node, "rcode": 0}], "missing": []}
        )


def test_a_many_line_request_to_511_nodes_fits_the_reply_types():
    queues = RecordingQueues()
    result = fan_out(queues, RequestType.PS, {}, list(range(511)), None, 5.0)
    assert len(result["replies"]) == 511
    reply_types = sorted(message.reply_type for message in queues.sent)
    assert len(set(reply_types)) == 511
    assert reply_types[-1] == MAX_MTYPE  # pid 2**22 - 1 in slot 511


def test_a_many_line_request_to_more_nodes_is_refused_before_sending():
    queues = RecordingQueues()
    with pytest.raises(UsageError, match="at most 511 .* not 600"):
        fan_out(queues, RequestType.PS, {}, list(range(600)), None, 5.0)
    assert queues.sent == []
