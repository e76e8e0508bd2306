"""The broker's TCP server: size-prefixed frames in, responses out, in request order.

This is the only module of the broker that touches sockets. It knows nothing of
the Kafka messages beyond the frame layout; decoding, handling and encoding are
the job of the ``dispatch`` callable it is given (``handlers.Dispatcher``).

Per connection::

    protocol    ── (``asyncio.BufferedProtocol``) the socket reads into buffers the
                   protocol hands out: small frames several at a time into a reused
                   scratch buffer, a large frame straight into a buffer of its exact
                   size, allocated only after its 4-byte big-endian size passed the
                   ``max_frame_bytes`` check. Each whole frame starts one task
                   (``dispatch(frame, connection)``) that is queued; too many queued
                   requests pause reading (backpressure).
    writer task ── awaits the queued tasks strictly in arrival order and writes
                   each response (bytes chunks, or ``os.sendfile`` for log file
                   slices), so responses leave in request order while requests
                   are processed concurrently (a Produce waiting for fsync does
                   not hold up the decoding of the next request).

A frame that cannot be answered (oversized, negative size, undecodable header)
closes that connection with a WARNING naming the peer and the API key; the
dispatcher raises :class:`CloseConnection` for those. Anything else a dispatch
raises is a bug: logged with its traceback, that connection is closed; every
other connection keeps working.

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
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "CloseConnection",
    "Connection",
    "Dispatch",
    "KafkaServer",
    "ResponseFilter",
    "ResponseInfo",
]

logger = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_KEY_VERSION = struct.Struct(">hh")
#: Slices smaller than this are read and written as bytes: cheaper than a sendfile round.
_SENDFILE_MIN_BYTES = 64 * 1024
#: How many requests of one connection may be in flight before reading pauses.
_MAX_IN_FLIGHT = 128
#: Frames up to this size are received into a reused buffer (several per recv) and copied
#: out; larger ones get a buffer of their own that the socket fills directly.
_SCRATCH_BYTES = 64 * 1024


class CloseConnection(Exception):
    """Raised by a dispatch when no response can be built: the server closes the connection.

    The message says why; the server logs it at WARNING with the peer and API key.
    """


class FileSliceLike(Protocol):
    """A byte range of an open file (the log's ``FileSlice``), sent with ``sendfile``."""

    position: int
    length: int

    def fileno(self) -> int: ...

    def read(self) -> bytes: ...

    def __len__(self) -> int: ...


Chunk = bytes | bytearray | memoryview | Any
"""A piece of a response: bytes-like, or a file slice (anything with ``fileno``)."""


@dataclass(slots=True)
class Connection:
    """Per-connection state handed to the dispatcher with every frame.

    ``produce_lane`` serialises the append phase of Produce requests of this
    connection so pipelined idempotent batches are appended in request order.
    ``attributes`` is free per-connection storage for handlers (e.g. SASL state).
    """

    id: int
    peer: str
    produce_lane: asyncio.Lock = field(default_factory=asyncio.Lock)
    attributes: dict[str, Any] = field(default_factory=dict)
    closing: asyncio.Event = field(default_factory=asyncio.Event)


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

Dispatch = Callable[[memoryview, Connection], Awaitable[Sequence[Chunk] | None]]
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
    """

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_frame_bytes: int = 100 * 1024 * 1024,
        idle_timeout_s: float = 600.0,
        shutdown_grace_s: float = 5.0,
        response_filter: ResponseFilter | None = None,
    ) -> None:
        self._dispatch = dispatch
        self._host = host
        self._port = port
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.shutdown_grace_s = shutdown_grace_s
        self.response_filter = response_filter
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
        self._server = await loop.create_server(
            lambda: _FrameProtocol(self), self._host, self._port, reuse_address=True
        )
        logger.info("listening on %s:%d", self._host, self.port)

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
        logger.info("server stopped")

    def _on_connection(
        self, protocol: _FrameProtocol, transport: asyncio.Transport
    ) -> _ConnectionRunner | None:
        """Called by the protocol when a client connects: start its runner (None = refused
        because the server is closing)."""
        if self._closing:
            return None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peername = transport.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        runner = _ConnectionRunner(self, Connection(next(self._ids), peer), protocol, transport)
        self._connections[runner.connection.id] = runner
        task = asyncio.get_running_loop().create_task(runner.run())
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        return runner


class _FrameProtocol(asyncio.BufferedProtocol):
    """Reads frames straight from the socket and hands them to the connection's runner.

    Small frames are received into a reusable scratch buffer (several per ``recv``) and
    copied out; a frame that does not fit gets its own buffer of exactly its size (after
    the size check) and the socket reads into it directly, so a 1 MB produce frame is
    copied once, by the kernel. Reading pauses while too many requests are in flight
    (the runner calls :meth:`hold` / :meth:`release`), and ends for good on a refused
    size, end of stream, idle timeout or when the runner says so (:meth:`finish_input`).
    Also the write side's flow control (:meth:`drain`).
    """

    def __init__(self, server: KafkaServer) -> None:
        self._server = server
        self._max_frame = server.max_frame_bytes
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._runner: _ConnectionRunner | None = None
        self._scratch = bytearray(_SCRATCH_BYTES)
        self._scratch_view = memoryview(self._scratch)
        self._start = 0  # unparsed bytes are scratch[_start:_end]
        self._end = 0
        self._frame: bytearray | None = None  # a large frame being filled
        self._frame_view: memoryview | None = None
        self._filled = 0
        self._refused_size: int | None = None
        self._refuse_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self._held = False
        self._done = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost = False
        self._closed: asyncio.Future[None] = self._loop.create_future()

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._runner = self._server._on_connection(self, transport)
        if self._runner is None:
            self._done = True
            transport.close()
            return
        self._last_read = self._loop.time()
        self._idle_timer = self._loop.call_later(self._server.idle_timeout_s, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done and self._runner is not None:
            if self._refused_size is not None:
                self._log_refusal("unknown")
            else:
                if exc is not None:
                    logger.debug("connection %s: read failed: %s", self._runner.peer, exc)
                self._warn_partial()
                self.finish_input()
        self._lost = True
        self._cancel_timers()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def eof_received(self) -> bool:
        if not self._done:
            if self._refused_size is not None:
                self._log_refusal("unknown")
            else:
                self._warn_partial()
                self.finish_input()
        return True  # keep writing the queued responses; the runner closes the transport

    # ------------------------------------------------------------------ reading
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._done:
            self._start = self._end = 0
            return self._scratch_view
        if self._frame_view is not None:
            return self._frame_view[self._filled :]
        if self._end == len(self._scratch):
            self._compact()
        return self._scratch_view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._done:
            return
        self._last_read = self._loop.time()
        frame = self._frame
        if frame is not None:
            self._filled += nbytes
            if self._filled == len(frame):
                self._frame = self._frame_view = None
                self._deliver(frame)
            return
        self._end += nbytes
        if self._refused_size is not None:
            self._check_refusal()
        else:
            self._parse()

    def _parse(self) -> None:
        """Deliver every whole frame in the scratch buffer (until held or done)."""
        scratch, view = self._scratch, self._scratch_view
        while not self._held and not self._done:
            start = self._start
            available = self._end - start
            if available < 4:
                break
            (size,) = _SIZE.unpack_from(scratch, start)
            if size < 0 or size > self._max_frame:
                self._refused_size = size
                self._check_refusal()
                return
            if available - 4 >= size:
                self._start = start + 4 + size
                self._deliver(bytes(view[start + 4 : start + 4 + size]))
                continue
            if size + 4 > len(scratch):  # large: its own buffer, filled by the socket
                frame = bytearray(size)
                have = available - 4
                frame[:have] = view[start + 4 : self._end]
                self._start = self._end = 0
                self._frame, self._frame_view, self._filled = frame, memoryview(frame), have
            break
        if self._start == self._end:
            self._start = self._end = 0

    def _compact(self) -> None:
        available = self._end - self._start
        self._scratch[:available] = bytes(self._scratch_view[self._start : self._end])
        self._start, self._end = 0, available

    def _deliver(self, frame: bytes | bytearray) -> None:
        assert self._runner is not None
        self._runner.on_frame(frame)

    def _partial(self) -> int:
        """Bytes of an incomplete frame (body bytes once its size prefix is complete)."""
        if self._frame is not None:
            return self._filled
        available = self._end - self._start
        return available - 4 if available >= 4 else available

    def _warn_partial(self) -> None:
        partial = self._partial()
        if partial and self._runner is not None:
            logger.warning(
                "connection %s closed in the middle of a frame (%d bytes of it read)",
                self._runner.peer,
                partial,
            )

    def _check_refusal(self) -> None:
        """An oversized or negative size: wait (up to 1 s) for the API key to log it."""
        if self._end - self._start >= 8:
            key, version = _KEY_VERSION.unpack_from(self._scratch, self._start + 4)
            self._log_refusal(f"{key} v{version}")
        elif self._refuse_timer is None:
            self._refuse_timer = self._loop.call_later(1.0, self._log_refusal, "unknown")

    def _log_refusal(self, api: str) -> None:
        if self._done or self._runner is None:
            return
        logger.warning(
            "closing connection %s: frame of %d bytes (api key %s) is outside the limit "
            "of 0..%d bytes (max_frame_bytes)",
            self._runner.peer,
            self._refused_size,
            api,
            self._max_frame,
        )
        self.finish_input()

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self._done or self._runner is None:
            return
        timeout = self._server.idle_timeout_s
        quiet = self._loop.time() - self._last_read
        if quiet < timeout:
            self._idle_timer = self._loop.call_later(timeout - quiet, self._check_idle)
            return
        if self._runner.busy:  # a long poll is in flight: the connection is not idle
            self._idle_timer = self._loop.call_later(timeout, self._check_idle)
            return
        logger.info("closing connection %s: idle for %.0fs", self._runner.peer, timeout)
        self.finish_input()

    def _cancel_timers(self) -> None:
        for timer in (self._refuse_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._refuse_timer = self._idle_timer = None

    # ------------------------------------------------------------------ runner's controls
    def hold(self) -> None:
        """Backpressure: stop reading until :meth:`release`."""
        self._held = True
        if self._transport is not None:
            self._transport.pause_reading()

    def release(self) -> None:
        """Resume reading after :meth:`hold` (frames already received are parsed first)."""
        if not self._held:
            return
        self._held = False
        if self._done:
            return
        self._parse()
        if not self._held and not self._done and self._transport is not None:
            self._transport.resume_reading()

    def reapply_reading_state(self) -> None:
        """After ``loop.sendfile`` (which pauses and resumes reading on its own)."""
        if (self._held or self._done) and self._transport is not None:
            self._transport.pause_reading()

    def finish_input(self) -> None:
        """Read no more frames; the runner finishes the queued requests, then closes."""
        if self._done:
            return
        self._done = True
        self._cancel_timers()
        if self._transport is not None:
            self._transport.pause_reading()
        if self._runner is not None:
            self._runner.end_of_input()

    # ------------------------------------------------------------------ writing
    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._lost:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None
        if self._lost:
            raise ConnectionResetError("connection lost")

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)


class _ConnectionRunner:
    """Request tasks and the writer of one connection (see the module docstring)."""

    def __init__(
        self,
        server: KafkaServer,
        connection: Connection,
        protocol: _FrameProtocol,
        transport: asyncio.Transport,
    ) -> None:
        self.server = server
        self.connection = connection
        self.protocol = protocol
        self.transport = transport
        self.queue: asyncio.Queue[tuple[asyncio.Task[Sequence[Chunk] | None], bytes] | None] = (
            asyncio.Queue()
        )
        self.drained = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._writer_task: asyncio.Task[None] | None = None
        self._requests: set[asyncio.Task[Sequence[Chunk] | None]] = set()
        self._input_ended = False

    @property
    def peer(self) -> str:
        return self.connection.peer

    @property
    def busy(self) -> bool:
        """True while requests are in flight or queued."""
        return bool(self._requests) or not self.queue.empty()

    def on_frame(self, frame: bytes | bytearray) -> None:
        """A whole frame arrived (called by the protocol): start its request task."""
        request = self._loop.create_task(self.server._dispatch(memoryview(frame), self.connection))
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)
        self.queue.put_nowait((request, bytes(frame[:8])))
        if self.queue.qsize() >= _MAX_IN_FLIGHT:
            self.protocol.hold()

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
                logger.error("connection %s failed", self.peer, exc_info=(type(exc), exc, None))
        finally:
            self.connection.closing.set()
            self.protocol.finish_input()
            for request in self._requests:
                request.cancel()
            if self._requests:
                await asyncio.gather(*self._requests, return_exceptions=True)
            self.transport.close()
            try:
                async with asyncio.timeout(self.server.shutdown_grace_s):
                    await self.protocol.wait_closed()
            except TimeoutError:
                self.transport.abort()
            self.server._connections.pop(self.connection.id, None)
            self.drained.set()

    def stop_reading(self) -> None:
        """Shutdown step 1: read no more requests; the writer finishes the queued ones."""
        self.protocol.finish_input()

    def abort(self) -> None:
        """Shutdown step 2: cancel everything still running on this connection."""
        self.connection.closing.set()
        if self._writer_task is not None:
            self._writer_task.cancel()

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                if self.queue.qsize() < _MAX_IN_FLIGHT:
                    self.protocol.release()
                request, head = item
                if not await self._write_response(request, head):
                    return
        finally:
            self.protocol.finish_input()

    async def _write_response(
        self, request: asyncio.Task[Sequence[Chunk] | None], head: bytes
    ) -> bool:
        """Write one response; False = the connection must close."""
        key, version, correlation_id = _frame_header(head)
        try:
            chunks = await request
        except CloseConnection as exc:
            logger.warning(
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
        if chunks is None:
            return True
        response_filter = self.server.response_filter
        if response_filter is not None and not response_filter(
            ResponseInfo(self.peer, key, version, correlation_id)
        ):
            logger.info("response filter dropped connection %s before a response", self.peer)
            return False
        try:
            await self._write_chunks(chunks)
        except (ConnectionError, OSError) as exc:
            logger.debug("connection %s: write failed: %s", self.peer, exc)
            return False
        return True

    async def _write_chunks(self, chunks: Sequence[Chunk]) -> None:
        transport = self.transport
        pending: list[Any] = []
        for chunk in chunks:
            if isinstance(chunk, bytes | bytearray | memoryview):
                pending.append(chunk)
                continue
            size = len(chunk)
            if size == 0:
                continue
            if size < _SENDFILE_MIN_BYTES or not hasattr(chunk, "fileno"):
                pending.append(chunk.read())
                continue
            if pending:
                transport.writelines(pending)
                pending = []
            await self._sendfile(chunk)
        if pending:
            transport.writelines(pending)
        await self.protocol.drain()

    async def _sendfile(self, chunk: FileSliceLike) -> None:
        """Zero-copy send of a file slice; falls back to read+write when not possible."""
        transport = self.transport
        if transport.is_closing():
            raise ConnectionResetError("connection closed")
        if transport.get_extra_info("sslcontext") is None:
            file = _SliceFile(chunk.fileno())
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
