"""The codec's base classes and error: ``Message``, ``Struct``, ``FieldSpec``, ``CodecError``.

Every generated message class (``_generated/``) derives from :class:`Message`
(its nested structs from :class:`Struct`); the wire primitives its decode and
encode functions call are in ``_wire.py``. Nothing here touches a socket.

``records`` fields hold :data:`Records`: a ``memoryview`` slice of the request
frame after decoding (never a copy); on encode, bytes-likes or a
:class:`RecordsSlice` (the log's ``FileSlice``), passed through as one chunk of
their own.
"""

from __future__ import annotations

import builtins
import struct
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeAlias

__all__ = [
    "ZERO_UUID",
    "CodecError",
    "FieldSpec",
    "Message",
    "Records",
    "RecordsSlice",
    "Struct",
]

ZERO_UUID = uuid.UUID(int=0)
OPEN = 0x7FFF  # upper bound of an open version range ("3+")


class CodecError(Exception):
    """The only exception the codec raises for bad input: truncated frame, bad varint,
    null where the schema forbids it, invalid UTF-8, unsupported version, a value that does
    not fit its wire type on encode. The server answers or closes the connection on it."""


class RecordsSlice(Protocol):
    """A ``records`` value that is not in memory: a byte range of a log segment file (the
    log's ``FileSlice``), sent with ``sendfile`` by the server, or ``read()`` when a
    whole message is encoded into bytes."""

    def __len__(self) -> int: ...

    def read(self) -> bytes: ...


Records: TypeAlias = bytes | bytearray | memoryview | RecordsSlice
"""What a ``records`` field holds (the record batches, opaque bytes to the codec)."""


class FieldSpec(NamedTuple):
    """Wire facts of one schema field, generated into each class's ``FIELDS`` ClassVar.

    ``type`` is the JSON type with struct names replaced by ``struct``
    (``int32``, ``string``, ``[]int32``, ``[]struct``, ``struct``, ``records`` ...);
    version ranges are inclusive ``(lo, hi)`` tuples, ``None`` = never.
    Used by the property tests to build values and by anyone introspecting the codec.
    """

    name: str
    json_name: str
    type: str
    struct: builtins.type[Struct] | None
    versions: tuple[int, int]
    nullable: tuple[int, int] | None
    tag: int | None
    tagged: tuple[int, int] | None

    def present(self, version: int) -> bool:
        """Whether the field is on the wire (regular or tagged) in ``version``."""
        lo, hi = self.versions
        return lo <= version <= hi

    def is_nullable(self, version: int) -> bool:
        """Whether null is a legal value in ``version``."""
        return self.nullable is not None and self.nullable[0] <= version <= self.nullable[1]


class Struct:
    """Base of every generated (nested) struct dataclass."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()


_Decode = Callable[[memoryview, int, int], tuple[Any, int]]
_Encode = Callable[[Any, int, list[Any], list[int]], None]


class Message(Struct):
    """Base of every generated top-level message (one per JSON schema).

    ClassVars: ``api_key`` (None for data schemas), ``min_version``, ``max_version``
    (the schema's validVersions), ``flexible_from`` (first flexible version, None if the
    schema has none). The server calls ``decode`` once per request and ``encode_chunks``
    once per response.
    """

    __slots__ = ()
    api_key: ClassVar[int | None] = None
    min_version: ClassVar[int] = 0
    max_version: ClassVar[int] = 0
    flexible_from: ClassVar[int | None] = None
    _decode_plain: ClassVar[_Decode | None] = None
    _decode_flex: ClassVar[_Decode | None] = None
    _encode_plain: ClassVar[_Encode | None] = None
    _encode_flex: ClassVar[_Encode | None] = None

    @classmethod
    def _check_version(cls, version: int) -> bool:
        """Raise CodecError outside validVersions; return whether ``version`` is flexible."""
        if not cls.min_version <= version <= cls.max_version:
            raise CodecError(
                f"{cls.__name__} version {version} is not supported "
                f"(supported versions {cls.min_version}-{cls.max_version})"
            )
        return cls.flexible_from is not None and version >= cls.flexible_from

    @classmethod
    def decode(cls, buf: memoryview | bytes, offset: int, version: int) -> tuple[Self, int]:
        """Decode one ``cls`` at ``buf[offset:]``; return it and the offset after it.

        ``records`` fields become memoryview slices of ``buf`` (no copy). Raises only
        CodecError.
        """
        flexible = cls._check_version(version)
        if type(buf) is not memoryview:
            buf = memoryview(buf)
        fn = cls._decode_flex if flexible else cls._decode_plain
        assert fn is not None, cls
        try:
            message, end = fn(buf, offset, version)
        except (CodecError, struct.error, IndexError, ValueError, OverflowError) as exc:
            # UnicodeDecodeError is a ValueError.
            raise CodecError(f"malformed {cls.__name__} v{version}: {describe(exc)}") from exc
        return message, end

    def _parts(self, version: int) -> tuple[list[Any], list[int]]:
        flexible = self._check_version(version)
        cls = type(self)
        fn = cls._encode_flex if flexible else cls._encode_plain
        assert fn is not None, cls
        parts: list[Any] = []
        records_at: list[int] = []
        try:
            fn(self, version, parts, records_at)
        except (
            CodecError,
            struct.error,
            TypeError,
            AttributeError,
            ValueError,
            OverflowError,
        ) as exc:
            # UnicodeEncodeError is a ValueError.
            raise CodecError(f"cannot encode {type(self).__name__} v{version}: {exc}") from exc
        return parts, records_at

    def encode(self, version: int) -> bytes:
        """Encode as ``version`` into one bytes object (records values are copied in;
        an object without the buffer protocol, like the log's FileSlice, is ``read()``)."""
        parts, records_at = self._parts(version)
        for i in records_at:
            value = parts[i]
            if not isinstance(value, bytes | bytearray | memoryview):
                parts[i] = value.read()
        return b"".join(parts)

    def encode_chunks(self, version: int) -> list[bytes | Records]:
        """Encode as ``version`` into chunks; every non-null ``records`` value is one chunk
        of its own, passed through untouched (zero copy; its length prefix comes from
        ``len(value)``). Everything else is coalesced into bytes chunks."""
        parts, records_at = self._parts(version)
        if not records_at:
            return [b"".join(parts)]
        chunks: list[bytes | Records] = []
        start = 0
        for i in records_at:
            if i > start:
                chunks.append(b"".join(parts[start:i]))
            chunks.append(parts[i])
            start = i + 1
        if start < len(parts):
            chunks.append(b"".join(parts[start:]))
        return chunks


def describe(exc: Exception) -> str:
    """The reason in a decode error message (IndexError only comes from a varint read)."""
    if isinstance(exc, IndexError):
        return "truncated: a varint runs past the end of the frame"
    return str(exc)
