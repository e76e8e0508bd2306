"""The push path: a source hands records to the runtime and awaits their acknowledgement.

``read()``/``ack(position)`` suits sources that pull (a database, a file): the
runtime decides when to read and saves positions every ``position_interval``. A
source that is *called* -- a webhook answering an HTTP request -- must instead
tell its caller "stored" only once the broker acknowledged the record, within
milliseconds. It uses ``context.push`` (part of the connector SDK)::

    deliveries = await self.context.push([SourceRecord(value=..., key=..., identity=...)])
    deliveries[0].topic, deliveries[0].partition, deliveries[0].offset

Semantics (who calls what, and what is guaranteed):

- ``await context.push(records, ack_timeout=5.0)`` encodes each record exactly as the
  records of ``read()`` are (JSON value, key, CloudEvents headers; ``ce_id`` from
  the record's ``identity``), produces them through the gateway's one idempotent
  producer (``acks=all``) and returns one :class:`Delivery` per record, in order,
  once the broker acknowledged *every* record.
- Pushed records carry no position (the source's position never moves by a push)
  and must set ``identity`` (rule 3: they all share "no position"); a record with
  ``error`` or a position is refused with :class:`~backbone.errors.ContractError`.
  A value or key that cannot be serialized raises
  :class:`~backbone.errors.DataError` before anything is sent.
- If the broker does not acknowledge within ``ack_timeout`` seconds, or the producer
  fails, or the runtime is not running the source (starting, stopping), the call
  raises :class:`~backbone.errors.RetriableError` (with ``retry_after``): the
  caller answers "try again" (HTTP 503), never "stored". A record whose
  acknowledgement timed out may still reach the topic later (at least once: a
  retry by the sender may then duplicate it, with the same ``ce_id``).
- A cancelled ``push`` (the HTTP client went away) lets ``CancelledError`` through;
  the records already handed to the producer are still written.

``context.push`` is ``None`` where the runtime offers no push path (``backbone
validate --check``). A source that only receives pushed records sets
:attr:`Source.ingress <backbone.connector.Source.ingress>`: it keeps no position,
so the runtime may run it in every gateway process.

Runtime side: the runner gives each source's context a :class:`PushChannel`; the
source worker binds a :class:`Pusher` to it while the source runs
(:meth:`PushChannel.bind`), and :meth:`Pusher.drain` waits for pushes in flight
when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backbone.connector import SourceRecord
from backbone.errors import ContractError, RetriableError

__all__ = ["DEFAULT_PUSH_TIMEOUT", "Delivery", "Push", "PushChannel", "Pusher"]

logger = logging.getLogger(__name__)

DEFAULT_PUSH_TIMEOUT = 5.0
"""Seconds ``push`` waits for the broker's acknowledgement by default."""

RETRY_AFTER = 5.0
"""The ``retry_after`` of the :class:`RetriableError` a failed push raises."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker stored one pushed record."""

    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, Any]:
        """``{"topic", "partition", "offset"}``."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class Push(Protocol):
    """``context.push``: produce records now and await their acknowledgement."""

    async def __call__(
        self, records: Sequence[SourceRecord], *, ack_timeout: float = DEFAULT_PUSH_TIMEOUT
    ) -> list[Delivery]: ...


PushTarget = Callable[[Sequence[SourceRecord], float], Awaitable[list[Delivery]]]


class PushChannel:
    """The ``context.push`` the runner hands a source: forwards to the bound :class:`Pusher`.

    Unbound (the source is not running yet, or stopping) it raises
    :class:`RetriableError`, so a request arriving then is answered "try again".
    """

    def __init__(self, connector: str) -> None:
        self.connector = connector
        self._target: PushTarget | None = None

    def bind(self, target: PushTarget) -> None:
        """Send pushes to ``target`` from now on."""
        self._target = target

    def unbind(self) -> None:
        """Refuse pushes from now on (those in flight go on)."""
        self._target = None

    @property
    def bound(self) -> bool:
        """Whether pushes are accepted now."""
        return self._target is not None

    async def __call__(
        self, records: Sequence[SourceRecord], *, ack_timeout: float = DEFAULT_PUSH_TIMEOUT
    ) -> list[Delivery]:
        target = self._target
        if target is None:
            raise RetriableError(
                f"source {self.connector} is not running (starting or stopping); try again",
                retry_after=RETRY_AFTER,
            )
        return await target(records, ack_timeout)


class _Encoder(Protocol):
    def encode(self, record: SourceRecord, now_ms: int) -> Any: ...


class Pusher:
    """The runtime's push implementation for one source (see the module docstring).

    ``send`` is the producer's ``send`` (``AIOKafkaProducer.send``: returns a future of
    the record's metadata); ``encoder`` the source's
    :class:`~backbone.events.SourceEncoder`.
    """

    def __init__(
        self,
        connector: str,
        *,
        send: Callable[..., Awaitable[asyncio.Future[Any]]],
        encoder: _Encoder,
    ) -> None:
        self.connector = connector
        self._send = send
        self._encoder = encoder
        self._in_flight: set[asyncio.Future[Any]] = set()

    def _check(self, record: SourceRecord) -> None:
        if record.error is not None:
            raise ContractError(
                f"source {self.connector} pushed a record with error={record.error!r}: a push "
                "source refuses bad input to its caller instead (e.g. HTTP 400)"
            )
        if record.position is not None:
            raise ContractError(
                f"source {self.connector} pushed a record with a position: pushed records "
                "never move the source's position; leave position=None"
            )
        if record.identity is None:
            raise ContractError(
                f"source {self.connector} pushed a record without identity: pushed records "
                "share 'no position', so ce_id comes from SourceRecord.identity (a delivery "
                "id, or a fresh UUID when the sender gives none)"
            )

    async def __call__(self, records: Sequence[SourceRecord], ack_timeout: float) -> list[Delivery]:
        now = int(time.time() * 1000)
        encoded = []
        for record in records:
            self._check(record)
            encoded.append(self._encoder.encode(record, now))  # DataError: nothing sent
        try:
            async with asyncio.timeout(ack_timeout):
                return await self._produce(encoded)
        except TimeoutError:
            raise RetriableError(
                f"the broker did not acknowledge within {ack_timeout:g}s; try again",
                retry_after=RETRY_AFTER,
            ) from None

    async def _produce(self, encoded: list[Any]) -> list[Delivery]:
        futures = []
        for item in encoded:
            try:
                future = await self._send(
                    item.topic,
                    value=item.value,
                    key=item.key,
                    headers=item.headers,
                    timestamp_ms=item.timestamp_ms,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise RetriableError(
                    f"cannot produce to {item.topic}: {type(exc).__name__}: {exc}",
                    retry_after=RETRY_AFTER,
                ) from exc
            self._in_flight.add(future)
            future.add_done_callback(self._in_flight.discard)
            futures.append(future)
        gathered = futures[0] if len(futures) == 1 else asyncio.gather(*futures)
        gathered.add_done_callback(_retrieve)  # a caller that timed out is gone
        try:
            done = await asyncio.shield(gathered)
            metadata = [done] if len(futures) == 1 else done
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise RetriableError(
                f"the broker refused the record: {type(exc).__name__}: {exc}",
                retry_after=RETRY_AFTER,
            ) from exc
        return [Delivery(m.topic, m.partition, m.offset) for m in metadata]

    async def drain(self, within: float) -> None:
        """Wait (at most ``within`` s) until every record handed to the producer is settled."""
        pending = [future for future in self._in_flight if not future.done()]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=within)
        if late:
            logger.warning(
                "source %s: %d pushed record(s) still unacknowledged after %.1fs",
                self.connector,
                len(late),
                within,
            )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
