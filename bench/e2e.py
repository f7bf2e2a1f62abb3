"""End-to-end request rate and latency: dvsctl's queue protocol -> dvsd -> nodes.

Runs real dvsd processes (the same harness as the end-to-end tests) and
drives them through the SysV queues with the client library dvsctl uses, from
1 and from 64 concurrent clients, for a single-node request and an
all-nodes request on three nodes over Spread (the real daemon when one is on
PATH or in DVSD_SPREAD_DAEMON, else the test stand-in).  Every figure comes
from this one run; the ratios compare figures of the same run.

    python bench/e2e.py [--requests 2000] [--spread real|standin]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgpack

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tests.e2e.harness import Node  # noqa: E402
from tests.spread_standin.launch import (  # noqa: E402
    find_spread_binary,
    start_real_daemon,
    start_standin,
)

from dvsd.rqst import RequestType  # noqa: E402
from dvsd.transport.msgq import ClientMessage, ClientQueues, Op  # noqa: E402


def measure(node: Node, destinations, clients: int, requests: int) -> dict[str, float]:
    queues = ClientQueues(node.request_key, node.reply_key)
    per_client = max(1, requests // clients)

    def client(index: int) -> list[float]:
        latencies = []
        for _ in range(per_client):
            message = ClientMessage(
                Op.REQUEST,
                queues.client,
                queues.new_cseq(),
                reply_type=queues.client | (index + 1) << 22,
                rqst_type=RequestType.DVSNODES,
                destinations=destinations,
            )
            started = time.perf_counter()
            result = msgpack.unpackb(queues.exchange(message, 30.0))
            latencies.append(time.perf_counter() - started)
            if result["missing"] or result["error"]:
                raise RuntimeError(f"request failed: {result}")
        return latencies

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = [
            value for chunk in pool.map(client, range(clients)) for value in chunk
        ]
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--spread", choices=("real", "standin"), default=None)
    args = parser.parse_args()
    kind = args.spread or ("real" if find_spread_binary() else "standin")

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        single = Node(workdir, 0, {"transport": "single-node"})
        single.start()
        single.wait_view(1)
        try:
            for clients in (1, 64):
                rows.append(
                    (
                        "single-node",
                        "this node",
                        clients,
                        measure(single, [0], clients, args.requests),
                    )
                )
        finally:
            single.cleanup()

        daemon = (
            start_real_daemon(workdir / "spread", find_spread_binary())
            if kind == "real"
            else start_standin(workdir / "spread")
        )
        nodes = [
            Node(
                workdir, node_id, {"transport": "spread", "daemon": daemon.tcp_address}
            )
            for node_id in range(3)
        ]
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                node.wait_view(3)
            for clients in (1, 64):
                rows.append(
                    (
                        f"spread ({kind}), 3 nodes",
                        "all nodes",
                        clients,
                        measure(nodes[0], None, clients, args.requests),
                    )
                )
        finally:
            for node in nodes:
                node.cleanup()
            daemon.stop()

    header = ("transport", "to", "clients", "req/s", "p50 ms", "p99 ms")
    print("{:28} {:10} {:>7} {:>9} {:>8} {:>8}".format(*header))
    for transport, target, clients, figures in rows:
        print(
            f"{transport:28} {target:10} {clients:>7} {figures['rps']:>9.0f}"
            f" {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}"
        )
    for transport in dict.fromkeys(row[0] for row in rows):
        one, many = (row[3]["rps"] for row in rows if row[0] == transport)
        print(f"ratio 64 clients / 1 client, {transport}: {many / one:.2f}")


if __name__ == "__main__":
    main()
