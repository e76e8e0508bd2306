"""InternalTopic: a topic the broker writes itself, such as ``__consumer_offsets``.

The group coordinator keeps committed offsets and group metadata as records of the
compacted internal topic ``__consumer_offsets`` (one storage engine: the same segments,
indexes, recovery, cleaner and fsync as every topic). This class is its window on the
log, shaped as the coordinator's ``RecordLog`` (``backbone.broker.groups.store``):

- :meth:`open` creates the topic on first start (``cleanup.policy=compact``, the given
  partition count) and marks it internal; a later start keeps its partition count.
- :meth:`read` returns every record, partition by partition in offset order, from the
  log start offset (blocking: run it in a thread before serving).
- :meth:`write` appends one batch to one partition, synchronously (page cache), so
  records keep the order in which the coordinator wrote them; it marks the segment for
  the next fsync round.
- :meth:`sync` returns once everything written before the call is fsynced, whatever the
  broker's flush policy (committed offsets are durable before a commit is answered);
  concurrent callers share the flusher's rounds (group commit).

Clients can read the topic (Fetch) like any other; Produce to it is refused and it is
never auto-created (the handlers check :data:`INTERNAL_TOPICS`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from backbone.broker.errors import BrokerError, CorruptRecord, KafkaStorageError

from .batch import encode_batch, iter_records
from .compression import CodecUnavailable
from .manager import INTERNAL_TOPICS, LogManager
from .partition import PartitionLog

__all__ = ["OFFSETS_TOPIC", "OFFSETS_TOPIC_CONFIGS", "InternalTopic"]

logger = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
assert OFFSETS_TOPIC in INTERNAL_TOPICS

#: The configs ``__consumer_offsets`` is created with (Kafka's offsets.topic.* defaults,
#: but 16 MiB segments so the uncompacted tail read on start stays small).
OFFSETS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(16 * 1024 * 1024),
    "max.message.bytes": str(100 * 1024 * 1024),
}


class InternalTopic:
    """One internal topic of ``logs`` (see the module docstring)."""

    def __init__(
        self,
        logs: LogManager,
        name: str = OFFSETS_TOPIC,
        *,
        partitions: int = 1,
        configs: Mapping[str, str] = OFFSETS_TOPIC_CONFIGS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if name not in INTERNAL_TOPICS:
            raise ValueError(f"{name!r} is not an internal topic name")
        self.logs = logs
        self.name = name
        self.wanted_partitions = partitions
        self.configs = dict(configs)
        self.clock = clock
        self._partitions: list[PartitionLog] = []
        self._last_written: PartitionLog | None = None

    async def open(self) -> None:
        """Create the topic if it does not exist yet, else make sure it is compacted (an
        older Backbone auto-created an ordinary ``__consumer_offsets`` on request); then
        use its partitions."""
        if self.name not in self.logs.topics:
            await self.logs.create_topic(self.name, self.wanted_partitions, self.configs)
        else:
            topic = self.logs.topic(self.name)
            if topic.config.cleanup_policy != self.configs["cleanup.policy"]:
                logger.warning(
                    "topic %s existed as an ordinary topic; making it compacted",
                    self.name,
                    extra={"topic": self.name},
                )
                await self.logs.alter_configs(self.name, self.configs, incremental=True)
        self._partitions = list(self.logs.topic(self.name).partitions)

    @property
    def partition_count(self) -> int:
        return len(self._partitions)

    def read(self) -> list[tuple[bytes | None, bytes | None]]:
        """Every (key, value) of every partition, each partition in offset order."""
        return [record for log in self._partitions for record in _records(log)]

    def write(self, partition: int, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Append ``records`` as one batch to ``partition`` now (not yet durable: await
        :meth:`sync`). Raises KafkaStorageError."""
        log = self._partitions[partition]
        batch = encode_batch(list(records), int(self.clock() * 1000))
        try:
            log.write(batch)
        except KafkaStorageError:
            raise
        except BrokerError as exc:  # e.g. a batch above max.message.bytes
            raise KafkaStorageError(f"cannot write to {log.topic}-{log.partition}: {exc}") from exc
        self.logs.flusher.mark(log.active_segment.fd)
        self._last_written = log

    async def sync(self) -> None:
        """Return once every write made before this call is on disk (shared rounds)."""
        log = self._last_written or (self._partitions[0] if self._partitions else None)
        if log is not None:
            await self.logs.flusher.sync(log.active_segment.fd)


def _records(log: PartitionLog) -> Iterator[tuple[bytes | None, bytes | None]]:
    start = log.log_start_offset
    for segment in list(log.segments):
        for header in segment.headers_from(0):
            if header.last_offset < start or header.is_control:
                continue
            try:
                for record in iter_records(segment.read_batch(header), header):
                    if header.base_offset + record.offset_delta >= start:
                        yield record.key, record.value
            except (CorruptRecord, CodecUnavailable) as exc:
                logger.warning(
                    "skipping the unreadable batch at offset %d of %s-%d: %s",
                    header.base_offset,
                    log.topic,
                    log.partition,
                    exc,
                    extra=log.context,
                )
