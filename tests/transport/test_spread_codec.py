"""Sans-IO Spread codec: captured bytes from a live 4.0.0 daemon, round trips,
byte-by-byte handshakes, and garbage that must raise only SpreadProtocolError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvsd.transport.spread import (
    MAX_SAFE_PAYLOAD,
    ConnectRequest,
    Disconnect,
    GroupId,
    Handshake,
    IllegalGroup,
    IllegalMessage,
    IllegalName,
    IllegalService,
    Join,
    Leave,
    MembershipMessage,
    MembershipReason,
    MessageDecoder,
    MessageTooLong,
    Multicast,
    RegularMessage,
    RejectedMessage,
    ResultCode,
    SelfLeave,
    ServiceType,
    SpreadProtocolError,
    TransitionalMembership,
    decode_message,
    encode_operation,
    max_payload,
)
from dvsd.transport.spread.codec import (
    HandshakeState,
    encode_auth_choice,
    encode_connect_request,
)
from dvsd.transport.spread.daemon_side import (
    ClientMessageDecoder,
    decode_client_message,
    encode_accept,
    encode_auth_list,
    encode_event,
    encode_reject,
    parse_auth_choice,
    parse_connect_message,
)
from dvsd.transport.spread.messages import (
    AuthMethodsOffered,
    SessionAccepted,
    SessionRejected,
)

A = "#probeA#localhost"
B = "#probeB#localhost"


def h(text: str) -> bytes:
    """Hex dump text (spaces and newlines ignored) to bytes."""
    return bytes.fromhex("".join(text.split()))


def slot(name: str) -> bytes:
    return name.encode().ljust(32, b"\0")


# -- vectors captured from the live daemon (reference section 7) -------------------

CONNECT_A = h("04 00 00 01 06 70 72 6f 62 65 41")
AUTH_LIST = h("05 4e 55 4c 4c 20")
AUTH_CHOICE_NULL = b"NULL" + bytes(86)
ACCEPT_A = h("01 04 00 00 11") + A.encode()

JOIN_A_DVS = h(
    """
    80 00 01 80 23 70 72 6f 62 65 41 23 6c 6f 63 61
    6c 68 6f 73 74 00 00 00 00 00 00 00 00 00 00 00
    00 00 00 00 01 00 00 00 80 00 00 80 00 00 00 00
    44 56 53 00 00 00 00 00 00 00 00 00 00 00 00 00
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    """
)

SAFE_HELLO = h(
    """
    a0 00 00 80 23 70 72 6f 62 65 41 23 6c 6f 63 61
    6c 68 6f 73 74 00 00 00 00 00 00 00 00 00 00 00
    00 00 00 00 01 00 00 00 80 07 00 80 05 00 00 00
    44 56 53 00 00 00 00 00 00 00 00 00 00 00 00 00
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
    68 65 6c 6c 6f
    """
)

MEMB_A_JOINS = (
    h(
        """
        80 11 00 80 44 56 53 00 00 00 00 00 00 00 00 00
        00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        00 00 00 00 01 00 00 00 80 00 00 80 38 00 00 00
        """
    )
    + slot(A)
    + h(
        """
        01 00 00 7f 46 ad 11 6b 01 00 00 00 01 00 00 00
        00 00 00 00 01 00 00 00
        """
    )
    + slot(A)
)

GID = (0x7F000001, 1796320582)


def _memb(type_bytes: str, members: list[str], index: int, changed: str) -> bytes:
    header = (
        h(type_bytes)
        + slot("DVS")
        + len(members).to_bytes(4, "little")
        + h("80 00 00 80 38 00 00 00")
    )
    body = (
        h("01 00 00 7f 46 ad 11 6b")
        + index.to_bytes(4, "little")
        + h("01 00 00 00 00 00 00 00 01 00 00 00")
        + slot(changed)
    )
    return header + b"".join(slot(m) for m in members) + body


SELF_LEAVE_DVS = h("80 02 00 80") + slot("DVS") + h("00 00 00 00 80 00 00 80 00000000")

KILL_B = h("80 00 04 80") + slot(B) + h("01 00 00 00 80 00 00 80 00 00 00 00") + slot(B)
LEAVE_A = h("80 00 02 80") + slot(A) + h("01 00 00 00 80 00 00 80 00 00 00 00")
LEAVE_A += slot("DVS")

BE_FROM_B = (
    h("00 00 00 50")
    + slot(B)
    + h("00 00 00 01 00 ff fe 00 00 00 00 04")
    + slot("DVS")
    + h("01 02 03 04")
)
BE_TO_A = (
    h("d0 00 00 80")
    + slot(B)
    + h("01 00 00 00 00 ff fe 00 04 00 00 00")
    + slot("DVS")
    + h("01 02 03 04")
)

NETWORK_X = (
    h("80 18 00 80")
    + slot("NET")
    + h("03 00 00 00 80 00 00 80 7c 00 00 00")
    + slot("#netx#dmnone")
    + slot("#nety#dmntwo")
    + slot("#netz#dmntwo")
    + h("02 00 00 7f 51 b0 11 6b 01 00 00 00 02 00 00 00 00 00 00 00")
    + h("01 00 00 00")
    + slot("#netx#dmnone")
    + h("02 00 00 00")
    + slot("#nety#dmntwo")
    + slot("#netz#dmntwo")
)
TRANSITION_NET = (
    h("80 20 00 80")
    + slot("NET")
    + h("00 00 00 00 80 00 00 80 0c 00 00 00")
    + h("01 00 00 7f 46 ad 11 6b 05 00 00 00")
)


class TestCapturedVectors:
    def test_connect_message(self) -> None:
        assert encode_connect_request(ConnectRequest("probeA")) == CONNECT_A

    def test_connect_flags(self) -> None:
        message = encode_connect_request(ConnectRequest("x", membership=False))
        assert message[3] == 0x00
        message = encode_connect_request(ConnectRequest("x", priority=1))
        assert message[3] == 0x11

    def test_auth_choice(self) -> None:
        assert encode_auth_choice() == AUTH_CHOICE_NULL
        assert len(AUTH_CHOICE_NULL) == 90

    def test_join(self) -> None:
        assert encode_operation(Join("DVS"), A) == JOIN_A_DVS

    def test_leave_and_kill(self) -> None:
        assert encode_operation(Leave("DVS"), A) == LEAVE_A
        assert encode_operation(Disconnect(), B) == KILL_B

    def test_safe_multicast(self) -> None:
        operation = Multicast(ServiceType.SAFE, "DVS", b"hello", message_type=7)
        assert encode_operation(operation, A) == SAFE_HELLO

    def test_big_endian_multicast(self) -> None:
        operation = Multicast(
            ServiceType.AGREED,
            ["DVS"],
            b"\x01\x02\x03\x04",
            message_type=-2,
            self_discard=True,
        )
        assert encode_operation(operation, B, order=">") == BE_FROM_B

    def test_message_type_300(self) -> None:
        operation = Multicast(ServiceType.FIFO, "G", b"", message_type=300)
        assert encode_operation(operation, A)[40:44] == h("80 2c 01 80")

    def test_own_copy_of_safe_multicast(self) -> None:
        event, consumed = decode_message(SAFE_HELLO)
        assert consumed == len(SAFE_HELLO)
        assert event == RegularMessage(
            A, ("DVS",), ServiceType.SAFE, 7, b"hello", "little", False
        )

    def test_joiner_membership(self) -> None:
        event, consumed = decode_message(MEMB_A_JOINS)
        assert consumed == 48 + 32 + 56
        assert event == MembershipMessage(
            group="DVS",
            group_id=GroupId(*GID, 1),
            members=(A,),
            reason=MembershipReason.JOIN,
            changed_member=A,
            vs_sets=((A,),),
            my_vs_set_index=0,
        )
        assert str(event.group_id.daemon_address) == "127.0.0.1"

    def test_second_joiner_leave_and_disconnect(self) -> None:
        second, _ = decode_message(_memb("80 11 00 80", [A, B], 2, B))
        assert (second.reason, second.members, second.changed_member) == (
            MembershipReason.JOIN,
            (A, B),
            B,
        )
        assert second.group_id.index == 2
        left, _ = decode_message(_memb("80 12 00 80", [B], 3, A))
        assert (left.reason, left.members, left.changed_member) == (
            MembershipReason.LEAVE,
            (B,),
            A,
        )
        gone, _ = decode_message(_memb("80 14 00 80", [A], 5, B))
        assert gone.reason is MembershipReason.DISCONNECT
        assert gone.my_vs_set == (B,)
        assert gone.group_id == GroupId(*GID, 5)

    def test_self_leave(self) -> None:
        assert decode_message(SELF_LEAVE_DVS) == (SelfLeave("DVS"), 48)

    def test_big_endian_sender_seen_by_little_endian_receiver(self) -> None:
        event, _ = decode_message(BE_TO_A)
        assert event == RegularMessage(
            B, ("DVS",), ServiceType.AGREED, -2, b"\x01\x02\x03\x04", "big", True
        )

    def test_network_membership_two_vs_sets(self) -> None:
        event, consumed = decode_message(NETWORK_X)
        assert consumed == len(NETWORK_X) == 48 + 96 + 124
        assert event.reason is MembershipReason.NETWORK
        assert event.changed_member is None
        assert event.vs_sets == (
            ("#netx#dmnone",),
            ("#nety#dmntwo", "#netz#dmntwo"),
        )
        assert event.my_vs_set_index == 0
        # Y and Z received the same body with my_vs_set_offset = 36.
        as_y = bytearray(NETWORK_X)
        as_y[48 + 96 + 16] = 0x24
        event_y, _ = decode_message(bytes(as_y))
        assert event_y.my_vs_set_index == 1
        assert event_y.my_vs_set == ("#nety#dmntwo", "#netz#dmntwo")

    def test_transitional(self) -> None:
        assert decode_message(TRANSITION_NET) == (
            TransitionalMembership("NET", GroupId(*GID, 5)),
            60,
        )

    def test_encode_event_reproduces_captures(self) -> None:
        for capture in (MEMB_A_JOINS, SAFE_HELLO, SELF_LEAVE_DVS, BE_TO_A, NETWORK_X):
            event, _ = decode_message(capture)
            assert encode_event(event) == capture
        assert encode_event(decode_message(TRANSITION_NET)[0]) == TRANSITION_NET

    def test_daemon_side_reads_captures(self) -> None:
        message, consumed = decode_client_message(JOIN_A_DVS)
        assert (message.sender, message.operation, consumed) == (A, Join("DVS"), 80)
        message, _ = decode_client_message(BE_FROM_B)
        assert message.byteorder == "big"
        assert message.operation == Multicast(
            ServiceType.AGREED, "DVS", b"\x01\x02\x03\x04", -2, True
        )
        assert decode_client_message(KILL_B)[0].operation == Disconnect()
        assert parse_connect_message(CONNECT_A) == ConnectRequest("probeA")
        assert parse_auth_choice(AUTH_CHOICE_NULL) == ("NULL",)
        assert encode_auth_list() == AUTH_LIST
        assert encode_accept(A) == ACCEPT_A


# -- the handshake -----------------------------------------------------------------


def _run_handshake(chunks: list[bytes], request: ConnectRequest | None = None):
    handshake = Handshake(request or ConnectRequest("probeA"))
    sent = [handshake.connect_message()]
    events = []
    for chunk in chunks:
        handshake.receive_data(chunk)
        while (event := handshake.next_event()) is not None:
            events.append(event)
            if isinstance(event, AuthMethodsOffered):
                sent.append(handshake.auth_choice())
    return handshake, sent, events


class TestHandshake:
    REPLY = AUTH_LIST + ACCEPT_A

    def test_whole_reply(self) -> None:
        handshake, sent, events = _run_handshake([self.REPLY])
        assert sent == [CONNECT_A, AUTH_CHOICE_NULL]
        assert events == [
            AuthMethodsOffered(("NULL",)),
            SessionAccepted((4, 0, 0), A),
        ]
        assert handshake.state is HandshakeState.ACCEPTED
        assert handshake.trailing_data == b""

    def test_byte_by_byte(self) -> None:
        chunks = [self.REPLY[i : i + 1] for i in range(len(self.REPLY))]
        _, sent, events = _run_handshake(chunks)
        assert sent == [CONNECT_A, AUTH_CHOICE_NULL]
        assert events[-1] == SessionAccepted((4, 0, 0), A)

    @pytest.mark.parametrize("cut", range(1, len(AUTH_LIST + ACCEPT_A)))
    def test_split_at_every_boundary(self, cut: int) -> None:
        _, _, events = _run_handshake([self.REPLY[:cut], self.REPLY[cut:]])
        assert events == [
            AuthMethodsOffered(("NULL",)),
            SessionAccepted((4, 0, 0), A),
        ]

    def test_auth_choice_only_after_auth_list(self) -> None:
        handshake = Handshake(ConnectRequest("probeA"))
        handshake.connect_message()
        with pytest.raises(RuntimeError):
            handshake.auth_choice()
        handshake.receive_data(AUTH_LIST[:3])
        assert handshake.next_event() is None
        with pytest.raises(RuntimeError):
            handshake.auth_choice()

    def test_trailing_bytes_are_kept_for_the_decoder(self) -> None:
        handshake, _, _ = _run_handshake([self.REPLY + SELF_LEAVE_DVS[:10]])
        assert handshake.trailing_data == SELF_LEAVE_DVS[:10]

    @pytest.mark.parametrize(
        "code",
        [
            ResultCode.REJECT_QUOTA,
            ResultCode.REJECT_ILLEGAL_NAME,
            ResultCode.REJECT_NOT_UNIQUE,
            ResultCode.REJECT_VERSION,
        ],
    )
    def test_reject_instead_of_auth_list(self, code: ResultCode) -> None:
        handshake, sent, events = _run_handshake([encode_reject(code)])
        assert events == [SessionRejected(int(code))]
        assert len(sent) == 1
        assert handshake.state is HandshakeState.REJECTED

    def test_reject_after_auth_choice(self) -> None:
        _, sent, events = _run_handshake([AUTH_LIST, h("f7")])
        assert len(sent) == 2
        assert events[-1] == SessionRejected(ResultCode.REJECT_AUTH)

    def test_null_not_offered_is_rejected_locally(self) -> None:
        _, sent, events = _run_handshake([h("03") + b"IP "])
        assert len(sent) == 1
        assert events[0].code == ResultCode.REJECT_AUTH and events[0].local

    def test_empty_auth_list(self) -> None:
        _, _, events = _run_handshake([h("00")])
        assert events[0].code == ResultCode.REJECT_AUTH

    def test_old_library_has_no_auth_exchange(self) -> None:
        request = ConnectRequest("v315", version=(3, 15, 0))
        _, sent, events = _run_handshake(
            [h("01 04 00 00 0f") + b"#v315#localhost"], request
        )
        assert len(sent) == 1
        assert events == [SessionAccepted((4, 0, 0), "#v315#localhost")]

    def test_bad_accept_byte(self) -> None:
        with pytest.raises(SpreadProtocolError):
            _run_handshake([AUTH_LIST + h("02 04 00 00")])


# -- operation rules ---------------------------------------------------------------


class TestOperationRules:
    def test_size_limits(self) -> None:
        assert MAX_SAFE_PAYLOAD == 143_519
        Multicast(ServiceType.SAFE, "G", bytes(143_519))
        Multicast(ServiceType.SAFE, ["G", "H"], bytes(max_payload(2)))
        with pytest.raises(MessageTooLong, match="143551"):
            Multicast(ServiceType.SAFE, "G", bytes(143_520))
        with pytest.raises(MessageTooLong):
            Multicast(ServiceType.SAFE, ["G", "H"], bytes(143_488))

    @pytest.mark.parametrize(
        "name", ["", "G", "x" * 31, "$~", "DVS.node_1", "a" * 15 + "-" + "b" * 15]
    )
    def test_legal_groups(self, name: str) -> None:
        if name:
            assert Join(name).group == name
        else:
            with pytest.raises(IllegalGroup, match="1..31"):
                Join(name)

    @pytest.mark.parametrize("name", ["x" * 32, "a b", "#priv", "g!", 'g"', "é", "a\0"])
    def test_illegal_groups(self, name: str) -> None:
        with pytest.raises(IllegalGroup):
            Join(name)
        with pytest.raises(IllegalGroup):
            Leave(name)

    def test_private_group_as_target(self) -> None:
        Multicast(ServiceType.RELIABLE, "#node.2#localhost", b"")
        with pytest.raises(IllegalGroup):
            Multicast(ServiceType.RELIABLE, "#node.2 #localhost", b"")
        with pytest.raises(IllegalGroup, match="at most 100"):
            Multicast(ServiceType.RELIABLE, ["g"] * 101, b"")

    @pytest.mark.parametrize("name", ["x" * 11, "a b", "#", "node!", "\x7f"])
    def test_illegal_private_names(self, name: str) -> None:
        with pytest.raises(IllegalName):
            ConnectRequest(name)

    def test_message_type_is_int16(self) -> None:
        Multicast(ServiceType.SAFE, "G", b"", message_type=-32768)
        Multicast(ServiceType.SAFE, "G", b"", message_type=32767)
        for bad in (32768, -32769):
            with pytest.raises(IllegalMessage, match="int16"):
                Multicast(ServiceType.SAFE, "G", b"", message_type=bad)

    def test_service_type_must_be_one_level(self) -> None:
        for bad in (0, 0x30, 0x40, 0x1000):
            with pytest.raises(IllegalService):
                Multicast(bad, "G", b"")
        assert Multicast(0x20, "G", b"").service_type is ServiceType.SAFE

    def test_payload_must_be_bytes(self) -> None:
        with pytest.raises(IllegalMessage):
            Multicast(ServiceType.SAFE, "G", "text")  # type: ignore[arg-type]


# -- property tests ----------------------------------------------------------------

NAME_CHARS = st.characters(min_codepoint=0x24, max_codepoint=0x7E)
private_names = st.text(NAME_CHARS, min_size=1, max_size=10)
daemon_names = st.text(NAME_CHARS, min_size=1, max_size=19)
private_groups = st.builds(lambda p, d: f"#{p}#{d}", private_names, daemon_names)
group_names = st.text(NAME_CHARS, min_size=1, max_size=31)
targets = st.one_of(group_names, private_groups)
orders = st.sampled_from(["<", ">"])
byteorders = st.sampled_from(["little", "big"])
int16s = st.integers(-0x8000, 0x7FFF)
u32s = st.integers(0, 0xFFFF_FFFF)
payloads = st.binary(max_size=600)

operations = st.one_of(
    st.builds(Join, group_names),
    st.builds(Leave, group_names),
    st.just(Disconnect()),
    st.builds(
        Multicast,
        st.sampled_from(ServiceType),
        st.lists(targets, max_size=8).map(tuple),
        payloads,
        int16s,
        st.booleans(),
    ),
)
group_ids = st.builds(GroupId, u32s, u32s, u32s)


@st.composite
def memberships(draw: st.DrawFn) -> MembershipMessage:
    reason = draw(st.sampled_from(MembershipReason))
    members = tuple(draw(st.lists(private_groups, max_size=6)))
    if reason is MembershipReason.NETWORK:
        vs_sets = tuple(
            tuple(s)
            for s in draw(
                st.lists(st.lists(private_groups, max_size=3), min_size=1, max_size=4)
            )
        )
        my_index = draw(st.integers(0, len(vs_sets) - 1))
        changed = None
    else:
        changed = draw(private_groups)
        vs_sets, my_index = ((changed,),), 0
    return MembershipMessage(
        draw(group_names), draw(group_ids), members, reason, changed, vs_sets, my_index
    )


events = st.one_of(
    st.builds(
        RegularMessage,
        private_groups,
        st.lists(targets, max_size=6).map(tuple),
        st.sampled_from(ServiceType),
        int16s,
        payloads,
        byteorders,
        st.booleans(),
    ),
    memberships(),
    st.builds(TransitionalMembership, group_names, group_ids),
    st.builds(SelfLeave, group_names),
    st.builds(
        RejectedMessage,
        private_groups,
        st.lists(targets, max_size=4).map(tuple),
        st.sampled_from([0x20, 0x40 | 0x02, 0x100, 0x200]),
        int16s,
        payloads,
        byteorders,
    ),
)


@given(operations, private_groups, orders)
def test_operation_round_trip_through_daemon_view(
    operation, private_group, order
) -> None:
    data = encode_operation(operation, private_group, order=order)
    message, consumed = decode_client_message(data)
    assert consumed == len(data)
    assert message.sender == private_group
    assert message.operation == operation
    assert message.byteorder == ("little" if order == "<" else "big")
    for cut in range(len(data)):
        assert decode_client_message(data[:cut]) is None


@given(events, orders)
def test_event_round_trip(event, order) -> None:
    data = encode_event(event, order=order)
    assert decode_message(data) == (event, len(data))


@given(st.lists(events, min_size=1, max_size=6), st.data())
def test_stream_split_anywhere_yields_whole_events(event_list, data) -> None:
    stream = b"".join(encode_event(event) for event in event_list)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = MessageDecoder()
    received = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoder.receive_data(stream[start:end])
        while (event := decoder.next_event()) is not None:
            received.append(event)
    assert received == event_list
    assert decoder.buffered == 0


@given(events, st.data())
def test_truncated_message_waits_for_more(event, data) -> None:
    encoded = encode_event(event)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert decode_message(encoded[:cut]) is None


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_garbage_raises_only_protocol_error(garbage) -> None:
    decoder = MessageDecoder()
    decoder.receive_data(garbage)
    try:
        while decoder.next_event() is not None:
            pass
    except SpreadProtocolError:
        pass
    with contextlib.suppress(SpreadProtocolError):
        decode_client_message(garbage)
    client_decoder = ClientMessageDecoder()
    client_decoder.receive_data(garbage)
    try:
        while client_decoder.next_message() is not None:
            pass
    except SpreadProtocolError:
        pass
    for parser in (parse_connect_message, parse_auth_choice):
        with contextlib.suppress(SpreadProtocolError):
            parser(garbage)


@settings(max_examples=300)
@given(events, st.data())
def test_corrupted_message_raises_only_protocol_error(event, data) -> None:
    encoded = bytearray(encode_event(event))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(SpreadProtocolError):
        decode_message(bytes(encoded))


@settings(max_examples=300)
@given(st.binary(max_size=60), st.integers(0, 60))
def test_handshake_garbage_raises_only_protocol_error(garbage, cut) -> None:
    handshake = Handshake(ConnectRequest("probeA"))
    handshake.connect_message()
    try:
        for chunk in (garbage[:cut], garbage[cut:]):
            handshake.receive_data(chunk)
            while (event := handshake.next_event()) is not None:
                if isinstance(event, AuthMethodsOffered):
                    handshake.auth_choice()
                if isinstance(event, SessionAccepted | SessionRejected):
                    return
    except SpreadProtocolError:
        pass


@given(private_names, st.booleans())
def test_connect_request_round_trip(name, membership) -> None:
    request = ConnectRequest(name, membership=membership)
    assert parse_connect_message(encode_connect_request(request)) == request


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (h("04 00 00 01"), ResultCode.REJECT_NO_NAME),
        (h("04 00 00 01 0b") + b"x" * 11, ResultCode.REJECT_ILLEGAL_NAME),
        (h("04 00 00 01 ff"), ResultCode.REJECT_ILLEGAL_NAME),
        (h("04 00 00 01 02 61 20"), ResultCode.REJECT_ILLEGAL_NAME),
        (CONNECT_A + AUTH_CHOICE_NULL, ResultCode.REJECT_ILLEGAL_NAME),
        (h("03 00 00 01 01 61"), ResultCode.REJECT_VERSION),
    ],
)
def test_daemon_side_connect_rejects(data: bytes, code: ResultCode) -> None:
    with pytest.raises(SpreadProtocolError) as caught:
        parse_connect_message(data)
    assert caught.value.code == code
