"""The topics a configuration needs, and creating the missing ones at start.

:func:`planned_topics` lists them: the topics declared under ``topics:`` (their
partitions, replication factor and configs), ``_backbone.positions`` (one
partition, compacted) and every other topic a connector names (one partition).
The last two are the runtime's own topics: they take their replication factor
and ``min.insync.replicas`` from ``broker.internal_topics`` (default -1, the
cluster's default replication factor).

:func:`create_topics` creates the missing ones with CreateTopics v4 or later
when the broker offers it (the first version that accepts -1 for the partition
count and the replication factor, KIP-464); aiokafka's admin client stops at v3
and refuses -1 before sending anything, so the request is built here. A topic
that exists is left alone; a topic another gateway process created a moment
earlier (``TOPIC_ALREADY_EXISTS``) is fine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import (
    CreateTopicsRequest_v1,
    CreateTopicsRequest_v2,
    CreateTopicsRequest_v3,
    CreateTopicsResponse_v3,
)
from aiokafka.protocol.api import Request, RequestStruct, Response

from backbone.clients import KafkaClients
from backbone.errors import BackboneError
from backbone.positions import POSITIONS_TOPIC
from backbone.settings import Config

__all__ = ["TopicSpec", "create_topics", "planned_topics"]

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class TopicSpec:
    """One topic to create: partitions, replication factor (-1 = default), configs."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def planned_topics(config: Config) -> list[TopicSpec]:
    """Every topic ``config`` needs (see the module docstring), declared ones first."""
    wanted: dict[str, TopicSpec] = {}
    for name in config.topics:
        topic = config.topic_settings(name)
        wanted[name] = TopicSpec(
            name, topic.partitions, topic.replication_factor, topic.kafka_configs()
        )
    internal = config.broker.internal_topics
    wanted.setdefault(
        POSITIONS_TOPIC,
        TopicSpec(
            POSITIONS_TOPIC,
            1,
            internal.replication_factor,
            {"cleanup.policy": "compact", **internal.kafka_configs()},
        ),
    )
    referenced: list[str] = []
    for source in config.sources.values():
        referenced += [source.topic, source.dead_letter_topic or ""]
    for sink in config.sinks.values():
        referenced += [*sink.topics, sink.dead_letter_topic or ""]
    for proc in config.processors.values():
        referenced += [*proc.topics, proc.to or "", proc.dead_letter_topic or ""]
        for step in proc.transforms or ():
            route = getattr(step, "route", None)
            if route is not None:
                referenced += [*route.topics.values(), route.default or ""]
    for name in referenced:
        if name and name not in wanted:
            wanted[name] = TopicSpec(name, 1, internal.replication_factor, internal.kafka_configs())
    return list(wanted.values())


class _CreateTopicsResponseV4(Response):  # type: ignore[misc]
    API_KEY = 19
    API_VERSION = 4
    SCHEMA = CreateTopicsResponse_v3.SCHEMA


class _CreateTopicsRequestV4(RequestStruct):  # type: ignore[misc]
    """CreateTopics v4: the v3 layout; -1 partitions/replication factor allowed."""

    API_KEY = 19
    API_VERSION = 4
    RESPONSE_TYPE = _CreateTopicsResponseV4
    SCHEMA = CreateTopicsRequest_v3.SCHEMA


_Versions = (
    CreateTopicsRequest_v1
    | CreateTopicsRequest_v2
    | CreateTopicsRequest_v3
    | _CreateTopicsRequestV4
)


class _CreateTopics(Request[_Versions]):  # type: ignore[misc]
    """The newest CreateTopics version (v1-v4) both sides speak."""

    API_KEY = 19

    def __init__(self, topics: list[TopicSpec]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[Any]) -> Any:
        defaults = [t.name for t in self.topics if t.replication_factor == -1]
        if defaults and request_struct_class.API_VERSION < 4:
            raise BackboneError(
                f"the broker speaks CreateTopics up to v{request_struct_class.API_VERSION}, "
                "which cannot ask for the cluster's default replication factor (-1, "
                f"CreateTopics v4, Kafka 2.4) for {', '.join(defaults)}: set their "
                "replication_factor (topics.<name>.replication_factor, "
                "broker.internal_topics.replication_factor) to a number"
            )
        return request_struct_class(
            create_topic_requests=[
                (t.name, t.partitions, t.replication_factor, [], list(t.configs.items()))
                for t in self.topics
            ],
            timeout=_TIMEOUT_MS,
            validate_only=False,
        )


_AUTHORIZATION_FAILED = (29, 31)  # TOPIC_, CLUSTER_AUTHORIZATION_FAILED


async def create_topics(clients: KafkaClients, topics: list[TopicSpec]) -> list[str]:
    """Create the topics of ``topics`` that do not exist; the names created."""
    client = clients.client("backbone.admin")
    try:
        try:
            await client.bootstrap()
            metadata = await client.fetch_all_metadata()
        except KafkaError as exc:
            try:  # one connection of our own tells why: authentication, TLS, token
                await clients.check()
            except BackboneError as reason:
                if not str(reason).startswith(("cannot connect to", "no answer from")):
                    raise BackboneError(
                        f"cannot reach the Kafka cluster at {clients.bootstrap} "
                        f"(broker.bootstrap): {reason}"
                    ) from exc
            raise BackboneError(
                f"cannot reach the Kafka cluster at {clients.bootstrap} (broker.bootstrap): "
                f"{describe(exc)}"
            ) from exc
        existing = set(metadata.topics(exclude_internal_topics=False))
        missing = [topic for topic in topics if topic.name not in existing]
        if not missing:
            return []
        controller = metadata.controller
        node = controller.nodeId if controller is not None else client.get_random_node()
        try:
            response = await client.send(node, _CreateTopics(missing))
        except KafkaError as exc:
            raise BackboneError(f"cannot create topics: {describe(exc)}") from exc
    finally:
        await client.close()
    created, problems = [], []
    for name, code, message in response.topic_errors:
        if code == _TOPIC_ALREADY_EXISTS:
            continue
        if code:
            problems.append(f"topic {name}: error {code} ({message or 'no message'})")
        else:
            logger.info("created topic %s", name)
            created.append(name)
    if problems:
        hint = ""
        if any(code in _AUTHORIZATION_FAILED for _, code, _ in response.topic_errors):
            hint = (
                " (the principal the gateway connects as needs CREATE on the cluster or on "
                "these topics: list it in broker.embedded.super_users, or grant it ACLs)"
            )
        raise BackboneError("cannot create topics: " + "; ".join(problems) + hint)
    return created


def describe(exc: BaseException) -> str:
    """``Class: message`` of a client error, without repeating a class name it already has."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"
