"""The broker's record-batch codecs (``backbone.broker.log.compression``, cramjam + gzip).

Each codec reads what the client libraries write — kafka-python's codec module (its own
python-snappy, lz4 and zstandard), aiokafka's (cramjam), snappy in both the raw form
librdkafka writes and the xerial framing of the Java client, lz4 frames with and without
checksums, zstd with several frames — and what the broker writes is read by both
libraries' decoders. Real clients reading batches the cleaner recompressed are in
``test_compression_clients.py``.
"""

from __future__ import annotations

import re
import struct
import sys
from collections.abc import Callable

import lz4.frame
import pytest
import zstandard
from aiokafka import codec as aiokafka_codec
from kafka import codec as kafka_codec

from backbone.broker.log.compression import CodecUnavailable, compress, decompress
from tests.broker.expect import exactly

PAYLOADS = [b"", b"x", b"records " * 5000, bytes(range(256)) * 300]
GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4

# What the client libraries send, per codec id.
ENCODERS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "gzip/kafka-python": (GZIP, kafka_codec.gzip_encode),
    "gzip/aiokafka": (GZIP, aiokafka_codec.gzip_encode),
    "snappy/raw (librdkafka)": (SNAPPY, lambda d: kafka_codec.snappy_encode(d, False)),
    "snappy/xerial (Java, kafka-python)": (SNAPPY, kafka_codec.snappy_encode),
    "snappy/xerial small blocks": (
        SNAPPY,
        lambda d: kafka_codec.snappy_encode(d, xerial_compatible=True, xerial_blocksize=1000),
    ),
    "snappy/xerial (aiokafka)": (SNAPPY, aiokafka_codec.snappy_encode),
    "lz4/kafka-python": (LZ4, kafka_codec.lz4_encode),
    "lz4/aiokafka": (LZ4, aiokafka_codec.lz4_encode),
    "lz4/checksums, 64 KB blocks": (
        LZ4,
        lambda d: lz4.frame.compress(
            d, block_size=lz4.frame.BLOCKSIZE_MAX64KB, content_checksum=True, block_checksum=True
        ),
    ),
    "zstd/kafka-python": (ZSTD, kafka_codec.zstd_encode),
    "zstd/aiokafka": (ZSTD, aiokafka_codec.zstd_encode),
    "zstd/no content size": (
        ZSTD,
        lambda d: zstandard.ZstdCompressor(write_content_size=False).compress(d),
    ),
}

# What reads the broker's output, per codec id.
DECODERS: dict[int, list[Callable[[bytes], bytes]]] = {
    GZIP: [kafka_codec.gzip_decode, aiokafka_codec.gzip_decode],
    SNAPPY: [kafka_codec.snappy_decode, aiokafka_codec.snappy_decode],
    LZ4: [kafka_codec.lz4_decode, aiokafka_codec.lz4_decode],
    ZSTD: [kafka_codec.zstd_decode, aiokafka_codec.zstd_decode],
}


@pytest.mark.parametrize("source", list(ENCODERS))
@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"{len(p)}B" for p in PAYLOADS])
def test_reads_what_the_clients_write(source: str, payload: bytes) -> None:
    codec, encode = ENCODERS[source]
    encoded = encode(payload)
    assert decompress(codec, encoded) == payload
    assert decompress(codec, memoryview(encoded)) == payload  # as sliced from a segment


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
@pytest.mark.parametrize("payload", PAYLOADS, ids=[f"{len(p)}B" for p in PAYLOADS])
def test_clients_read_what_the_broker_writes(codec: int, payload: bytes) -> None:
    encoded = compress(codec, payload)
    assert decompress(codec, encoded) == payload
    for decode in DECODERS[codec]:
        assert bytes(decode(encoded)) == payload, decode


def test_concatenated_streams_read_as_one() -> None:
    first, second = b"first " * 100, b"second " * 100
    frames = zstandard.ZstdCompressor().compress(first) + zstandard.ZstdCompressor().compress(
        second
    )
    assert decompress(ZSTD, frames) == first + second
    members = kafka_codec.gzip_encode(first) + kafka_codec.gzip_encode(second)
    assert decompress(GZIP, members) == first + second


def test_no_compression_passes_bytes_through() -> None:
    assert compress(0, b"abc") == b"abc"
    assert decompress(0, memoryview(b"abc")) == b"abc"


@pytest.mark.parametrize(
    ("codec", "data", "message"),
    [
        (GZIP, b"not gzip", "gzip data does not decompress: Not a gzipped file (b'no')"),
        (SNAPPY, b"\xff\xff\xff", "snappy data does not decompress: snappy: corrupt input"),
        (LZ4, b"garbage", "lz4 data does not decompress: lz4: ERROR_frameType_unknown"),
        (ZSTD, b"garbage", "zstd data does not decompress: Unknown frame descriptor"),
        (
            SNAPPY,
            b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", 500) + b"short",
            "snappy data does not decompress: xerial snappy block of 500 bytes at 20 overruns",
        ),
    ],
    ids=["gzip", "snappy", "lz4", "zstd", "xerial-overrun"],
)
def test_corrupt_data_is_a_value_error_naming_the_codec(
    codec: int, data: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        decompress(codec, data)


def test_unknown_codec_ids_are_unavailable() -> None:
    with pytest.raises(CodecUnavailable, match=exactly("unknown compression codec id 5")):
        decompress(5, b"")
    with pytest.raises(CodecUnavailable, match=exactly("unknown compression codec id 7")):
        compress(7, b"")


def test_without_cramjam_snappy_lz4_zstd_are_unavailable_and_gzip_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cramjam", None)  # an environment without the package
    for codec, name in ((SNAPPY, "snappy"), (LZ4, "lz4"), (ZSTD, "zstd")):
        message = (
            f"compression codec {name} needs the Python package 'cramjam', which is not installed"
        )
        with pytest.raises(CodecUnavailable, match=exactly(message)):
            decompress(codec, b"\x00")
        with pytest.raises(CodecUnavailable, match=exactly(message)):
            compress(codec, b"data")
    assert decompress(GZIP, compress(GZIP, b"data")) == b"data"
