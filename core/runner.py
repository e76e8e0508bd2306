"""The runner: broker, topics, producer, and one supervised task per connector.

``backbone run`` builds a :class:`Runner` from a validated
:class:`~backbone.config.Config` and a :class:`~backbone.registry.Registry` and
awaits :meth:`Runner.run` with a ``stop`` event that SIGINT/SIGTERM set. In order:

1. start the embedded broker (unless ``broker.bootstrap`` names a cluster);
2. create the missing topics (:mod:`backbone.topics`: the declared ones, the
   compacted ``_backbone.positions`` and every other topic the config names);
3. start one idempotent producer (``acks=all``) shared by every source,
   processor and dead-letter send; read the saved source positions;
4. start the HTTP server when the config has an ``http:`` section
   (:class:`~backbone.httpapp.HttpApp`, :attr:`Runner.http`) with the admin API
   (:mod:`backbone.admin`); other parts add their routes to it; each connector's
   context gets ``http`` (its routes, removed when it stops) and each source's
   ``push`` (:mod:`backbone.push`);
5. run every sink, processor and ingress source as its own task under a
   :class:`~backbone.supervisor.Supervisor` (pause, resume, restart; workers in
   :mod:`backbone.source_worker`, :mod:`backbone.consumers`), and join the gateway
   cluster (:mod:`backbone.cluster`), which runs the other sources this process is
   assigned. A task that raises leaves its connector FAILED with the error and
   does not touch the others. A :class:`~backbone.reporter.Reporter` samples the
   connectors' counters and logs progress lines.

When ``stop`` is set the HTTP server stops accepting (requests in flight finish),
then every worker stops reading and drains; after ``runtime.grace_period`` what
still runs is cancelled (and logged). Everything talks to the broker through
aiokafka only, embedded or not.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import random
import socket
from contextlib import AsyncExitStack
from typing import Any

from backbone.admin import AdminApi
from backbone.assembly import connector_context, processor_path, processor_worker, sink_worker
from backbone.clients import KafkaClients
from backbone.cluster import SourceCluster
from backbone.connector import ConnectorContext
from backbone.console import Console
from backbone.consumers import SinkWorker
from backbone.errors import BackboneError
from backbone.httpapp import HttpApp
from backbone.instance import instance_slot
from backbone.positions import Claim, PositionStore, PositionWriter
from backbone.processor_worker import ProcessorWorker
from backbone.push import PushChannel
from backbone.registry import Registry
from backbone.reporter import Reporter
from backbone.schema import connector_options
from backbone.settings import Config
from backbone.source_worker import SourceWorker
from backbone.supervisor import ClusterSource, ConnectorHandle, Supervisor, run_worker
from backbone.topics import create_topics, describe, planned_topics
from backbone.worker import ConnectorState, ConnectorStatus, Control, Shared, Worker

__all__ = ["GC_THRESHOLDS", "ConnectorState", "ConnectorStatus", "Runner", "tune_gc"]

logger = logging.getLogger(__name__)

GC_THRESHOLDS = (100_000, 20, 10)
"""Cyclic garbage collector thresholds of a ``backbone run`` process.

Every record crossing the gateway allocates a few containers (record, position,
headers) and up to ``MAX_IN_FLIGHT`` of them stay alive until acknowledged; with
CPython's default first threshold (700) the collector runs every hundred-odd records
and walks those survivors again and again: a third to a half of a busy source's CPU
(``benchmarks/files.py``). At 10,000 a processor still spent about a third of its
CPU there (``benchmarks/pipeline.py``, processor row: 20.6 -> 13.9 us a record at
100,000). Records are not cyclic garbage; memory is freed by reference counting as
before.
"""


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` (``backbone run`` does, for the whole process)."""
    gc.set_threshold(*GC_THRESHOLDS)


class Runner:
    """Runs one configuration until ``stop`` is set (see the module docstring).

    ``status`` maps every connector name to its :class:`ConnectorStatus`;
    ``bootstrap`` is the broker address once started; ``http`` the HTTP server
    (when the config has ``http:``) once started, for other parts to add routes;
    ``started`` is set once every connector task was launched; ``connectors`` maps
    names to what pauses, resumes and restarts them
    (:class:`~backbone.supervisor.ConnectorHandle`); ``kafka`` makes Kafka clients
    for the broker in use; ``worker`` is this process's ``host:pid``.
    """

    def __init__(self, config: Config, registry: Registry, *, rng: random.Random | None = None):
        self.config = config
        self.registry = registry
        self.rng = rng or random.Random()
        self.status: dict[str, ConnectorStatus] = {}
        self.bootstrap: str | None = None
        self.http: HttpApp | None = None
        self.kafka: KafkaClients | None = None
        self.connectors: dict[str, ConnectorHandle] = {}
        self.reporter: Reporter | None = None
        self._embedded: Any = None
        self._cluster_workers: dict[str, Worker] = {}
        self.started = asyncio.Event()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        for section, role in (
            ("sources", "source"),
            ("sinks", "sink"),
            ("processors", "processor"),
        ):
            for name in getattr(config, section):
                self.status[name] = ConnectorStatus(name, role)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; raises :class:`BackboneError` if start-up fails."""
        async with AsyncExitStack() as stack:
            self.bootstrap = await self._broker(stack)
            clients = self.kafka = KafkaClients(self.bootstrap, self.config.broker)
            await create_topics(clients, planned_topics(self.config))
            producer = clients.producer(
                enable_idempotence=self.config.broker.idempotence,
                acks="all",
                # linger_ms, max_batch_size... (broker.producer, backbone.client_settings)
                **self.config.broker.producer.kafka_args(),
            )
            try:
                await producer.start()
            except Exception as exc:
                await producer.stop()
                hint = (
                    " (the broker may refuse idempotent producers: set broker.idempotence: false)"
                    if self.config.broker.idempotence
                    else ""
                )
                raise BackboneError(
                    f"cannot start the producer on {self.bootstrap}: {describe(exc)}{hint}"
                ) from exc
            stack.push_async_callback(producer.stop)
            store = PositionStore(producer, self.bootstrap, clients=clients)
            await store.start()
            stack.push_async_callback(store.stop)
            state_dir = self.config.resolve(self.config.runtime.state_dir)
            instance: str | None = stack.enter_context(instance_slot(state_dir))
            if not self.config.runtime.static_membership:
                instance = None
            shared = Shared(
                producer,
                self.bootstrap,
                self.config.runtime,
                stop,
                self.rng,
                self.worker,
                instance,
                kafka=clients,
                consumer_options=self.config.broker.consumer.kafka_args(),
            )
            self.reporter = Reporter(
                self.status, self._lag, interval=self.config.runtime.progress_interval
            )
            if self.config.http is not None:
                self.http = await stack.enter_async_context(self._http_app())
                admin = AdminApi(self)
                admin.install(self.http)
                Console(self, admin).install(self.http)
                stack.push_async_callback(admin.close)
            supervisors = self._supervisors(shared, store)
            for name, supervisor in supervisors:
                self.connectors[name] = supervisor
                supervisor.start()
            tasks: list[asyncio.Task[None]] = []
            gateway: asyncio.Task[None] | None = None
            assigned = [name for name in self.config.sources if not self._ingress(name)]
            if assigned:
                cluster = SourceCluster(
                    gateway_id=self.config.gateway_id,
                    worker=self.worker,
                    sources=assigned,
                    clients=clients,
                    store=store,
                    shared=shared,
                    status=self.status,
                    make_worker=self._cluster_source_worker,
                    supervise=functools.partial(run_worker, on_stop=self._gone),
                )
                for name in assigned:
                    self.connectors[name] = ClusterSource(
                        self.status[name], cluster, self._cluster_workers
                    )
                gateway = asyncio.create_task(cluster.run(), name="backbone:gateway")
                tasks.append(gateway)
            tasks.append(asyncio.create_task(self.reporter.run(), name="backbone:progress"))
            self.started.set()
            logger.info(
                "backbone running: %d source(s), %d sink(s), %d processor(s) on %s "
                "(gateway %s, worker %s)",
                len(self.config.sources),
                len(self.config.sinks),
                len(self.config.processors),
                self.bootstrap,
                self.config.gateway_id,
                self.worker,
            )
            try:
                await self._until_stopped(stop, gateway)
                grace = self.config.runtime.grace_period
                logger.info("stopping: draining for up to %.1fs", grace)
                if self.http is not None:
                    await self.http.stop()  # no new requests; those in flight finish
                draining: list[asyncio.Task[Any]] = [
                    asyncio.create_task(s.stop(grace), name=f"backbone:{name}")
                    for name, s in supervisors
                ]
                if gateway is not None:  # it drains its sources itself on ``stop``
                    draining.append(gateway)
                _, late = await asyncio.wait(draining, timeout=grace + 1) if draining else ((), ())
                for task in late:
                    logger.warning("%s did not drain in time: cancelled", task.get_name())
                    task.cancel()
            finally:
                every = [*tasks, *(s.task for _, s in supervisors if s.task is not None)]
                for task in every:
                    task.cancel()
                await asyncio.gather(*every, return_exceptions=True)
        logger.info("backbone stopped")

    async def _until_stopped(self, stop: asyncio.Event, gateway: asyncio.Task[None] | None) -> None:
        """Wait for ``stop``; raise if the gateway group loop ends first (without its group
        the gateway runs no source: end, do not idle)."""
        stopper = asyncio.ensure_future(stop.wait())
        try:
            waits: set[asyncio.Future[Any]] = {stopper}
            if gateway is not None:
                waits.add(gateway)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if gateway is not None and gateway.done() and not stop.is_set():
            failure = None if gateway.cancelled() else gateway.exception()
            raise BackboneError(
                "the gateway group loop ended: "
                + (describe(failure) if failure else "without an error")
            ) from failure

    async def _broker(self, stack: AsyncExitStack) -> str:
        settings = self.config.broker
        if settings.bootstrap is not None:
            return ",".join(settings.bootstrap)
        embedded = settings.embedded
        assert embedded is not None
        try:
            from backbone.broker import Broker, BrokerConfig
        except ImportError as exc:
            raise BackboneError(
                "the embedded broker is not available in this build "
                f"({exc}); set broker.bootstrap to use an existing Kafka cluster"
            ) from exc
        try:
            config = BrokerConfig.from_listeners(
                embedded.listen,
                self.config.resolve(embedded.data_dir),
                embedded.advertised_listener or None,
                max_frame_bytes=embedded.max_frame_bytes,
                idle_timeout_s=embedded.connections_max_idle,
                request_read_timeout_s=embedded.request_read_timeout,
                max_connections=embedded.max_connections,
                max_connections_per_ip=embedded.max_connections_per_ip,
                queued_max_request_bytes=embedded.queued_max_request_bytes,
                **embedded.broker_options(),
            )
        except ValueError as exc:
            raise BackboneError(f"broker.embedded: {exc}") from exc
        broker = await stack.enter_async_context(Broker(config))
        self._embedded = broker
        for name, address in broker.bootstraps.items():
            logger.info("embedded broker listening on %s (listener %s)", address, name)
        return str(broker.bootstrap)

    def _http_app(self) -> HttpApp:
        settings = self.config.http
        assert settings is not None
        host, _, port = settings.listen.rpartition(":")
        return HttpApp(
            host=host.strip("[]") or "0.0.0.0",
            port=int(port),
            max_body=settings.max_body,
            read_timeout=settings.read_timeout,
            keep_alive=settings.keep_alive,
            grace=self.config.runtime.grace_period,
        )

    def _context(self, name: str, *, source: bool = False) -> ConnectorContext:
        return connector_context(
            self.config,
            name,
            http=None if self.http is None else self.http.routes_for(name),
            push=PushChannel(name) if source else None,
        )

    def _ingress(self, name: str) -> bool:
        """Whether source ``name`` is an ingress point, run in every gateway process."""
        kind = self.registry.get(self.config.sources[name].type)
        return bool(getattr(kind.source, "ingress", False))

    def _supervisors(self, shared: Shared, store: PositionStore) -> list[tuple[str, Supervisor]]:
        """A :class:`Supervisor` for what every process runs (sinks, processors, ingress
        sources), each with a function building a fresh connector instance and worker
        (at start, and again on every restart)."""
        config = self.config
        processor_path(config)
        positions = store.positions()
        builds: list[tuple[str, Any]] = []
        for name in config.sources:
            if self._ingress(name):
                self.status[name].position = positions.get(name)
                build = functools.partial(self._ingress_worker, name, shared, store)
                builds.append((name, build))
        for name in config.sinks:
            builds.append((name, functools.partial(self._sink_worker, name, shared)))
        for name in config.processors:
            builds.append((name, functools.partial(self._processor_worker, name, shared)))
        grace = config.runtime.grace_period
        made = []
        for name, build in builds:
            self.status[name].worker = self.worker
            made.append(
                (name, Supervisor(self.status[name], build, grace=grace, on_stop=self._gone))
            )
        return made

    def _source_worker(
        self,
        name: str,
        claim: Claim | None,
        shared: Shared,
        *,
        positions: PositionWriter | None = None,
        start_position: Any = None,
        control: Control | None = None,
    ) -> SourceWorker:
        """A fresh source instance and its worker (``claim``: this process's claim on it)."""
        entry = self.config.sources[name]
        kind = self.registry.get(entry.type)
        assert kind.source is not None and kind.source_options is not None
        context = self._context(name, source=True)
        source = kind.source(connector_options(entry, kind.source_options), context)
        writer = claim if claim is not None else positions
        assert writer is not None
        return SourceWorker(
            name,
            kind=kind,
            source=source,
            topic=entry.topic,
            positions=writer,
            start_position=claim.position if claim is not None else start_position,
            fence=claim.fence if claim is not None else None,
            shared=shared,
            retry=entry.retry,
            dead_letter_topic=entry.dead_letter_topic,
            status=self.status[name],
            control=control,
        )

    def _cluster_source_worker(self, name: str, claim: Claim, shared: Shared) -> Worker:
        """A source the gateway cluster assigned here (kept for pause/resume)."""
        worker = self._source_worker(name, claim, shared)
        self._cluster_workers[name] = worker
        return worker

    def _ingress_worker(
        self, name: str, shared: Shared, store: PositionStore, control: Control
    ) -> SourceWorker:
        return self._source_worker(
            name,
            None,
            shared,
            positions=store,
            start_position=self.status[name].position,  # the last saved one on a restart
            control=control,
        )

    def _sink_worker(self, name: str, shared: Shared, control: Control) -> SinkWorker:
        return sink_worker(
            self.config,
            self.registry,
            name,
            context=self._context(name),
            shared=shared,
            status=self.status[name],
            control=control,
        )

    def _processor_worker(self, name: str, shared: Shared, control: Control) -> ProcessorWorker:
        return processor_worker(
            self.config, name, shared=shared, status=self.status[name], control=control
        )

    def _lag(self, name: str) -> int | None:
        handle = self.connectors.get(name)
        lag = handle.lag() if handle is not None else {}
        return sum(lag.values()) if lag else None

    def broker_stats(self) -> Any | None:
        """The embedded broker's request statistics (``None`` with an external cluster)."""
        return getattr(self._embedded, "stats", None) if self._embedded is not None else None

    def _gone(self, name: str) -> None:
        if self.http is not None:
            self.http.remove(name)  # a stopped connector serves no routes
