"""The protobuf wire reader and writer: encodings checked byte for byte against the format's
definition, proto3's reading rules, and malformed input (truncated, overlong, lying lengths,
group and unknown wire types, random bytes) refused with WireError and nothing else.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capture.protobuf_wire import (
    I32,
    I64,
    LEN,
    VARINT,
    Fields,
    WireError,
    bool_field,
    bytes_field,
    encode_varint,
    iter_fields,
    map_field,
    message_field,
    read_varint,
    string_field,
    varint_field,
)


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    ((1 << 64) - 1, b"\xff" * 9 + b"\x01"),
    (-1, b"\xff" * 9 + b"\x01"),  # int64 -1: ten bytes, as protobuf writes it
])
def test_varints_encode_as_the_format_says(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert read_varint(encoded, 0) == (value % (1 << 64), len(encoded))


def test_fields_encode_as_the_format_says() -> None:
    assert varint_field(1, 150) == b"\x08\x96\x01"  # the format's own example
    assert string_field(2, "testing") == b"\x12\x07testing"
    assert bool_field(2, True) == b"\x10\x01"
    assert message_field(3, varint_field(1, 150)) == b"\x1a\x03\x08\x96\x01"
    assert message_field(3, b"") == b"\x1a\x00"  # a present, empty message is written
    # proto3 leaves out scalars at their default
    assert varint_field(1, 0) == bool_field(2, False) == string_field(3, "") == b""
    assert map_field(4, {"k": "v"}) == b"\x22\x06\x0a\x01k\x12\x01v"
    with pytest.raises(WireError):
        varint_field(0, 1)
    with pytest.raises(WireError):
        encode_varint(1 << 64)


def test_fields_read_back_with_proto3_rules() -> None:
    data = (string_field(1, "first") + string_field(1, "last") + varint_field(2, 7)
            + message_field(3, string_field(1, "a")) + message_field(3, varint_field(2, 9))
            + message_field(4, string_field(1, "x")) + message_field(4, string_field(1, "y"))
            + map_field(5, {"k": "1", "j": "2"}) + map_field(5, {"k": "3"})
            + b"\x35\x01\x00\x00\x00" + b"\x39" + (2).to_bytes(8, "little"))
    msg = Fields.parse(data)
    assert msg.string(1) == "last"  # the last of several scalars wins
    assert msg.integer(2) == 7 and msg.boolean(2)
    merged = msg.message(3)  # occurrences of a message field merge
    assert (merged.string(1), merged.integer(2)) == ("a", 9)
    assert [m.string(1) for m in msg.messages(4)] == ["x", "y"]
    assert msg.string_map(5) == {"k": "3", "j": "2"}
    assert [(n, t) for n, t, _ in iter_fields(data)][-2:] == [(6, I32), (7, I64)]
    # absent fields read as their defaults
    assert (msg.string(9), msg.integer(9), msg.boolean(9), msg.raw(9)) == ("", 0, False, b"")
    assert msg.message(9) == Fields() and msg.messages(9) == [] and msg.string_map(9) == {}
    assert msg.has(1) and not msg.has(9)


def test_invalid_utf8_is_shown_not_refused() -> None:
    assert Fields.parse(bytes_field(1, b"ab\xffcd")).string(1) == "ab\ufffdcd"


@pytest.mark.parametrize(("data", "message"), [
    (b"\x08", "truncated varint"),
    (b"\x08\x96", "truncated varint"),
    (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    (b"\x08" + b"\xff" * 9 + b"\x7f", "exceeds 64 bits"),
    (b"\x0a\x05abc", "claims 5 bytes, 3 left"),
    (b"\x0a\xff\xff\xff\xff\x0f", "claims 4294967295 bytes"),
    (b"\x0b", "wire type 3"),  # a proto2 group start
    (b"\x0c", "wire type 4"),
    (b"\x0e", "wire type 6"),
    (b"\x0f", "wire type 7"),
    (b"\x00\x01", "field number 0"),
    (b"\x0d\x01\x02", "truncated fixed32"),
    (b"\x09\x01\x02\x03\x04", "truncated fixed64"),
    (b"\x0a\x01\x0a", "truncated varint"),  # a nested message is checked when read
], ids=["key-only", "half-varint", "overlong-varint", "varint-over-64-bits", "short-len",
        "huge-len", "group-start", "group-end", "type-6", "type-7", "field-0", "short-fixed32",
        "short-fixed64", "bad-nested"])
def test_malformed_input_raises_wire_error(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        msg = Fields.parse(data)
        msg.message(1).string(1)  # reached only by the nested case


def test_a_field_of_the_wrong_wire_type_is_refused() -> None:
    msg = Fields.parse(varint_field(1, 5) + string_field(2, "x"))
    with pytest.raises(WireError, match="field 1: wire type 0, expected 2"):
        msg.string(1)
    with pytest.raises(WireError, match="field 2: wire type 2, expected 0"):
        msg.integer(2)
    assert VARINT == 0 and LEN == 2


@given(st.binary(max_size=200))
def test_random_bytes_parse_or_raise_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        msg = Fields.parse(data)
        for number in list(msg.by_number):
            for read in (msg.string, msg.integer, msg.message, msg.string_map):
                with contextlib.suppress(WireError):  # the wrong wire type for this reader
                    read(number)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=5),
       st.integers(min_value=0, max_value=(1 << 64) - 1), st.text(max_size=50))
def test_what_is_written_reads_back(labels: dict[str, str], number: int, text: str) -> None:
    data = varint_field(1, number) + string_field(2, text) + map_field(3, labels) \
        + message_field(4, string_field(1, text))
    msg = Fields.parse(data)
    assert (msg.integer(1), msg.string(2), msg.string_map(3), msg.message(4).string(1)) == \
        (number, text, labels, text)
