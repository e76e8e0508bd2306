"""Kafka framing on the socket: a BufferedProtocol that reads size-prefixed frames.

Used by ``server.py`` (one protocol per client connection). What a frame costs is what
has arrived of it, never what its 4-byte size announces:

- reads land in one scratch buffer shared by every connection of the server (64 KiB;
  ``get_buffer`` and ``buffer_updated`` of one read run back to back on the loop, so
  no two connections use it at once). Whole frames in it are copied out and handed on;
- the incomplete frame left at the end of a read gets a buffer of its own, allocated as
  its bytes arrive: the first piece is at most ``max(64 KiB, 2 x bytes read)``, each
  further piece at most the size read so far (so a frame's buffers are never more than
  about twice what was received) and the socket reads straight into them. A frame in
  several pieces is joined (one copy) when complete;
- every byte held (frames waiting for or in their handler, the parts of frames, bytes
  read but not parsed) is accounted in the server's :class:`~.limits.MemoryPool`
  (``queued_max_request_bytes``); when it is exhausted every connection pauses reading
  (but the one with the oldest incomplete frame) until handled requests give memory
  back.

Each whole frame goes to the connection's :class:`FrameSink` (the server's connection
runner) from the read callback: no task and no await per frame.

Limits enforced here (:class:`~.limits.ConnectionLimits`): a size outside
``0..max_frame_bytes`` closes the connection (after waiting up to 1 s for the API key, to
name it); a request must arrive whole within ``request_read_timeout_s`` of its first
byte, so a slow sender cannot hold a connection and its memory (time paused by the
connection's own backpressure does not count); a connection quiet for
``idle_timeout_s`` with nothing in flight is closed. Each bad connection is logged as
one WARNING through the server's rate-limited :class:`~.peer_faults.PeerFaultLog`.

The protocol also carries the write side's flow control (:meth:`FrameProtocol.drain`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import Callable
from typing import Protocol

from .limits import ConnectionLimits, MemoryPool
from .peer_faults import PeerFaultLog

__all__ = ["SCRATCH_BYTES", "FrameProtocol", "FrameSink", "ReadContext"]

logger = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_KEY_VERSION = struct.Struct(">hh")
#: The shared read buffer: frames up to this size (size prefix included) are parsed from it.
SCRATCH_BYTES = 64 * 1024
#: The first piece of an incomplete frame's buffer is at least this big (or the frame's size).
_PIECE_MIN = 64 * 1024
#: No piece of a frame's buffer is bigger than this.
_PIECE_MAX = 4 * 1024 * 1024
#: How long a refused frame size waits for its API key before the connection is closed.
_REFUSAL_WAIT_S = 1.0


class FrameSink(Protocol):
    """What the protocol hands frames to (the server's per-connection runner)."""

    @property
    def peer(self) -> str: ...

    @property
    def busy(self) -> bool:
        """True while requests are in flight (an idle timeout then waits)."""
        ...

    def on_frame(self, frame: bytes | bytearray, reserved: int) -> None:
        """One whole frame (without its size prefix). ``reserved`` bytes of the memory
        pool are now the sink's: it releases them once the request is handled."""

    def end_of_input(self) -> None:
        """No more frames will come (end of stream, refused frame, timeout, shutdown)."""


class ReadContext:
    """What the readers of one server share: limits, memory pool, fault log, scratch."""

    def __init__(self, limits: ConnectionLimits, pool: MemoryPool, faults: PeerFaultLog) -> None:
        self.limits = limits
        self.pool = pool
        self.faults = faults
        self.scratch = memoryview(bytearray(SCRATCH_BYTES))


class FrameProtocol(asyncio.BufferedProtocol):
    """Reads frames from the socket and hands them to the connection's runner.

    See the module docstring for buffers and limits. Reading pauses while too many
    requests are in flight (the runner calls :meth:`hold` / :meth:`release`) or while the
    memory pool is exhausted, and ends for good on a refused size, end of stream, a
    timeout or when the runner says so (:meth:`finish_input`).
    """

    def __init__(
        self,
        on_connect: Callable[[FrameProtocol, asyncio.Transport], FrameSink | None],
        context: ReadContext,
    ) -> None:
        self._on_connect = on_connect
        self._ctx = context
        self._pool = context.pool
        self._max_frame = context.limits.max_frame_bytes
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._runner: FrameSink | None = None
        # bytes read but not parsed (a partial size prefix, or frames read while held)
        self._pending: bytes = b""
        self._read_base = context.scratch  # the buffer the current read went into
        # the incomplete frame being received into pieces of its own
        self._size = -1  # its size (-1: none)
        self._pieces: list[bytearray] = []
        self._piece: memoryview | None = None  # the piece being filled
        self._piece_filled = 0
        self._received = 0  # bytes of the frame received so far
        self._reserved = 0  # pool bytes held for its pieces
        self._refused_size: int | None = None
        self._refuse_timer: asyncio.TimerHandle | None = None
        self._partial_since: float | None = None  # when the incomplete frame began
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf
        self._last_read = 0.0
        self._held = False
        self._pool_paused = False
        self._reading = True
        self._done = False
        self._reported = False
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
        self._arm(self._last_read + self._ctx.limits.idle_timeout_s)
        self._pool.join(self)

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
        self._drop_buffers()
        self._pool.leave(self)
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

    def report_fault(self, log: logging.Logger, message: str, *args: object) -> None:
        """Log why this connection is bad: once per connection, rate-limited."""
        if self._reported:
            return
        self._reported = True
        self._ctx.faults.warning(log, message, *args)

    # ------------------------------------------------------------------ reading
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._size >= 0 and not self._done:
            piece = self._piece
            if piece is None or self._piece_filled == len(piece):
                piece = self._next_piece()
            return piece[self._piece_filled :]
        scratch = self._ctx.scratch
        pending = self._pending
        n = len(pending)
        if not n or self._done:
            self._read_base = scratch
            return scratch
        # pending bytes never fill the scratch (reading pauses first), but never hand out
        # an empty buffer
        base = memoryview(bytearray(n + SCRATCH_BYTES)) if n >= len(scratch) else scratch
        base[:n] = pending
        self._read_base = base
        return base[n:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._done:
            return
        now = self._loop.time()
        self._last_read = now
        if self._size >= 0:
            self._piece_filled += nbytes
            self._received += nbytes
            if self._received == self._size:
                self._complete_frame()
            return
        end = len(self._pending) + nbytes
        self._set_pending(b"")
        base = self._read_base
        if self._refused_size is not None:
            self._set_pending(bytes(base[:end]))
            self._check_refusal()
            return
        self._consume(base, 0, end, now)

    def _consume(self, buf: memoryview, pos: int, end: int, now: float) -> None:
        """Deliver the whole frames of ``buf[pos:end]``, keep the rest (pending bytes or the
        start of an incomplete frame)."""
        pos = self._parse(buf, pos, end)
        left = end - pos
        if not left:
            self._partial_since = None
            return
        if self._done:
            return
        if self._refused_size is not None:
            self._set_pending(bytes(buf[pos:end]))
            self._check_refusal()
            return
        if self._held or left < 4:
            self._set_pending(bytes(buf[pos:end]))
            if not self._held:
                self._note_partial(now)
            return
        (size,) = _SIZE.unpack_from(buf, pos)
        have = left - 4
        first = min(size, max(_PIECE_MIN, 2 * have))
        piece = bytearray(first)
        piece[:have] = buf[pos + 4 : end]
        self._pool.reserve(first)
        self._size = size
        self._pieces = [piece]
        self._piece = memoryview(piece)
        self._piece_filled = self._received = have
        self._reserved = first
        self._pool.frame_started(self)
        self._note_partial(now)

    def _parse(self, buf: memoryview, pos: int, end: int) -> int:
        """Deliver every whole frame from ``pos`` (until held, done or a refused size);
        returns where the unparsed bytes start."""
        max_frame = self._max_frame
        while not self._held and not self._done:
            available = end - pos
            if available < 4:
                break
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < 0 or size > max_frame:
                self._refused_size = size
                break
            if available - 4 < size:
                break
            frame = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            self._pool.reserve(size)
            self._deliver(frame, size)
        return pos

    def _next_piece(self) -> memoryview:
        """Allocate the next piece of the incomplete frame (the previous one is full)."""
        remaining = self._size - self._received
        size = min(remaining, _PIECE_MAX, max(_PIECE_MIN, self._received))
        piece = bytearray(size)
        self._pool.reserve(size)
        self._reserved += size
        self._pieces.append(piece)
        self._piece = view = memoryview(piece)
        self._piece_filled = 0
        return view

    def _complete_frame(self) -> None:
        pieces, reserved = self._pieces, self._reserved
        # the pieces add up to the frame's size: a joined copy takes their place
        frame: bytes | bytearray = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._size = -1
        self._pieces = []
        self._piece = None
        self._reserved = self._received = self._piece_filled = 0
        self._partial_since = None
        self._pool.frame_ended(self)
        self._deliver(frame, reserved)

    def _deliver(self, frame: bytes | bytearray, reserved: int) -> None:
        assert self._runner is not None
        self._runner.on_frame(frame, reserved)

    def _set_pending(self, data: bytes) -> None:
        """Replace the unparsed bytes (pool accounting follows)."""
        old = len(self._pending)
        if old:
            self._pool.release(old)
        self._pending = data
        if data:
            self._pool.reserve(len(data))

    def _drop_buffers(self) -> None:
        """Give back the memory of everything not yet delivered."""
        self._set_pending(b"")
        if self._reserved:
            self._pool.release(self._reserved)
        if self._size >= 0:
            self._pool.frame_ended(self)
        self._size = -1
        self._pieces = []
        self._piece = None
        self._reserved = self._received = self._piece_filled = 0

    def _partial(self) -> tuple[int, int]:
        """(bytes read, announced size or -1) of the incomplete frame; (0, -1) if none."""
        if self._size >= 0:
            return self._received, self._size
        pending = len(self._pending)
        if pending >= 4:
            return pending - 4, _SIZE.unpack_from(self._pending, 0)[0]
        return pending, -1

    def _warn_partial(self) -> None:
        read, _ = self._partial()
        if read and self._runner is not None:
            self.report_fault(
                logger,
                "connection %s closed in the middle of a frame (%d bytes of it read)",
                self._runner.peer,
                read,
            )

    def _check_refusal(self) -> None:
        """An oversized or negative size: wait (up to 1 s) for the API key to log it."""
        if len(self._pending) >= 8:
            key, version = _KEY_VERSION.unpack_from(self._pending, 4)
            self._log_refusal(f"{key} v{version}")
        elif self._refuse_timer is None:
            self._refuse_timer = self._loop.call_later(
                _REFUSAL_WAIT_S, self._log_refusal, "unknown"
            )

    def _log_refusal(self, api: str) -> None:
        if self._done or self._runner is None:
            return
        self.report_fault(
            logger,
            "closing connection %s: frame of %d bytes (api key %s) is outside the limit "
            "of 0..%d bytes (max_frame_bytes)",
            self._runner.peer,
            self._refused_size,
            api,
            self._max_frame,
        )
        self.finish_input()

    # ------------------------------------------------------------------ timeouts
    def _note_partial(self, now: float) -> None:
        """An incomplete frame is waiting for more bytes: its read deadline starts."""
        if self._partial_since is None:
            self._partial_since = now
            self._arm(now + self._ctx.limits.request_read_timeout_s)

    def _arm(self, when: float) -> None:
        """Make the timer fire at ``when`` at the latest."""
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """The request deadline and the idle timeout, checked together."""
        self._timer = None
        self._timer_when = math.inf
        runner = self._runner
        if self._done or runner is None:
            return
        limits = self._ctx.limits
        now = self._loop.time()
        next_check = math.inf
        since = self._partial_since
        if since is not None:
            if self._held:  # our backpressure, not the client's slowness
                self._partial_since = since = now
            if now - since >= limits.request_read_timeout_s:
                read, size = self._partial()
                self.report_fault(
                    logger,
                    "closing connection %s: a request of %s bytes did not arrive within "
                    "%gs of its first byte (%d bytes of it read; request_read_timeout)",
                    runner.peer,
                    size if size >= 0 else "unknown",
                    limits.request_read_timeout_s,
                    read,
                )
                self.finish_input()
                return
            next_check = since + limits.request_read_timeout_s
        idle_at = self._last_read + limits.idle_timeout_s
        if now >= idle_at:
            if since is None and not runner.busy:
                logger.debug(
                    "closing connection %s: idle for %gs", runner.peer, limits.idle_timeout_s
                )
                self.finish_input()
                return
            idle_at = now + limits.idle_timeout_s  # a long poll in flight is not idleness
        self._arm(min(next_check, idle_at))

    def _cancel_timers(self) -> None:
        for timer in (self._refuse_timer, self._timer):
            if timer is not None:
                timer.cancel()
        self._refuse_timer = self._timer = None
        self._timer_when = math.inf

    # ------------------------------------------------------------------ pausing
    def _update_reading(self) -> None:
        want = not (self._done or self._held or self._pool_paused)
        transport = self._transport
        if want == self._reading or transport is None:
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def hold(self) -> None:
        """Backpressure: stop reading until :meth:`release`."""
        self._held = True
        self._update_reading()

    def release(self) -> None:
        """Resume reading after :meth:`hold` (frames already received are parsed first)."""
        if not self._held:
            return
        self._held = False
        if self._done:
            return
        pending = self._pending
        if pending and self._size < 0 and self._refused_size is None:
            self._partial_since = None
            self._set_pending(b"")
            self._consume(memoryview(pending), 0, len(pending), self._loop.time())
        self._update_reading()

    def pool_pause(self) -> None:
        """The memory pool is exhausted: stop reading (the pool resumes us)."""
        self._pool_paused = True
        self._update_reading()

    def pool_resume(self) -> None:
        self._pool_paused = False
        self._update_reading()

    def reapply_reading_state(self) -> None:
        """After ``loop.sendfile`` (which pauses and resumes reading on its own)."""
        if not self._reading and self._transport is not None:
            self._transport.pause_reading()

    def finish_input(self) -> None:
        """Read no more frames; the runner finishes the queued requests, then closes."""
        if self._done:
            return
        self._done = True
        self._cancel_timers()
        self._drop_buffers()
        self._update_reading()
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
