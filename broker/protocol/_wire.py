"""Wire primitives of the Kafka protocol: varints, strings, bytes, arrays, tagged fields.

Called by the generated message code (``_generated/``) on every request and
response, and by ``_header.py``. Nothing here touches a socket.

Conventions (see ``protocol.html``, "Protocol Primitive Types"):

* Readers take ``(buf: memoryview, pos: int)`` and return ``(value, new_pos)``.
  A short buffer shows up as ``struct.error`` / ``IndexError`` inside a
  reader; ``Message.decode`` turns every such fault into ``CodecError``, so the
  readers stay branch-light on the hot path.
* Writers take a value and return ``bytes`` (length prefix + payload).
* "Compact" = flexible-version encoding: unsigned-varint length + 1
  (0 = null), instead of int16/int32 lengths (-1 = null).
* ``records`` values decode to a ``memoryview`` slice of the frame, never a
  copy; on encode they are passed through as one part of their own.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from ._types import CodecError

I8 = struct.Struct(">b")
I16 = struct.Struct(">h")
U16 = struct.Struct(">H")
I32 = struct.Struct(">i")
U32 = struct.Struct(">I")
I64 = struct.Struct(">q")
F64 = struct.Struct(">d")

_NULL_I16 = b"\xff\xff"
_NULL_I32 = b"\xff\xff\xff\xff"
_ONE_BYTE = [bytes((i,)) for i in range(128)]


# ---------------------------------------------------------------- varints


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Unsigned varint (at most 5 bytes, 32 bits)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos + 1
        shift += 7
        if shift > 28:
            raise CodecError("unsigned varint is longer than 5 bytes")


def read_uvarlong(buf: memoryview, pos: int) -> tuple[int, int]:
    """Unsigned varlong (at most 10 bytes, 64 bits)."""
    value = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CodecError("varlong is longer than 10 bytes")


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Zigzag-encoded signed varint (32 bits), as used inside records."""
    n, pos = read_uvarint(buf, pos)
    return (n >> 1) ^ -(n & 1), pos


def read_varlong(buf: memoryview, pos: int) -> tuple[int, int]:
    """Zigzag-encoded signed varlong (64 bits), as used inside records."""
    n, pos = read_uvarlong(buf, pos)
    return (n >> 1) ^ -(n & 1), pos


def write_uvarint(n: int) -> bytes:
    """Unsigned varint; ``n`` must be in [0, 2**32)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if n < 0 or n > 0xFFFFFFFF:
        raise CodecError(f"{n} does not fit an unsigned varint")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_uvarlong(n: int) -> bytes:
    """Unsigned varlong; ``n`` must be in [0, 2**64)."""
    if n < 0 or n > 0xFFFFFFFFFFFFFFFF:
        raise CodecError(f"{n} does not fit an unsigned varlong")
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def write_varint(n: int) -> bytes:
    """Zigzag signed varint (32 bits)."""
    if not -0x80000000 <= n <= 0x7FFFFFFF:
        raise CodecError(f"{n} does not fit a varint")
    return write_uvarint(((n << 1) ^ (n >> 31)) & 0xFFFFFFFF)


def write_varlong(n: int) -> bytes:
    """Zigzag signed varlong (64 bits)."""
    if not -0x8000000000000000 <= n <= 0x7FFFFFFFFFFFFFFF:
        raise CodecError(f"{n} does not fit a varlong")
    return write_uvarlong(((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF)


# ---------------------------------------------------------------- readers


def _slice(buf: memoryview, pos: int, n: int) -> memoryview:
    end = pos + n
    if end > len(buf):
        raise CodecError(f"truncated: {n} bytes needed at offset {pos}, {len(buf) - pos} left")
    return buf[pos:end]


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = I16.unpack_from(buf, pos)
    if n < 0:
        raise CodecError(f"null string at offset {pos} where the schema forbids null")
    pos += 2
    return str(_slice(buf, pos, n), "utf-8"), pos + n


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (n,) = I16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        return None, pos
    return str(_slice(buf, pos, n), "utf-8"), pos + n


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise CodecError(f"null compact string at offset {pos} where the schema forbids null")
    n -= 1
    return str(_slice(buf, pos, n), "utf-8"), pos + n


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    return str(_slice(buf, pos, n), "utf-8"), pos + n


def read_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = I32.unpack_from(buf, pos)
    if n < 0:
        raise CodecError(f"null bytes at offset {pos} where the schema forbids null")
    pos += 4
    return bytes(_slice(buf, pos, n)), pos + n


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return None, pos
    return bytes(_slice(buf, pos, n)), pos + n


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise CodecError(f"null compact bytes at offset {pos} where the schema forbids null")
    n -= 1
    return bytes(_slice(buf, pos, n)), pos + n


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    return bytes(_slice(buf, pos, n)), pos + n


def read_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    """Nullable records (int32 size): a memoryview slice of ``buf``, not a copy."""
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return None, pos
    return _slice(buf, pos, n), pos + n


def read_compact_records(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    """Nullable compact records (unsigned varint size + 1): a memoryview slice of ``buf``."""
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    return _slice(buf, pos, n), pos + n


def read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    return uuid.UUID(bytes=bytes(_slice(buf, pos, 16))), pos + 16


def read_count(buf: memoryview, pos: int) -> tuple[int, int]:
    """int32 array length (-1 = null)."""
    (n,) = I32.unpack_from(buf, pos)
    return n, pos + 4


def read_compact_count(buf: memoryview, pos: int) -> tuple[int, int]:
    """Compact array length (unsigned varint, 0 = null): returns length or -1."""
    n, pos = read_uvarint(buf, pos)
    return n - 1, pos


def check_count(buf: memoryview, pos: int, n: int, min_size: int) -> None:
    """Refuse an array count that cannot fit in what is left of the frame."""
    if n * min_size > len(buf) - pos:
        raise CodecError(
            f"array of {n} elements at offset {pos} exceeds the {len(buf) - pos} bytes left"
        )


def read_fixed_array(
    buf: memoryview, pos: int, n: int, code: str, size: int
) -> tuple[list[Any], int]:
    """Array of ``n`` fixed-width values (struct format ``code``, ``size`` bytes each)."""
    check_count(buf, pos, n, size)
    return list(struct.unpack_from(f">{n}{code}", buf, pos)), pos + n * size


def skip_tagged_field(buf: memoryview, pos: int) -> tuple[int, int, int]:
    """Read a tag header; return (tag, start of data, end of data)."""
    tag, pos = read_uvarint(buf, pos)
    size, pos = read_uvarint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise CodecError(f"truncated tagged field {tag} at offset {pos}")
    return tag, pos, end


def skip_tagged_fields(buf: memoryview, pos: int) -> int:
    """Skip a whole tagged-fields section (every tag unknown here); return the end offset."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, _start, pos = skip_tagged_field(buf, pos)
    return pos


def tagged_field_end(tag: int, pos: int, end: int) -> None:
    """Check that a known tagged field consumed exactly its declared size."""
    if pos != end:
        raise CodecError(f"tagged field {tag} declared {end} but its value ended at {pos}")


# ---------------------------------------------------------------- writers


def _null(kind: str) -> CodecError:
    return CodecError(f"null {kind} where the schema forbids null")


def write_string(s: str) -> bytes:
    if s is None:
        raise _null("string")
    data = s.encode("utf-8")
    if len(data) > 0x7FFF:
        raise CodecError(f"string of {len(data)} bytes exceeds the int16 length limit")
    return I16.pack(len(data)) + data


def write_nullable_string(s: str | None) -> bytes:
    if s is None:
        return _NULL_I16
    return write_string(s)


def write_compact_string(s: str) -> bytes:
    if s is None:
        raise _null("string")
    data = s.encode("utf-8")
    n = len(data) + 1
    return (_ONE_BYTE[n] if n < 0x80 else write_uvarint(n)) + data


def write_compact_nullable_string(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    return write_compact_string(s)


def write_bytes(b: bytes) -> bytes:
    if b is None:
        raise _null("bytes")
    return I32.pack(len(b)) + bytes(b)


def write_nullable_bytes(b: bytes | None) -> bytes:
    if b is None:
        return _NULL_I32
    return I32.pack(len(b)) + bytes(b)


def write_compact_bytes(b: bytes) -> bytes:
    if b is None:
        raise _null("bytes")
    return write_uvarint(len(b) + 1) + bytes(b)


def write_compact_nullable_bytes(b: bytes | None) -> bytes:
    if b is None:
        return b"\x00"
    return write_uvarint(len(b) + 1) + bytes(b)


def write_uuid(u: uuid.UUID) -> bytes:
    return u.bytes


def write_fixed_array(code: str, values: list[Any]) -> bytes:
    return struct.pack(f">{len(values)}{code}", *values)


def write_tagged_fields(tags: list[tuple[int, bytes]]) -> bytes:
    """A tagged-fields section from (tag, encoded value) pairs in ascending tag order."""
    out = [write_uvarint(len(tags))]
    for tag, data in tags:
        out.append(write_uvarint(tag))
        out.append(write_uvarint(len(data)))
        out.append(data)
    return b"".join(out)


def not_nullable(name: str, version: int) -> CodecError:
    """The error for a None where ``version`` has no nullableVersions for ``name``."""
    return CodecError(f"field {name} is not nullable in version {version}")
