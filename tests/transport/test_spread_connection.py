"""The Trio Spread client against a daemon: the stand-in and, where installed,
a real Spread 4.0.0 (fixture ``spread_daemon`` from tests/conftest.py)."""

from __future__ import annotations

import itertools
import os
import signal

import pytest
import trio
import trio.testing

from dvsd.transport.spread import (
    MAX_SAFE_PAYLOAD,
    ConnectionLost,
    ConnectTimeout,
    CouldNotConnect,
    IllegalGroup,
    IllegalName,
    IllegalSpreadAddress,
    MembershipMessage,
    MembershipReason,
    MessageTooLong,
    RegularMessage,
    RejectNotUnique,
    ResultCode,
    SelfLeave,
    ServiceType,
    SessionClosed,
    SpreadConnection,
    connect,
    parse_address,
)

#: Seconds any single wait may take. A freshly started real daemon holds
#: client messages for a few seconds while it forms its first membership.
WAIT = 20

_names = itertools.count()


def unique(prefix: str) -> str:
    """A private or group name unique within this test run (<= 10 chars)."""
    return f"{prefix}{os.getpid() % 1000}.{next(_names)}"[:10]


async def receive_until(conn: SpreadConnection, kind: type, **fields):
    """The next event of ``kind`` whose attributes match ``fields``; others skipped."""
    with trio.fail_after(WAIT):
        while True:
            event = await conn.receive()
            if isinstance(event, kind) and all(
                getattr(event, name) == value for name, value in fields.items()
            ):
                return event


async def joined(conn: SpreadConnection, group: str) -> MembershipMessage:
    """Join ``group`` and wait for the daemon's view that shows us joining."""
    await conn.join(group)
    return await receive_until(
        conn, MembershipMessage, group=group, changed_member=conn.private_group
    )


@pytest.fixture
async def open_session(spread_daemon):
    """Factory: open sessions to the daemon; all are closed at teardown."""
    sessions: list[SpreadConnection] = []

    async def open_one(prefix: str = "n", *, unix: bool = False, **kwargs):
        address = spread_daemon.unix_address if unix else spread_daemon.tcp_address
        with trio.fail_after(WAIT):
            conn = await connect(address, name=unique(prefix), **kwargs)
        sessions.append(conn)
        return conn

    yield open_one
    for conn in sessions:
        await conn.aclose()


async def test_connect_over_tcp_and_unix_socket(spread_daemon, open_session) -> None:
    over_tcp = await open_session("tcp")
    over_unix = await open_session("unix", unix=True)
    for conn in (over_tcp, over_unix):
        assert conn.private_group == f"#{conn.private_name}#{spread_daemon.daemon_name}"
        assert conn.daemon_name == spread_daemon.daemon_name
        assert conn.daemon_version >= (4, 0, 0)
    assert over_tcp.address.host == "127.0.0.1"
    assert over_unix.address.host is None


async def test_join_leave_disconnect_memberships(open_session) -> None:
    group = unique("grp")
    first = await open_session("a")
    second = await open_session("b", unix=True)

    view1 = await joined(first, group)
    assert view1.members == (first.private_group,)
    assert view1.reason is MembershipReason.JOIN
    assert view1.vs_sets == ((first.private_group,),)
    assert view1.my_vs_set == (first.private_group,)
    assert view1.group_id.index == 1

    view2 = await joined(second, group)
    seen_by_first = await receive_until(first, MembershipMessage, group=group)
    assert seen_by_first == view2
    assert view2.members == tuple(sorted((first.private_group, second.private_group)))
    assert view2.changed_member == second.private_group
    assert view2.group_id.index == view1.group_id.index + 1
    assert view2.group_id.proc_id == view1.group_id.proc_id

    await first.leave(group)
    assert await receive_until(first, SelfLeave) == SelfLeave(group)
    view3 = await receive_until(second, MembershipMessage, group=group)
    assert view3.reason is MembershipReason.LEAVE
    assert view3.members == (second.private_group,)
    assert view3.changed_member == first.private_group
    assert view3.group_id.index == view2.group_id.index + 1

    view4 = await joined(first, group)
    assert view4.group_id.index == view3.group_id.index + 1
    assert await receive_until(second, MembershipMessage, group=group) == view4

    await second.aclose()
    view5 = await receive_until(first, MembershipMessage, group=group)
    assert view5.reason is MembershipReason.DISCONNECT
    assert view5.members == (first.private_group,)
    assert view5.changed_member == second.private_group
    assert view5.group_id.index == view4.group_id.index + 1


async def test_safe_multicast_one_total_order_across_two_senders(open_session) -> None:
    group = unique("ord")
    senders = [await open_session("s"), await open_session("t", unix=True)]
    observer = await open_session("o")
    for conn in [*senders, observer]:
        await joined(conn, group)
    # Each join above was confirmed before the next began, and sends start
    # only now, so every data message is ordered after all three joins.

    per_sender = 40

    async def send_all(conn: SpreadConnection) -> None:
        for number in range(per_sender):
            payload = f"{conn.private_group}/{number}".encode()
            await conn.multicast(ServiceType.SAFE, group, payload, message_type=number)

    async def collect(conn: SpreadConnection, into: list[bytes]) -> None:
        while len(into) < 2 * per_sender:
            event = await conn.receive()
            if isinstance(event, RegularMessage):
                assert event.service_type is ServiceType.SAFE
                assert event.groups == (group,)
                into.append(event.payload)

    orders: list[list[bytes]] = [[], [], []]
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for conn, into in zip([*senders, observer], orders, strict=True):
                nursery.start_soon(collect, conn, into)
            for conn in senders:
                nursery.start_soon(send_all, conn)

    assert orders[0] == orders[1] == orders[2]
    for conn in senders:
        own = [p for p in orders[0] if p.startswith(conn.private_group.encode() + b"/")]
        assert own == [f"{conn.private_group}/{n}".encode() for n in range(per_sender)]


async def test_private_group_unicast(open_session) -> None:
    sender = await open_session("uni")
    target = await open_session("dst", unix=True)
    await sender.multicast(
        ServiceType.RELIABLE, target.private_group, b"just you", message_type=-7
    )
    event = await receive_until(target, RegularMessage)
    assert event == RegularMessage(
        sender.private_group,
        (target.private_group,),
        ServiceType.RELIABLE,
        -7,
        b"just you",
        event.sender_byteorder,
        False,
    )
    # The sender was no destination, so its next message is the echo of a
    # message to its own private group, not a copy of the unicast.
    await sender.multicast(ServiceType.FIFO, [sender.private_group], b"me")
    echo = await receive_until(sender, RegularMessage)
    assert echo.payload == b"me"


async def test_self_discard(open_session) -> None:
    group = unique("sd")
    sender = await open_session("sd")
    other = await open_session("od")
    await joined(sender, group)
    await joined(other, group)
    await sender.multicast(ServiceType.AGREED, group, b"not back", self_discard=True)
    await sender.multicast(ServiceType.AGREED, group, b"back")

    first_at_sender = await receive_until(sender, RegularMessage)
    assert first_at_sender.payload == b"back"
    discarded = await receive_until(other, RegularMessage)
    assert (discarded.payload, discarded.self_discard) == (b"not back", True)
    assert (await receive_until(other, RegularMessage)).payload == b"back"


async def test_membership_notifications_off(open_session) -> None:
    group = unique("quiet")
    quiet = await open_session("q", membership=False)
    await quiet.join(group)
    await quiet.multicast(ServiceType.SAFE, group, b"data only")
    with trio.fail_after(WAIT):
        event = await quiet.receive()
    assert isinstance(event, RegularMessage)
    assert event.payload == b"data only"


async def test_name_not_unique_is_rejected(spread_daemon, open_session) -> None:
    first = await open_session("dup")
    with pytest.raises(RejectNotUnique) as caught:
        with trio.fail_after(WAIT):
            await connect(spread_daemon.tcp_address, name=first.private_name)
    assert caught.value.code == ResultCode.REJECT_NOT_UNIQUE == -6
    assert "already uses the private name" in str(caught.value)
    # The first session is unaffected.
    await first.multicast(ServiceType.FIFO, first.private_group, b"still here")
    assert (await receive_until(first, RegularMessage)).payload == b"still here"


@pytest.mark.parametrize("bad", ["eleven_char", "two words", "#hash", "bang!"])
async def test_illegal_private_name_refused_before_connecting(spread_daemon, bad):
    with pytest.raises(IllegalName, match="private name"):
        await connect(spread_daemon.tcp_address, name=bad)


async def test_illegal_groups_refused_client_side(open_session) -> None:
    conn = await open_session("ig")
    for bad in ["", "x" * 32, "with space", "#private"]:
        with pytest.raises(IllegalGroup):
            await conn.join(bad)
    with pytest.raises(IllegalGroup):
        await conn.multicast(ServiceType.SAFE, [], b"nobody")
    with pytest.raises(IllegalGroup):
        await conn.multicast(ServiceType.SAFE, "bad group", b"")
    await conn.multicast(ServiceType.SAFE, conn.private_group, b"ok")
    assert (await receive_until(conn, RegularMessage)).payload == b"ok"


async def test_oversize_refused_before_sending(open_session) -> None:
    group = unique("big")
    conn = await open_session("big")
    await joined(conn, group)
    with pytest.raises(MessageTooLong, match="143551"):
        await conn.multicast(ServiceType.SAFE, group, bytes(MAX_SAFE_PAYLOAD + 1))
    with pytest.raises(MessageTooLong):
        await conn.multicast(ServiceType.SAFE, [group, group], bytes(MAX_SAFE_PAYLOAD))

    largest = bytes(range(256)) * (MAX_SAFE_PAYLOAD // 256) + b"\x01" * (
        MAX_SAFE_PAYLOAD % 256
    )
    await conn.multicast(ServiceType.SAFE, group, largest, message_type=3)
    echo = await receive_until(conn, RegularMessage)
    assert (len(echo.payload), echo.payload == largest) == (MAX_SAFE_PAYLOAD, True)
    await conn.multicast(ServiceType.SAFE, group, b"after")
    assert (await receive_until(conn, RegularMessage)).payload == b"after"


async def test_cancelled_concurrent_multicasts_leave_session_usable(
    spread_daemon, open_session
):
    group = unique("cx")
    conn = await open_session("cx")
    await joined(conn, group)
    tasks, size = 100, 140_000
    received: list[int] = []

    def payload(number: int) -> bytes:
        return number.to_bytes(4, "big") * (size // 4)

    async def reader() -> None:
        async for event in conn:
            if isinstance(event, RegularMessage):
                # Every message that arrives is whole and intact.
                number = int.from_bytes(event.payload[:4], "big")
                assert event.payload == payload(number)
                received.append(number)
                if event.message_type == 999:
                    return

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            # A stopped daemon reads nothing, so 14 MB of sends fill the
            # socket and the task holding the send lock blocks part-way
            # through a message; that is the moment we cancel.
            os.kill(spread_daemon.pid, signal.SIGSTOP)
            try:
                async with trio.open_nursery() as senders:
                    for number in range(tasks):
                        senders.start_soon(
                            conn.multicast, ServiceType.SAFE, group, payload(number)
                        )
                    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                    senders.cancel_scope.cancel()
                    # The interrupted message is still being sent (shielded);
                    # it can only finish once the daemon reads again.
                    os.kill(spread_daemon.pid, signal.SIGCONT)
            finally:
                os.kill(spread_daemon.pid, signal.SIGCONT)
            # The session must still work: this one comes back intact.
            await conn.multicast(
                ServiceType.SAFE, group, payload(999), message_type=999
            )
    assert received[-1] == 999
    assert 0 < len(received) - 1 < tasks, "no send was cut off by the cancellation"


async def test_receive_is_single_consumer(open_session) -> None:
    conn = await open_session("busy")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await conn.receive()
        nursery.cancel_scope.cancel()


async def test_iteration_ends_on_aclose(open_session) -> None:
    conn = await open_session("it")
    seen: list[object] = []

    async def iterate() -> None:
        async for event in conn:
            seen.append(event)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(iterate)
            await trio.testing.wait_all_tasks_blocked()
            await conn.aclose()
    await conn.aclose()  # idempotent
    assert seen == []
    with pytest.raises(SessionClosed):
        await conn.multicast(ServiceType.SAFE, conn.private_group, b"")


async def test_daemon_killed_gives_connection_lost(spread_daemon, open_session):
    conn = await open_session("kill")
    await joined(conn, unique("kg"))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def expect_lost() -> None:
                with pytest.raises(ConnectionLost):
                    while True:
                        await conn.receive()

            nursery.start_soon(expect_lost)
            await trio.testing.wait_all_tasks_blocked()
            await trio.to_thread.run_sync(spread_daemon.stop)
    with pytest.raises(ConnectionLost):
        await conn.multicast(ServiceType.SAFE, conn.private_group, b"gone")
    assert conn.closed


async def free_port() -> int:
    """A TCP port below 32768 (libspread's limit) with no listener and no
    unix socket ``/tmp/<port>``."""
    for port in range(31990, 31000, -1):
        probe = trio.socket.socket()
        try:
            await probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            probe.close()
        if not os.path.exists(f"/tmp/{port}"):
            return port
    raise RuntimeError("no free port in 31001..31990")


async def test_could_not_connect() -> None:
    port = await free_port()
    with pytest.raises(CouldNotConnect, match="could not connect"):
        await connect(f"{port}@127.0.0.1", name="nobody", timeout=WAIT)
    with pytest.raises(CouldNotConnect, match=f"/tmp/{port}"):
        await connect(str(port), name="nobody", timeout=WAIT)


async def test_connect_timeout_when_daemon_is_stopped(spread_daemon) -> None:
    # A stopped daemon still has its listening socket, so the TCP connect
    # succeeds and only the handshake hangs.
    os.kill(spread_daemon.pid, signal.SIGSTOP)
    try:
        with trio.fail_after(WAIT):
            with pytest.raises(ConnectTimeout, match="within 0.5 s"):
                await connect(spread_daemon.tcp_address, name="stopped", timeout=0.5)
    finally:
        os.kill(spread_daemon.pid, signal.SIGCONT)


async def test_silent_close_during_handshake_is_connection_lost() -> None:
    # What a daemon does when the connect message comes after its 1-second
    # window: it closes without a reject byte.
    async def close_at_once(stream: trio.SocketStream) -> None:
        await stream.aclose()

    port = await free_port()
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, close_at_once, listeners)
        with trio.fail_after(WAIT), pytest.raises(ConnectionLost, match="handshake"):
            await connect(f"{port}@127.0.0.1", name="late")
        nursery.cancel_scope.cancel()


def test_address_forms() -> None:
    assert parse_address("").port == 4803
    assert parse_address("4803").unix_path == "/tmp/4803"
    assert parse_address("4803@localhost").host == "localhost"
    for bad in ["4803abc", "48 03", "x@host", "4803@", "40000", "0"]:
        with pytest.raises(IllegalSpreadAddress):
            parse_address(bad)
