"""A member of a Kafka group with protocol type ``backbone``, and its lease.

The gateway processes of one gateway cluster form the group
``_backbone.gateway.<id>`` with Kafka's classic group protocol, as Kafka Connect's
workers do (protocol type ``connect``): FindCoordinator, JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, sent with aiokafka's low-level client. The coordinator
(any Kafka-compatible broker) tracks membership and session timeouts; the
leader it picks computes the assignment (:mod:`backbone.assignment`) and hands it
out through SyncGroup. No other coordination service is involved.

The member runs one loop, so at most one request is in flight to the
coordinator (a parked JoinGroup is never overtaken by a heartbeat)::

    find coordinator -> JoinGroup -> SyncGroup -> Heartbeat every interval
        Heartbeat NONE                   -> stays
        REBALANCE_IN_PROGRESS            -> JoinGroup again (sources keep running)
        UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID
                                         -> lost: ``on_lost`` (sources stop at once), rejoin
        NOT_COORDINATOR, COORDINATOR_*, timeouts, connection errors
                                         -> find the coordinator again, retry

**The lease.** The coordinator drops a member whose last heartbeat is older than
the session timeout, or that does not rejoin within the rebalance timeout (equal to
the session timeout here) once a rebalance began, and only then gives its sources
to others. A request sent at ``t`` that the coordinator answered positively (a
heartbeat's NONE, a JoinGroup or SyncGroup result) shows that the member was alive
at the coordinator, and the group not rebalancing without it, no earlier than
``t``, so it cannot have been dropped before ``t + session_timeout``. A heartbeat
answered REBALANCE_IN_PROGRESS does not renew the lease: the rebalance began
before it, and its deadline runs from then. :meth:`GroupMember.leased` is true
until ``t + LEASE_SHARE * session_timeout`` (monotonic clock) of the newest such
request, and :meth:`GroupMember.fence` waits while it is false. Source workers
await the fence before every produce and every position write, so a process that
was frozen (SIGSTOP, a long GC-like stall, a lost network) past its session writes
nothing when it wakes up: its lease has run out, its next heartbeat answers
UNKNOWN_MEMBER_ID, its sources are stopped without writing and it joins again.
The lease is the first line; records a process handed to its producer before it
froze may still land after it woke (in-flight duplicates). Position saves and
claims check the lease as they are written to the socket
(:meth:`~backbone.positions.PositionStore.write_fenced`), so none lands after a
successor's claim; and the claim is the hard fence behind it: a save of an owner
that was claimed over counts for nobody.

**Errors.** Whatever a retry can mend is retried, with a backoff that grows from
the heartbeat interval to :data:`MAX_BACKOFF` and starts again after the next
answer: a broker that restarts or cannot be reached, a coordinator that moved or
is loading, timeouts, an unexpected error of the client library. Meanwhile the
lease runs out, so the sources pause at their fence (and are stopped once the
membership turns out to be lost); the gateway keeps its sinks and webhooks.
:class:`~backbone.errors.BackboneError` ends :meth:`GroupMember.run` only for what
no retry mends: another kind of client in the group, a group id or session timeout
the broker refuses, no authorization for the group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    SyncGroupRequest,
)

from backbone.errors import BackboneError

__all__ = ["LEASE_SHARE", "MAX_BACKOFF", "PROTOCOL_TYPE", "GroupMember"]

logger = logging.getLogger(__name__)

PROTOCOL_TYPE = "backbone"
LEASE_SHARE = 0.8
"""Share of the session timeout a positive answer keeps the lease (margin for clock rates
and for the time between the fence check and the write reaching the broker)."""

MAX_BACKOFF = 5.0
"""Longest wait (seconds) between two attempts while the coordinator cannot be reached."""

_NONE = 0
_COORDINATOR_LOAD_IN_PROGRESS = 14
_COORDINATOR_NOT_AVAILABLE = 15
_NOT_COORDINATOR = 16
_ILLEGAL_GENERATION = 22
_INCONSISTENT_GROUP_PROTOCOL = 23
_INVALID_GROUP_ID = 24
_UNKNOWN_MEMBER_ID = 25
_INVALID_SESSION_TIMEOUT = 26
_REBALANCE_IN_PROGRESS = 27
_GROUP_AUTHORIZATION_FAILED = 30
_MEMBER_ID_REQUIRED = 79
_FENCED_INSTANCE_ID = 82
_COORDINATOR_ERRORS = {_COORDINATOR_LOAD_IN_PROGRESS, _COORDINATOR_NOT_AVAILABLE, _NOT_COORDINATOR}
_LOST = {_ILLEGAL_GENERATION, _UNKNOWN_MEMBER_ID, _FENCED_INSTANCE_ID}
_GROUP_COORDINATOR = 0


class _Retry(Exception):
    """Go back to the start of the loop (after a short wait when ``backoff``)."""

    def __init__(self, why: str, *, backoff: bool = True) -> None:
        super().__init__(why)
        self.backoff = backoff


Assignor = Callable[[int, list[tuple[str, bytes]]], dict[str, bytes]]
"""Leader's hook: (generation, [(member id, metadata)]) -> {member id: assignment}."""


class GroupMember:
    """Joins ``group`` and keeps the membership and the lease (see the module docstring).

    ``metadata()`` is called for every JoinGroup; ``assign`` on the leader;
    ``on_assigned(generation, assignment)`` after every SyncGroup (must not block);
    ``on_lost(reason)`` when the membership was lost (must stop the sources without
    letting them write).
    """

    def __init__(
        self,
        client: AIOKafkaClient,
        group: str,
        *,
        session_timeout: float,
        heartbeat_interval: float,
        metadata: Callable[[], bytes],
        assign: Assignor,
        on_assigned: Callable[[int, bytes], None],
        on_lost: Callable[[str], None],
        protocol: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.group = group
        self.session_timeout = session_timeout
        self.heartbeat_interval = heartbeat_interval
        self.rebalance_timeout = session_timeout
        self.metadata = metadata
        self.assign = assign
        self.on_assigned = on_assigned
        self.on_lost = on_lost
        self.protocol = protocol
        self.clock = clock
        self.member_id = ""
        self.generation = -1
        self.leader = False
        self.coordinator: int | None = None
        self._lease_end = 0.0
        self._renewed = asyncio.Event()
        self._rejoin = asyncio.Event()
        self._joined = False
        self._answered = False  # the coordinator answered since the last failure
        self._lapsed = False  # a writer found the lease run out (logged once per lapse)

    # ------------------------------------------------------------------ lease

    def leased(self) -> bool:
        """Whether the coordinator cannot have dropped this member yet."""
        return self.clock() < self._lease_end

    async def fence(self) -> None:
        """Return at once while leased; else wait until a positive answer renews the lease."""
        if not self.leased() and not self._lapsed:
            self._lapsed = True
            logger.info(
                "gateway group %s: lease ran out; source writes wait for the coordinator",
                self.group,
            )
        while not self.leased():
            self._renewed.clear()
            try:
                await asyncio.wait_for(self._renewed.wait(), self.heartbeat_interval)
            except TimeoutError:
                continue

    def _renew(self, sent: float) -> None:
        self._lease_end = max(self._lease_end, sent + LEASE_SHARE * self.session_timeout)
        if self.leased():
            self._renewed.set()
            if self._lapsed:
                self._lapsed = False
                logger.info("gateway group %s: lease renewed", self.group)

    def _lose(self, reason: str) -> None:
        self._lease_end = 0.0
        self._joined = False
        logger.warning("gateway group %s: membership lost (%s); rejoining", self.group, reason)
        self.on_lost(reason)

    def rejoin(self) -> None:
        """Ask for a new generation (e.g. after stopping sources the leader took back)."""
        self._rejoin.set()

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Join and stay in the group until ``stop`` is set; then leave it.

        Raises :class:`~backbone.errors.BackboneError` for what no retry mends (see
        the module docstring); everything else is retried.
        """
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self._find_coordinator()
                    if not self._joined:
                        await self._join()
                    await self._heartbeats(stop)
                    continue
                except _Retry as retry:
                    logger.debug("gateway group %s: %s", self.group, retry)
                    if not retry.backoff:
                        continue
                    failed: BaseException = retry
                except BackboneError:
                    raise
                except (KafkaError, OSError, TimeoutError) as exc:
                    self._fatal(exc)
                    self.coordinator = None
                    failed = exc
                except Exception as exc:  # a client library's surprise: retried, loudly
                    self.coordinator = None
                    failed = exc
                if self._answered:  # the coordinator answered since the last failure
                    failures, self._answered = 0, False
                failures += 1
                self._failed(failures, failed)
                await _wait(stop, self.backoff(failures))
        finally:
            await self.leave()

    def backoff(self, failures: int) -> float:
        """Wait before attempt ``failures + 1``: from the heartbeat interval up, doubling."""
        first = min(1.0, self.heartbeat_interval)
        return float(min(MAX_BACKOFF, first * 2 ** min(max(failures - 1, 0), 10)))

    def _failed(self, failures: int, exc: BaseException) -> None:
        """Log a failed attempt: the first of a run of failures, then every tenth."""
        if failures % 10 != 0 and (failures != 1 or isinstance(exc, _Retry)):
            return  # a _Retry is routine once (coordinator moved, not known yet)
        expected = isinstance(exc, KafkaError | OSError | TimeoutError | _Retry)
        logger.log(
            logging.WARNING if expected else logging.ERROR,
            "gateway group %s: %s%s: %s; retrying (attempt %d; the sources here pause "
            "once the lease runs out)",
            self.group,
            "" if expected else "unexpected ",
            type(exc).__name__,
            exc,
            failures,
            exc_info=None if expected or failures != 1 else exc,
        )

    def _fatal(self, exc: BaseException) -> None:
        """Raise BackboneError for a client error no retry mends (authorization)."""
        if getattr(exc, "errno", None) == _GROUP_AUTHORIZATION_FAILED:
            raise BackboneError(
                f"not authorized to use the group {self.group} (GROUP_AUTHORIZATION_FAILED): "
                "grant this gateway's principal READ on it"
            ) from exc

    async def leave(self) -> None:
        """Leave the group (so others take over at once instead of after the session)."""
        self._lease_end = 0.0
        if not self.member_id or self.coordinator is None:
            return
        member_id, self.member_id, self._joined = self.member_id, "", False
        try:
            await self._send(LeaveGroupRequest(self.group, member_id), self.heartbeat_interval * 3)
            logger.info("gateway group %s: left", self.group)
        except (KafkaError, OSError, TimeoutError) as exc:
            logger.info("gateway group %s: could not leave (%s)", self.group, exc)

    async def _send(self, request: object, within: float) -> Any:
        assert self.coordinator is not None
        call = self.client.send(self.coordinator, request, group=ConnectionGroup.COORDINATION)
        return await asyncio.wait_for(call, within)

    async def _find_coordinator(self) -> None:
        if self.coordinator is not None:
            return
        if self.client.get_random_node() is None:
            await self.client.force_metadata_update()
            raise _Retry("no broker known yet")
        # FindCoordinator, as aiokafka's own consumers do it (error codes raised as
        # KafkaError); the coordinator is reached through the address Metadata gives
        # for its node id, so a broker must list its coordinators in Metadata
        coordinator = await self.client.coordinator_lookup(_GROUP_COORDINATOR, self.group)
        if not await self.client.ready(coordinator, group=ConnectionGroup.COORDINATION):
            await self.client.force_metadata_update()
            known = sorted(b.nodeId for b in self.client.cluster.brokers())
            raise _Retry(f"coordinator node {coordinator} not reachable (brokers: {known})")
        self.coordinator = coordinator
        logger.debug("gateway group %s: coordinator is node %s", self.group, coordinator)

    def _check(self, code: int, what: str) -> None:
        """Map a coordinator error code to the loop's next step."""
        if code == _NONE:
            self._answered = True
            return
        if code in _COORDINATOR_ERRORS:
            self.coordinator = None
            raise _Retry(f"{what}: coordinator moved ({code})")
        if code in _LOST:
            self._answered = True
            if code == _UNKNOWN_MEMBER_ID:
                self.member_id = ""
            self._lose(f"{what} answered error {code}")
            raise _Retry(f"{what}: lost", backoff=False)
        if code == _REBALANCE_IN_PROGRESS:
            self._answered = True
            self._joined = False
            raise _Retry(f"{what}: rebalance", backoff=False)
        if code == _INCONSISTENT_GROUP_PROTOCOL:
            raise BackboneError(
                f"the group {self.group} is used by other clients with another protocol: "
                "give this gateway cluster another gateway.id"
            )
        if code == _INVALID_GROUP_ID:
            raise BackboneError(f"the broker refuses the group id {self.group!r}")
        if code == _INVALID_SESSION_TIMEOUT:
            raise BackboneError(
                f"the broker refuses runtime.session_timeout {self.session_timeout:g}s: it "
                "must lie within the broker's group.min.session.timeout.ms and "
                "group.max.session.timeout.ms"
            )
        if code == _GROUP_AUTHORIZATION_FAILED:
            raise BackboneError(
                f"not authorized to use the group {self.group} (GROUP_AUTHORIZATION_FAILED): "
                "grant this gateway's principal READ on it"
            )
        raise _Retry(f"{what}: error {code}")

    async def _join(self) -> None:
        self._rejoin.clear()
        sent = self.clock()
        request = JoinGroupRequest(
            self.group,
            int(self.session_timeout * 1000),
            int(self.rebalance_timeout * 1000),
            self.member_id,
            None,  # no static membership
            PROTOCOL_TYPE,
            [(self.protocol, self.metadata())],
        )
        response = await self._send(request, self.rebalance_timeout + self.session_timeout)
        code = response.error_code
        if code == _MEMBER_ID_REQUIRED:
            self.member_id = response.member_id
            raise _Retry("member id assigned", backoff=False)
        if code == _UNKNOWN_MEMBER_ID and not self.member_id:
            raise _Retry("join refused")
        self._check(code, "JoinGroup")
        self._renew(sent)
        self.member_id = response.member_id
        self.generation = response.generation_id
        self.leader = response.leader_id == self.member_id
        assignments: list[tuple[str, bytes]] = []
        if self.leader:
            members = [(m[0], m[-1]) for m in response.members]
            plans = self.assign(self.generation, members)
            assignments = list(plans.items())
        sent = self.clock()
        sync = SyncGroupRequest(self.group, self.generation, self.member_id, None, assignments)
        result = await self._send(sync, self.rebalance_timeout + self.session_timeout)
        self._check(result.error_code, "SyncGroup")
        self._renew(sent)
        self._joined = True
        logger.info(
            "gateway group %s: generation %d%s",
            self.group,
            self.generation,
            " (leader)" if self.leader else "",
        )
        self.on_assigned(self.generation, result.member_assignment)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            woken = await _wait_any(stop, self._rejoin, self.heartbeat_interval)
            if stop.is_set():
                return
            if woken:
                self._joined = False
                raise _Retry("rejoin requested", backoff=False)
            sent = self.clock()
            request = HeartbeatRequest(self.group, self.generation, self.member_id)
            response = await self._send(request, self.session_timeout)
            code = response.error_code
            if code == _NONE:  # not REBALANCE_IN_PROGRESS: see the module docstring
                self._renew(sent)
            self._check(code, "Heartbeat")


async def _wait(stop: asyncio.Event, delay: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, delay: float) -> bool:
    """Wait ``delay`` or until an event is set; True when ``other`` was set."""
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())}
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return other.is_set()
