"""The dispatcher: one request frame in, response chunks out (sans-I/O; the server calls it).

``Dispatcher.__call__(frame, connection)`` is the server's ``dispatch``:

1. read the request header (undecodable -> :class:`CloseConnection`), and pass
   the SASL gate (``sasl.admit``: on a SASL listener only ApiVersions and the SASL
   requests until the connection authenticated; anything else closes it);
2. find the handler; an unknown API key closes the connection (no response
   schema exists to answer with); a version outside the handler's range gets
   UNSUPPORTED_VERSION (35) — ApiVersions with a v0 body carrying the supported
   ranges so the client steps down, any other API with the response skeleton
   at the requested version (or the connection is closed if the codec cannot
   encode that version);
3. decode the body (malformed -> :class:`CloseConnection`, logged at WARNING by
   the server with peer and API key);
4. call the handler; a domain error escaping it is answered in the skeleton's
   ``error_code`` fields; any other exception is a bug: logged with its
   traceback and answered UNKNOWN_SERVER_ERROR (-1);
5. encode the response with the right response header version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..connection import CloseConnection, Connection
from ..errors import UnsupportedVersion
from ..protocol import (
    API_NAMES,
    ApiVersionsRequest,
    CodecError,
    Message,
    Records,
    RequestHeader,
    encode_response,
    read_request_header,
    response_header_version,
)
from . import api_versions_response
from .base import BrokerState, Handler, RequestContext, error_code, error_message
from .sasl import RAW_TOKENS, admit, raw_token

__all__ = ["Dispatcher", "fill_errors"]

logger = logging.getLogger(__name__)

Chunk = bytes | Records
"""A piece of a response frame (bytes, or a log file slice sent with sendfile)."""

_M = TypeVar("_M", bound=Message)


def fill_errors(response: _M, code: int, message: str | None) -> _M:
    """Set every top-level ``error_code`` (and ``error_message``) field of a response."""
    names = {f.name for f in response.FIELDS}
    if "error_code" in names:
        setattr(response, "error_code", code)  # noqa: B010
    if message is not None and "error_message" in names:
        setattr(response, "error_message", message)  # noqa: B010
    return response


class Dispatcher:
    """Decodes a frame, runs its handler, encodes the answer (see the module docstring)."""

    def __init__(self, state: BrokerState, registry: Mapping[int, Handler[Any, Any]]) -> None:
        self.state = state
        self.registry = registry

    def api_name(self, api_key: int) -> str:
        return API_NAMES.get(api_key, f"api key {api_key}")

    async def __call__(self, frame: memoryview, connection: Connection) -> Sequence[Chunk] | None:
        if RAW_TOKENS in connection.attributes:  # SASL tokens after SaslHandshake v0
            return await raw_token(self.state, connection, frame)
        try:
            header, offset = read_request_header(frame)
        except CodecError as exc:
            raise CloseConnection(f"undecodable request header: {exc}") from None
        key, version = header.api_key, header.api_version
        admit(self.state, connection, key, self.api_name(key))
        handler = self.registry.get(key)
        if handler is None:
            raise CloseConnection(f"{self.api_name(key)} v{version} is not served by this broker")
        if not handler.min_version <= version <= handler.max_version:
            return self._unsupported_version(header, handler, connection)
        if version < handler.request.min_version:
            return self._refuse_legacy(frame, offset, header, handler, connection)
        try:
            request, _ = handler.request.decode(frame, offset, version)
        except CodecError as exc:
            raise CloseConnection(f"malformed {handler.name} v{version} request: {exc}") from None
        ctx = RequestContext(self.state, header, connection)
        try:
            response = await handler.func(ctx, request)
        except asyncio.CancelledError:
            raise
        except CloseConnection:
            raise
        except Exception as exc:
            code = error_code(exc)
            if code == -1:
                logger.exception(
                    "bug: %s v%d handler failed (peer %s, correlation id %d)",
                    handler.name,
                    version,
                    connection.peer,
                    header.correlation_id,
                )
            response = fill_errors(handler.response(), code, error_message(exc))
        if response is None:
            return None
        return self.encode(header, response)

    def encode(self, header: RequestHeader, response: Message) -> list[Chunk]:
        """The response frame as chunks: size prefix, response header, body chunks."""
        version = header.api_version
        body = response.encode_chunks(version)
        return encode_response(
            response_header_version(header.api_key, version), header.correlation_id, body
        )

    def _refuse_legacy(
        self,
        frame: memoryview,
        offset: int,
        header: RequestHeader,
        handler: Handler[Any, Any],
        connection: Connection,
    ) -> list[Chunk]:
        """A version below what the codec reads (Produce v0-v2): the handler's ``legacy``
        refusal, a response body written by hand."""
        version = header.api_version
        assert handler.legacy is not None  # Handler checks its versions
        try:
            body = handler.legacy(frame[offset:], version, connection)
        except CodecError as exc:
            raise CloseConnection(f"malformed {handler.name} v{version} request: {exc}") from None
        return encode_response(0, header.correlation_id, [body])

    def _unsupported_version(
        self, header: RequestHeader, handler: Handler[Any, Any], connection: Connection
    ) -> list[Chunk]:
        key, version = header.api_key, header.api_version
        logger.warning(
            "%s v%d from %s is not supported (supported: v%d-v%d): answering UNSUPPORTED_VERSION",
            handler.name,
            version,
            connection.peer,
            handler.min_version,
            handler.max_version,
        )
        if key == ApiVersionsRequest.api_key:
            answer = api_versions_response(self.registry, UnsupportedVersion.code)
            return encode_response(0, header.correlation_id, answer.encode_chunks(0))
        cls = handler.response
        if not cls.min_version <= version <= cls.max_version:
            raise CloseConnection(
                f"{handler.name} v{version} is not supported "
                f"(v{handler.min_version}-v{handler.max_version}) and cannot be answered"
            )
        response = fill_errors(
            cls(),
            UnsupportedVersion.code,
            f"{handler.name} v{version} is not supported by this broker "
            f"(v{handler.min_version}-v{handler.max_version})",
        )
        return self.encode(header, response)
