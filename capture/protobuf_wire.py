"""The protobuf wire format, as much as the CRI client needs: write small requests, read answers.

The CRI messages the capture exchanges (capture/cri_runtime.py) are few and small, so they are
written and read field by field here rather than through generated stubs and the protobuf
package. The bytes read come from whatever listens on a socket: every length and every varint is
checked against what is left, and anything malformed raises `WireError` (a ValueError), never
IndexError or a huge allocation.

Writing: `varint_field`, `bytes_field`, `string_field`, `bool_field`, `message_field` and
`map_field` each return one encoded field; a message is their concatenation. As proto3 does,
scalars equal to their default (0, "", False) are left out.

Reading: `Fields.parse(data)` splits a message into its fields; `string`, `integer`, `boolean`,
`message`, `messages` and `string_map` read them by field number with proto3's rules (an absent
field is its default; the last of several scalars wins; several occurrences of a message field
merge).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # the wire types proto3 uses (3 and 4 are proto2 groups)
MAX_VARINT_BYTES = 10  # 64 bits, 7 per byte
MAX_FIELD_NUMBER = (1 << 29) - 1

Value = int | bytes


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message (or not the expected field type)."""


# ---- writing -----------------------------------------------------------------------------------

def encode_varint(value: int) -> bytes:
    """A non-negative int as a base-128 varint; negative ints as their 64-bit two's complement,
    as protobuf writes int32/int64."""
    if value < 0:
        value += 1 << 64
    if not 0 <= value < 1 << 64:
        raise WireError(f"varint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    if not 1 <= number <= MAX_FIELD_NUMBER:
        raise WireError(f"field number out of range: {number}")
    return encode_varint(number << 3 | wire_type)


def varint_field(number: int, value: int) -> bytes:
    return _key(number, VARINT) + encode_varint(value) if value else b""


def bool_field(number: int, value: bool) -> bytes:
    return varint_field(number, int(value))


def bytes_field(number: int, value: bytes) -> bytes:
    return _key(number, LEN) + encode_varint(len(value)) + value if value else b""


def string_field(number: int, value: str) -> bytes:
    return bytes_field(number, value.encode())


def message_field(number: int, body: bytes) -> bytes:
    """An embedded message: written even when empty (its presence is what it says then)."""
    return _key(number, LEN) + encode_varint(len(body)) + body


def map_field(number: int, entries: Mapping[str, str]) -> bytes:
    """A `map<string, string>`: one entry message {1: key, 2: value} per pair."""
    return b"".join(message_field(number, string_field(1, k) + string_field(2, v))
                    for k, v in entries.items())


# ---- reading -----------------------------------------------------------------------------------

def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise WireError(f"truncated varint at byte {pos}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >= 1 << 64:
                raise WireError(f"varint at byte {pos} exceeds 64 bits")
            return value, pos + i + 1
    raise WireError(f"varint at byte {pos} longer than {MAX_VARINT_BYTES} bytes")


def iter_fields(data: bytes) -> Iterator[tuple[int, int, Value]]:
    """(field number, wire type, value) of each field of a message, in order: an int for
    VARINT, I64 and I32 (little-endian, unsigned), the bytes for LEN."""
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if not 1 <= number <= MAX_FIELD_NUMBER:
            raise WireError(f"field number {number} at byte {start}")
        value: Value
        if wire_type == VARINT:
            value, pos = read_varint(data, pos)
        elif wire_type in (I64, I32):
            size = 8 if wire_type == I64 else 4
            if pos + size > end:
                raise WireError(f"truncated fixed{size * 8} field {number} at byte {start}")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        elif wire_type == LEN:
            size, pos = read_varint(data, pos)
            if size > end - pos:
                raise WireError(f"field {number} at byte {start} claims {size} bytes, "
                                f"{end - pos} left")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise WireError(f"wire type {wire_type} (field {number}) at byte {start}")
        yield number, wire_type, value


@dataclass(frozen=True)
class Fields:
    """One message's fields by number, each with its occurrences in order."""

    by_number: dict[int, list[tuple[int, Value]]] = field(default_factory=dict)

    @staticmethod
    def parse(data: bytes) -> Fields:
        by_number: dict[int, list[tuple[int, Value]]] = {}
        for number, wire_type, value in iter_fields(data):
            by_number.setdefault(number, []).append((wire_type, value))
        return Fields(by_number)

    def _all(self, number: int, wire_type: int) -> list[Value]:
        found = self.by_number.get(number, [])
        for got, _ in found:
            if got != wire_type:
                raise WireError(f"field {number}: wire type {got}, expected {wire_type}")
        return [value for _, value in found]

    def _bytes(self, number: int) -> list[bytes]:
        return [v for v in self._all(number, LEN) if isinstance(v, bytes)]

    def integer(self, number: int) -> int:
        """A varint field (uint64 view; 0 when absent)."""
        values = self._all(number, VARINT)
        last = values[-1] if values else 0
        return last if isinstance(last, int) else 0

    def boolean(self, number: int) -> bool:
        return self.integer(number) != 0

    def raw(self, number: int) -> bytes:
        values = self._bytes(number)
        return values[-1] if values else b""

    def string(self, number: int) -> str:
        # proto3 strings are UTF-8; a runtime that sends otherwise still gets its text shown
        return self.raw(number).decode("utf-8", errors="replace")

    def message(self, number: int) -> Fields:
        """An embedded message; occurrences merge, as concatenated encodings do."""
        return Fields.parse(b"".join(self._bytes(number)))

    def has(self, number: int) -> bool:
        return number in self.by_number

    def messages(self, number: int) -> list[Fields]:
        """A repeated message field, one Fields per element."""
        return [Fields.parse(v) for v in self._bytes(number)]

    def string_map(self, number: int) -> dict[str, str]:
        """A `map<string, string>` field (the last entry of a key wins)."""
        return {entry.string(1): entry.string(2) for entry in self.messages(number)}
