"""The dvsctl <-> dvsd queue protocol, on real SysV queues."""

from __future__ import annotations

import os
import time

import msgpack
import pytest
import sysv_ipc
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from tests.e2e.harness import free_queue_keys, remove_queue

from dvsd.transport.msgq import (
    READ_GRACE,
    REPLY_LIFETIME,
    ClientMessage,
    ClientQueues,
    DaemonQueues,
    MsgqError,
    Op,
    Reassembler,
    decode_client_message,
    encode_client_message,
    reply_type_for,
    split_reply,
)


@given(payload=st.binary(max_size=40_000), limit=st.integers(16, 9000))
def test_split_and_reassemble(payload, limit):
    chunks = split_reply(99, payload, limit)
    assert all(len(chunk) <= limit for chunk in chunks)
    assembler = Reassembler(99)
    results = [assembler.feed(chunk) for chunk in reversed(chunks)]
    assert results[-1] == payload
    assert all(result is None for result in results[:-1])


def test_chunks_of_another_request_are_ignored():
    assembler = Reassembler(5)
    (stale,) = split_reply(4, b"old", 100)
    assert assembler.feed(stale) is None
    assert assembler.feed(b"xx") is None
    (fresh,) = split_reply(5, b"new", 100)
    assert assembler.feed(fresh) == b"new"


def test_client_message_round_trip():
    message = ClientMessage(
        Op.REQUEST,
        client=1234,
        cseq=9,
        reply_type=1234 | 3 << 22,
        rqst_type=2,
        destinations=[1, 2],
        params={"a": b"\x00"},
        timeout=2.5,
        sent_at=1_700_000_000.25,
    )
    assert decode_client_message(encode_client_message(message)) == message


def test_a_message_without_its_sending_time_is_of_unknown_age():
    # as an older dvsctl sends it
    raw = msgpack.packb({"op": "request", "client": 5, "cseq": 1, "rqst_type": 2})
    message = decode_client_message(raw)
    assert message.sent_at is None
    assert message.age(now=time.time()) == 0.0
    sent = ClientMessage(Op.STATUS, 5, 1, sent_at=1000.0)
    assert sent.age(now=1012.5) == 12.5
    assert sent.age(now=990.0) == 0.0  # the clock was set back meanwhile


@pytest.mark.parametrize("sent_at", [float("inf"), float("nan"), "now", True])
def test_a_sending_time_that_is_no_time_is_refused_with_an_answer(sent_at):
    raw = msgpack.packb(
        {"op": "request", "client": 5, "cseq": 1, "rqst_type": 2, "sent_at": sent_at}
    )
    with pytest.raises(MsgqError, match="sent_at must be") as caught:
        decode_client_message(raw)
    assert caught.value.answer_to == (5, 5, 1)


@pytest.mark.parametrize(
    ("raw", "sentence"),
    [
        (b"\xc1", "not valid MessagePack"),
        (msgpack.packb([1]), "must be a map"),
        (msgpack.packb({"op": "fly", "client": 1, "cseq": 1}), "unknown op"),
        (msgpack.packb({"op": "request", "client": -1, "cseq": 1}), "client must be"),
        (msgpack.packb({"op": "request", "client": 5, "cseq": 1}), "rqst_type must be"),
        (
            msgpack.packb({"op": "request", "client": 5, "cseq": 1, "reply_type": 6}),
            "does not belong to client 5",
        ),
        (
            msgpack.packb(
                {"op": "request", "client": 5, "cseq": 1, "rqst_type": 2, "timeout": 0}
            ),
            "timeout must be a number of seconds in",
        ),
        (
            msgpack.packb(
                {
                    "op": "request",
                    "client": 5,
                    "cseq": 1,
                    "rqst_type": 2,
                    "destinations": ["x"],
                }
            ),
            "destinations must be",
        ),
    ],
)
def test_bad_client_messages_are_named(raw, sentence):
    with pytest.raises(MsgqError, match=sentence):
        decode_client_message(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "FormatError"),  # the one byte MessagePack never uses
        (b"\x91" * 5000, "StackError"),  # arrays nested 5000 deep
    ],
)
def test_invalid_messagepack_always_names_the_error(raw, reason):
    # msgpack raises some errors with an empty message: the class must show
    with pytest.raises(MsgqError, match=f"not valid MessagePack: .*{reason}"):
        decode_client_message(raw)


@pytest.fixture
def queues():
    request_key, reply_key = free_queue_keys()
    daemon_queues = DaemonQueues(request_key, reply_key)
    yield daemon_queues
    remove_queue(request_key)
    remove_queue(reply_key)


async def test_reply_for_a_dead_client_is_dropped_without_blocking(queues):
    # a pid that is certainly not running: a child we started and reaped
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    big = os.urandom(60_000)  # far more than the queue holds (16 KiB here)
    with trio.fail_after(5):
        delivered = await queues.deliver(pid, pid, 1, big)
    assert not delivered
    assert queues.replies.current_messages == 0  # the chunks it had queued are gone


def read_reply(queues, client: int, cseq: int, pause: float = 0.0) -> bytes:
    """Block like dvsctl until reply ``cseq`` is whole; ``pause`` before each chunk."""
    assembler = Reassembler(cseq)
    while True:
        time.sleep(pause)
        chunk, _ = queues.replies.receive(type=client)
        whole = assembler.feed(chunk)
        if whole is not None:
            return whole


async def test_reply_waits_for_a_live_slow_reader(queues):
    payload = os.urandom(100_000)
    client = os.getpid()
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await trio.to_thread.run_sync(read_reply, queues, client, 7))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        with trio.fail_after(10):
            assert await queues.deliver(client, client, 7, payload)
    assert received == [payload]


async def test_wake_unblocks_the_receiving_thread(queues):
    async with trio.open_nursery() as nursery:
        results = []

        async def receive():
            results.append(await trio.to_thread.run_sync(queues.receive_blocking))

        nursery.start_soon(receive)
        await trio.sleep(0)  # let the thread start; wake works either way
        queues.wake()
    assert results == [None]


def test_queue_permissions_follow_config(queues):
    assert queues.requests.mode & 0o777 == 0o660
    assert isinstance(queues.requests, sysv_ipc.MessageQueue)


async def test_only_our_own_wake_stops_the_reader(queues):
    # anyone may put a type-2 message on the queue; it must not stop dvsd
    queues.requests.send(b"", type=2)
    queues.requests.send(b"junk", type=9)
    queues.requests.send(b"hello", type=1)
    data = await trio.to_thread.run_sync(queues.receive_blocking)
    assert data == b"hello"
    assert queues.requests.current_messages == 0  # the stray ones were read
    queues.wake()
    assert await trio.to_thread.run_sync(queues.receive_blocking) is None


async def test_abandoned_replies_are_swept(queues, monkeypatch):
    import dvsd.transport.msgq as msgq

    client = os.getpid()  # alive, but never reads
    assert await queues.deliver(client, client, 1, b"x" * 5000)
    assert queues.replies.current_messages == 1
    assert queues.sweep() == 0  # not abandoned yet
    real_monotonic = time.monotonic
    later = msgq.REPLY_LIFETIME + 1
    monkeypatch.setattr(msgq.time, "monotonic", lambda: real_monotonic() + later)
    assert queues.sweep() == 1
    assert queues.replies.current_messages == 0


def fill(queue: sysv_ipc.MessageQueue, mtype: int) -> None:
    """Send ``mtype`` messages until not one more byte fits."""
    size = 4000
    while size:
        try:
            queue.send(b"z" * size, block=False, type=mtype)
        except sysv_ipc.BusyError:
            size //= 2


async def test_a_full_queue_of_abandoned_replies_does_not_block_others(queues):
    squatter = 1 | 5 << 22  # pid 1 is alive and never reads
    fill(queues.replies, squatter)
    queues.pending[squatter] = time.monotonic() - REPLY_LIFETIME - 1  # abandoned
    client = os.getpid()
    with trio.fail_after(5):
        assert await queues.deliver(client, client, 3, b"answer")
    chunk, _ = queues.replies.receive(type=client)
    assert Reassembler(3).feed(chunk) == b"answer"


async def test_dvsctl_stamps_each_message_with_the_time_it_is_sent(queues):
    client = ClientQueues(queues.requests.key, queues.replies.key)
    before = time.time()
    async with trio.open_nursery() as nursery:
        answers = []

        async def ask() -> None:
            message = ClientMessage(Op.STATUS, client.client, 7)
            answers.append(await trio.to_thread.run_sync(client.exchange, message, 5))

        nursery.start_soon(ask)
        with trio.fail_after(5):
            message = decode_client_message(
                await trio.to_thread.run_sync(queues.receive_blocking)
            )
            assert before <= message.sent_at <= time.time()
            await queues.deliver(message.client, message.reply_type, 7, b"ok")
    assert answers == [b"ok"]


async def test_a_client_that_does_not_read_holds_the_queue_only_briefly(queues):
    squatter = 1 | 6 << 22  # pid 1 is alive and never reads
    outcome = {}

    async def squat() -> None:
        big = os.urandom(100_000)  # far more than the queue holds
        outcome["squatter"] = await queues.deliver(1, squatter, 1, big)

    client = os.getpid()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(squat)
        # The squatter fills the queue and waits for room, holding the turn.
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(REPLY_LIFETIME - 1):  # before the sweep would
            assert await queues.deliver(client, client, 3, b"answer")
    assert outcome == {"squatter": False}
    assert 1 in queues.not_reading
    chunk, _ = queues.replies.receive(block=False, type=client)
    assert Reassembler(3).feed(chunk) == b"answer"
    assert queues.replies.current_messages == 0  # the squatter's chunks are gone


async def test_a_reader_that_keeps_reading_is_not_taken_for_a_non_reader(queues):
    payload = os.urandom(60_000)  # more than the queue holds
    client = os.getpid()
    received: list[bytes] = []

    async def slow_reader() -> None:
        # slower than dvsd sends, so the queue fills, but never stopping
        reply = await trio.to_thread.run_sync(
            read_reply, queues, client, 8, READ_GRACE / 3
        )
        received.append(reply)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_reader)
        with trio.fail_after(20):
            assert await queues.deliver(client, client, 8, payload)
    assert received == [payload]
    assert client not in queues.not_reading


def test_a_second_daemon_on_the_same_keys_is_refused(queues):
    from dvsd.transport.msgq import QueuesTaken

    with pytest.raises(QueuesTaken, match=r"another dvsd \(pid \d+\) already serves"):
        DaemonQueues(queues.requests.key, queues.replies.key)


def test_dvsctl_knows_whether_a_dvsd_serves_the_queues(queues):
    from dvsd.transport.msgq import serving_daemon

    key = queues.requests.key
    assert serving_daemon(key) == os.getpid()
    queues._lock.close()  # as when the dvsd process ends, however it ends
    assert serving_daemon(key) is None
    assert serving_daemon(key + 12345) is None  # no lock file at all


def test_non_finite_timeouts_are_refused():
    for bad in (float("inf"), float("nan"), 1e12):
        raw = msgpack.packb(
            {"op": "request", "client": 5, "cseq": 1, "rqst_type": 2, "timeout": bad}
        )
        with pytest.raises(MsgqError, match="timeout must be") as caught:
            decode_client_message(raw)
        # the sender is known, so dvsd can answer it with the error
        assert caught.value.answer_to == (5, 5, 1)


def test_reply_types_beyond_a_c_int_are_refused_with_an_answer():
    # sysv_ipc takes a message type as a C int: 512 << 22 is 2**31
    raw = msgpack.packb(
        {"op": "request", "client": 5, "cseq": 1, "rqst_type": 2}
        | {"reply_type": 5 | 512 << 22}
    )
    with pytest.raises(MsgqError, match=r"reply_type .* must be below 2\*\*31"):
        decode_client_message(raw)
    try:
        decode_client_message(raw)
    except MsgqError as error:
        # answered under the client's pid, the one reply type that fits
        assert error.answer_to == (5, 5, 1)
    highest = ClientMessage(Op.REQUEST, 5, 1, reply_type=5 | 511 << 22, rqst_type=2)
    assert decode_client_message(encode_client_message(highest)) == highest


def test_a_client_cannot_build_a_reply_type_beyond_a_c_int():
    assert reply_type_for(1234, 0) == 1234
    assert reply_type_for(1234, 511) == 1234 | 511 << 22
    with pytest.raises(ValueError, match=r"at most 511 requests in flight"):
        reply_type_for(1234, 512)
    message = ClientMessage(Op.REQUEST, 1234, 1, reply_type=1234 | 512 << 22)
    with pytest.raises(ValueError, match=r"reply_type"):
        encode_client_message(message)
