"""Kafka framing on the socket: a BufferedProtocol that reads size-prefixed frames.

Used by ``server.py`` (one protocol per client connection). The socket reads into
buffers this protocol hands out: small frames several at a time into a reused scratch
buffer (then copied out), a large frame straight into a buffer of its exact size,
allocated only after its 4-byte big-endian size passed the ``max_frame_bytes`` check.
Each whole frame goes to the connection's :class:`FrameSink` (the server's connection
runner) from the read callback: no task and no await per frame. The protocol also
carries the write side's flow control (:meth:`FrameProtocol.drain`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Protocol

__all__ = ["FrameProtocol", "FrameSink"]

logger = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_KEY_VERSION = struct.Struct(">hh")
#: Frames up to this size are received into a reused buffer (several per recv) and copied
#: out; larger ones get a buffer of their own that the socket fills directly.
_SCRATCH_BYTES = 64 * 1024


class FrameSink(Protocol):
    """What the protocol hands frames to (the server's per-connection runner)."""

    @property
    def peer(self) -> str: ...

    @property
    def busy(self) -> bool:
        """True while requests are in flight (an idle timeout then waits)."""
        ...

    def on_frame(self, frame: bytes | bytearray) -> None:
        """One whole frame (without its size prefix)."""

    def end_of_input(self) -> None:
        """No more frames will come (end of stream, refused frame, idle, shutdown)."""


class FrameProtocol(asyncio.BufferedProtocol):
    """Reads frames straight from the socket and hands them to the connection's runner.

    Small frames are received into a reusable scratch buffer (several per ``recv``) and
    copied out; a frame that does not fit gets its own buffer of exactly its size (after
    the size check) and the socket reads into it directly, so a 1 MB produce frame is
    copied once, by the kernel. Reading pauses while too many requests are in flight
    (the runner calls :meth:`hold` / :meth:`release`), and ends for good on a refused
    size, end of stream, idle timeout or when the runner says so (:meth:`finish_input`).
    Also the write side's flow control (:meth:`drain`).
    """

    def __init__(
        self,
        on_connect: Callable[[FrameProtocol, asyncio.Transport], FrameSink | None],
        max_frame_bytes: int,
        idle_timeout_s: float,
    ) -> None:
        self._on_connect = on_connect
        self._max_frame = max_frame_bytes
        self._idle_timeout_s = idle_timeout_s
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._runner: FrameSink | None = None
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
        self._runner = self._on_connect(self, transport)
        if self._runner is None:
            self._done = True
            transport.close()
            return
        self._last_read = self._loop.time()
        self._idle_timer = self._loop.call_later(self._idle_timeout_s, self._check_idle)

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
        # keep writing the queued responses; the runner closes the transport (TLS cannot
        # half-close: asyncio warns when True is returned over it)
        return self._transport is None or self._transport.get_extra_info("sslcontext") is None

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
        timeout = self._idle_timeout_s
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
