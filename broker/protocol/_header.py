"""Request and response headers, and response framing.

Called by the server once per frame: ``read_request_header`` on every request
(before the body is decoded, so even an unknown API key yields a correlation
id to answer with), ``encode_response`` on every response.

Header versions (``RequestHeader.json`` / ``ResponseHeader.json``):

* request v0: api_key int16, api_version int16, correlation_id int32
  (only ControlledShutdown v0 used it);
* request v1: + client_id nullable int16-length string;
* request v2: + tagged fields (client_id stays a non-compact string);
* response v0: correlation_id; response v1: + tagged fields.

A request uses v2 when its API version is flexible, else v1. Responses
use v1 when flexible, else v0, except ApiVersions: always v0 so that a
client can read the answer before it knows what the broker speaks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._generated import REQUEST_FLEXIBLE_FROM
from ._types import CodecError, describe
from ._wire import I32, read_nullable_string, skip_tagged_fields, write_nullable_string

__all__ = [
    "RequestHeader",
    "encode_request_header",
    "encode_response",
    "read_request_header",
    "read_response_header",
    "request_header_version",
    "response_header_version",
]

API_VERSIONS_KEY = 18
CONTROLLED_SHUTDOWN_KEY = 7
_HEAD = struct.Struct(">hhi")


@dataclass(slots=True)
class RequestHeader:
    """The header in front of every request body."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def _flexible(api_key: int, api_version: int) -> bool:
    flexible_from = REQUEST_FLEXIBLE_FROM.get(api_key)
    return flexible_from is not None and api_version >= flexible_from


def request_header_version(api_key: int, api_version: int) -> int:
    """Header version of a request: 2 if the API version is flexible, else 1
    (0 for ControlledShutdown v0). An unknown api key gets 1."""
    if api_key == CONTROLLED_SHUTDOWN_KEY and api_version == 0:
        return 0
    return 2 if _flexible(api_key, api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    """Header version of a response: 1 if flexible, else 0; ApiVersions is always 0."""
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if _flexible(api_key, api_version) else 0


def read_request_header(frame: memoryview | bytes) -> tuple[RequestHeader, int]:
    """Parse the header of one request ``frame`` (no 4-byte size prefix).

    Returns the header and the offset where the body starts. Raises CodecError on a
    truncated or malformed header.
    """
    if type(frame) is not memoryview:
        frame = memoryview(frame)
    try:
        api_key, api_version, correlation_id = _HEAD.unpack_from(frame, 0)
        version = request_header_version(api_key, api_version)
        if version == 0:
            return RequestHeader(api_key, api_version, correlation_id, None), 8
        client_id, pos = read_nullable_string(frame, 8)
        if version == 2:
            pos = skip_tagged_fields(frame, pos)
    except (CodecError, struct.error, IndexError, ValueError) as exc:
        raise CodecError(f"malformed request header: {describe(exc)}") from exc
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def encode_request_header(header: RequestHeader) -> bytes:
    """Encode ``header`` in the version its (api_key, api_version) calls for (clients, tests)."""
    version = request_header_version(header.api_key, header.api_version)
    try:
        out = _HEAD.pack(header.api_key, header.api_version, header.correlation_id)
    except struct.error as exc:
        raise CodecError(f"cannot encode request header: {exc}") from exc
    if version == 0:
        return out
    out += write_nullable_string(header.client_id)
    if version == 2:
        out += b"\x00"
    return out


def read_response_header(frame: memoryview | bytes, header_version: int) -> tuple[int, int]:
    """Parse a response header (no size prefix): (correlation id, body offset). For clients
    and tests."""
    if type(frame) is not memoryview:
        frame = memoryview(frame)
    try:
        (correlation_id,) = I32.unpack_from(frame, 0)
        pos = skip_tagged_fields(frame, 4) if header_version >= 1 else 4
    except (CodecError, struct.error, IndexError) as exc:
        raise CodecError(f"malformed response header: {describe(exc)}") from exc
    return correlation_id, pos


def encode_response(
    header_version: int, correlation_id: int, body_chunks: Iterable[Any]
) -> list[Any]:
    """Frame a response: [4-byte size + response header, *body_chunks].

    ``body_chunks`` is what ``Message.encode_chunks`` returned (bytes, memoryviews, or
    objects with ``len()`` such as the log's FileSlice); they are passed through untouched.
    """
    chunks = list(body_chunks)
    size = sum(len(c) for c in chunks)
    head = I32.pack(correlation_id) + b"\x00" if header_version >= 1 else I32.pack(correlation_id)
    size += len(head)
    return [I32.pack(size) + head, *chunks]
