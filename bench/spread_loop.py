"""Loop-back throughput of the native Spread client, next to the C ``spflooder``.

Connects to a running daemon (this script starts none), joins a private
bench group and multicasts ``--count`` messages of ``--size`` bytes to it,
keeping at most ``--window`` of them outstanding; a message counts when its
own copy comes back. Prints messages per second for SAFE (the level dvsd
uses) and for RELIABLE. If ``spflooder`` is on PATH it is run against the
same daemon with the same count and size; spflooder sends RELIABLE with a
window of 200 own messages, so the RELIABLE figure is the like-for-like one
for the ratio.

    python bench/spread_loop.py --daemon 4803@127.0.0.1
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import trio

from dvsd.transport.spread import (
    MembershipMessage,
    RegularMessage,
    ServiceType,
    connect,
)

#: spflooder's own window: it starts reading once 200 messages are out.
SPFLOODER_WINDOW = 200


async def run_ours(
    daemon: str, service: ServiceType, count: int, size: int, window: int, tag: str
) -> float:
    """Messages per second delivered back to the sender."""
    conn = await connect(daemon, name=f"bl{os.getpid() % 10000}{tag}")
    group = f"bench.{os.getpid()}.{tag}"
    try:
        await conn.join(group)
        with trio.fail_after(30):
            async for event in conn:
                if (
                    isinstance(event, MembershipMessage)
                    and event.changed_member == conn.private_group
                ):
                    break
        payload = bytes(size)
        credits = trio.Semaphore(window)
        started = time.perf_counter()

        async def sender() -> None:
            for _ in range(count):
                await credits.acquire()
                await conn.multicast(service, group, payload)

        async def receiver() -> None:
            delivered = 0
            while delivered < count:
                event = await conn.receive()
                if isinstance(event, RegularMessage):
                    delivered += 1
                    credits.release()

        with trio.fail_after(max(60.0, count / 500)):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver)
                nursery.start_soon(sender)
        return count / (time.perf_counter() - started)
    finally:
        await conn.aclose()


async def run_spflooder(binary: str, daemon: str, count: int, size: int) -> float:
    """Messages per second of the C flooder (whole process, connect included)."""
    name = f"fl{os.getpid() % 100000}"
    command = [binary, "-s", daemon, "-m", str(count), "-b", str(size), "-u", name]
    started = time.perf_counter()
    with trio.fail_after(max(120.0, count / 200)):
        result = await trio.run_process(command, capture_stdout=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or b"completed multicast" not in result.stdout:
        raise RuntimeError(
            f"spflooder failed: {result.stdout.decode(errors='replace')}"
        )
    return count / elapsed


async def main(arguments: argparse.Namespace) -> int:
    rows: list[tuple[str, float]] = []
    for repeat in range(arguments.repeat):
        for service in (ServiceType.SAFE, ServiceType.RELIABLE):
            rate = await run_ours(
                arguments.daemon,
                service,
                arguments.count,
                arguments.size,
                arguments.window,
                f"{service.name[0].lower()}{repeat}",
            )
            rows.append((f"python {service.name}", rate))
            print(f"python  {service.name:<8} run {repeat + 1}: {rate:10.0f} msg/s")
        spflooder = shutil.which("spflooder")
        if spflooder and not arguments.no_spflooder:
            rate = await run_spflooder(
                spflooder, arguments.daemon, arguments.count, arguments.size
            )
            rows.append(("spflooder RELIABLE", rate))
            print(f"spflooder RELIABLE run {repeat + 1}: {rate:10.0f} msg/s")

    best = {}
    for label, rate in rows:
        best[label] = max(rate, best.get(label, 0.0))
    print()
    print(
        f"{arguments.count} messages of {arguments.size} bytes, window"
        f" {arguments.window}, best of {arguments.repeat}, daemon {arguments.daemon}"
    )
    for label, rate in best.items():
        print(f"  {label:<20} {rate:10.0f} msg/s")
    if "spflooder RELIABLE" in best:
        c_rate = best["spflooder RELIABLE"]
        print(f"  ratio ours/C, RELIABLE: {best['python RELIABLE'] / c_rate:.2f}")
        print(f"  ratio ours/C, SAFE vs C RELIABLE: {best['python SAFE'] / c_rate:.2f}")
    else:
        print("  spflooder not on PATH: no C figure")
    return 0


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--daemon", required=True, help="daemon address, '<port>@<host>' or '<port>'"
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--window", type=int, default=SPFLOODER_WINDOW)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-spflooder", action="store_true")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.window <= 900:
        # The daemon kills a session with 1000 messages queued for it.
        parser.error("--window must be 1..900")
    return arguments


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_arguments(sys.argv[1:])))
