"""dvsctl's kernel subcommands: arguments -> params (checked locally) -> render."""

from __future__ import annotations

import os

import pytest

import dvsd.cli.dc
import dvsd.cli.dvs
import dvsd.cli.node
import dvsd.cli.proc  # noqa: F401 - declares the subcommands
import dvsd.handlers.dc
import dvsd.handlers.dvs
import dvsd.handlers.node
import dvsd.handlers.proc  # noqa: F401
from dvsd.cli import build_parser, render_result
from dvsd.cli.framework import COMMANDS
from dvsd.kernel.emulated import EmulatedKernel
from dvsd.kernel.models import DcParams
from dvsd.registry import REGISTRY, RequestError, build_params, unstructure_items
from dvsd.rqst import RequestType


def parse(words: str):
    args = build_parser().parse_args(words.split())
    command = args.command
    params = command.build(args)
    build_params(REGISTRY.get(command.rqst), params)  # what dvsctl does first
    return command, params


@pytest.mark.parametrize(
    ("words", "rqst", "params"),
    [
        ("dvs init", RequestType.DVSINIT, {}),
        (
            "dvs init --nr-dcs 4 --name c1",
            RequestType.DVSINIT,
            {"nr_dcs": 4, "name": "c1"},
        ),
        ("dvs info", RequestType.GETDVSINFO, {}),
        ("dvs end", RequestType.DVSEND, {}),
        (
            "dc init 2 web --nr-nodes 3 --cpus 0-1,3",
            RequestType.DCINIT,
            {"dcid": 2, "name": "web", "nr_nodes": 3, "cpus": [0, 1, 3]},
        ),
        ("dc info 2", RequestType.GETDCINFO, {"dcid": 2}),
        ("dc end 2", RequestType.DCEND, {"dcid": 2}),
        ("node add 2 5", RequestType.ADDNODE, {"dcid": 2, "nodeid": 5}),
        ("node del 2 5", RequestType.DELNODE, {"dcid": 2, "nodeid": 5}),
        ("node info", RequestType.GETNODEINFO, {"nodeid": -1}),
        ("proxy info 3", RequestType.GETPROXYINFO, {"pxid": 3}),
        ("proxy status 3", RequestType.GETPROXYSTS, {"pxid": 3}),
        ("proc info 0", RequestType.GETPROCINFO, {"dcid": 0}),
        (
            "proc info 0 -3 --free",
            RequestType.GETPROCINFO,
            {"dcid": 0, "slot": -3, "include_free": True},
        ),
        ("proc priv 0 7", RequestType.GETPRIV, {"dcid": 0, "endpoint": 7}),
        (
            "proc setpriv 0 7 --level 1 --ipc-to 0x3",
            RequestType.SETPRIV,
            {"dcid": 0, "endpoint": 7, "level": 1, "ipc_to": 3},
        ),
        (
            "proc migrate 0 7 2 1234 --old-node 1",
            RequestType.MIGRATE,
            {"dcid": 0, "endpoint": 7, "new_node": 2, "pid": 1234, "old_node": 1},
        ),
    ],
)
def test_arguments_become_params(words, rqst, params):
    command, built = parse(words)
    assert command.rqst == rqst
    assert built == params


@pytest.mark.parametrize(
    ("words", "sentence"),
    [
        ("dc info 32", "dcid must be in 0..31, got 32"),
        ("dvs init --nr-nodes 0", "nr_nodes must be in 1..32, got 0"),
        ("dc init 1 averyveryverylongname", "name must be at most 15 bytes in UTF-8"),
        ("node add 0 40", "nodeid must be in 0..31, got 40"),
        ("proc info 0 300", "slot must be in -35..220, got 300"),
        ("proc setpriv 0 7 --level 9", "level must be in 0..5, got 9"),
    ],
)
def test_bad_arguments_are_refused_before_sending(words, sentence):
    with pytest.raises(RequestError) as caught:
        parse(words)
    assert sentence in caught.value.message


def items_of(*models):
    return unstructure_items(list(models))


def test_renderers_show_the_kernel_records():
    kernel = EmulatedKernel()
    kernel.dvs_init(0)
    kernel.dc_init(DcParams(dcid=1, name="web"))
    kernel.attach_node(2, "host2")
    kernel.bind(1, 4, os.getpid())

    text = dvsd.cli.dvs.render_dvs_info(items_of(kernel.get_dvs_info()))
    assert "IPC|IOCTL|INITIALIZED (0x103)" in text
    text = dvsd.cli.dc.render_dc_info(items_of(kernel.get_dc_info(1)))
    assert "running" in text and "web" in text
    text = dvsd.cli.node.render_node_info(items_of(kernel.get_node_info(2)))
    assert "ATTACHED|SCONNECTED|RCONNECTED (0xe)" in text
    text = dvsd.cli.node.render_proxy_status(items_of(kernel.get_proxy_status(2)))
    assert "INUSE|SCONNECTED|RCONNECTED (0x7)" in text
    sender, receiver = kernel.get_proxy_info(2)
    rows = [{"role": "sender", **item} for item in items_of(sender)]
    rows += [{"role": "receiver", **item} for item in items_of(receiver)]
    text = dvsd.cli.node.render_proxy_info(rows)
    assert text.splitlines()[0].split()[:2] == ["ROLE", "LPID"]
    text = dvsd.cli.proc.render_proc_info(items_of(kernel.get_proc_info(1, 4)))
    assert "ready" in text.splitlines()[1]
    text = dvsd.cli.proc.render_priv(items_of(kernel.get_priv(1, 4)))
    assert "user (0)" in text


@pytest.mark.parametrize(
    ("option", "sentence"),
    [
        # 601 ids once broke the per-node reply types with a traceback
        (["--nodes", "0-600"], "argument --nodes: node ids must be in 0..31, got"),
        # refused before the range is expanded
        (["--nodes", "0-999999999999"], "node ids must be in 0..31"),
        (["--node", "32"], "argument --node: node id must be in 0..31, got 32"),
    ],
)
def test_node_ids_beyond_the_kernel_are_usage_errors(option, sentence, capsys):
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*option, "ps"])
    assert caught.value.code == 2
    assert sentence in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "sentence"),
    [
        # an empty or reversed CPU list once meant "all CPUs" without a word
        (["dc", "init", "1", "web", "--cpus", ""], "argument --cpus: CPU numbers"),
        (["dc", "init", "1", "web", "--cpus", "5-1"], "'5-1' is neither"),
        (["dc", "init", "1", "web", "--cpus", "0,x"], "'x' is neither"),
        (["proc", "setpriv", "0", "1", "--ipc-to", "xyz"], "invalid integer value"),
    ],
)
def test_malformed_option_values_are_usage_errors(argv, sentence, capsys):
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    assert sentence in capsys.readouterr().err


def test_a_cpu_list_expands_its_ranges():
    args = build_parser().parse_args(["dc", "init", "1", "web", "--cpus", "0-2,5"])
    assert args.cpus == [0, 1, 2, 5]


def test_init_replies_say_which_local_node_answered():
    result = {
        "request": "DVSINIT",
        "rcode": 0,
        "replies": [
            {"node": 0, "rcode": 0, "items": []},
            {"node": 1, "rcode": 1, "items": []},
        ],
        "missing": [],
    }
    nothing = lambda items: ""  # noqa: E731 - init replies carry no items
    shown = render_result(result, nothing, fold=False, rcode_means="local node")
    assert shown.splitlines() == [
        "node 0: ok (local node 0)",
        "node 1: ok (local node 1)",
    ]
    # without a meaning, a positive code is shown as a code
    assert "node 1: ok (rcode 1)" in render_result(result, nothing, fold=False)
    # DCINIT answers the dcid (the DVSD specification), not the kernel's value
    entry = next(c for c in COMMANDS if c.words == "dc init")
    assert entry.rcode_means == "dcid"
