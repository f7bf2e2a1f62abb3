"""The node-to-node request and reply: exact bytes, round trips, garbage."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvsd.wire import (
    ReplyFlag,
    RequestFlag,
    RequestId,
    WireError,
    WireReply,
    WireRequest,
    decode,
    encode_reply,
    encode_request,
)

u32 = st.integers(0, 2**32 - 1)
node_ids = st.integers(0, 0xFFFE)
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.builds(RequestId, node_ids, u32, u32)


def test_request_bytes_are_big_endian_and_documented():
    request = WireRequest(
        rqst_type=2,
        id=RequestId(requester=1, incarnation=0x01020304, seq=7),
        destinations=[2],
        timeout_ms=5000,
        params={},
    )
    data = encode_request(request)
    assert data[:4] == b"DV\x01\x01"
    assert data[4:6] == b"\x00\x02"  # request type
    assert data[8:12] == b"\x00\x00\x00\x01"  # requester
    assert data[12:16] == b"\x01\x02\x03\x04"  # incarnation
    assert data[16:20] == b"\x00\x00\x00\x07"  # seq
    assert struct.unpack("!I", data[20:24]) == (5000,)
    assert data[24:26] == b"\x00\x01"  # one destination
    assert data[32:34] == b"\x00\x02"  # node 2
    assert data[34:] == b"\x80"  # msgpack {}


def test_all_nodes_is_count_ffff():
    request = WireRequest(
        rqst_type=1, id=RequestId(0, 0, 1), destinations=None, timeout_ms=1
    )
    data = encode_request(request)
    assert data[24:26] == b"\xff\xff"
    assert decode(data).destinations is None


@given(
    rqst_type=st.integers(1, 0xFFFF),
    request_id=ids,
    destinations=st.none() | st.lists(node_ids, max_size=20),
    timeout_ms=u32,
    params=values,
    auth=st.binary(max_size=64),
)
def test_request_round_trip(
    rqst_type, request_id, destinations, timeout_ms, params, auth
):
    request = WireRequest(
        rqst_type=rqst_type,
        id=request_id,
        destinations=destinations,
        timeout_ms=timeout_ms,
        params=params,
        flags=RequestFlag.INTERNAL,
        auth_tag=auth,
    )
    assert decode(encode_request(request)) == request


@given(
    request_id=ids,
    responder=node_ids,
    rcode=st.integers(-(2**31), 2**31 - 1),
    items=st.lists(values, max_size=5),
    error=st.none() | st.text(),
    truncated=st.booleans(),
    full_size=u32,
)
def test_reply_round_trip(
    request_id, responder, rcode, items, error, truncated, full_size
):
    reply = WireReply(
        rqst_type=6,
        id=request_id,
        responder=responder,
        rcode=rcode,
        items=items,
        error=error,
        flags=ReplyFlag.TRUNCATED if truncated else ReplyFlag.NONE,
        full_size=full_size,
    )
    assert decode(encode_reply(reply)) == reply


@given(st.binary(max_size=200))
def test_garbage_raises_only_wire_error(data):
    with contextlib.suppress(WireError):
        decode(data)


@given(st.data())
def test_truncated_messages_raise_wire_error(data):
    request = WireRequest(
        rqst_type=3,
        id=RequestId(1, 2, 3),
        destinations=[1, 2],
        timeout_ms=9,
        params={"a": b"xyz"},
        auth_tag=b"tag",
    )
    encoded = encode_request(request)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(WireError):
        decode(encoded[:cut])


def test_wrong_version_is_named():
    data = bytearray(
        encode_request(
            WireRequest(
                rqst_type=1, id=RequestId(0, 0, 1), destinations=None, timeout_ms=1
            )
        )
    )
    data[2] = 9
    with pytest.raises(WireError, match="protocol version 9 is not supported"):
        decode(bytes(data))


def test_out_of_range_destination_is_refused():
    with pytest.raises(WireError, match="destination node must be in 0..65534"):
        encode_request(
            WireRequest(
                rqst_type=1, id=RequestId(0, 0, 1), destinations=[70000], timeout_ms=1
            )
        )
