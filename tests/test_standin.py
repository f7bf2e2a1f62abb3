"""Byte-level checks of the Spread stand-in against the reference captures.

Every test here that takes ``daemon`` runs against the stand-in and, when one
is installed, against a private real Spread 4.0 daemon, with the same raw
bytes: where the reference (/work/shared/reference/spread-protocol.md §7) has
a capture, the expected bytes are transcribed from it. Only the membership
time inside group ids differs between runs; tests read it from the first
membership message and then expect it everywhere it must repeat.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import threading
import time

import pytest
from tests.spread_standin.control import StandinControlError
from tests.spread_standin.launch import (
    NO_DAEMON_REASON,
    find_spread_binary,
    start_real_daemon,
    start_standin,
)
from tests.spread_standin.rawclient import AUTH_NULL, RawSession, client_message, slot

LE_MARKER_HINT = bytes.fromhex("80000080")
LOOPBACK = bytes.fromhex("0100007f")  # 127.0.0.1 as an LE int
SAFE, AGREED, SELF_DISCARD = 0x20, 0x10, 0x40
JOIN, LEAVE, KILL = 0x00010000, 0x00020000, 0x00040000
REG_MEMB, TRANSITION = 0x1000, 0x2000
BY_JOIN, BY_LEAVE, BY_DISCONNECT, BY_NETWORK = 0x100, 0x200, 0x400, 0x800

_unique = itertools.count()


def hexb(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def fresh(prefix: str) -> bytes:
    """A private or group name no other test on this daemon uses."""
    return f"{prefix}{next(_unique)}".encode()


@pytest.fixture(scope="module", params=["standin", "real"])
def daemon(request, tmp_path_factory):
    """One daemon of each kind for the whole module (a real one takes ~7 s)."""
    workdir = tmp_path_factory.mktemp(f"spread-{request.param}")
    if request.param == "standin":
        started = start_standin(workdir)
    else:
        binary = find_spread_binary()
        if binary is None:
            pytest.skip(NO_DAEMON_REASON)
        started = start_real_daemon(workdir, binary)
    yield started
    started.stop()


@pytest.fixture
def connect(daemon):
    """Open handshaken sessions by name; all are closed at teardown."""
    opened: list[RawSession] = []

    def open_session(name: bytes, *, flags: int = 1, unix: bool = False) -> RawSession:
        address = daemon.unix_path if unix else ("127.0.0.1", daemon.port)
        session = RawSession.open(address, timeout=5.0)
        opened.append(session)
        reply = session.handshake(name, flags)
        assert session.private_group == b"#" + name + b"#localhost", reply
        return session

    yield open_session
    for session in opened:
        session.close()


def raw_connect(daemon, payload: bytes) -> RawSession:
    session = RawSession.open(("127.0.0.1", daemon.port), timeout=5.0)
    session.send(payload)
    return session


def membership(
    cause: int, group: bytes, members: list[bytes], gid: bytes, vs_sets, my_offset=0
) -> bytes:
    """Expected REG_MEMB bytes in the LE layout of reference §5.4 / §7d."""
    body = gid + struct.pack("<II", len(vs_sets), my_offset)
    for vs_set in vs_sets:
        body += struct.pack("<I", len(vs_set)) + b"".join(slot(m) for m in vs_set)
    head = struct.pack("<I", 0x80000080 | REG_MEMB | cause) + slot(group)
    head += struct.pack("<i", len(members)) + LE_MARKER_HINT
    head += struct.pack("<i", len(body))
    return head + b"".join(slot(m) for m in members) + body


def gid(memb_time: bytes, index: int, proc: bytes = LOOPBACK) -> bytes:
    return proc + memb_time + struct.pack("<I", index)


def assert_nothing_pending(session: RawSession) -> None:
    """Ping our own private group: the ping must be the next thing we read.

    This proves that nothing else was queued for the session (and that it is
    still alive) without waiting for a silence.
    """
    message = client_message(
        0x02, session.private_group, [session.private_group], fresh("ping")
    )
    session.send(message)
    assert session.recv_message().raw == message


# -- the fixture contract -------------------------------------------------


def test_spread_daemon_fixture_contract(spread_daemon):
    assert spread_daemon.kind in ("standin", "real")
    assert 0 < spread_daemon.port < 32768
    assert spread_daemon.tcp_address == f"{spread_daemon.port}@127.0.0.1"
    assert spread_daemon.unix_address == str(spread_daemon.port)
    assert spread_daemon.daemon_name == "localhost"
    os.kill(spread_daemon.pid, 0)  # alive
    for address in (("127.0.0.1", spread_daemon.port), f"/tmp/{spread_daemon.port}"):
        session = RawSession.open(address)
        assert session.handshake(fresh("fx")).startswith(b"\x05NULL \x01\x04\x00\x00")
        session.close()
    if spread_daemon.kind == "real":
        with pytest.raises(pytest.skip.Exception):
            spread_daemon.partition([["a"], ["b"]])
        with pytest.raises(pytest.skip.Exception):
            spread_daemon.merge()

    spread_daemon.stop()
    spread_daemon.stop()  # idempotent
    assert spread_daemon.process.poll() is not None
    assert not os.path.exists(f"/tmp/{spread_daemon.port}")


# -- §7: the worked example, byte for byte ---------------------------------


def test_reference_section_7_captures(daemon):
    """7a connect, 7b join, 7d/7e membership, 7c SAFE, 7g BE sender, 7f."""
    a = RawSession.open(("127.0.0.1", daemon.port))
    b = None
    try:
        # 7a: the connect exchange over TCP.
        connect_message = hexb("04 00 00 01 06 70 72 6f 62 65 41")
        a.send(connect_message)
        assert a.recv_exact(1) == hexb("05")
        assert a.recv_exact(5) == hexb("4e 55 4c 4c 20")
        a.send(hexb("4e 55 4c 4c") + bytes(86))
        assert a.recv_exact(1) == hexb("01")
        assert a.recv_exact(3) == hexb("04 00 00")
        assert a.recv_exact(1) == hexb("11")
        name_a = a.recv_exact(17)
        assert name_a == hexb("23 70 72 6f 62 65 41 23 6c 6f 63 61 6c 68 6f 73 74")
        a.private_group = name_a

        # 7b: A joins DVS; our bytes are the capture's 80 bytes.
        join = hexb(
            "80 00 01 80 23 70 72 6f 62 65 41 23 6c 6f 63 61"
            "6c 68 6f 73 74 00 00 00 00 00 00 00 00 00 00 00"
            "00 00 00 00 01 00 00 00 80 00 00 80 00 00 00 00"
            "44 56 53 00 00 00 00 00 00 00 00 00 00 00 00 00"
        ) + bytes(16)
        assert join == client_message(JOIN, name_a, [b"DVS"])
        a.send(join)

        # 7d: the joiner's membership message.
        first = a.recv_message().raw
        memb_time = first[48 + 32 + 4 : 48 + 32 + 8]
        expected_7d = (
            hexb("80 11 00 80")
            + slot(b"DVS")
            + hexb("01 00 00 00 80 00 00 80 38 00 00 00")
            + slot(name_a)
            + hexb("01 00 00 7f")
            + memb_time
            + hexb("01 00 00 00 01 00 00 00 00 00 00 00 01 00 00 00")
            + slot(name_a)
        )
        assert first == expected_7d
        (seconds,) = struct.unpack("<I", memb_time)
        assert abs(seconds - time.time()) < 24 * 3600, "membership time is Unix time"

        # 7e: B joins over the unix socket; both get the identical message.
        b = RawSession.open(daemon.unix_path)
        assert (
            b.handshake(b"probeB") == b"\x05NULL \x01\x04\x00\x00\x11#probeB#localhost"
        )
        b.join(b"DVS")
        expected_7e = membership(
            BY_JOIN,
            b"DVS",
            [b"#probeA#localhost", b"#probeB#localhost"],
            gid(memb_time, 2),
            [[b"#probeB#localhost"]],
        )
        assert expected_7e[:48] == hexb("80 11 00 80") + slot(b"DVS") + hexb(
            "02 00 00 00 80 00 00 80 38 00 00 00"
        )
        assert a.recv_message().raw == expected_7e
        assert b.recv_message().raw == expected_7e

        # 7c: SAFE "hello", message type 7; A gets its own copy, as does B.
        hello = (
            hexb(
                "a0 00 00 80 23 70 72 6f 62 65 41 23 6c 6f 63 61"
                "6c 68 6f 73 74 00 00 00 00 00 00 00 00 00 00 00"
                "00 00 00 00 01 00 00 00 80 07 00 80 05 00 00 00"
                "44 56 53 00 00 00 00 00 00 00 00 00 00 00 00 00"
            )
            + bytes(16)
            + b"hello"
        )
        a.send(hello)
        assert a.recv_message().raw == hello
        assert b.recv_message().raw == hello

        # 7g: B sends AGREED|SELF_DISCARD, type -2, big-endian without marker.
        be_message = (
            hexb("00 00 00 50")
            + slot(b"#probeB#localhost")
            + hexb("00 00 00 01 00 ff fe 00 00 00 00 04")
            + slot(b"DVS")
            + hexb("01 02 03 04")
        )
        b.send(be_message)
        assert a.recv_message().raw == (
            hexb("d0 00 00 80")
            + slot(b"#probeB#localhost")
            + hexb("01 00 00 00 00 ff fe 00 04 00 00 00")
            + slot(b"DVS")
            + hexb("01 02 03 04")
        )
        # B must not get its own copy: the next thing it reads is its ping.
        assert_nothing_pending(b)

        # 7f: A leaves: self-leave to A (§5.7), REG|LEAVE index 3 to B.
        a.send(
            hexb("80 00 02 80")
            + slot(name_a)
            + hexb("01 00 00 00 80 00 00 80 00 00 00 00")
            + slot(b"DVS")
        )
        assert a.recv_message().raw == hexb("80 02 00 80") + slot(b"DVS") + hexb(
            "00 00 00 00 80 00 00 80 00 00 00 00"
        )
        assert b.recv_message().raw == membership(
            BY_LEAVE,
            b"DVS",
            [b"#probeB#localhost"],
            gid(memb_time, 3),
            [[b"#probeA#localhost"]],
        )
        a.join(b"DVS")
        rejoin = membership(
            BY_JOIN,
            b"DVS",
            [b"#probeA#localhost", b"#probeB#localhost"],
            gid(memb_time, 4),
            [[b"#probeA#localhost"]],
        )
        assert a.recv_message().raw == rejoin
        assert b.recv_message().raw == rejoin

        b.send(
            hexb("80 00 04 80")
            + slot(b"#probeB#localhost")
            + hexb("01 00 00 00 80 00 00 80 00 00 00 00")
            + slot(b"#probeB#localhost")
        )
        assert b.closed_by_peer()
        assert a.recv_message().raw == hexb("80 14 00 80") + slot(b"DVS") + hexb(
            "01 00 00 00 80 00 00 80 38 00 00 00"
        ) + slot(b"#probeA#localhost") + hexb("01 00 00 7f") + memb_time + hexb(
            "05 00 00 00 01 00 00 00 00 00 00 00 01 00 00 00"
        ) + slot(b"#probeB#localhost")
    finally:
        a.close()
        if b is not None:
            b.close()


# -- §2: handshake rejects --------------------------------------------------


@pytest.mark.parametrize(
    ("connect_message", "reply"),
    [
        (bytes([4, 0, 0, 1, 11]) + b"elevenchars", b"\xfb"),
        (bytes([4, 0, 0, 1, 0x80]), b"\xfb"),
        (bytes([4, 0, 0, 1, 3]) + b"a b", b"\xfb"),
        (bytes([4, 0, 0, 1, 3]) + b"a#b", b"\xfb"),
        (bytes([4, 0, 0, 1, 3]) + b"ab\x7f", b"\xfb"),
        (bytes([4, 0, 0, 1, 4]) + b"abc", b"\xfb"),
        (bytes([4, 0, 0, 1, 2]) + b"ab" + AUTH_NULL, b"\xfb"),
        (bytes([3, 0, 0, 1, 3]) + b"old", b"\xf9"),
        (bytes([3, 0, 99, 1, 3]) + b"old", b"\xf9"),
        (bytes([4, 0, 0, 1]), b"\xfc"),
    ],
    ids=[
        "len11",
        "negative-len",
        "space",
        "hash",
        "del",
        "short-name",
        "pipelined-auth",
        "v3.0.0",
        "v3.0.99",
        "no-name",
    ],
)
def test_connect_rejects(daemon, connect_message, reply):
    session = raw_connect(daemon, connect_message)
    try:
        assert session.recv_exact(1) == reply
        assert session.closed_by_peer()
    finally:
        session.close()


def test_not_unique(daemon, connect):
    name = fresh("dup")
    connect(name)
    session = raw_connect(daemon, bytes([4, 0, 0, 1, len(name)]) + name)
    assert session.recv_exact(1) == b"\xfa"
    assert session.closed_by_peer()
    session.close()


@pytest.mark.parametrize(
    "choice",
    [b"NULL", b"BOGUS".ljust(90, b"\0"), bytes(90)],
    ids=["short", "bogus", "all-zero"],
)
def test_auth_rejects(daemon, choice):
    name = fresh("au")
    session = raw_connect(daemon, bytes([4, 0, 0, 1, len(name)]) + name)
    try:
        assert session.recv_exact(6) == b"\x05NULL "
        session.send(choice)
        assert session.recv_exact(1) == b"\xf7"
        assert session.closed_by_peer()
    finally:
        session.close()


def test_auth_null_twice_accepted(daemon):
    name = fresh("nn")
    session = raw_connect(daemon, bytes([4, 0, 0, 1, len(name)]) + name)
    try:
        assert session.recv_exact(6) == b"\x05NULL "
        session.send(b"NULL".ljust(30, b"\0") * 2 + bytes(30))
        group = b"#" + name + b"#localhost"
        assert (
            session.recv_exact(5 + len(group))
            == b"\x01\x04\x00\x00" + bytes([len(group)]) + group
        )
    finally:
        session.close()


def test_generated_name_and_old_and_new_libraries(daemon):
    anonymous = raw_connect(daemon, bytes([4, 0, 0, 1, 0]))
    old = raw_connect(daemon, bytes([3, 15, 0, 1, 4]) + b"v315")
    future_name = fresh("f")
    future = raw_connect(daemon, bytes([5, 7, 9, 0x10, len(future_name)]) + future_name)
    try:
        assert anonymous.recv_exact(6) == b"\x05NULL "
        anonymous.send(AUTH_NULL)
        assert anonymous.recv_exact(4) == b"\x01\x04\x00\x00"
        length = anonymous.recv_exact(1)[0]
        assert re.fullmatch(rb"#r\d{1,4}-\d+#localhost", anonymous.recv_exact(length))
        # 3.15.0 skips authentication but gets the patch byte.
        assert old.recv_exact(5 + 15) == b"\x01\x04\x00\x00\x0f#v315#localhost"
        # Any newer library, with priority flags 0x10, gets the auth list.
        assert future.recv_exact(6) == b"\x05NULL "
    finally:
        for session in (anonymous, old, future):
            session.close()


def test_silent_close_without_connect_message(daemon):
    session = RawSession.open(("127.0.0.1", daemon.port), timeout=5.0)
    try:
        started = time.monotonic()
        assert session.sock.recv(16) == b""
        assert 0.5 < time.monotonic() - started < 4.0
    finally:
        session.close()


# -- §3.6: header checks kill the session -----------------------------------


def _bad_headers(private_group: bytes) -> dict[str, bytes]:
    group = [b"K"]
    return {
        "two-service-bits": client_message(SAFE | AGREED, private_group, group),
        "join-and-safe": client_message(JOIN | SAFE, private_group, group),
        "type-zero": client_message(0, private_group, group),
        "groups-mess": client_message(0x00080000, private_group, group),
        "other-private-name": client_message(SAFE, b"#intruder#localhost", group),
        "other-daemon": client_message(
            SAFE, private_group.replace(b"localhost", b"elsewhere"), group
        ),
        "101-groups": client_message(SAFE, private_group, [b"K"] * 101),
        "hint-bit-1": client_message(SAFE, private_group, group, hint=hexb("81000080")),
        "negative-data-len": client_message(SAFE, private_group, [])[:44]
        + struct.pack("<i", -1),
        "le-without-marker": struct.pack("<I", SAFE)
        + client_message(SAFE, private_group, group)[4:],
    }


@pytest.mark.parametrize("case", list(_bad_headers(b"#x#localhost")))
def test_bad_header_kills_session(daemon, connect, case):
    group = fresh("K")
    watcher = connect(fresh("w"))
    victim = connect(fresh("v"))
    watcher.join(group)
    watcher.recv_message()
    victim.join(group)
    watcher.recv_message()
    victim.recv_message()

    victim.send(_bad_headers(victim.private_group)[case])
    assert victim.closed_by_peer()
    left = watcher.recv_message()
    assert left.service_type == REG_MEMB | BY_DISCONNECT
    assert left.groups == [watcher.private_group]
    assert left.data[24:56].rstrip(b"\0") == victim.private_group


# -- §3.5 / §4: delivery rules ---------------------------------------------


def test_session_without_membership_flag(daemon, connect):
    group = fresh("G")
    quiet = connect(fresh("q"), flags=0)
    loud = connect(fresh("l"))
    quiet.join(group)
    assert_nothing_pending(quiet)  # the join is done and told nobody
    loud.join(group)
    assert loud.recv_message().service_type == REG_MEMB | BY_JOIN
    message = client_message(SAFE, loud.private_group, [group], b"data")
    loud.send(message)
    assert quiet.recv_message().raw == message  # no membership before it
    quiet.leave(group)  # no self-leave either
    assert loud.recv_message().raw == message
    assert loud.recv_message().service_type == REG_MEMB | BY_LEAVE
    assert_nothing_pending(quiet)


def test_repeated_join_and_foreign_leave_are_ignored(daemon, connect):
    group = fresh("G")
    session = connect(fresh("r"))
    session.join(group)
    assert session.recv_message().service_type == REG_MEMB | BY_JOIN
    session.join(group)
    session.leave(fresh("never"))
    assert_nothing_pending(session)


def test_multigroup_one_copy_and_self_discard(daemon, connect):
    group = fresh("G")
    a = connect(fresh("a"))
    b = connect(fresh("b"))
    a.join(group)
    a.recv_message()
    both = client_message(SAFE, a.private_group, [b.private_group, group], b"x")
    a.send(both)
    assert b.recv_message().raw == both
    assert a.recv_message().raw == both
    discarded = client_message(
        SAFE | SELF_DISCARD, a.private_group, [b.private_group, group], b"y"
    )
    a.send(discarded)
    assert b.recv_message().raw == discarded
    nobody = client_message(SAFE, a.private_group, [], b"z")
    a.send(nobody)
    assert_nothing_pending(a)  # no copy of y, z; still alive
    assert_nothing_pending(b)


def test_recreated_group_restarts_index(daemon, connect):
    group = fresh("G")
    session = connect(fresh("c"))
    session.join(group)
    first = session.recv_message()
    session.leave(group)
    assert session.recv_message().service_type == BY_LEAVE
    session.join(group)
    again = session.recv_message()
    assert first.data[:12] == again.data[:12]
    assert first.data[8:12] == struct.pack("<I", 1)


def test_one_total_order(daemon, connect):
    group = fresh("G")
    sessions = [connect(fresh("t")) for _ in range(3)]
    for index, session in enumerate(sessions):
        session.join(group)
        for member in sessions[: index + 1]:
            assert member.recv_message().service_type == REG_MEMB | BY_JOIN

    def blast(session: RawSession) -> None:
        for number in range(30):
            payload = session.private_group + b"/%d" % number
            session.send(client_message(SAFE, session.private_group, [group], payload))

    threads = [threading.Thread(target=blast, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    orders = [[s.recv_message().data for _ in range(90)] for s in sessions]
    assert orders[0] == orders[1] == orders[2]
    for session in sessions:
        own = [d for d in orders[0] if d.startswith(session.private_group + b"/")]
        assert own == [session.private_group + b"/%d" % n for n in range(30)]


# -- network changes (stand-in only) ----------------------------------------


@pytest.fixture
def standin(daemon):
    if daemon.kind != "standin":
        pytest.skip("stand-in only: partitions, control channel or stand-in policy")
    yield daemon
    daemon.merge()


def test_partition_then_merge(standin, connect):
    names = [fresh("n") for _ in range(3)]
    one, two, three = sessions = [connect(name) for name in names]
    groups = [s.private_group for s in sessions]
    dvs, side = fresh("DVS"), fresh("X")
    for index, session in enumerate(sessions):
        session.join(dvs)
        for member in sessions[: index + 1]:
            member.recv_message()
    two.join(side)
    two.recv_message()
    three.join(side)
    two.recv_message()
    three.recv_message()

    standin.partition([[names[0].decode()], [names[1].decode(), names[2].decode()]])

    # Each side: TRANSITION with the last gid, then REG|NETWORK with one VS set.
    transitions = [s.recv_message() for s in sessions]
    for message in transitions:
        assert message.service_type == TRANSITION
        assert message.sender == dvs and message.groups == []
        assert len(message.data) == 12
        assert message.data[8:12] == struct.pack("<I", 3)
    alone = one.recv_message()
    pair = [two.recv_message(), three.recv_message()]
    memb_one = alone.data[4:8]
    memb_two = pair[0].data[4:8]
    assert memb_one != memb_two
    assert alone.raw == membership(
        BY_NETWORK, dvs, [groups[0]], gid(memb_one, 1), [[groups[0]]]
    )
    for message in pair:
        assert message.raw == membership(
            BY_NETWORK, dvs, groups[1:], gid(memb_two, 1), [groups[1:]]
        )
    # The side group X lost nobody: no message at all. Messages stay per side.
    hello = client_message(SAFE, one.private_group, [dvs, two.private_group], b"1")
    one.send(hello)
    assert one.recv_message().raw == hello
    assert_nothing_pending(two)
    assert_nothing_pending(three)

    standin.merge()

    # No TRANSITION where nobody was lost (§5.6); VS sets per former side.
    merged = [s.recv_message() for s in sessions]
    memb_all = merged[0].data[4:8]
    assert memb_all not in (memb_one, memb_two)
    for session, message, offset in zip(sessions, merged, (0, 36, 36), strict=True):
        assert message.raw == membership(
            BY_NETWORK,
            dvs,
            groups,
            gid(memb_all, 1),
            [[groups[0]], groups[1:]],
            offset,
        ), session.private_group
        assert len(message.data) == 124
    assert_nothing_pending(two)  # still nothing for X


def test_forced_transition_and_join_during_partition(standin, connect):
    a_name, b_name = fresh("p"), fresh("p")
    a, b = connect(a_name), connect(b_name)
    group = fresh("G")
    standin.partition([[a_name.decode()], [b_name.decode()]])
    a.join(group)
    b.join(group)
    view_a, view_b = a.recv_message(), b.recv_message()
    assert view_a.groups == [a.private_group] and view_b.groups == [b.private_group]
    assert view_a.data[8:12] == view_b.data[8:12] == struct.pack("<I", 1)
    assert view_a.data[4:8] != view_b.data[4:8]

    standin.merge(force_transition=True)
    for session, view, offset in ((a, view_a, 0), (b, view_b, 36)):
        transition = session.recv_message()
        assert transition.service_type == TRANSITION
        assert transition.data == view.data[:12]
        merged = session.recv_message()
        assert merged.service_type == REG_MEMB | BY_NETWORK
        assert merged.groups == sorted([a.private_group, b.private_group])
        assert merged.data[16:20] == struct.pack("<I", offset)


def test_control_channel_errors(standin):
    control = standin.control
    for bad in (
        {"op": "partition", "sets": []},
        {"op": "partition", "sets": [["a"], ["a"]]},
        {"op": "partition", "sets": [["eleven_char"]]},
        {"op": "nonsense"},
        {"op": "kill", "name": "nobody-here"},
    ):
        with pytest.raises(StandinControlError):
            control.request(**bad)
    assert control.status()["daemon"] == "localhost"


def test_control_kill_is_a_disconnect(standin, connect):
    group = fresh("G")
    watcher, victim_name = connect(fresh("w")), fresh("v")
    victim = connect(victim_name)
    watcher.join(group)
    watcher.recv_message()
    victim.join(group)
    watcher.recv_message()
    standin.control.kill(victim_name.decode())
    assert victim.closed_by_peer()
    assert watcher.recv_message().service_type == REG_MEMB | BY_DISCONNECT


def test_big_endian_standin(spread_daemon_factory):
    """A BE daemon writes its ints BE without marker, and still keeps the hint."""
    daemon = spread_daemon_factory.start("standin", byte_order="big")
    session = RawSession.open(("127.0.0.1", daemon.port))
    try:
        session.handshake(b"beA")
        session.join(b"BE")
        joined = session.recv_message().raw
        assert joined[:4] == struct.pack(">I", REG_MEMB | BY_JOIN)
        assert joined[40:48] == bytes(4) + struct.pack(">i", 56)
        assert joined[80:84] == bytes([127, 0, 0, 1])  # 0x7f000001 in BE
        message = client_message(SAFE, session.private_group, [b"BE"], message_type=7)
        session.send(message)
        echoed = session.recv_message().raw
        assert echoed[:4] == struct.pack(">I", SAFE)
        assert echoed[36:40] == struct.pack(">i", 1)
        assert echoed[40:44] == hexb("80 07 00 80")  # sender's LE hint, untouched
        assert echoed[48:] == message[48:]
    finally:
        session.close()


def test_slow_reader_is_killed(daemon, connect):
    """The daemon kills a session with 1000 queued messages (§6)."""
    group = fresh("G")
    sleeper, talker = connect(fresh("s")), connect(fresh("k"))
    sleeper.join(group)
    sleeper.recv_message()
    talker.join(group)
    sleeper.recv_message()
    talker.recv_message()
    # Big messages fill the kernel buffers quickly; then the daemon's queue.
    payload = bytes(60000)
    message = client_message(
        SAFE | SELF_DISCARD, talker.private_group, [group], payload
    )
    for _ in range(1200):
        talker.send(message)
    left = talker.recv_message()
    assert left.service_type == REG_MEMB | BY_DISCONNECT
    assert left.data[24:56].rstrip(b"\0") == sleeper.private_group


def test_join_without_group_is_ignored(standin, connect):
    """Stand-in policy. A real daemon reads the name from stale memory instead
    (it joined the group slot of an earlier message when tried)."""
    session = connect(fresh("j"))
    session.send(client_message(JOIN, session.private_group, []))
    session.send(client_message(LEAVE, session.private_group, []))
    assert_nothing_pending(session)


def test_group_name_filling_the_whole_slot(daemon, connect):
    """A 32-byte join name without NUL is kept whole, as a real daemon does,
    and no multicast can reach that group (targets end at byte 31)."""
    session = connect(fresh("L"))
    name = (fresh("W") + b"W" * 32)[:32]
    session.send(client_message(JOIN, session.private_group, [name]))
    joined = session.recv_message()
    assert joined.service_type == REG_MEMB | BY_JOIN
    assert joined.raw[4:36] == name
    session.send(client_message(SAFE, session.private_group, [name], b"32"))
    session.send(client_message(SAFE, session.private_group, [name[:31]], b"31"))
    assert_nothing_pending(session)
