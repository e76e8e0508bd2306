"""The runner: broker, topics, producer, and one supervised task per connector.

``backbone run`` builds a :class:`Runner` from a validated
:class:`~backbone.config.Config` and a :class:`~backbone.registry.Registry` and
awaits :meth:`Runner.run` with a ``stop`` event that SIGINT/SIGTERM set. In order:

1. start the embedded broker (unless ``broker.bootstrap`` names a cluster);
2. create the declared topics (partitions, configs), the compacted
   ``_backbone.positions`` topic, and every other topic the config names
   (one partition, broker defaults) — existing topics are left alone;
3. start one idempotent producer (``acks=all``) shared by every source,
   processor and dead-letter send; load the saved source positions;
4. start the HTTP server when the config has an ``http:`` section
   (:class:`~backbone.httpapp.HttpApp`, :attr:`Runner.http`): other parts add their
   routes to it; each connector's context gets ``http`` (its routes, removed when it
   stops) and each source's ``push`` (:mod:`backbone.push`);
5. run every source, sink and processor as its own task under a
   :class:`~backbone.supervisor.Supervisor` (:attr:`Runner.connectors`: pause,
   resume, restart; workers in :mod:`backbone.source_worker`,
   :mod:`backbone.consumers`). A task that raises leaves its connector FAILED with
   the error and does not touch the others.

When ``stop`` is set the HTTP server stops accepting (requests in flight finish),
then every worker stops reading and drains; after
``runtime.grace_period`` what still runs is cancelled (and logged). Everything
talks to the broker through aiokafka only, embedded or not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from contextlib import AsyncExitStack
from typing import Any

from aiokafka.admin import NewTopic

from backbone.admin import AdminApi
from backbone.assembly import connector_context, processor_path, processor_worker, sink_worker
from backbone.clients import KafkaClients
from backbone.connector import ConnectorContext
from backbone.consumers import ProcessorWorker, SinkWorker
from backbone.errors import BackboneError
from backbone.httpapp import HttpApp
from backbone.positions import POSITIONS_TOPIC, PositionStore
from backbone.push import PushChannel
from backbone.registry import Registry
from backbone.reporter import Reporter
from backbone.schema import connector_options
from backbone.settings import Config
from backbone.source_worker import SourceWorker
from backbone.supervisor import Supervisor
from backbone.worker import ConnectorState, ConnectorStatus, Control, Shared

__all__ = ["ConnectorState", "ConnectorStatus", "Runner"]

logger = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


class Runner:
    """Runs one configuration until ``stop`` is set (see the module docstring).

    ``status`` maps every connector name to its :class:`ConnectorStatus`;
    ``bootstrap`` is the broker address once started; ``http`` the HTTP server
    (when the config has ``http:``) once started, for other parts to add routes;
    ``started`` is set once every connector task was launched; ``connectors`` maps
    names to their :class:`~backbone.supervisor.Supervisor`; ``kafka`` makes Kafka
    clients for the broker in use.
    """

    def __init__(self, config: Config, registry: Registry, *, rng: random.Random | None = None):
        self.config = config
        self.registry = registry
        self.rng = rng or random.Random()
        self.status: dict[str, ConnectorStatus] = {}
        self.bootstrap: str | None = None
        self.http: HttpApp | None = None
        self.kafka: KafkaClients | None = None
        self.connectors: dict[str, Supervisor] = {}
        self.reporter: Reporter | None = None
        self._embedded: Any = None
        self.started = asyncio.Event()
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
            self.kafka = KafkaClients(self.bootstrap, self.config.broker)
            await self._create_topics()
            producer = self.kafka.producer(
                enable_idempotence=self.config.broker.idempotence,
                acks="all",
                linger_ms=5,
                # 512 KiB batches: aiokafka sends one batch per partition per request,
                # so the 16 KiB default caps source throughput; stays under Kafka's
                # default message.max.bytes (~1 MB)
                max_batch_size=512 * 1024,
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
                    f"cannot start the producer on {self.bootstrap}: {_describe(exc)}{hint}"
                ) from exc
            stack.push_async_callback(producer.stop)
            store = PositionStore(producer, self.bootstrap, clients=self.kafka)
            positions = await store.load()
            shared = Shared(
                producer, self.bootstrap, self.config.runtime, stop, self.rng, self.kafka
            )
            self.reporter = Reporter(
                self.status, self._lag, interval=self.config.runtime.progress_interval
            )
            if self.config.http is not None:
                self.http = await stack.enter_async_context(self._http_app())
                admin = AdminApi(self)
                admin.install(self.http)
                stack.push_async_callback(admin.close)
            for name, supervisor in self._supervisors(shared, store, positions):
                self.connectors[name] = supervisor
                supervisor.start()
            reporting = asyncio.create_task(self.reporter.run(), name="backbone:progress")
            self.started.set()
            logger.info(
                "backbone running: %d source(s), %d sink(s), %d processor(s) on %s",
                len(self.config.sources),
                len(self.config.sinks),
                len(self.config.processors),
                self.bootstrap,
            )
            try:
                await stop.wait()
                grace = self.config.runtime.grace_period
                logger.info("stopping: draining for up to %.1fs", grace)
                if self.http is not None:
                    await self.http.stop()  # no new requests; those in flight finish
                await asyncio.gather(*(c.stop(grace) for c in self.connectors.values()))
            finally:
                tasks = [c.task for c in self.connectors.values() if c.task is not None]
                for task in [*tasks, reporting]:
                    task.cancel()
                await asyncio.gather(*tasks, reporting, return_exceptions=True)
        logger.info("backbone stopped")

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
        config = BrokerConfig.from_listeners(
            embedded.listen,
            self.config.resolve(embedded.data_dir),
            embedded.advertised_listener or None,
        )
        broker = await stack.enter_async_context(Broker(config))
        self._embedded = broker
        logger.info("embedded broker listening on %s", broker.bootstrap)
        return str(broker.bootstrap)

    def _topics(self) -> list[NewTopic]:
        config = self.config
        wanted: dict[str, NewTopic] = {}
        for name in config.topics:
            topic = config.topic_settings(name)
            wanted[name] = NewTopic(
                name,
                topic.partitions,
                topic.replication_factor,
                topic_configs=topic.kafka_configs(),
            )
        wanted.setdefault(
            POSITIONS_TOPIC,
            NewTopic(POSITIONS_TOPIC, 1, 1, topic_configs={"cleanup.policy": "compact"}),
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
                wanted[name] = NewTopic(name, 1, 1)
        return list(wanted.values())

    async def _create_topics(self) -> None:
        assert self.kafka is not None
        admin = self.kafka.admin()
        try:
            await admin.start()
        except Exception as exc:
            await admin.close()
            raise BackboneError(
                f"cannot reach the Kafka cluster at {self.bootstrap} (broker.bootstrap): "
                f"{_describe(exc)}"
            ) from exc
        try:
            existing = set(await admin.list_topics())
            missing = [topic for topic in self._topics() if topic.name not in existing]
            if not missing:
                return
            response = await admin.create_topics(missing)
            problems = []
            for entry in getattr(response, "topic_errors", None) or response.topics:
                name, code = entry[0], entry[1]
                message = entry[2] if len(entry) > 2 else None
                if code == _TOPIC_ALREADY_EXISTS:
                    continue
                if code:
                    problems.append(f"topic {name}: error {code} ({message or 'no message'})")
                else:
                    logger.info("created topic %s", name)
            if problems:
                raise BackboneError("cannot create topics: " + "; ".join(problems))
        finally:
            await admin.close()

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

    def _supervisors(
        self, shared: Shared, store: PositionStore, positions: dict[str, Any]
    ) -> list[tuple[str, Supervisor]]:
        """One :class:`Supervisor` per connector, each with a function building a fresh
        connector instance and worker (at start, and again on every restart)."""
        config = self.config
        processor_path(config)
        builds: list[tuple[str, Any]] = []
        for name in config.sources:
            self.status[name].position = positions.get(name)
            builds.append((name, functools.partial(self._source_worker, name, shared, store)))
        for name in config.sinks:
            builds.append((name, functools.partial(self._sink_worker, name, shared)))
        for name in config.processors:
            builds.append((name, functools.partial(self._processor_worker, name, shared)))
        grace = config.runtime.grace_period
        made = [
            (name, Supervisor(self.status[name], build, grace=grace, on_stop=self._gone))
            for name, build in builds
        ]
        return made

    def _source_worker(
        self, name: str, shared: Shared, store: PositionStore, control: Control
    ) -> SourceWorker:
        entry = self.config.sources[name]
        kind = self.registry.get(entry.type)
        assert kind.source is not None and kind.source_options is not None
        context = self._context(name, source=True)
        source = kind.source(connector_options(entry, kind.source_options), context)
        return SourceWorker(
            name,
            kind=kind,
            source=source,
            topic=entry.topic,
            positions=store,
            start_position=self.status[name].position,  # the last saved one on a restart
            shared=shared,
            retry=entry.retry,
            dead_letter_topic=entry.dead_letter_topic,
            status=self.status[name],
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
        supervisor = self.connectors.get(name)
        lag = supervisor.lag() if supervisor is not None else {}
        return sum(lag.values()) if lag else None

    def broker_stats(self) -> Any | None:
        """The embedded broker's request statistics (``None`` with an external cluster)."""
        return getattr(self._embedded, "stats", None) if self._embedded is not None else None

    def _gone(self, name: str) -> None:
        if self.http is not None:
            self.http.remove(name)  # a stopped connector serves no routes


def _describe(exc: BaseException) -> str:
    """``Class: message`` of a client error, without repeating a class name it already has."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"
