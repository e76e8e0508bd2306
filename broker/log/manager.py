"""LogManager: every topic's partitions under one data folder, plus the background work.

Layout of ``data_dir``::

    topics/<topic id>.json     {"version": 1, "name", "topic_id", "partitions", "configs"}
                               (written atomically with fsync; the commit point of create,
                               alter and delete: a partition folder without it is an orphan)
    <topic>-<partition>/       segments of one partition (see partition.py / segment.py)
    producer-ids.json          {"next_block": N}: producer ids are handed out in blocks of
                               1000; a restart continues after the last reserved block
    <hex>-delete/              partition folders of deleted topics being removed (finished
                               on start)

Lifecycle: ``async with LogManager(...) as logs`` recovers every partition (in a thread,
before anything is served), starts the flusher (group commit) and the maintenance task
(retention every ``retention_check_interval_s``, compaction every ``cleaner_interval_s``,
closing the files of deleted segments). Exit stops both, fsyncs everything still dirty and
closes every file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from backbone.broker.errors import (
    InvalidPartitions,
    InvalidTopic,
    KafkaStorageError,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from backbone.durable import fsync_dir, write_file_atomically

from .cleaner import LogCleaner
from .config import ConfigEntry, FlushPolicy, LogConfig
from .diskspace import DiskWatch
from .flusher import Flusher
from .partition import PartitionLog
from .reaper import SegmentReaper
from .retention import enforce_retention

__all__ = ["INTERNAL_TOPICS", "LogManager", "Topic", "validate_topic_name"]

logger = logging.getLogger(__name__)

_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")

#: Topics the broker writes itself (Kafka's ``Topic.isInternal``): flagged internal in
#: Metadata, never auto-created, refused to Produce and DeleteTopics.
INTERNAL_TOPICS = frozenset({"__consumer_offsets"})
MAX_TOPIC_NAME_LENGTH = 249
_PRODUCER_ID_BLOCK = 1000


def validate_topic_name(name: str) -> None:
    """Kafka's topic name rules; raises InvalidTopic with Kafka's wording."""
    if not name:
        raise InvalidTopic("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopic('Topic name cannot be "." or ".."')
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopic(
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} "
            f"characters, topic name: {name}"
        )
    if not _LEGAL.match(name):
        raise InvalidTopic(
            f'Topic name "{name}" is illegal, it contains a character other than ASCII '
            "alphanumerics, '.', '_' and '-'"
        )


@dataclass(slots=True, eq=False)
class Topic:
    """A topic: its id, effective config and partitions (index = partition number)."""

    name: str
    topic_id: uuid.UUID
    config: LogConfig
    partitions: list[PartitionLog] = field(default_factory=list)

    @property
    def overrides(self) -> dict[str, str]:
        return dict(self.config.overrides)

    @property
    def internal(self) -> bool:
        """True for the broker's own topics (``__consumer_offsets``)."""
        return self.name in INTERNAL_TOPICS

    def describe_configs(self) -> list[ConfigEntry]:
        return self.config.describe()


class LogManager:
    """Owns the topics, the flusher, the segment reaper, the disk watch, the cleaner and the
    maintenance task."""

    def __init__(
        self,
        data_dir: Path,
        *,
        defaults: LogConfig | None = None,
        flush: FlushPolicy = "always",
        flush_interval_ms: int = 1000,
        clock: Callable[[], float] = time.time,
        retention_check_interval_s: float = 300.0,
        cleaner_interval_s: float = 15.0,
        producer_id_expiration_ms: int = 24 * 3600 * 1000,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.defaults = defaults if defaults is not None else LogConfig()
        self.clock = clock
        self.flusher = Flusher(flush, flush_interval_ms)
        self.reaper = SegmentReaper(self.flusher.release_file)
        self.disk = DiskWatch()
        self.cleaner = LogCleaner()
        self.retention_check_interval_s = retention_check_interval_s
        self.cleaner_interval_s = cleaner_interval_s
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._topics: dict[str, Topic] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._next_producer_id = 0
        self._producer_id_block_end = 0

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> LogManager:
        await asyncio.to_thread(self._load)
        await self.flusher.start()
        self._task = asyncio.create_task(self._maintain(), name="log-maintenance")
        logger.info(
            "log manager started in %s: %d topics, flush policy %s",
            self.data_dir,
            len(self._topics),
            self.flusher.policy,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # never re-raises the task's cancellation
            self._task = None
        for topic in self._topics.values():
            for log in topic.partitions:
                self.flusher.mark(log.active_segment.fd)  # every policy flushes on close
        await self.flusher.stop()
        for topic in self._topics.values():
            for log in topic.partitions:
                log.close()
        self.reaper.close_all()
        logger.info("log manager in %s closed", self.data_dir)

    def _load(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "topics").mkdir(exist_ok=True)
        for leftover in self.data_dir.glob("*-delete"):
            shutil.rmtree(leftover, ignore_errors=True)
        max_producer_id = -1
        for path in sorted((self.data_dir / "topics").glob("*.json")):
            try:
                meta = json.loads(path.read_text())
                name = meta["name"]
                config = LogConfig.from_configs(meta.get("configs", {}), base=self.defaults)
                topic = Topic(name, uuid.UUID(meta["topic_id"]), config)
                count = int(meta["partitions"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise KafkaStorageError(f"cannot read topic metadata {path}: {exc}") from exc
            for index in range(count):
                log = self._open_partition(topic, index)
                topic.partitions.append(log)
                for entry in log.producers.entries():
                    max_producer_id = max(max_producer_id, entry.producer_id)
            self._topics[name] = topic
        block = 0
        try:
            block = int(json.loads((self.data_dir / "producer-ids.json").read_text())["next_block"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            raise KafkaStorageError(f"cannot read {self.data_dir / 'producer-ids.json'}") from exc
        self._next_producer_id = self._producer_id_block_end = max(block, max_producer_id + 1)

    def _open_partition(self, topic: Topic, index: int) -> PartitionLog:
        return PartitionLog.load(
            topic.name,
            index,
            self.data_dir / f"{topic.name}-{index}",
            topic.config,
            flusher=self.flusher,
            reaper=self.reaper,
            clock=self.clock,
            disk=self.disk,
        )

    # ------------------------------------------------------------------ lookups
    @property
    def topics(self) -> Mapping[str, Topic]:
        return MappingProxyType(self._topics)

    def topic(self, name: str) -> Topic:
        try:
            return self._topics[name]
        except KeyError:
            raise UnknownTopicOrPartition(f"Unknown topic {name!r}") from None

    def topic_by_id(self, topic_id: uuid.UUID) -> Topic | None:
        for topic in self._topics.values():
            if topic.topic_id == topic_id:
                return topic
        return None

    def partition(self, topic: str, index: int) -> PartitionLog:
        partitions = self.topic(topic).partitions
        if not 0 <= index < len(partitions):
            raise UnknownTopicOrPartition(
                f"Unknown partition {index} of topic {topic!r} ({len(partitions)} partitions)"
            )
        return partitions[index]

    # ------------------------------------------------------------------ admin
    async def create_topic(
        self,
        name: str,
        num_partitions: int,
        configs: Mapping[str, str | None] | None = None,
        validate_only: bool = False,
    ) -> Topic:
        """Create a topic (CreateTopics, auto-create). Raises InvalidTopic,
        TopicAlreadyExists, InvalidPartitions, InvalidConfig."""
        validate_topic_name(name)
        async with self._lock:
            if name in self._topics:
                raise TopicAlreadyExists(f"Topic '{name}' already exists.")
            folded = name.replace(".", "_")
            for other in self._topics:
                if other.replace(".", "_") == folded:
                    raise InvalidTopic(f"Topic '{name}' collides with existing topic: {other}")
            if num_partitions < 1:
                raise InvalidPartitions(
                    f"Number of partitions must be larger than 0 (got {num_partitions})."
                )
            config = LogConfig.from_configs(dict(configs or {}), base=self.defaults)
            topic = Topic(name, uuid.uuid4(), config)
            if validate_only:
                return topic
            await self._add_partitions(topic, 0, num_partitions)
            self._topics[name] = topic
        logger.info(
            "created topic %s with %d partitions", name, num_partitions, extra={"topic": name}
        )
        return topic

    async def _add_partitions(self, topic: Topic, start: int, stop: int) -> None:
        """Create partitions ``start..stop-1`` and persist the topic's metadata (CreateTopics,
        CreatePartitions; under the lock). All or nothing: on a failed metadata write the
        new partitions are removed again and KafkaStorageError is raised."""
        new = await asyncio.to_thread(self._create_partitions, topic, start, stop)
        topic.partitions.extend(new)
        try:
            await asyncio.to_thread(self._write_metadata, topic)
        except OSError as exc:
            del topic.partitions[start:]
            await asyncio.to_thread(self._discard_partitions, topic, new, start, stop)
            raise KafkaStorageError(f"cannot persist the metadata of {topic.name}: {exc}") from exc

    def _create_partitions(self, topic: Topic, start: int, stop: int) -> list[PartitionLog]:
        """Create partitions ``start..stop-1`` of ``topic`` (blocking; run in a thread).

        All or nothing: if one fails (out of file descriptors, disk full...), the ones
        made so far are closed and removed and KafkaStorageError names the partition, so
        the broker stays usable and the request can be retried.
        """
        logs: list[PartitionLog] = []
        index = start
        try:
            for index in range(start, stop):
                directory = self.data_dir / f"{topic.name}-{index}"
                if directory.exists():
                    logger.warning("moving aside orphaned partition folder %s", directory)
                    directory.rename(self.data_dir / f"{uuid.uuid4().hex}-delete")
                logs.append(self._open_partition(topic, index))
            fsync_dir(self.data_dir)
        except OSError as exc:
            self._discard_partitions(topic, logs, start, index + 1)
            raise KafkaStorageError(
                f"cannot create partition {index} of topic {topic.name}: {exc}"
            ) from exc
        return logs

    def _discard_partitions(
        self, topic: Topic, logs: list[PartitionLog], start: int, stop: int
    ) -> None:
        """Undo :meth:`_create_partitions`: close ``logs``, remove folders start..stop-1."""
        for log in logs:
            log.discard()
        for index in range(start, stop):
            self._remove_dir(self.data_dir / f"{topic.name}-{index}")

    def _remove_dir(self, directory: Path) -> None:
        """Rename a partition folder out of the way (atomic), then delete it."""
        if directory.exists():
            doomed = self.data_dir / f"{uuid.uuid4().hex}-delete"
            directory.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def _metadata_path(self, topic: Topic) -> Path:
        return self.data_dir / "topics" / f"{topic.topic_id}.json"

    def _write_metadata(self, topic: Topic) -> None:
        meta = {
            "version": 1,
            "name": topic.name,
            "topic_id": str(topic.topic_id),
            "partitions": len(topic.partitions),
            "configs": dict(topic.config.overrides),
        }
        write_file_atomically(
            self._metadata_path(topic),
            json.dumps(meta, indent=1, sort_keys=True).encode(),
        )

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its data (DeleteTopics). Raises UnknownTopicOrPartition."""
        async with self._lock:
            topic = self.topic(name)
            del self._topics[name]
            for log in topic.partitions:
                log.close()
            await asyncio.to_thread(self._remove_topic_files, topic)
        logger.info("deleted topic %s", name, extra={"topic": name})

    def _remove_topic_files(self, topic: Topic) -> None:
        meta = self._metadata_path(topic)
        meta.unlink(missing_ok=True)
        fsync_dir(meta.parent)
        for log in topic.partitions:
            self._remove_dir(log.directory)

    async def create_partitions(
        self, name: str, total_count: int, validate_only: bool = False
    ) -> None:
        """Grow a topic to ``total_count`` partitions (CreatePartitions)."""
        async with self._lock:
            topic = self.topic(name)
            current = len(topic.partitions)
            if total_count == current:
                raise InvalidPartitions(f"Topic already has {current} partitions.")
            if total_count < current:
                raise InvalidPartitions(
                    f"Topic currently has {current} partitions, which is higher than the "
                    f"requested {total_count}."
                )
            if validate_only:
                return
            await self._add_partitions(topic, current, total_count)
        logger.info("topic %s now has %d partitions", name, total_count, extra={"topic": name})

    async def alter_configs(
        self,
        name: str,
        configs: Mapping[str, str | None],
        *,
        incremental: bool,
        validate_only: bool = False,
    ) -> None:
        """Change a topic's overrides (AlterConfigs replaces them all; incremental sets the
        given ones, None deleting an override). Validated, persisted, applied at once."""
        async with self._lock:
            topic = self.topic(name)
            if incremental:
                overrides: dict[str, Any] = dict(topic.config.overrides)
                for key, value in configs.items():
                    if value is None:
                        overrides.pop(key, None)
                    else:
                        overrides[key] = value
            else:
                overrides = {k: v for k, v in configs.items() if v is not None}
            config = LogConfig.from_configs(overrides, base=self.defaults)
            if validate_only:
                return
            old = topic.config
            topic.config = config
            try:
                await asyncio.to_thread(self._write_metadata, topic)
            except OSError as exc:
                topic.config = old
                raise KafkaStorageError(f"cannot persist the configs of {name}: {exc}") from exc
            for log in topic.partitions:
                log.config = config
        logger.info(
            "altered configs of topic %s: %s",
            name,
            dict(config.overrides),
            extra={"topic": name},
        )

    async def allocate_producer_id(self) -> int:
        """A producer id never handed out before (InitProducerId); persisted in blocks.

        Every ``_PRODUCER_ID_BLOCK`` ids the end of the next block is written (and
        fsynced) to ``producer-ids.json`` in a worker thread, under the manager's lock so
        two allocations never write at once; ids inside a block cost no I/O. A failed
        write raises :class:`KafkaStorageError` and hands out nothing, so no id is ever
        given twice across restarts.
        """
        if self._next_producer_id >= self._producer_id_block_end:
            async with self._lock:
                if self._next_producer_id >= self._producer_id_block_end:
                    end = self._next_producer_id + _PRODUCER_ID_BLOCK
                    payload = json.dumps({"next_block": end}).encode()
                    try:
                        await asyncio.to_thread(
                            write_file_atomically, self.data_dir / "producer-ids.json", payload
                        )
                    except OSError as exc:
                        raise KafkaStorageError(f"cannot persist producer ids: {exc}") from exc
                    self._producer_id_block_end = end
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        return producer_id

    # ------------------------------------------------------------------ background
    def enforce_retention(self) -> int:
        """One retention pass over every partition with the injected clock (also forgets
        idle producers); returns the number of segments deleted."""
        now_ms = int(self.clock() * 1000)
        deleted = 0
        for topic in list(self._topics.values()):
            for log in topic.partitions:
                deleted += enforce_retention(log, now_ms)
                log.producers.expire(now_ms, self.producer_id_expiration_ms)
        return deleted

    async def clean(self) -> int:
        """One compaction pass over every compacted partition; returns segments rewritten."""
        now_ms = int(self.clock() * 1000)
        rewritten = 0
        for topic in list(self._topics.values()):
            if not topic.config.compact:
                continue
            for log in list(topic.partitions):
                rewritten += await self.cleaner.clean(log, now_ms)
        return rewritten

    async def _maintain(self) -> None:
        tick = max(0.05, min(self.retention_check_interval_s, self.cleaner_interval_s, 10.0))
        loop = asyncio.get_running_loop()
        next_retention = loop.time() + self.retention_check_interval_s
        next_clean = loop.time() + self.cleaner_interval_s
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            try:
                if now >= next_retention:
                    next_retention = now + self.retention_check_interval_s
                    self.enforce_retention()
                if now >= next_clean:
                    next_clean = now + self.cleaner_interval_s
                    await self.clean()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("log maintenance failed; retrying at the next interval")
