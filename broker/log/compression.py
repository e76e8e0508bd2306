"""Record-batch compression codecs, used only where records are read: the cleaner and the
timestamp lookup inside one batch (never on the produce or fetch path).

Codec ids are the low three bits of the batch attributes: 0 none, 1 gzip, 2 snappy, 3 lz4,
4 zstd. gzip uses the standard library; snappy (``python-snappy``), lz4 (``lz4``) and zstd
(``zstandard``) are optional imports: when one is missing, :func:`decompress` raises
:class:`CodecUnavailable` and callers fall back to batch-level information.
"""

from __future__ import annotations

import gzip
import importlib
import io
import struct
from types import ModuleType

__all__ = ["CODEC_NAMES", "CodecUnavailable", "compress", "decompress"]

CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

_XERIAL_HEADER = b"\x82SNAPPY\x00"


class CodecUnavailable(Exception):
    """The Python package for this compression codec is not installed (or the id is unknown)."""


def _module(name: str, codec: int) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CodecUnavailable(
            f"compression codec {CODEC_NAMES.get(codec, codec)} needs the Python package "
            f"{name.split('.')[0]!r}, which is not installed"
        ) from exc


def decompress(codec: int, data: bytes | memoryview) -> bytes:
    """Return the uncompressed records section of a batch compressed with ``codec``.

    Raises CodecUnavailable when the codec's package is missing, ValueError when the data
    does not decompress.
    """
    try:
        if codec == 0:
            return bytes(data)
        if codec == 1:
            return gzip.decompress(data)
        if codec == 2:
            snappy = _module("snappy", codec)
            raw = bytes(data)
            if raw.startswith(_XERIAL_HEADER) and len(raw) > 16:
                out = io.BytesIO()
                pos = 16
                while pos < len(raw):
                    (size,) = struct.unpack_from(">i", raw, pos)
                    pos += 4
                    out.write(snappy.decompress(raw[pos : pos + size]))
                    pos += size
                return out.getvalue()
            return bytes(snappy.decompress(raw))
        if codec == 3:
            lz4_frame = _module("lz4.frame", codec)
            return bytes(lz4_frame.decompress(bytes(data)))
        if codec == 4:
            zstandard = _module("zstandard", codec)
            with zstandard.ZstdDecompressor().stream_reader(
                io.BytesIO(bytes(data)), read_across_frames=True
            ) as reader:
                return bytes(reader.read())
    except CodecUnavailable:
        raise
    except Exception as exc:  # every codec library has its own error types
        raise ValueError(
            f"{CODEC_NAMES.get(codec, codec)} data does not decompress: {exc}"
        ) from exc
    raise CodecUnavailable(f"unknown compression codec id {codec}")


def compress(codec: int, data: bytes) -> bytes:
    """Compress a records section with ``codec`` (used by the cleaner when rewriting a batch)."""
    if codec == 0:
        return data
    if codec == 1:
        return gzip.compress(data)
    if codec == 2:
        return bytes(_module("snappy", codec).compress(data))
    if codec == 3:
        return bytes(_module("lz4.frame", codec).compress(data))
    if codec == 4:
        return bytes(_module("zstandard", codec).ZstdCompressor().compress(data))
    raise CodecUnavailable(f"unknown compression codec id {codec}")
