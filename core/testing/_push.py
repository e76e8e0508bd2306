"""Conformance checks for push sources (``context.push``), and an in-memory push path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from backbone.connector import Header, Source, SourceRecord
from backbone.events import SourceEncoder
from backbone.push import DEFAULT_PUSH_TIMEOUT, Delivery, Pusher
from backbone.testing._support import wait_until

__all__ = ["PushRecorder", "Pushed", "check_push_source"]


@dataclass
class Pushed:
    """One record as the runtime would have produced it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)

    def header(self, name: str) -> bytes | None:
        """The last header named ``name``."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


class PushRecorder:
    """An in-memory ``context.push``: the runtime's own checks and encoding, no broker.

    Records pushed are encoded exactly as the runtime does (``SourceEncoder``, the
    push rules of :mod:`backbone.push`) and kept in :attr:`records`; each gets offset
    ``n`` of partition 0 of its topic. :meth:`hold` keeps acknowledgements back until
    :meth:`release`; :meth:`fail` makes every push fail as an unreachable broker
    does (:class:`~backbone.errors.RetriableError`), :meth:`heal` undoes it.
    """

    def __init__(self, connector: str = "conformance", *, topic: str = "pushed") -> None:
        self.records: list[Pushed] = []
        self.pending: list[asyncio.Future[Any]] = []
        self._held = False
        self._failing = False
        self._results: dict[int, Any] = {}
        self._pusher = Pusher(
            connector,
            send=self._send,
            encoder=SourceEncoder(connector=connector, kind="conformance", topic=topic),
        )

    async def __call__(
        self, records: Sequence[SourceRecord], *, ack_timeout: float = DEFAULT_PUSH_TIMEOUT
    ) -> list[Delivery]:
        return await self._pusher(records, ack_timeout)

    async def _send(self, topic: str, **kwargs: Any) -> asyncio.Future[Any]:
        if self._failing:
            raise ConnectionError("the broker is unreachable (PushRecorder.fail)")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pushed = Pushed(topic, kwargs.get("key"), kwargs.get("value"), kwargs.get("headers") or [])
        offset = sum(1 for record in self.records if record.topic == topic)
        self.records.append(pushed)
        metadata = _Metadata(topic, 0, offset)
        if self._held:
            self.pending.append(future)
            self._results[id(future)] = metadata
        else:
            future.set_result(metadata)
        return future

    def hold(self) -> None:
        """Keep acknowledgements back from now on."""
        self._held = True

    def release(self) -> None:
        """Acknowledge everything held, and stop holding."""
        self._held = False
        for future in self.pending:
            if not future.done():
                future.set_result(self._results.pop(id(future)))
        self.pending.clear()

    def fail(self) -> None:
        """Every push fails from now on (the broker is unreachable)."""
        self._failing = True

    def heal(self) -> None:
        """Pushes work again."""
        self._failing = False


@dataclass(frozen=True)
class _Metadata:
    topic: str
    partition: int
    offset: int


async def check_push_source(
    make: Callable[[], Source[Any]],
    recorder: PushRecorder,
    deliver: Callable[[int], Awaitable[bool]],
    *,
    count: int = 5,
    bound: float = 5.0,
) -> None:
    """A push source stores before it answers, refuses to answer "stored" on failure.

    ``make`` builds a fresh source whose context has ``push=recorder``;
    ``deliver(n)`` sends input number ``n`` to the running source the way its
    outside system does (an HTTP POST...) and returns whether the source answered
    "stored" (``True``) or "not stored, try again" (``False``). Checked:

    1. ``count`` deliveries are answered "stored", each as one pushed record with
       its own ``ce_id`` (``identity`` set, no position, no error);
    2. with acknowledgements held back, a delivery is not answered before the push
       was acknowledged (then it is, "stored");
    3. with the broker unreachable, a delivery is answered "not stored" and no new
       record appears;
    4. ``read()`` returns ``[]`` within ``bound`` (records come only by push), a
       pending ``read()`` can be cancelled, ``close()`` works twice;
    5. a new instance (a restart) serves deliveries again.
    """
    source = make()
    assert type(source).ingress, "a push source sets ingress = True"
    await source.open(None)
    try:
        for n in range(count):
            assert await asyncio.wait_for(deliver(n), bound * 4), f"delivery {n} was not stored"
        assert len(recorder.records) == count, (
            f"{count} deliveries gave {len(recorder.records)} records"
        )
        ids = [record.header("ce_id") for record in recorder.records]
        assert None not in ids and len(set(ids)) == count, f"ce_ids are not unique: {ids}"

        recorder.hold()
        task = asyncio.ensure_future(deliver(count))
        await wait_until(lambda: recorder.pending, within=bound * 4, what="a held push")
        done, _ = await asyncio.wait({task}, timeout=0.2)
        assert not done, "the delivery was answered before the broker acknowledged it"
        recorder.release()
        assert await asyncio.wait_for(task, bound * 4), "a held delivery was not stored"

        stored = len(recorder.records)
        recorder.fail()
        try:
            answered = await asyncio.wait_for(deliver(count + 1), bound * 4)
        finally:
            recorder.heal()
        assert answered is False, "a delivery was answered 'stored' while the broker was down"
        assert len(recorder.records) == stored, "a failed delivery left a record behind"

        assert await asyncio.wait_for(source.read(), bound) == []
        pending = asyncio.create_task(source.read())
        await asyncio.sleep(0)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(pending, bound)
        assert pending.cancelled(), "read() swallowed the cancellation"
    finally:
        await source.close()
    await source.close()

    again = make()
    await again.open(None)
    try:
        assert await asyncio.wait_for(deliver(count + 2), bound * 4), "a restarted source refused"
    finally:
        await again.close()
