"""Helpers reading what the broker stored on disk: record batch headers of segment files.

Used by the client codec tests to check that a batch a client compressed is stored
compressed with the same codec (the broker never recompresses). No tests here.
"""

from __future__ import annotations

import struct
from pathlib import Path

# attributes & 7 of a magic-v2 record batch
CODEC_IDS = {None: 0, "none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

# baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8, crc uint32,
# attributes int16
_HEADER = struct.Struct(">qiibIh")


def stored_codecs(data_dir: Path, topic: str, partition: int = 0) -> list[int]:
    """The codec id (attributes & 7) of every batch in ``<data_dir>/<topic>-<partition>/*.log``,
    in log order."""
    codecs: list[int] = []
    for path in sorted((Path(data_dir) / f"{topic}-{partition}").glob("*.log")):
        data = path.read_bytes()
        pos = 0
        while pos + _HEADER.size <= len(data):
            _base, length, _epoch, magic, _crc, attributes = _HEADER.unpack_from(data, pos)
            if length <= 0:
                break  # preallocated zeros after the last batch
            assert magic == 2, f"{path}: magic {magic} at byte {pos}"
            codecs.append(attributes & 7)
            pos += 12 + length
    return codecs
