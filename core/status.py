"""Who runs what in a gateway cluster, read from the Kafka cluster (``backbone status``).

Nothing is asked of the gateway processes themselves: DescribeGroups on the
gateway group (``_backbone.gateway.<id>``) gives its members and the leader's
map of sources (every member's assignment carries it, with each source's state
as its owner reported it at the last rebalance); DescribeGroups on
``backbone.<name>`` gives the processes that hold partitions of each sink and
processor (their client id ends in ``@<host>:<pid>``). :func:`cluster_status`
returns one entry per connector and process::

    {"connector": "orders", "kind": "sql", "worker": "host-a:4242", "state": "RUNNING"}

A source no process runs has ``worker: null`` and state ``UNASSIGNED``; an
ingress source (webhook) has one entry per gateway process; a sink or processor
one per process holding some of its partitions (``UNASSIGNED`` when none).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DescribeGroupsRequest
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.group import MemberAssignment

from backbone.assignment import Plan
from backbone.clients import KafkaClients
from backbone.cluster import group_name
from backbone.errors import BackboneError
from backbone.registry import Registry
from backbone.settings import Config
from backbone.topics import describe

__all__ = ["cluster_status", "config_bootstrap"]

_GROUP_COORDINATOR = 0


def config_bootstrap(config: Config) -> str:
    """The address a client of ``config``'s broker connects to."""
    if config.broker.bootstrap is not None:
        return ",".join(config.broker.bootstrap)
    embedded = config.broker.embedded
    assert embedded is not None
    return embedded.advertised_listener or embedded.listen


async def cluster_status(
    config: Config, registry: Registry, *, bootstrap: str | None = None
) -> list[dict[str, Any]]:
    """One entry per connector and process (see the module docstring)."""
    address = bootstrap or config_bootstrap(config)
    client = KafkaClients(address, config.broker).client("backbone.status")
    try:
        try:
            await asyncio.wait_for(client.bootstrap(), 30)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BackboneError(
                f"cannot reach the Kafka cluster at {address}: {describe(exc)}"
            ) from exc
        gateway = await _describe(client, group_name(config.gateway_id))
        consumers = {
            name: await _describe(client, f"backbone.{name}")
            for name in [*config.sinks, *config.processors]
        }
    finally:
        await client.close()
    workers, plan = _gateway(gateway)
    out: list[dict[str, Any]] = []
    for name, source in config.sources.items():
        kind = registry.get(source.type) if source.type in registry.names() else None
        if kind is not None and getattr(kind.source, "ingress", False):
            out += [_entry(name, source.type, worker, "RUNNING") for worker in workers]
            continue
        owner = plan.owners.get(name) if plan is not None else None
        if owner is None:
            out.append(_entry(name, source.type, None, "UNASSIGNED"))
        else:
            out.append(_entry(name, source.type, owner[0], _state(owner[1])))
    for name, members in consumers.items():
        kind_name = config.sinks[name].type if name in config.sinks else "processor"
        holders = sorted(
            {_worker(client_id) for client_id, partitions in members if partitions},
        )
        if not holders:
            out.append(_entry(name, kind_name, None, "UNASSIGNED"))
        out += [_entry(name, kind_name, worker, "RUNNING") for worker in holders]
    return out


def _entry(connector: str, kind: str, worker: str | None, state: str) -> dict[str, Any]:
    return {"connector": connector, "kind": kind, "worker": worker, "state": state}


def _state(reported: str) -> str:
    return "STARTING" if reported == "ASSIGNED" else reported


def _worker(client_id: str) -> str:
    return client_id.rpartition("@")[2] if "@" in client_id else client_id


def _gateway(members: list[tuple[str, bytes, bytes]]) -> tuple[list[str], Plan | None]:
    """The gateway processes (from their metadata) and the newest source map."""
    workers: list[str] = []
    plan: Plan | None = None
    for _, metadata, assignment in members:
        try:
            workers.append(str(json.loads(metadata)["worker"]))
        except (ValueError, KeyError, TypeError):
            continue
        try:
            found = Plan.decode(assignment)
        except (ValueError, KeyError, TypeError):
            continue
        if plan is None or found.generation > plan.generation:
            plan = found
    return sorted(workers), plan


async def _describe(client: Any, group: str) -> list[Any]:
    """The members of ``group``: (client id, metadata, assignment) for the gateway group,
    (client id, assigned partitions) for consumer groups; [] when it has none."""
    node = client.get_random_node()
    found = await client.send(node, FindCoordinatorRequest(group, _GROUP_COORDINATOR))
    if found.error_code:
        return []
    response = await client.send(found.coordinator_id, DescribeGroupsRequest([group]))
    members: list[Any] = []
    for described in response.groups:
        error, protocol_type, listed = described[0], described[3], described[5]
        if error:
            continue
        for member in listed:
            client_id, metadata, assignment = member[1], member[-2], member[-1]
            if protocol_type == "consumer":
                partitions = 0
                if assignment:
                    try:
                        decoded = MemberAssignment.decode(assignment)
                        partitions = sum(len(p) for _, p in decoded.assignment)
                    except Exception:  # an assignment in another format
                        partitions = 1
                members.append((client_id, partitions))
            else:
                members.append((client_id, metadata, assignment))
    return members
