"""What connections may cost the broker: :class:`ConnectionLimits`, :class:`ConnectionCounter`
and :class:`MemoryPool`.

Used by the server (admission of a new connection) and by the frame reader (memory of
requests being read or queued). No sockets here: plain counters the server consults.

Memory (Kafka's ``queued.max.request.bytes``)::

    reserve(n)   a connection holds n more bytes of request data: a received frame waiting
                 for or in its handler, the part of a frame read so far (allocated as the
                 bytes arrive, never at the size the client announced), or bytes read but
                 not yet parsed.
    release(n)   those bytes are gone (request handled, connection closed).

When ``used`` reaches ``capacity`` every member (each connection's reader) is told to
pause reading, except one: the member whose incomplete frame is the oldest keeps reading
it (:meth:`MemoryPool.frame_started` / :meth:`~MemoryPool.frame_ended` keep that order),
so a frame can always be completed and handled, and give its memory back: readers that
each hold part of a frame never wait for one another. When that frame is complete, the
next oldest incomplete frame may go on. Everyone resumes once ``used`` is back under the
low-water mark (7/8 of the capacity). ``used`` thus stays under ``capacity`` plus one
frame plus one buffer piece (the reader allocates a frame's buffer in pieces of at most
half the frame or 4 MiB, see ``frames.py``). A reader that stops sending in the middle
of its frame does not hold the others up for ever: its request deadline closes its
connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_IP",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_QUEUED_MAX_REQUEST_BYTES",
    "DEFAULT_REQUEST_READ_TIMEOUT_S",
    "ConnectionCounter",
    "ConnectionLimits",
    "MemoryPool",
    "PoolMember",
    "frame_limit_for",
]

DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_CONNECTIONS_PER_IP = 500
DEFAULT_QUEUED_MAX_REQUEST_BYTES = 100 * 1024 * 1024
DEFAULT_REQUEST_READ_TIMEOUT_S = 30.0
#: The default frame limit leaves room for this many full-size record batches in one
#: request (a Produce request carries one batch per partition; aiokafka, kafkajs and the
#: gateway's own producer put every ready partition of a broker into one request) ...
FRAME_BATCHES = 16
#: ... plus this much for the request header, topic names and per-partition fields.
FRAME_OVERHEAD = 64 * 1024


def frame_limit_for(message_max_bytes: int) -> int:
    """The default frame limit for a broker whose ``message.max.bytes`` is given:
    ``16 x message.max.bytes + 64 KiB`` (16 MiB + 64 KiB for Kafka's default 1 MiB)."""
    return FRAME_BATCHES * message_max_bytes + FRAME_OVERHEAD


#: The frame limit for Kafka's default ``message.max.bytes`` (1048588, LogConfig's default).
DEFAULT_MAX_FRAME_BYTES = frame_limit_for(1048588)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits of the server's connections (``BrokerConfig`` fills them in).

    ``max_frame_bytes``: largest request (Kafka's ``socket.request.max.bytes``);
    ``idle_timeout_s``: a connection with nothing to read and nothing in flight is closed
    after this long (``connections.max.idle.ms``); ``request_read_timeout_s``: a request
    must arrive whole within this long of its first byte; ``max_connections`` /
    ``max_connections_per_ip``: open connections in all and from one client address
    (``max.connections`` / ``max.connections.per.ip``); ``queued_max_request_bytes``:
    request bytes being read or queued across all connections (``queued.max.request.bytes``).
    Raises ValueError for values out of range.
    """

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    idle_timeout_s: float = 600.0
    request_read_timeout_s: float = DEFAULT_REQUEST_READ_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    queued_max_request_bytes: int = DEFAULT_QUEUED_MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        for name in ("max_frame_bytes", "max_connections", "max_connections_per_ip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("idle_timeout_s", "request_read_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive (got {getattr(self, name)})")
        if self.queued_max_request_bytes < self.max_frame_bytes:
            raise ValueError(
                f"queued_max_request_bytes ({self.queued_max_request_bytes}) must be at least "
                f"max_frame_bytes ({self.max_frame_bytes}): a request of the largest size "
                "must fit in it"
            )


class ConnectionCounter:
    """Open connections in all and per client address; :meth:`admit` says who may connect."""

    def __init__(self, max_connections: int, max_per_host: int) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.total = 0
        self._per_host: dict[str, int] = {}

    def count(self, host: str) -> int:
        """Open connections from ``host``."""
        return self._per_host.get(host, 0)

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host``; or return why it is refused (not counted)."""
        if self.total >= self.max_connections:
            return f"{self.total} connections are open (max_connections is {self.max_connections})"
        count = self._per_host.get(host, 0)
        if count >= self.max_per_host:
            return (
                f"{count} connections from {host} are open "
                f"(max_connections_per_ip is {self.max_per_host})"
            )
        self.total += 1
        self._per_host[host] = count + 1
        return None

    def leave(self, host: str) -> None:
        """An admitted connection from ``host`` closed."""
        count = self._per_host.get(host, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self._per_host[host]
        else:
            self._per_host[host] = count - 1


class PoolMember(Protocol):
    """A connection reader the pool pauses and resumes."""

    def pool_pause(self) -> None: ...

    def pool_resume(self) -> None: ...


class MemoryPool:
    """Bytes of requests being read or queued across all connections (module docstring)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the memory pool needs a positive capacity (got {capacity})")
        self.capacity = capacity
        self.low_water = capacity - capacity // 8
        self.used = 0
        self.peak = 0
        self.exhausted = False
        self._members: dict[PoolMember, None] = {}
        self._partial: dict[PoolMember, None] = {}  # members in the middle of a frame, oldest first
        self._exempt: PoolMember | None = None  # reads on while exhausted

    def join(self, member: PoolMember) -> None:
        """A reader that pauses while the pool is exhausted (paused at once if it is)."""
        self._members[member] = None
        if self.exhausted:
            member.pool_pause()

    def leave(self, member: PoolMember) -> None:
        self._members.pop(member, None)
        self._end_partial(member)

    def frame_started(self, member: PoolMember) -> None:
        """``member`` is receiving a frame that did not arrive in one read."""
        self._partial[member] = None

    def frame_ended(self, member: PoolMember) -> None:
        """``member``'s incomplete frame is complete (or dropped)."""
        if self._end_partial(member) and member in self._members:
            member.pool_pause()

    def _end_partial(self, member: PoolMember) -> bool:
        """Forget ``member``'s frame; True if it was the exempt one (the next oldest is now)."""
        if member not in self._partial:
            return False
        del self._partial[member]
        if member is not self._exempt:
            return False
        self._exempt = next(iter(self._partial), None)
        if self._exempt is not None:
            self._exempt.pool_resume()
        return True

    def reserve(self, nbytes: int) -> None:
        """Account ``nbytes`` more; reaching the capacity pauses every member."""
        used = self.used + nbytes
        self.used = used
        if used > self.peak:
            self.peak = used
        if used >= self.capacity and not self.exhausted:
            self.exhausted = True
            self._exempt = exempt = next(iter(self._partial), None)
            for member in list(self._members):
                if member is not exempt:
                    member.pool_pause()

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes``; under the low-water mark every member resumes."""
        used = self.used - nbytes
        self.used = used
        if self.exhausted and used < self.low_water:
            self.exhausted = False
            self._exempt = None
            for member in list(self._members):
                if self.exhausted:  # a resumed reader filled it up again
                    break
                member.pool_resume()
