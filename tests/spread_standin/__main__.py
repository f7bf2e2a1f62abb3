"""Run the stand-in: ``python -m tests.spread_standin --port P --name localhost``.

Prints ``ready <port>`` on stdout once both session listeners (and the control
socket, if asked for) accept connections; logs go to stderr. SIGTERM or SIGINT
stops it and removes its socket files.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from .server import StandinServer, configure_logging
from .wire import MAX_PROC_NAME, ByteOrder, legal_name_bytes


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.spread_standin",
        description="Stand-in Spread 4.0 daemon for tests (one process, one daemon).",
    )
    parser.add_argument(
        "--port",
        type=int,
        required=True,
        help="TCP port on 127.0.0.1 and unix socket /tmp/<port>; 0 picks a free one",
    )
    parser.add_argument("--name", default="localhost", help="daemon name (1..19 chars)")
    parser.add_argument(
        "--control", help="unix socket path for the JSON control channel"
    )
    parser.add_argument(
        "--byte-order",
        choices=["little", "big"],
        default="little",
        help="byte order the stand-in writes in (real x86 daemons: little)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port < 32768:
        parser.error(
            f"--port {args.port} must be in 0..32767 (Spread keeps it in int16)"
        )
    name = args.name.encode()
    if not (1 <= len(name) < MAX_PROC_NAME and legal_name_bytes(name)):
        parser.error(f"--name {args.name!r} must be 1..19 characters from '$' to '~'")
    return args


async def _main(args: argparse.Namespace) -> None:
    server = StandinServer(
        port=args.port,
        daemon_name=args.name.encode(),
        control_path=args.control,
        order=ByteOrder.LITTLE if args.byte_order == "little" else ByteOrder.BIG,
    )

    def ready(port: int) -> None:
        print(f"ready {port}", flush=True)

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(server.serve, ready)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging()
    try:
        trio.run(_main, args)
    except OSError as error:
        print(f"spread_standin: cannot listen: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
