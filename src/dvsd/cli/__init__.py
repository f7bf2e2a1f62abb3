"""``dvsctl``: ask the local dvsd to run a request on one node, some, or all.

Exit codes: 0 every node answered well; 1 some node returned an error;
2 usage or configuration error; 3 dvsd unreachable; 4 some node did not
answer (it left the group or timed out).  4 wins over 1.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import importlib
import json
import logging
import os
import sys
from typing import Any

import msgpack

from dvsd import config as config_module
from dvsd import logsetup
from dvsd.cli.framework import COMMANDS, Command, default_render
from dvsd.kernel import abi
from dvsd.registry import REGISTRY, RequestError, build_params, load_handlers
from dvsd.rqst import ReturnCode, request_type_name, return_code_name
from dvsd.transport.msgq import (
    MAX_SLOT,
    MAX_TIMEOUT,
    ClientMessage,
    ClientQueues,
    DaemonUnreachable,
    Op,
    reply_type_for,
)

CLI_MODULES = ("dvs", "cluster", "dc", "node", "proc", "host", "cgroup", "namespace")
FAMILY_HELP = {
    "dvs": "the DVS on each node: init, info, end, nodes",
    "dc": "distributed containers: init, info, end",
    "node": "node slots of the DVS: add to a DC, remove, info",
    "proxy": "proxy pairs: info, status",
    "proc": "processes of a DC: info, privileges, migrate",
    "host": "host operations: command, ps, vmstat, df, kill, ...",
    "cgroup": "cgroup CPU, memory, I/O and network settings; controllers",
    "ns": "namespaces of a process and who shares them",
}

#: Families whose actions are also top-level commands: ``dvsctl ps`` is
#: ``dvsctl host ps``, as administrators type it.
TOP_LEVEL_FAMILIES = ("host",)

EXIT_OK, EXIT_NODE_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_MISSING = 0, 1, 2, 3, 4

#: Seconds dvsctl waits beyond the request timeout before it calls dvsd gone;
#: dvsd always answers by the deadline, so this only covers a dead daemon.
GRACE = 3.0


class UsageError(Exception):
    """A command line that cannot be sent; exit code 2."""


def parse_nodes(text: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``."""
    nodes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                first, last = (int(end) for end in part.split("-", 1))
                if first > last:
                    raise ValueError
            else:
                first = last = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"ids and ranges like 0-2,5 expected; {part!r} is neither"
            ) from None
        # checked before the range is expanded: 0-10**12 must not fill memory
        if first < 0 or last > abi.NR_NODES - 1:
            raise argparse.ArgumentTypeError(
                f"node ids must be in 0..{abi.NR_NODES - 1}, got {part!r}"
            )
        nodes.update(range(first, last + 1))
    return sorted(nodes)


def node_id(text: str) -> int:
    """``--node``: one node id, checked before anything is sent."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a node id expected, got {text!r}"
        ) from None
    if not 0 <= value <= abi.NR_NODES - 1:
        raise argparse.ArgumentTypeError(
            f"node id must be in 0..{abi.NR_NODES - 1}, got {value}"
        )
    return value


def seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds, at most one day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--timeout takes seconds, got {text!r}"
        ) from None
    if not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"--timeout must be in (0, {MAX_TIMEOUT:.0f}] seconds, got {text}"
        )
    return value


def common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", help="dvsd configuration file (TOML)")
    where = common.add_mutually_exclusive_group()
    where.add_argument("--node", type=node_id, help="run on this node id")
    where.add_argument("--all", action="store_true", help="run on every node")
    where.add_argument("--nodes", type=parse_nodes, help="run on these nodes: 0-2,5")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    common.add_argument(
        "--timeout",
        type=seconds,
        help="seconds to wait for the nodes (default: [requests] timeout, 5)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    for module in CLI_MODULES:
        importlib.import_module(f"dvsd.cli.{module}")
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="dvsctl",
        parents=[common],
        description="Run a DVS management request on one node, some nodes or all.",
        epilog="Exit codes: 0 ok, 1 a node returned an error, 2 usage,"
        " 3 dvsd unreachable, 4 a node did not answer.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    groups.add_parser("status", parents=[common], help="show this node's dvsd")
    call = groups.add_parser(
        "call", parents=[common], help="send any request type by name or number"
    )
    call.add_argument("type", help="request type name (GETDVSINFO) or number")
    call.add_argument(
        "params",
        nargs="*",
        metavar="KEY=VALUE",
        help='parameters; a VALUE is read as JSON (3, true, ["ls", "-l"],'
        ' "text") and taken as a plain string when it is not JSON',
    )

    by_group: dict[str, list[Command]] = {}
    for entry in COMMANDS:
        by_group.setdefault(entry.group, []).append(entry)
    for group, entries in by_group.items():
        if len(entries) == 1 and entries[0].name is None:
            sub = groups.add_parser(group, parents=[common], help=entries[0].help)
            _add_arguments(sub, entries[0])
            continue
        family = groups.add_parser(
            group, help=FAMILY_HELP.get(group, f"{group} requests")
        )
        names = family.add_subparsers(dest="name", metavar="ACTION", required=True)
        for entry in entries:
            sub = names.add_parser(entry.name, parents=[common], help=entry.help)
            _add_arguments(sub, entry)
    taken = set(groups.choices)
    for entry in COMMANDS:
        if entry.group in TOP_LEVEL_FAMILIES and entry.name not in taken:
            sub = groups.add_parser(
                entry.name, parents=[common], help=f"{entry.help} (= {entry.words})"
            )
            _add_arguments(sub, entry)
    return parser


def _add_arguments(parser: argparse.ArgumentParser, entry: Command) -> None:
    parser.set_defaults(command=entry)
    for argument in entry.args:
        parser.add_argument(*argument.names, **argument.options)


def main(argv: list[str] | None = None) -> int:
    # stdout is for answers only; the CLI's own log goes to stderr, warnings up.
    logsetup.configure("console", level=logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (``| head``) went away: nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as error:
        return _nothing_asked(args, error, EXIT_USAGE)
    except DaemonUnreachable as error:
        return _nothing_asked(args, error, EXIT_UNREACHABLE)


def _nothing_asked(args: argparse.Namespace, error: Exception, code: int) -> int:
    """Say why no node was asked; with --json, also as JSON on stdout.

    A program reading ``--json`` output gets a JSON document whatever
    happened: ``{"error": <sentence>, "exit_code": <code>}`` here.
    """
    print(f"dvsctl: {error}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": str(error), "exit_code": code}))
    return code


def run(args: argparse.Namespace) -> int:
    try:
        path = getattr(args, "config", None) or config_module.default_path()
        settings = config_module.load(path)
    except config_module.ConfigError as error:
        raise UsageError(f"configuration: {error}") from None
    as_json = getattr(args, "json", False)
    timeout = getattr(args, "timeout", None)
    wait = (timeout or settings.requests.timeout) + GRACE
    queues = ClientQueues(settings.msgq.request_key, settings.msgq.reply_key)

    if args.group == "status":
        status = ask_status(queues, timeout, wait)
        print(json.dumps(status, indent=2) if as_json else render_status(status))
        return EXIT_OK

    load_handlers(plugins=True)
    if args.group == "call":
        # A number nobody registered here is still sent: the nodes may know it
        # (a plugin installed there), and if not they say so in their replies.
        entry = REGISTRY.by_name(args.type)
        if entry is not None:
            rqst_type = entry.rqst_type
        elif args.type.isdigit() and 0 < int(args.type) <= 0xFFFF:
            rqst_type = int(args.type)
            entry = REGISTRY.get(rqst_type)
        else:
            raise UsageError(
                f"unknown request type {args.type!r}: give a registered name"
                " or a number in 1..65535"
            )
        params, renderer, rcode_means = parse_key_values(args.params), None, None
    else:
        command: Command = args.command
        rqst_type, renderer = command.rqst, command.render
        rcode_means = command.rcode_means
        params = command.build(args)
        entry = REGISTRY.get(rqst_type)
    if entry is not None:
        try:
            build_params(entry, params)  # the node checks again; nothing bad leaves
        except RequestError as error:
            raise UsageError(error.message) from None

    destinations = destinations_from(args)
    many_lines = entry is not None and entry.many_lines
    if many_lines and (destinations is None or len(destinations) > 1):
        result = fan_out(queues, rqst_type, params, destinations, timeout, wait)
    else:
        message = ClientMessage(
            Op.REQUEST,
            queues.client,
            queues.new_cseq(),
            rqst_type=rqst_type,
            destinations=destinations,
            params=params,
            timeout=timeout,
        )
        result = exchange(queues, message, wait)
    if as_json:
        print(json.dumps(jsonable(result), indent=2))
    else:
        shown = render_result(
            result, renderer or default_render, fold=many_lines, rcode_means=rcode_means
        )
        print(shown)
    return exit_code(result)


def destinations_from(args: argparse.Namespace) -> list[int] | None:
    if getattr(args, "all", False):
        return None
    if getattr(args, "node", None) is not None:
        return [args.node]
    if getattr(args, "nodes", None) is not None:
        return list(args.nodes)
    return []  # this node


def parse_key_values(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"parameter {pair!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    return params


def exchange(
    queues: ClientQueues, message: ClientMessage, wait: float
) -> dict[str, Any]:
    try:
        payload = queues.exchange(message, wait)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


def ask_status(
    queues: ClientQueues, timeout: float | None, wait: float
) -> dict[str, Any]:
    """This node's dvsd status; DaemonUnreachable when dvsd refused to give it."""
    message = ClientMessage(
        Op.STATUS, queues.client, queues.new_cseq(), timeout=timeout
    )
    status = exchange(queues, message, wait)
    if "view" not in status:
        # dvsd answers a status it did not serve (it came too late) with an
        # error in the shape of a request's answer.
        raise DaemonUnreachable(
            "dvsd did not give its status: "
            + describe_error(status.get("rcode", 0), status.get("error"))
        )
    return status


def fan_out(
    queues: ClientQueues,
    rqst_type: int,
    params: dict[str, Any],
    destinations: list[int] | None,
    timeout: float | None,
    wait: float,
) -> dict[str, Any]:
    """Send a many-line request to each node separately, at once, and gather."""
    if destinations is None:
        status = ask_status(queues, timeout, wait)
        destinations = sorted(status["view"]["members"])
    if len(destinations) > MAX_SLOT:
        # Checked before anything is sent, so no node runs part of the request.
        raise UsageError(
            f"{request_type_name(rqst_type)} goes to each node separately, and one"
            f" dvsctl can wait for at most {MAX_SLOT} of them at once:"
            f" ask for at most {MAX_SLOT} nodes, not {len(destinations)}"
        )

    def one(index_and_node: tuple[int, int]) -> dict[str, Any]:
        # The threads share one pid, so each request gets its own reply type:
        # a receiver asking for its pid alone would take the others' chunks.
        index, node = index_and_node
        message = ClientMessage(
            Op.REQUEST,
            queues.client,
            queues.new_cseq(),
            reply_type=reply_type_for(queues.client, index + 1),
            rqst_type=rqst_type,
            destinations=[node],
            params=params,
            timeout=timeout,
        )
        return exchange(queues, message, wait)

    workers = min(16, len(destinations) or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, enumerate(destinations)))
    merged: dict[str, Any] = {
        "request": results[0]["request"] if results else str(rqst_type),
        "rqst_type": rqst_type,
        "rcode": 0,
        "error": None,
        "replies": [],
        "missing": [],
    }
    for result in results:
        merged["replies"].extend(result["replies"])
        merged["missing"].extend(result["missing"])
        if result.get("error") and not merged["error"]:
            merged["error"], merged["rcode"] = result["error"], result["rcode"]
    return merged


def exit_code(result: dict[str, Any]) -> int:
    if result.get("missing"):
        return EXIT_MISSING
    if result.get("error") or any(reply["rcode"] < 0 for reply in result["replies"]):
        return EXIT_NODE_ERROR
    return EXIT_OK


def describe_error(rcode: int, error: str | None) -> str:
    prefix = f"{return_code_name(rcode)} ({rcode})"
    if error and error.startswith(prefix):  # kernel sentences name their code
        return error
    return f"{prefix}: {error or 'no details'}"


def render_result(
    result: dict[str, Any], renderer, *, fold: bool, rcode_means: str | None = None
) -> str:
    lines: list[str] = []
    if result.get("error"):
        lines.append(f"error: {describe_error(result['rcode'], result['error'])}")
    sections: list[tuple[list[int], str]] = []
    for reply in sorted(result["replies"], key=lambda reply: reply["node"]):
        if reply["rcode"] < 0:
            body = f"error {describe_error(reply['rcode'], reply.get('error'))}"
            if reply.get("items"):  # e.g. MIGRATE's per-node outcome
                body += "\n" + renderer(reply["items"])
        else:
            body = renderer(reply.get("items") or [])
            if reply.get("truncated"):
                body += f"\n(output cut: full size {reply.get('full_size')} bytes)"
            if not body and rcode_means:
                body = f"ok ({rcode_means} {reply['rcode']})"
            elif not body:
                body = "ok" if reply["rcode"] == 0 else f"ok (rcode {reply['rcode']})"
        if fold:
            for nodes, text in sections:
                if text == body:
                    nodes.append(reply["node"])
                    break
            else:
                sections.append(([reply["node"]], body))
        else:
            sections.append(([reply["node"]], body))
    for nodes, body in sections:
        label = (
            f"node {nodes[0]}"
            if len(nodes) == 1
            else f"nodes {fold_nodes(nodes)} ({len(nodes)})"
        )
        if "\n" in body:
            lines.append(f"{label}:")
            lines.extend(f"  {line}" for line in body.splitlines())
        else:
            lines.append(f"{label}: {body}")
    for missing in sorted(result.get("missing", []), key=lambda entry: entry["node"]):
        lines.append(f"node {missing['node']}: no answer ({missing['reason']})")
    return "\n".join(lines)


def fold_nodes(nodes: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    if not nodes:
        return ""
    nodes = sorted(nodes)
    runs: list[str] = []
    start = previous = nodes[0]
    for node in nodes[1:] + [None]:
        if node is not None and node == previous + 1:
            previous = node
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if node is not None:
            start = previous = node
    return ",".join(runs)


def render_status(status: dict[str, Any]) -> str:
    view = status["view"]
    gcs = status["gcs"]
    if status.get("daemon"):
        gcs += f" to {status['daemon']}"
    if status.get("gcs_detail"):
        gcs += f" ({status['gcs_detail']})"
    rows = [
        ("node", status["node_id"]),
        ("transport", status["transport"]),
        ("gcs", gcs),
        ("group", status["group"]),
        (
            "view",
            f"{view['view_id'] or '-'} members {fold_nodes(view['members']) or '-'}",
        ),
        ("kernel", status["kernel"]),
        ("in flight", status["in_flight"]),
        ("incarnation", status["incarnation"]),
        ("handlers", status["handlers"]),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def jsonable(value: Any) -> Any:
    """msgpack values -> JSON; bytes say their encoding."""
    if isinstance(value, bytes):
        try:
            return {"encoding": "utf-8", "text": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {
                "encoding": "base64",
                "data": base64.b64encode(value).decode("ascii"),
            }
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


__all__ = ["main", "ReturnCode"]
