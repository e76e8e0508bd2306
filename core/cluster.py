"""The gateway cluster: the sources this process runs, as its group assigns them.

Every ``backbone run`` joins the group ``_backbone.gateway.<gateway.id>``
(:mod:`backbone.membership`); the leader assigns each source to one member
(:mod:`backbone.assignment`). :class:`SourceCluster` starts the sources assigned
here and stops the ones taken away:

- **start**: claim the source in ``_backbone.positions``
  (:meth:`~backbone.positions.PositionStore.claim`: from then on a save of its
  previous owner is ignored), then run a
  :class:`~backbone.source_worker.SourceWorker` from the claimed position, with
  the membership lease as its fence (it waits before every produce and position
  write while the lease is out);
- **revoked** (the leader moves it, e.g. to a process that joined): stop it
  gracefully (drain in-flight records, save the position; bounded by
  ``runtime.grace_period``), then ask for a new generation, in which the leader
  gives it to its new owner, which claims it and resumes where it stopped;
- **membership lost** (this process was frozen or cut off past its session) or
  **claimed by another process**: cancel it at once, writing nothing more; the
  records already handed to the producer may still arrive (the "in-flight"
  duplicates), position saves not (they check the lease as they are sent); then
  join again.

Sources of an ingress kind (``Source.ingress``, e.g. webhooks) are not assigned:
the runner runs them in every process. Sinks and processors share partitions
through their own consumer groups and are not touched here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from backbone.assignment import PROTOCOL, MemberInfo, Plan, assign
from backbone.clients import KafkaClients
from backbone.membership import GroupMember
from backbone.positions import Claim, PositionStore
from backbone.supervisor import ConnectorStateError
from backbone.worker import ConnectorState, ConnectorStatus, Shared, Worker

__all__ = ["SourceCluster", "group_name"]

logger = logging.getLogger(__name__)


def group_name(gateway_id: str) -> str:
    """The Kafka group of gateway cluster ``gateway_id``."""
    return f"_backbone.gateway.{gateway_id}"


@dataclass
class _Running:
    task: asyncio.Task[None]
    claim: Claim
    stop: asyncio.Event


MakeWorker = Callable[[str, Claim, Shared], Worker]


class SourceCluster:
    """Runs the sources this process is assigned (see the module docstring)."""

    def __init__(
        self,
        *,
        gateway_id: str,
        worker: str,
        sources: list[str],
        clients: KafkaClients,
        store: PositionStore,
        shared: Shared,
        status: dict[str, ConnectorStatus],
        make_worker: MakeWorker,
        supervise: Callable[[Worker], Awaitable[None]],
    ) -> None:
        self.group = group_name(gateway_id)
        self.worker = worker
        self.sources = sorted(sources)
        self.store = store
        self.shared = shared
        self.status = status
        self.make_worker = make_worker
        self.supervise = supervise
        runtime = shared.runtime
        self.client = clients.client(
            f"backbone.gateway@{worker}",
            request_timeout_ms=int((2 * runtime.session_timeout + 10) * 1000),
        )
        self.member = GroupMember(
            self.client,
            self.group,
            session_timeout=runtime.session_timeout,
            heartbeat_interval=runtime.heartbeat_interval,
            metadata=self._metadata,
            assign=self._assign,
            on_assigned=self._assigned,
            on_lost=self._lost,
            protocol=PROTOCOL,
        )
        self.plan: Plan | None = None
        self.running: dict[str, _Running] = {}
        self._dying: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._reported: dict[str, str] = {}
        self._yielded: set[str] = set()
        self._changed = asyncio.Event()
        store.on_claim = self._claimed
        for name in self.sources:
            status[name].state = ConnectorState.UNASSIGNED

    # ------------------------------------------------------------ group hooks

    def _metadata(self) -> bytes:
        owned = {}
        for name, running in self.running.items():
            if running.stop.is_set():
                continue  # being stopped: not ours to keep
            owned[name] = self.status[name].state.value
        self._reported = owned
        return MemberInfo("", self.worker, tuple(self.sources), owned).encode()

    def _states_changed(self) -> bool:
        """Whether a source here changed state since the group last heard (e.g. RUNNING)."""
        for name, running in self.running.items():
            if running.stop.is_set():
                continue
            state = self.status[name].state.value
            if state != ConnectorState.STARTING.value and self._reported.get(name) != state:
                return True
        return False

    def _assign(self, generation: int, members: list[tuple[str, bytes]]) -> dict[str, bytes]:
        infos = [MemberInfo.decode(member_id, data) for member_id, data in members]
        plans = assign(infos, generation)
        for source, (worker, _) in sorted(plans[infos[0].member_id].owners.items()):
            logger.debug("generation %d: source %s -> %s", generation, source, worker)
        return {member_id: plan.encode() for member_id, plan in plans.items()}

    def _assigned(self, generation: int, data: bytes) -> None:
        try:
            plan = Plan.decode(data)
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("generation %d: unreadable assignment (%s); running none", generation, exc)
            plan = Plan(generation, (), False, {}, ())
        self.plan = plan
        self._yielded.clear()
        logger.info(
            "gateway %s generation %d: %d worker(s); sources here: %s",
            self.group,
            generation,
            len(plan.workers),
            ", ".join(plan.sources) or "none",
        )
        self._show_others()
        self._changed.set()

    def _lost(self, reason: str) -> None:
        self.plan = None
        self._fence_all(f"membership lost: {reason}")
        self._changed.set()

    def _claimed(self, name: str, claim: int) -> None:
        running = self.running.get(name)
        if running is not None and running.claim.id != claim and not running.task.done():
            logger.warning("source %s stopped without writing (claimed by another process)", name)
            self._yielded.add(name)  # not ours again before a newer generation says so
            running.task.cancel()
            self._dying.append(running.task)
            del self.running[name]
            self._changed.set()

    def _fence_all(self, why: str) -> None:
        for name, running in list(self.running.items()):
            if not running.task.done():
                logger.warning("source %s stopped without writing (%s)", name, why)
                running.task.cancel()
                self._dying.append(running.task)
        self.running.clear()

    def _show_others(self) -> None:
        """Status of the sources other processes run (as of this generation)."""
        plan = self.plan
        if plan is None:
            return
        for name in self.sources:
            if name in self.running or name in plan.sources:
                continue
            status = self.status[name]
            owner = plan.owners.get(name)
            if owner is None:
                status.worker, status.state = None, ConnectorState.UNASSIGNED
            else:
                status.worker = owner[0]
                try:
                    status.state = ConnectorState(owner[1])
                except ValueError:
                    status.state = ConnectorState.STARTING

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Run until the runner's stop event is set; then drain, leave the group.

        Raises when the group loop ends with an error no retry mends; a failed
        reconciliation (the broker away while claiming) is retried with a backoff.
        """
        stop = self.shared.stop
        member_stop = asyncio.Event()
        await self.client.bootstrap()
        member = asyncio.create_task(self.member.run(member_stop), name="backbone:gateway-group")
        failures = 0
        try:
            while not stop.is_set():
                await _first(stop, self._changed, member, self.shared.runtime.heartbeat_interval)
                if member.done():
                    member.result()  # a fatal group error ends the gateway
                    raise RuntimeError("the gateway group loop ended")
                if stop.is_set():
                    break
                if self._states_changed():
                    self._reported = {}
                    self.member.rejoin()  # so the group's map shows RUNNING/FAILED
                if not self._changed.is_set():
                    continue
                self._changed.clear()
                reconcile = asyncio.create_task(self._reconcile(), name="backbone:reconcile")
                await _first(stop, reconcile, member, None)
                if not reconcile.done():  # stopping, or the group loop ended
                    reconcile.cancel()
                    await asyncio.gather(reconcile, return_exceptions=True)
                    continue
                error = None if reconcile.cancelled() else reconcile.exception()
                if error is None:
                    failures = 0
                    continue
                failures += 1
                delay = self.member.backoff(failures)
                logger.warning(
                    "gateway %s: could not start or stop sources (%s: %s); retrying in %.1fs",
                    self.group,
                    type(error).__name__,
                    error,
                    delay,
                    exc_info=error if not isinstance(error, KafkaError | TimeoutError) else None,
                )
                self._changed.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            try:
                await self._stop(list(self.running), why="stopping")
            finally:
                member_stop.set()
                leftovers = [t for t in self._tasks if not t.done()]
                if leftovers:  # sources still draining after a move: their grace period
                    await asyncio.wait(leftovers, timeout=self.shared.runtime.grace_period)
                for task in leftovers:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(member, *leftovers, return_exceptions=True)
                await self.client.close()

    async def _reconcile(self) -> None:
        """Make the running sources match the plan."""
        if self._dying:
            dying, self._dying = self._dying, []
            await asyncio.gather(*dying, return_exceptions=True)
        plan = self.plan
        wanted = set(plan.sources) if plan is not None else set()
        revoked = [name for name in self.running if name not in wanted]
        if revoked:
            await self._stop(revoked, why="moved to another process")
        if plan is not None and plan.rejoin:
            self.member.rejoin()
        if plan is None or self.plan is not plan:
            return  # lost, or a newer plan came meanwhile: the loop runs again
        missing = sorted(wanted - set(self.running) - self._yielded)
        if not missing:
            return
        claims = await self.store.claim(
            missing,
            worker=self.worker,
            fence=self.member.fence,
            leased=self.member.leased,
            still=lambda: self.plan is plan,
        )
        if self.plan is plan:
            # a newer claim of another process overtook ours: not ours before a newer
            # generation says so (no tug of war between two stale plans)
            self._yielded.update(set(missing) - set(claims))
        else:  # the plan changed while claiming: start what is still ours
            self._changed.set()
        for name, claim in claims.items():
            if self.plan is not plan and (self.plan is None or name not in self.plan.sources):
                continue
            own = asyncio.Event()
            shared = dataclasses.replace(self.shared, stop=own)
            worker = self.make_worker(name, claim, shared)
            status = self.status[name]
            status.worker, status.state, status.error = self.worker, ConnectorState.STARTING, None
            task = asyncio.create_task(self._supervised(worker), name=f"backbone:{name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.running[name] = _Running(task, claim, own)

    async def _supervised(self, worker: Worker) -> None:
        await self.supervise(worker)

    async def restart(self, name: str) -> None:
        """Stop source ``name`` gracefully and start a fresh instance (claimed again, from
        its saved position); also after FAILED. :class:`ConnectorStateError` when this
        process is not assigned it."""
        plan = self.plan
        if plan is None or name not in plan.sources:
            owner = self.status[name].worker or "no gateway process"
            raise ConnectorStateError(
                f"source {name} runs in {owner}, not here ({self.worker}): ask that process"
            )
        await self._stop([name], why="restart")
        self._yielded.discard(name)
        self._changed.set()  # the loop claims it again and starts a new instance

    async def _stop(self, names: list[str], *, why: str) -> None:
        """Stop sources gracefully (drain, save), cancelling what does not end in time."""
        stopping = [self.running.pop(name) for name in names if name in self.running]
        if not stopping:
            return
        for running in stopping:
            logger.info("source %s: stopping (%s)", running.claim.connector, why)
            running.stop.set()
        tasks = [running.task for running in stopping]
        _, late = await asyncio.wait(tasks, timeout=self.shared.runtime.grace_period)
        for task in late:
            logger.warning("%s did not drain in time: cancelled", task.get_name())
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._show_others()


async def _first(
    stop: asyncio.Event,
    other: asyncio.Event | asyncio.Task[None],
    member: asyncio.Task[None],
    within: float | None,
) -> None:
    """Wait until ``stop`` or ``other`` is set (or done), ``member`` ends, or ``within`` s."""
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait()), member}
    if isinstance(other, asyncio.Event):
        waiters.add(asyncio.ensure_future(other.wait()))
    else:
        waiters.add(other)
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if waiter is not member and waiter is not other:
                waiter.cancel()
