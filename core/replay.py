"""Replay a topic into a sink: move its consumer group back, deliver again, end where it was.

``backbone replay CONFIG --sink NAME --from earliest|DATETIME [--to DATETIME]``:

1. :func:`plan_replay` reads, per partition of the sink's topics, where the replay
   begins (the log start, or the first record at or after ``--from``), where it
   stops (the first record at or after ``--to``; without ``--to``, the group's
   committed offset: where the sink was, or the end offset for a partition it has
   not read yet) and where the group is left afterwards (``final``: the later of the
   stop and the committed offset, so the sink goes on exactly where it was and no
   record after ``--to`` is delivered twice);
2. the group ``backbone.<sink>`` is moved to ``begin`` (only while it is empty);
3. :func:`replay_alone` runs only that sink (a :class:`~backbone.consumers.SinkWorker`
   with ``stop_at``: same options, retries and dead-letter topic as in the gateway)
   until every partition committed up to its stop, then commits ``final``.

With the gateway running, the command pauses the sink through the admin API
instead, moves the group, and resumes it: the sink then reads from ``--from`` on
(``--to`` needs the gateway stopped).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from backbone.assembly import sink_worker
from backbone.consumers import SinkWorker
from backbone.errors import BackboneError
from backbone.kafka_admin import KafkaAdmin, commit_offsets
from backbone.registry import Registry
from backbone.settings import Config
from backbone.target import Target, release_stopped_members
from backbone.worker import ConnectorStatus, Control, Shared

__all__ = ["ReplayPlan", "plan_replay", "replay_alone"]


@dataclass(frozen=True)
class ReplayPlan:
    """Offsets per partition: where the replay begins, stops, and leaves the group."""

    sink: str
    group: str
    begin: dict[TopicPartition, int]
    stop: dict[TopicPartition, int]
    final: dict[TopicPartition, int]
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Records the replay delivers."""
        return sum(max(self.stop[tp] - self.begin[tp], 0) for tp in self.begin)


async def plan_replay(
    cluster: KafkaAdmin,
    config: Config,
    sink: str,
    start: str | dt.datetime,
    to: dt.datetime | None,
) -> ReplayPlan:
    """The :class:`ReplayPlan` of ``sink`` from ``start`` (``"earliest"`` or a time)."""
    if sink not in config.sinks:
        known = ", ".join(sorted(config.sinks)) or "none"
        raise BackboneError(f"{config.file} has no sink {sink!r} (its sinks: {known})")
    group = f"backbone.{sink}"
    tps: list[TopicPartition] = []
    for topic in config.sinks[sink].topics:
        tps += await cluster.partitions(topic)
    starts, ends = await cluster.offsets(tps)
    committed = await cluster.committed(group)
    if start == "earliest":
        begin = dict(starts)
    else:
        assert isinstance(start, dt.datetime)
        begin = await cluster.offsets_at(tps, start)
    if to is not None:
        if isinstance(start, dt.datetime) and to <= start:
            raise BackboneError(
                f"--to ({to.isoformat()}) must be after --from ({start.isoformat()})"
            )
        stop = await cluster.offsets_at(tps, to)
    else:
        stop = {tp: committed.get(tp, ends[tp]) for tp in tps}
    stop = {tp: max(stop[tp], begin[tp]) for tp in tps}
    final = {tp: max(stop[tp], committed.get(tp, stop[tp])) for tp in tps}
    return ReplayPlan(sink, group, begin, stop, final, {tp: committed[tp] for tp in committed})


async def replay_alone(
    target: Target,
    config: Config,
    registry: Registry,
    plan: ReplayPlan,
    *,
    control: Control,
    progress: Callable[[int], None],
) -> ConnectorStatus:
    """Move the group to ``plan.begin``, run only the sink up to ``plan.stop``, commit
    ``plan.final``. Returns the sink's status; raises what made the sink fail.

    ``control.stop()`` (Ctrl-C) ends it early: the batch in hand is finished and
    committed, the group stays where the replay got to.
    """
    await release_stopped_members(target, plan.group)
    async with KafkaAdmin(target.clients, target.data_dir) as cluster:
        await cluster.require_idle(plan.group)
    await commit_offsets(target.clients, plan.group, plan.begin)
    producer = target.clients.producer(  # for the sink's dead-letter records
        acks="all", enable_idempotence=config.broker.idempotence, linger_ms=5
    )
    await producer.start()
    status = ConnectorStatus(plan.sink, "sink")
    try:
        shared = Shared(
            producer,
            target.bootstrap,
            config.runtime,
            asyncio.Event(),
            random.Random(),
            kafka=target.clients,
        )
        worker: SinkWorker = sink_worker(
            config,
            registry,
            plan.sink,
            shared=shared,
            status=status,
            control=control,
            stop_at=plan.stop,
        )
        task = asyncio.create_task(worker.run())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.25)
                progress(status.records_in)
        finally:
            if not task.done():
                control.stop()
                await asyncio.gather(task, return_exceptions=True)
        task.result()  # the sink failed: raise why
        if worker.finished:
            moved = {tp: offset for tp, offset in plan.final.items() if offset != plan.stop[tp]}
            await commit_offsets(target.clients, plan.group, moved)
    finally:
        await producer.stop()
    return status
