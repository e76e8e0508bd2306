"""The broker's TCP server: size-prefixed frames in, responses out, in request order.

This module and ``frames.py`` (the socket reader) are the only ones of the broker
that touch sockets. It knows nothing of
the Kafka messages beyond the frame layout; decoding, handling and encoding are
the job of the ``dispatch`` callable it is given (``handlers.Dispatcher``).

Per connection::

    admission   ── a new connection over ``max_connections`` in all or
                   ``max_connections_per_ip`` from its address is closed at once
                   (``limits.ConnectionCounter``).
    protocol    ── (``frames.FrameProtocol``) reads frames into what has arrived of
                   them, within the limits of ``limits.ConnectionLimits`` and the
                   server's memory pool (``queued_max_request_bytes``). Each whole
                   frame starts one task (``dispatch(frame, connection)``) that is
                   queued; too many queued requests pause reading (backpressure).
                   The frame's pool bytes are given back when its task is done.
    writer task ── awaits the queued tasks strictly in arrival order and writes
                   each response (bytes chunks, or ``os.sendfile`` for log file
                   slices, which are released as soon as they are sent), so responses
                   leave in request order while requests are processed concurrently
                   (a Produce waiting for fsync does not hold up the decoding of the
                   next request).

A TLS listener (``ssl_context``) runs the handshake first (``tls_accept.py``, which
reports failed handshakes), then the same framing over the TLS transport; log slices
are then read and written instead of ``sendfile``. Each connection carries its
listener's name and security protocol and the client certificate, for the
dispatcher's SASL gate and the authorizer.

A frame that cannot be answered (oversized, negative size, undecodable header)
closes that connection with one WARNING naming the peer and the API key; the
dispatcher raises :class:`~backbone.broker.connection.CloseConnection` for those.
Requests queued behind it are cancelled or discarded without further noise. The
WARNINGs about bad connections go through one rate-limited
:class:`~backbone.broker.peer_faults.PeerFaultLog`. Anything else a dispatch raises is
a bug: logged with its traceback, that connection is closed; every other connection
keeps working.

Shutdown (:meth:`KafkaServer.close`): stop accepting, stop reading, let the
in-flight responses drain for a bounded grace period, then cancel what is left
(and log it) and close the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol, cast

from .connection import CloseConnection, Connection
from .frames import FrameProtocol, ReadContext
from .limits import ConnectionCounter, ConnectionLimits, MemoryPool
from .peer_faults import PeerFaultLog
from .stats import RequestStats
from .tls_accept import TlsAcceptor, TlsFailure

__all__ = [
    "Dispatch",
    "KafkaServer",
    "ResponseFilter",
    "ResponseInfo",
]

logger = logging.getLogger(__name__)

_KEY_VERSION = struct.Struct(">hh")
#: Slices smaller than this are read and written as bytes: cheaper than a sendfile round.
_SENDFILE_MIN_BYTES = 64 * 1024
#: How many requests of one connection may be in flight before reading pauses.
_MAX_IN_FLIGHT = 128

_Queued = tuple["asyncio.Task[Sequence[Chunk] | None]", bytes, float, int]
"""A request in a connection's queue: its task, first 8 bytes, arrival time, frame size."""


class FileSliceLike(Protocol):
    """A byte range of an open file (the log's ``FileSlice``), sent with ``sendfile``."""

    position: int
    length: int

    def fileno(self) -> int: ...

    def read(self) -> bytes: ...

    def release(self) -> None:
        """The slice was sent (or will never be): its file may be closed once deleted."""

    def __len__(self) -> int: ...


Chunk = bytes | bytearray | memoryview | Any
"""A piece of a response: bytes-like, or a file slice (anything with ``fileno``)."""


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What a :data:`ResponseFilter` sees about a response about to be written."""

    peer: str
    api_key: int
    api_version: int
    correlation_id: int


ResponseFilter = Callable[[ResponseInfo], bool]
"""Test seam: called before each response is written; False = close the connection
instead of writing it (simulates a response lost after the request took effect)."""

Dispatch = Callable[[memoryview, Connection], Coroutine[Any, Any, Sequence[Chunk] | None]]
"""Decode, handle and encode one request frame (without its size prefix).

Returns the response as chunks (size prefix included), or None when no response
is due (Produce with acks=0). Raises :class:`CloseConnection` when the frame
cannot be answered.
"""


def _frame_header(frame: memoryview | bytes) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) peeked from a frame; -1 where too short."""
    if len(frame) >= 8:
        key, version, correlation_id = struct.unpack_from(">hhi", frame, 0)
        return key, version, correlation_id
    if len(frame) >= 4:
        key, version = _KEY_VERSION.unpack_from(frame, 0)
        return key, version, -1
    return -1, -1, -1


class KafkaServer:
    """An asyncio TCP listener speaking Kafka framing; an async context manager.

    Created by :class:`backbone.broker.Broker`; ``dispatch`` is the handler
    registry's entry point. ``port`` is the bound port after start (useful with 0).
    ``pool`` (bytes of requests being read or queued), ``connections`` (open
    connections per address) and ``faults`` (the rate-limited WARNINGs about bad
    connections) are observable, e.g. by tests.
    """

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ConnectionLimits | None = None,
        shutdown_grace_s: float = 5.0,
        response_filter: ResponseFilter | None = None,
        ssl_context: ssl.SSLContext | None = None,
        listener: str = "PLAINTEXT",
        security_protocol: str = "PLAINTEXT",
        tls_failure: TlsFailure | None = None,
        stats: RequestStats | None = None,
    ) -> None:
        self._dispatch = dispatch
        self.stats = stats
        self._ssl = ssl_context
        self._tls_failure = tls_failure or _log_tls_failure
        self.listener = listener
        self.security_protocol = security_protocol
        self._host = host
        self._port = port
        self.limits = limits if limits is not None else ConnectionLimits()
        self.shutdown_grace_s = shutdown_grace_s
        self.response_filter = response_filter
        self.pool = MemoryPool(self.limits.queued_max_request_bytes)
        self.connections = ConnectionCounter(
            self.limits.max_connections, self.limits.max_connections_per_ip
        )
        self.faults = PeerFaultLog()
        self._read_context = ReadContext(self.limits, self.pool, self.faults)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._connections: dict[int, _ConnectionRunner] = {}
        self._ids = itertools.count(1)
        self._closing = False

    @property
    def port(self) -> int:
        """The port actually bound (after :meth:`start`)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        """How many client connections are open right now."""
        return len(self._connections)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        limits = self.limits

        def framing() -> FrameProtocol:
            return FrameProtocol(self._on_connection, self._read_context)

        factory: Callable[[], asyncio.BaseProtocol] = framing
        context = self._ssl
        if context is not None:  # TLS handshake first (tls_accept.py), then the framing
            handshake_s = min(limits.idle_timeout_s, 30.0)

            def factory() -> asyncio.BaseProtocol:
                return TlsAcceptor(framing, context, handshake_s, self._tls_failure)

        self._server = await loop.create_server(factory, self._host, self._port, reuse_address=True)
        logger.info(
            "listening on %s:%d, listener %s (%s) (max_frame_bytes %d, max_connections %d, "
            "max_connections_per_ip %d, idle_timeout %gs, request_read_timeout %gs, "
            "queued_max_request_bytes %d)",
            self._host,
            self.port,
            self.listener,
            self.security_protocol,
            limits.max_frame_bytes,
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.idle_timeout_s,
            limits.request_read_timeout_s,
            limits.queued_max_request_bytes,
        )

    async def __aenter__(self) -> KafkaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting, drain in-flight responses (bounded by the grace), close all."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        runners = list(self._connections.values())
        for runner in runners:
            runner.stop_reading()
        if runners:
            _done, pending = await asyncio.wait(
                [asyncio.ensure_future(r.drained.wait()) for r in runners],
                timeout=self.shutdown_grace_s,
            )
            for waiter in pending:
                waiter.cancel()
            if pending:
                logger.warning(
                    "shutdown grace of %.1fs over: cancelling %d connection(s) with "
                    "requests in flight",
                    self.shutdown_grace_s,
                    len(pending),
                )
            await asyncio.gather(*pending, return_exceptions=True)
        for runner in runners:
            runner.abort()
        handlers = list(self._handlers)
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self.faults.close()
        logger.info("server stopped")

    def _on_connection(
        self, protocol: FrameProtocol, transport: asyncio.Transport
    ) -> _ConnectionRunner | None:
        """Called by the protocol when a client connects: start its runner (None = refused
        because the server is closing)."""
        if self._closing:
            return None
        peername = transport.get_extra_info("peername")
        host = str(peername[0]) if peername else "?"
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        refused = self.connections.admit(host)
        if refused is not None:
            self.faults.warning(logger, "refusing connection %s: %s", peer, refused)
            return None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ssl_object = transport.get_extra_info("ssl_object")
        connection = Connection(
            next(self._ids),
            peer,
            listener=self.listener,
            security_protocol=self.security_protocol,
            peer_certificate=ssl_object.getpeercert() if ssl_object is not None else None,
        )
        runner = _ConnectionRunner(self, connection, host, protocol, transport)
        self._connections[runner.connection.id] = runner
        task = asyncio.get_running_loop().create_task(runner.run())
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        return runner


def _log_tls_failure(peer: str, reason: str) -> None:
    logger.warning("connection %s refused: %s", peer, reason)


class _ConnectionRunner:
    """Request tasks and the writer of one connection (see the module docstring)."""

    def __init__(
        self,
        server: KafkaServer,
        connection: Connection,
        host: str,
        protocol: FrameProtocol,
        transport: asyncio.Transport,
    ) -> None:
        self.server = server
        self.connection = connection
        self.host = host
        self.protocol = protocol
        self.transport = transport
        self.queue: asyncio.Queue[_Queued | None] = asyncio.Queue()
        self.drained = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._writer_task: asyncio.Task[None] | None = None
        # request tasks in flight -> the memory pool bytes their frame holds
        self._requests: dict[asyncio.Task[Sequence[Chunk] | None], int] = {}
        self._input_ended = False
        self._out: list[Any] = []  # response bytes buffered for the writer's next flush

    @property
    def peer(self) -> str:
        return self.connection.peer

    @property
    def busy(self) -> bool:
        """True while requests are in flight or queued."""
        return bool(self._requests) or not self.queue.empty()

    def on_frame(self, frame: bytes | bytearray, reserved: int) -> None:
        """A whole frame arrived (called by the protocol): start its request task.
        ``reserved`` pool bytes are given back when the task is done."""
        request = self._loop.create_task(self.server._dispatch(memoryview(frame), self.connection))
        self._requests[request] = reserved
        request.add_done_callback(self._request_done)
        self.queue.put_nowait((request, bytes(frame[:8]), self._loop.time(), len(frame)))
        if self.queue.qsize() >= _MAX_IN_FLIGHT:
            self.protocol.hold()

    def _request_done(self, request: asyncio.Task[Sequence[Chunk] | None]) -> None:
        self.server.pool.release(self._requests.pop(request, 0))

    def end_of_input(self) -> None:
        """No more frames come: the writer finishes the queue and exits."""
        if not self._input_ended:
            self._input_ended = True
            self.queue.put_nowait(None)

    async def run(self) -> None:
        self._writer_task = asyncio.create_task(self._write_loop())
        try:
            await asyncio.gather(self._writer_task, return_exceptions=True)
            task = self._writer_task
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                logger.error("connection %s failed", self.peer, exc_info=exc)
        finally:
            self.connection.closing.set()
            self.protocol.finish_input()
            await self._discard_queued()
            self.transport.close()
            try:
                async with asyncio.timeout(self.server.shutdown_grace_s):
                    await self.protocol.wait_closed()
            except TimeoutError:
                self.transport.abort()
            self.server._connections.pop(self.connection.id, None)
            self.server.connections.leave(self.host)
            self.drained.set()

    async def _discard_queued(self) -> None:
        """The writer is gone: cancel the requests still running, and collect the outcome
        of every queued one (a second malformed frame's CloseConnection is not news, and an
        unretrieved task exception would be logged as an ERROR by asyncio)."""
        queued = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                queued.append(item[0])
        for request in self._requests:
            request.cancel()
        if self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)
        for request in queued:
            if request.cancelled():
                continue
            if request.exception() is None:
                _release_slices(request.result())

    def stop_reading(self) -> None:
        """Shutdown step 1: read no more requests; the writer finishes the queued ones."""
        self.protocol.finish_input()

    def abort(self) -> None:
        """Shutdown step 2: cancel everything still running on this connection."""
        self.connection.closing.set()
        if self._writer_task is not None:
            self._writer_task.cancel()

    async def _write_loop(self) -> None:
        """Write the responses in request order. Responses that are ready one after the
        other (Produce requests answered by the same fsync round) leave in one write."""
        queue = self.queue
        ahead: _Queued | None = None  # an item taken from the queue to look at it
        try:
            while True:
                if ahead is not None:
                    item: _Queued | None = ahead
                    ahead = None
                else:
                    item = await queue.get()
                if item is None:
                    await self._flush()
                    return
                if queue.qsize() < _MAX_IN_FLIGHT:
                    self.protocol.release()
                if not await self._write_response(*item):
                    with contextlib.suppress(ConnectionError, OSError):
                        await self._flush()
                    return
                if self._out and not queue.empty():
                    following = queue.get_nowait()
                    if following is None:
                        queue.put_nowait(None)  # the end of input: seen on the next turn
                    else:
                        ahead = following
                        if following[0].done():
                            continue  # its response joins this write
                try:
                    await self._flush()
                except (ConnectionError, OSError) as exc:
                    logger.debug("connection %s: write failed: %s", self.peer, exc)
                    return
        finally:
            if ahead is not None:  # collected by _discard_queued with the rest
                self._requeue(ahead)
            self.protocol.finish_input()

    def _requeue(self, item: _Queued) -> None:
        """Put an item taken to look ahead back at the head of the queue (the writer is
        stopping; ``_discard_queued`` collects what is left)."""
        rest = []
        while not self.queue.empty():
            rest.append(self.queue.get_nowait())
        self.queue.put_nowait(item)
        for other in rest:
            self.queue.put_nowait(other)

    async def _flush(self) -> None:
        """Hand the buffered responses to the transport (one write) and wait for room."""
        out = self._out
        if out:
            self._out = []
            self.transport.writelines(out)
        await self.protocol.drain()

    async def _write_response(
        self,
        request: asyncio.Task[Sequence[Chunk] | None],
        head: bytes,
        arrived: float,
        size: int,
    ) -> bool:
        """Write one response (and count it in the server's stats); False = the connection
        must close. Small responses are buffered (``_out``) for the writer's next flush."""
        key, version, correlation_id = _frame_header(head)
        try:
            chunks = await request
        except CloseConnection as exc:
            self.protocol.report_fault(
                logger,
                "closing connection %s (api key %d v%d, correlation id %d): %s",
                self.peer,
                key,
                version,
                correlation_id,
                exc,
            )
            return False
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if request.cancelled() and not (current is not None and current.cancelling()):
                return False
            raise
        except Exception:
            logger.exception(
                "closing connection %s: request (api key %d v%d) failed without a response",
                self.peer,
                key,
                version,
            )
            return False
        stats = self.server.stats
        if chunks is None:  # acks=0: no response
            if stats is not None:
                stats.record(key, size, 0, self._loop.time() - arrived)
            return True
        try:
            response_filter = self.server.response_filter
            if response_filter is not None and not response_filter(
                ResponseInfo(self.peer, key, version, correlation_id)
            ):
                with contextlib.suppress(ConnectionError, OSError):
                    await self._flush()  # the responses before this one were sent
                logger.info("response filter dropped connection %s before a response", self.peer)
                return False
            await self._write_chunks(chunks)
        except (ConnectionError, OSError) as exc:
            logger.debug("connection %s: write failed: %s", self.peer, exc)
            return False
        finally:
            _release_slices(chunks)
        if stats is not None:
            sent = sum(len(chunk) for chunk in chunks)
            stats.record(key, size, sent, self._loop.time() - arrived)
        return correlation_id != self.connection.close_after_correlation_id

    async def _write_chunks(self, chunks: Sequence[Chunk]) -> None:
        """Buffer the response's bytes in ``_out``; a big file slice is sent at once with
        ``sendfile`` (after what is buffered)."""
        out = self._out
        for chunk in chunks:
            if isinstance(chunk, bytes | bytearray | memoryview):
                out.append(chunk)
                continue
            size = len(chunk)
            if size == 0:
                continue
            if size < _SENDFILE_MIN_BYTES or not hasattr(chunk, "fileno"):
                out.append(chunk.read())
                continue
            await self._flush()
            out = self._out
            await self._sendfile(chunk)

    async def _sendfile(self, chunk: FileSliceLike) -> None:
        """Zero-copy send of a file slice; falls back to read+write when not possible."""
        transport = self.transport
        if transport.is_closing():
            raise ConnectionResetError("connection closed")
        if transport.get_extra_info("sslcontext") is None:
            file = cast("IO[bytes]", _SliceFile(chunk.fileno()))  # all sendfile uses of it
            try:
                sent = await self._loop.sendfile(
                    transport, file, chunk.position, chunk.length, fallback=False
                )
            except (asyncio.SendfileNotAvailableError, NotImplementedError, ValueError):
                sent = 0
            else:
                if sent != chunk.length:
                    raise ConnectionError(f"sendfile sent {sent} of {chunk.length} bytes")
                return
            finally:
                self.protocol.reapply_reading_state()
        transport.write(chunk.read())
        await self.protocol.drain()


def _release_slices(chunks: Sequence[Chunk] | None) -> None:
    """Tell the log's file slices of a response that they are done with."""
    if not chunks:
        return
    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            release = getattr(chunk, "release", None)
            if release is not None:
                release()


class _SliceFile:
    """The file object ``loop.sendfile`` wants, over the log's open descriptor.

    asyncio's native sendfile only calls ``fileno()`` (and ``os.fstat``), sends with
    ``os.sendfile(sock, fd, offset, count)`` and finally ``os.lseek``s the
    descriptor. Moving the shared descriptor's position is harmless: the log
    writes with ``pwritev`` and reads with ``pread``, never at the file position.
    """

    mode = "rb"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return offset
