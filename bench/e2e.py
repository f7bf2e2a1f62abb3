"""End-to-end request rate and latency: dvsctl's queue protocol -> dvsd -> nodes.

Runs real dvsd processes (the same harness as the end-to-end tests) and
drives them through the SysV queues with the client library dvsctl uses, from
1 and from 64 concurrent client processes, for a single-node request and an
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


def run_client(
    keys: tuple[int, int], destinations, count: int, start_at: float
) -> tuple[float, float, list[float]]:
    """One client process: ``count`` requests one after another, like dvsctl."""
    queues = ClientQueues(*keys)
    while time.time() < start_at:  # every client starts at the same moment
        time.sleep(0.001)
    latencies = []
    began = time.time()
    for _ in range(count):
        message = ClientMessage(
            Op.REQUEST,
            queues.client,
            queues.new_cseq(),
            rqst_type=RequestType.DVSNODES,
            destinations=destinations,
        )
        sent = time.perf_counter()
        result = msgpack.unpackb(queues.exchange(message, 30.0))
        latencies.append(time.perf_counter() - sent)
        if result["missing"] or result["error"]:
            raise RuntimeError(f"request failed: {result}")
    return began, time.time(), latencies


def measure(node: Node, destinations, clients: int, requests: int) -> dict[str, float]:
    """Requests per second and latency with ``clients`` client processes.

    Each client is its own process (as each dvsctl is), so the figures are
    the daemon's, not one Python process's GIL.
    """
    per_client = max(1, requests // clients)
    keys = (node.request_key, node.reply_key)
    start_at = time.time() + 2.0 + clients * 0.05  # time for the processes to start
    with concurrent.futures.ProcessPoolExecutor(max_workers=clients) as pool:
        runs = list(
            pool.map(
                run_client,
                [keys] * clients,
                [destinations] * clients,
                [per_client] * clients,
                [start_at] * clients,
            )
        )
    elapsed = max(end for _, end, _ in runs) - min(begin for begin, _, _ in runs)
    latencies = sorted(value for _, _, chunk in runs for value in chunk)
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
