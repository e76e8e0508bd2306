"""Read and change a Kafka cluster as an operator does: topics, offsets, consumer groups.

:class:`KafkaAdmin` wraps one admin client and one group-less consumer (for offset
look-ups) made by :class:`~backbone.clients.KafkaClients`, and answers in the
models of :mod:`backbone.views`. The CLI (``backbone topics``/``groups``) and the
admin HTTP API use it alike. Only Kafka protocol requests are used, so it works
on the embedded broker and on any Kafka cluster; partition sizes on disk are read
from the broker's data directory when it is on this machine.

A group's offsets are moved (:meth:`KafkaAdmin.reset_offsets`) only while the group
has no live members, as ``kafka-consumer-groups --reset-offsets`` does: a member
would overwrite them with its next commit (and the broker refuses commits from
outside a live group anyway).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from backbone.clients import KafkaClients, stop_consumer
from backbone.errors import BackboneError
from backbone.views import (
    GroupMember,
    GroupPartition,
    GroupSummary,
    GroupView,
    OffsetChange,
    PartitionView,
    TopicConfig,
    TopicView,
)

__all__ = ["GroupBusyError", "KafkaAdmin", "UnknownTopicError", "describe_error", "millis"]

logger = logging.getLogger(__name__)

_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs config_source of a topic's own setting
_LIVE = {"Stable", "PreparingRebalance", "CompletingRebalance"}


class UnknownTopicError(BackboneError):
    """The topic does not exist."""


class GroupBusyError(BackboneError):
    """The consumer group has live members (its offsets cannot be moved now)."""


def millis(when: dt.datetime) -> int:
    """Milliseconds since the epoch of an aware ``datetime``."""
    return int(when.timestamp() * 1000)


def describe_error(exc: BaseException) -> str:
    """``Class: message`` of a client error, without repeating a class name it already has."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def _internal(name: str) -> bool:
    return name.startswith("_")


def _size_on_disk(data_dir: Path | None, topic: str, partition: int) -> int | None:
    if data_dir is None:
        return None
    folder = data_dir / f"{topic}-{partition}"
    try:
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return None


class KafkaAdmin:
    """Topics, offsets and consumer groups of one cluster (see the module docstring).

    An async context manager: ``async with KafkaAdmin(clients, data_dir) as cluster``.
    """

    def __init__(self, clients: KafkaClients, data_dir: Path | None = None) -> None:
        self.clients = clients
        self.data_dir = data_dir
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> KafkaAdmin:
        admin = self.clients.admin(client_id="backbone.cli", request_timeout_ms=30000)
        try:
            await admin.start()
        except Exception as exc:
            await admin.close()
            raise BackboneError(
                f"cannot reach the Kafka cluster at {self.clients.bootstrap}: {describe_error(exc)}"
            ) from exc
        self._admin = admin
        consumer = self.clients.consumer(
            client_id="backbone.cli", group_id=None, enable_auto_commit=False
        )
        try:
            await consumer.start()
        except BaseException:
            await stop_consumer(consumer)
            await admin.close()
            raise
        self._offsets = consumer
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._offsets is not None:
                await stop_consumer(self._offsets)
        finally:
            if self._admin is not None:
                await self._admin.close()

    @property
    def admin(self) -> AIOKafkaAdminClient:
        assert self._admin is not None, "use KafkaAdmin as an async context manager"
        return self._admin

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._offsets is not None, "use KafkaAdmin as an async context manager"
        return self._offsets

    # -- topics ---------------------------------------------------------------

    async def topic_names(self, *, internal: bool = False) -> list[str]:
        """Names of every topic (internal ones too when ``internal``), sorted."""
        names = await self.admin.list_topics()
        return sorted(n for n in names if internal or not _internal(n))

    async def require_topic(self, name: str) -> None:
        """:class:`UnknownTopicError` unless ``name`` exists (checked without creating it)."""
        if name not in await self.admin.list_topics():
            raise UnknownTopicError(f"topic {name!r} does not exist")

    async def partitions(self, topic: str) -> list[TopicPartition]:
        """The partitions of ``topic`` (which must exist)."""
        await self.require_topic(topic)
        (described,) = await self.admin.describe_topics([topic])
        return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]

    async def topics(
        self, names: Sequence[str] | None = None, *, internal: bool = False, configs: bool = False
    ) -> list[TopicView]:
        """Every topic (or ``names``) with partitions, offsets, sizes (and configs)."""
        if names is None:
            names = await self.topic_names(internal=internal)
        else:
            for name in names:
                await self.require_topic(name)
        if not names:
            return []
        described = await self.admin.describe_topics(list(names))
        tps = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            for p in topic["partitions"]
        ]
        starts, ends = await self.offsets(tps)
        found_configs = await self._configs(names) if configs else {}
        views = []
        for topic in sorted(described, key=lambda t: t["topic"]):
            name = topic["topic"]
            parts = []
            for p in sorted(topic["partitions"], key=lambda p: p["partition"]):
                tp = TopicPartition(name, p["partition"])
                parts.append(
                    PartitionView(
                        partition=tp.partition,
                        leader=p["leader"] if p["leader"] >= 0 else None,
                        start_offset=starts[tp],
                        end_offset=ends[tp],
                        records=ends[tp] - starts[tp],
                        size_bytes=_size_on_disk(self.data_dir, name, tp.partition),
                    )
                )
            sizes = [p.size_bytes for p in parts]
            views.append(
                TopicView(
                    name=name,
                    internal=bool(topic.get("is_internal")) or _internal(name),
                    partitions=parts,
                    records=sum(p.records for p in parts),
                    size_bytes=None if None in sizes else sum(s or 0 for s in sizes),
                    configs=found_configs.get(name, []),
                )
            )
        return views

    async def _configs(self, names: Iterable[str]) -> dict[str, list[TopicConfig]]:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        responses = await self.admin.describe_configs(resources)
        found: dict[str, list[TopicConfig]] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                if resource["error_code"]:
                    raise BackboneError(
                        f"cannot read the configs of topic {resource['resource_name']}: "
                        f"error {resource['error_code']} ({resource['error_message']})"
                    )
                entries = [
                    TopicConfig(
                        name=entry["config_names"],
                        value=entry["config_value"],
                        default=entry.get("config_source", 5) != _DYNAMIC_TOPIC_CONFIG
                        if "config_source" in entry
                        else bool(entry.get("is_default", True)),
                    )
                    for entry in resource["config_entries"]
                ]
                found[resource["resource_name"]] = sorted(entries, key=lambda e: e.name)
        return found

    async def create_topic(
        self,
        name: str,
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        """Create ``name``; :class:`BackboneError` with the broker's reason if refused."""
        response = await self.admin.create_topics(
            [NewTopic(name, partitions, replication_factor, topic_configs=dict(configs or {}))]
        )
        for entry in getattr(response, "topic_errors", None) or response.topics:
            code, message = entry[1], entry[2] if len(entry) > 2 else None
            if code:
                raise BackboneError(
                    f"cannot create topic {name!r}: {message or f'error code {code}'}"
                )

    async def delete_topic(self, name: str) -> None:
        """Delete ``name`` (which must exist)."""
        await self.require_topic(name)
        response = await self.admin.delete_topics([name])
        for entry in response.to_object().get("topic_error_codes", []):
            code = entry.get("error_code", 0)
            if code:
                raise BackboneError(f"cannot delete topic {name!r}: error code {code}")

    # -- offsets --------------------------------------------------------------

    async def offsets(
        self, tps: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Log start and end offsets of ``tps``."""
        if not tps:
            return {}, {}
        starts = await self.consumer.beginning_offsets(list(tps))
        ends = await self.consumer.end_offsets(list(tps))
        return dict(starts), dict(ends)

    async def offsets_at(
        self, tps: Sequence[TopicPartition], when: dt.datetime
    ) -> dict[TopicPartition, int]:
        """Per partition, the first offset whose record timestamp is at or after ``when``
        (the end offset where every record is older)."""
        if not tps:
            return {}
        found = await self.consumer.offsets_for_times({tp: millis(when) for tp in tps})
        _, ends = await self.offsets(tps)
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}

    # -- consumer groups --------------------------------------------------------

    async def group_names(self) -> list[str]:
        """Every consumer group the cluster knows, sorted."""
        return sorted({str(entry[0]) for entry in await self.admin.list_consumer_groups()})

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        """The group's committed offsets (partitions without one are left out)."""
        found = await self.admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def _describe(self, groups: Sequence[str]) -> dict[str, dict[str, Any]]:
        described: dict[str, dict[str, Any]] = {}
        for name in groups:  # one coordinator lookup per group, as aiokafka does
            for response in await self.admin.describe_consumer_groups([name]):
                for group in response.to_object()["groups"]:
                    described[group["group"]] = group
        return described

    @staticmethod
    def _members(group: dict[str, Any]) -> list[GroupMember]:
        members = []
        for member in group["members"]:
            assignment: dict[str, list[int]] = {}
            if group.get("protocol_type") == "consumer" and member["member_assignment"]:
                try:
                    decoded = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
                    for topic, partitions in decoded.assignment:
                        assignment[topic] = sorted(partitions)
                except Exception:  # another client's format: show the member without it
                    assignment = {}
            members.append(
                GroupMember(
                    member_id=member["member_id"],
                    client_id=member["client_id"],
                    host=member["client_host"].lstrip("/"),
                    assignment=assignment,
                )
            )
        return sorted(members, key=lambda m: (m.client_id, m.member_id))

    async def groups(self) -> list[GroupSummary]:
        """Every consumer group with its state, member count, topics and total lag."""
        names = await self.group_names()
        described = await self._describe(names)
        summaries = []
        for name in names:
            view = await self._group_view(name, described.get(name))
            summaries.append(
                GroupSummary(
                    name=name,
                    state=view.state,
                    members=len(view.members),
                    topics=sorted({p.topic for p in view.partitions}),
                    lag=view.lag,
                )
            )
        return summaries

    async def group(self, name: str) -> GroupView:
        """One group: members and, per partition, committed offset, end offset and lag."""
        if name not in await self.group_names():
            raise BackboneError(f"consumer group {name!r} does not exist")
        described = await self._describe([name])
        return await self._group_view(name, described.get(name))

    async def _group_view(self, name: str, group: dict[str, Any] | None) -> GroupView:
        state = group["state"] if group else "Dead"
        members = self._members(group) if group else []
        committed = await self.committed(name)
        holders = {
            (topic, partition): member.client_id
            for member in members
            for topic, partitions in member.assignment.items()
            for partition in partitions
        }
        tps = set(committed) | {TopicPartition(t, p) for t, p in holders}
        existing = set(await self.admin.list_topics())
        tps = {tp for tp in tps if tp.topic in existing}
        _, ends = await self.offsets(sorted(tps))
        partitions = []
        for tp in sorted(tps):
            offset = committed.get(tp)
            partitions.append(
                GroupPartition(
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=offset,
                    end_offset=ends[tp],
                    lag=None if offset is None else max(ends[tp] - offset, 0),
                    member=holders.get((tp.topic, tp.partition)),
                )
            )
        return GroupView(
            name=name,
            state=state,
            protocol=(group or {}).get("protocol", ""),
            members=members,
            partitions=partitions,
            lag=sum(p.lag or 0 for p in partitions),
        )

    async def require_idle(self, group: str) -> None:
        """:class:`GroupBusyError` while ``group`` has live members."""
        described = (await self._describe([group])).get(group)
        if described and (described["members"] or described["state"] in _LIVE):
            members = self._members(described)
            who = ", ".join(f"{m.client_id} on {m.host}" for m in members) or "rebalancing"
            raise GroupBusyError(
                f"consumer group {group!r} has {len(members)} live member(s) ({who}); stop its "
                "consumers first (its offsets can be moved only while it is empty)"
            )

    async def wait_idle(self, group: str, *, within: float) -> None:
        """Wait until ``group`` has no live members (e.g. a paused sink left it);
        :class:`GroupBusyError` after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                await self.require_idle(group)
                return
            except GroupBusyError:
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.1)

    async def plan_reset(
        self, group: str, topic: str, to: str | int | dt.datetime
    ) -> list[OffsetChange]:
        """What a reset of ``group`` on ``topic`` to ``to`` would commit, per partition.

        ``to`` is ``"earliest"``, ``"latest"``, an offset (the same on every partition,
        clamped to each partition's start and end) or an aware datetime.
        """
        tps = await self.partitions(topic)
        committed = await self.committed(group)
        starts, ends = await self.offsets(tps)
        if to == "earliest":
            new = starts
        elif to == "latest":
            new = ends
        elif isinstance(to, dt.datetime):
            new = await self.offsets_at(tps, to)
        elif isinstance(to, int):
            new = {tp: min(max(to, starts[tp]), ends[tp]) for tp in tps}
        else:
            raise ValueError(f"cannot reset to {to!r}")
        return [
            OffsetChange(
                topic=tp.topic, partition=tp.partition, current=committed.get(tp), new=new[tp]
            )
            for tp in sorted(tps)
        ]

    async def reset_offsets(self, group: str, changes: Sequence[OffsetChange]) -> None:
        """Commit ``changes`` for ``group``; :class:`GroupBusyError` if it has live members."""
        await self.require_idle(group)
        await commit_offsets(
            self.clients, group, {TopicPartition(c.topic, c.partition): c.new for c in changes}
        )


async def commit_offsets(
    clients: KafkaClients, group: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Commit ``offsets`` for ``group`` from outside it (no join: generation -1).

    The broker accepts it only while the group is empty; :class:`GroupBusyError`
    otherwise.
    """
    if not offsets:
        return
    consumer = clients.consumer(client_id="backbone.cli", group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))  # manual assignment: commits without joining
        try:
            await consumer.commit(dict(offsets))
        except Exception as exc:
            raise GroupBusyError(
                f"cannot move the offsets of consumer group {group!r}: {describe_error(exc)} "
                "(a member joined meanwhile?)"
            ) from exc
    finally:
        await stop_consumer(consumer)


async def read_ranges(
    clients: KafkaClients, ranges: Mapping[TopicPartition, tuple[int, int]], *, within: float
) -> list[Any]:
    """The records of each partition in ``[first, end)`` (``ranges``), read without a
    group for at most ``within`` seconds; aiokafka ``ConsumerRecord``s, by partition."""
    wanted = {tp: end for tp, (first, end) in ranges.items() if first < end}
    if not wanted:
        return []
    consumer = clients.consumer(client_id="backbone.read", group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp in wanted:
            consumer.seek(tp, ranges[tp][0])
        found: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while wanted and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, messages in batches.items():
                end = wanted.get(tp)
                if end is None:
                    continue
                found += [m for m in messages if m.offset < end]
                if messages[-1].offset >= end - 1:
                    del wanted[tp]
                    consumer.pause(tp)
            for tp in list(wanted):
                if await consumer.position(tp) >= wanted[tp]:
                    del wanted[tp]
        return found
    finally:
        await stop_consumer(consumer)


async def browse(
    cluster: KafkaAdmin,
    tps: Sequence[TopicPartition],
    *,
    offset: int | None = None,
    when: dt.datetime | None = None,
    limit: int = 50,
    within: float = 10.0,
) -> list[Any]:
    """Up to ``limit`` records of ``tps``: from ``offset`` (on each partition) or the first
    record at or after ``when``, oldest first; else the newest, newest first.

    Reads each partition up to its end offset at the call (never waits for new
    records), for at most ``within`` seconds. Returns aiokafka ``ConsumerRecord``s.
    """
    starts, ends = await cluster.offsets(tps)
    if when is not None:
        firsts = await cluster.offsets_at(tps, when)
    elif offset is not None:
        firsts = {tp: min(max(offset, starts[tp]), ends[tp]) for tp in tps}
    else:
        firsts = {tp: max(ends[tp] - limit, starts[tp]) for tp in tps}
    ranges = {tp: (firsts[tp], min(ends[tp], firsts[tp] + limit)) for tp in tps}
    found = await read_ranges(cluster.clients, ranges, within=within)
    newest = offset is None and when is None
    found.sort(key=lambda m: (m.timestamp, m.partition, m.offset), reverse=newest)
    return found[:limit]
