"""Hand-made magic-v2 record batches for the validation tests: any field may lie.

``record()`` writes one record from its fields (each length may be overridden, headers
given as raw bytes), ``batch()`` wraps a records section in a 61-byte header with a valid
CRC-32C (so only the contents are wrong), compressing it with a real codec first when
asked. Written from the record format in Kafka's protocol guide; no tests here.
"""

from __future__ import annotations

import gzip
import struct

import cramjam
from crc32c import crc32c

BASE_TS = 1_700_000_000_000
_HEADER = struct.Struct(">qiibIhiqqqhii")


def varint(value: int) -> bytes:
    """Zigzag varint / varlong."""
    raw = (value << 1) ^ (value >> 63)
    raw &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        byte = raw & 0x7F
        raw >>= 7
        if raw:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def record(
    offset_delta: int,
    value: bytes | None = b"v",
    *,
    key: bytes | None = b"k",
    timestamp_delta: int = 0,
    key_length: int | None = None,
    header_count: int | None = None,
    headers: bytes = b"",
    length: int | None = None,
) -> bytes:
    """One record; ``key_length``/``header_count``/``length`` override the true values."""
    body = b"\x00" + varint(timestamp_delta) + varint(offset_delta)
    if key_length is None:
        key_length = -1 if key is None else len(key)
    body += varint(key_length) + (key or b"")
    body += varint(-1 if value is None else len(value)) + (value or b"")
    body += varint(header_count if header_count is not None else (1 if headers else 0))
    body += headers
    return varint(len(body) if length is None else length) + body


def header(key: bytes, value: bytes | None) -> bytes:
    return varint(len(key)) + key + varint(-1 if value is None else len(value)) + (value or b"")


def compress(codec: int, data: bytes) -> bytes:
    if codec == 1:
        return gzip.compress(data)
    if codec == 2:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == 3:
        return bytes(cramjam.lz4.compress(data))
    if codec == 4:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(codec)


def batch(
    section: bytes,
    count: int,
    *,
    last_offset_delta: int | None = None,
    codec: int = 0,
    compress_section: bool = True,
    base_timestamp: int = BASE_TS,
    max_timestamp: int | None = None,
    producer_id: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A batch with a valid CRC around ``section`` (compressed with ``codec`` unless
    ``compress_section`` is False, which stores the given bytes as the payload)."""
    payload = compress(codec, section) if codec and compress_section else section
    lod = count - 1 if last_offset_delta is None else last_offset_delta
    out = bytearray(61)
    _HEADER.pack_into(
        out,
        0,
        0,
        61 - 12 + len(payload),
        -1,
        2,
        0,
        codec,
        lod,
        base_timestamp,
        base_timestamp + lod if max_timestamp is None else max_timestamp,
        producer_id,
        0 if producer_id >= 0 else -1,
        base_sequence,
        count,
    )
    out += payload
    struct.pack_into(">I", out, 17, crc32c(out[21:]))
    return bytes(out)


def good(values: list[bytes], *, timestamp_deltas: list[int] | None = None, **kw: object) -> bytes:
    """A valid batch of ``values`` (keys k0, k1, ...)."""
    deltas = timestamp_deltas or list(range(len(values)))
    section = b"".join(
        record(i, v, key=b"k%d" % i, timestamp_delta=deltas[i]) for i, v in enumerate(values)
    )
    kw.setdefault("max_timestamp", BASE_TS + max(deltas))
    return batch(section, len(values), **kw)  # type: ignore[arg-type]
