"""Record-batch compression codecs, used only where records are read: the cleaner, the key
check of compacted topics and the timestamp lookup inside one batch (never on the fetch
path, never to rewrite what a producer sent).

Codec ids are the low three bits of the batch attributes: 0 none, 1 gzip, 2 snappy, 3 lz4,
4 zstd. gzip uses the standard library; snappy, lz4 and zstd use ``cramjam`` (the codec
package aiokafka uses too). The formats are Kafka's:

- gzip: a gzip stream (members concatenated are read as one);
- snappy: raw snappy blocks, or the xerial framing the Java client (and aiokafka, and
  kafka-python) send: the 16-byte header ``\\x82SNAPPY\\x00`` + version + compatible
  version, then blocks of ``[int32 size][raw snappy block]``. Written as one raw block,
  which every client reads (librdkafka writes raw snappy itself);
- lz4: the LZ4 frame format (KIP-57), with or without block and content checksums;
- zstd: zstd frames (several frames concatenated are read as one).

When ``cramjam`` is missing, :func:`decompress` raises :class:`CodecUnavailable` and
callers fall back to batch-level information (the cleaner keeps such a batch unchanged).
"""

from __future__ import annotations

import gzip
import importlib
import struct
from types import ModuleType

__all__ = ["CODEC_NAMES", "CodecUnavailable", "compress", "decompress"]

CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

_XERIAL_HEADER = b"\x82SNAPPY\x00"
_XERIAL_HEADER_SIZE = 16  # magic (8), version (4), compatible version (4)
_BLOCK_SIZE = struct.Struct(">i")


class CodecUnavailable(Exception):
    """The Python package for this compression codec is not installed (or the id is unknown)."""


def _cramjam(codec: int) -> ModuleType:
    try:
        return importlib.import_module("cramjam")
    except ImportError as exc:
        raise CodecUnavailable(
            f"compression codec {CODEC_NAMES[codec]} needs the Python package 'cramjam', "
            "which is not installed"
        ) from exc


def _unxerial(cramjam: ModuleType, data: bytes) -> bytes:
    """The payload of a xerial-framed snappy stream (see the module docstring)."""
    out = []
    pos = _XERIAL_HEADER_SIZE
    while pos < len(data):
        (size,) = _BLOCK_SIZE.unpack_from(data, pos)
        pos += _BLOCK_SIZE.size
        if size < 0 or pos + size > len(data):
            raise ValueError(f"xerial snappy block of {size} bytes at {pos} overruns the data")
        out.append(bytes(cramjam.snappy.decompress_raw(data[pos : pos + size])))
        pos += size
    return b"".join(out)


def decompress(codec: int, data: bytes | memoryview) -> bytes:
    """Return the uncompressed records section of a batch compressed with ``codec``.

    Raises CodecUnavailable when the codec's package is missing (or the id is unknown),
    ValueError when the data does not decompress.
    """
    if codec == 0:
        return bytes(data)
    if codec not in CODEC_NAMES:
        raise CodecUnavailable(f"unknown compression codec id {codec}")
    try:
        if codec == 1:
            return gzip.decompress(data)
        cramjam = _cramjam(codec)
        raw = bytes(data)
        if codec == 2:
            if raw.startswith(_XERIAL_HEADER) and len(raw) >= _XERIAL_HEADER_SIZE:
                return _unxerial(cramjam, raw)
            return bytes(cramjam.snappy.decompress_raw(raw))
        if codec == 3:
            return bytes(cramjam.lz4.decompress(raw))
        return bytes(cramjam.zstd.decompress(raw))
    except CodecUnavailable:
        raise
    except Exception as exc:  # gzip, struct and cramjam each have their own error types
        raise ValueError(f"{CODEC_NAMES[codec]} data does not decompress: {exc}") from exc


def compress(codec: int, data: bytes) -> bytes:
    """Compress a records section with ``codec`` (the cleaner, when it rewrites a batch)."""
    if codec == 0:
        return data
    if codec not in CODEC_NAMES:
        raise CodecUnavailable(f"unknown compression codec id {codec}")
    if codec == 1:
        return gzip.compress(data)
    cramjam = _cramjam(codec)
    if codec == 2:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == 3:
        return bytes(cramjam.lz4.compress(data))
    return bytes(cramjam.zstd.compress(data))
