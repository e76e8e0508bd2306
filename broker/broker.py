"""Assembly of the broker: the ``Broker`` context manager and ``serve``.

``Broker(config)`` owns, in one AsyncExitStack: the ``LogManager`` (topics,
partitions, recovery, retention), the ``GroupCoordinator`` (consumer groups,
committed offsets) and the ``KafkaServer`` (sockets), wired together through
the handler registry. Exit = clean shutdown: stop accepting, drain in-flight
responses (bounded grace), close the group coordinator and the logs.

Used by tests and the gateway runtime (embedded mode) as
``async with Broker(BrokerConfig(data_dir=...)) as broker: broker.bootstrap``;
by ``python -m backbone.broker`` and ``backbone broker`` through :func:`serve`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import resource
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from backbone.durable import write_file_atomically

from .config import BrokerConfig
from .groups import Clock, GroupCoordinator
from .handlers import build_registry
from .handlers.base import BrokerState, Handler
from .handlers.dispatch import Dispatcher
from .lock import DataDirLock
from .log import LogManager, records
from .log.internal import OFFSETS_TOPIC, InternalTopic
from .server import KafkaServer, ResponseFilter
from .stats import RequestStats

__all__ = ["Broker", "group_coordinator", "run_until_signalled", "serve"]

logger = logging.getLogger(__name__)


def _load_cluster_id(data_dir: Path) -> str:
    """The cluster id stored in ``<data_dir>/cluster.id`` (created once, like Kafka's meta)."""
    path = data_dir / "cluster.id"
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    write_file_atomically(path, (value + "\n").encode())  # fsynced: the id survives a crash
    return value


class Broker:
    """A running broker; an async context manager (see the module docstring).

    ``response_filter`` is a test seam: called before every response is
    written, returning False closes the connection instead (a lost response).
    ``clock`` is injected into the log manager and the group coordinator.
    ``handlers`` replace the built-in handler of their API or add APIs (a seam for
    tests and extensions; ApiVersions advertises them like the built-ins).
    """

    def __init__(
        self,
        config: BrokerConfig,
        *,
        response_filter: ResponseFilter | None = None,
        clock: Callable[[], float] = time.time,
        handlers: Iterable[Handler[Any, Any]] = (),
    ) -> None:
        self.config = config
        self.handler_overrides = tuple(handlers)
        self.response_filter = response_filter
        self.clock = clock
        self._stack: contextlib.AsyncExitStack | None = None
        self._server: KafkaServer | None = None
        self._state: BrokerState | None = None
        self.logs: LogManager
        self.groups: GroupCoordinator
        self.stats: RequestStats | None = None
        """Requests, bytes and latency per API (``broker/stats.py``) once running."""

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the broker is not running")
        return self._server.port

    @property
    def host(self) -> str:
        return self.config.advertised_host or self.config.host

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients' ``bootstrap_servers``."""
        return f"{self.host}:{self.config.advertised_port or self.port}"

    @property
    def server(self) -> KafkaServer:
        if self._server is None:
            raise RuntimeError("the broker is not running")
        return self._server

    async def __aenter__(self) -> Broker:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        _raise_open_files_limit()
        if config.cluster_id is None:
            config.cluster_id = _load_cluster_id(config.data_dir)
        cluster_id = config.cluster_id
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            lock = DataDirLock(config.data_dir)  # one broker per data directory
            lock.acquire()
            stack.callback(lock.release)
            log_kwargs: dict[str, Any] = {
                "flush": config.flush,
                "flush_interval_ms": config.flush_interval_ms,
                "clock": self.clock,
            }
            if config.log_defaults is not None:
                log_kwargs["defaults"] = config.log_defaults
            self.logs = await stack.enter_async_context(LogManager(config.data_dir, **log_kwargs))
            self.groups = await self._start_groups(stack)
            state = BrokerState(
                config=config,
                logs=self.logs,
                groups=self.groups,
                clock=self.clock,
                cluster_id=cluster_id,
            )
            state.registry = build_registry(self.handler_overrides)
            self._state = state
            self.stats = RequestStats({key: h.name for key, h in state.registry.items()})
            server = KafkaServer(
                Dispatcher(state, state.registry),
                host=config.host,
                port=config.port,
                limits=config.limits,
                shutdown_grace_s=config.shutdown_grace_s,
                response_filter=self.response_filter,
                stats=self.stats,
            )
            await server.start()
            self._server = server
            state.bound_port = server.port
            stack.push_async_callback(self._stop_server)
            lock.announce(self.bootstrap)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        logger.info(
            "broker %d (cluster %s) serving %s, data in %s, records checked by the %s walk",
            config.node_id,
            config.cluster_id,
            self.bootstrap,
            config.data_dir,
            "C" if records.IMPLEMENTATION == "c" else "pure-Python",
        )
        return self

    async def _start_groups(self, stack: contextlib.AsyncExitStack) -> GroupCoordinator:
        config = self.config
        return await stack.enter_async_context(
            group_coordinator(
                self.logs,
                config.data_dir,
                partitions=config.offsets_topic_num_partitions,
                clock=self.clock,
                initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
                min_session_timeout_ms=config.group_min_session_timeout_ms,
                max_session_timeout_ms=config.group_max_session_timeout_ms,
            )
        )

    async def _stop_server(self) -> None:
        if self._state is not None:
            self._state.stopping.set()
        if self._server is not None:
            await self._server.close()

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        logger.info("broker stopped")


@contextlib.asynccontextmanager
async def group_coordinator(
    logs: LogManager,
    data_dir: Path,
    *,
    partitions: int = 1,
    clock: Callable[[], float] = time.time,
    group_clock: Clock | None = None,
    **options: Any,
) -> AsyncIterator[GroupCoordinator]:
    """The group coordinator keeping its records in ``logs``' ``__consumer_offsets`` topic
    (created with ``partitions`` on first start), after migrating an old
    ``<data_dir>/__consumer_offsets/offsets.log`` once. ``clock`` (wall time) stamps the
    records, ``group_clock`` runs the coordinator's timers (default: the event loop's; a
    ManualClock in tests); ``options`` go to :class:`GroupCoordinator`
    (``initial_rebalance_delay_ms``...). Used by :class:`Broker` and by tests."""
    topic = InternalTopic(logs, OFFSETS_TOPIC, partitions=partitions, clock=clock)
    await topic.open()
    coordinator = GroupCoordinator(
        topic,
        clock=group_clock,
        wall_clock=clock,
        legacy_dir=Path(data_dir) / OFFSETS_TOPIC,
        **options,
    )
    async with coordinator:
        yield coordinator


async def run_until_signalled(config: BrokerConfig) -> None:
    """Run a broker until SIGINT or SIGTERM, then stop it cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Broker(config):
            await stop.wait()
            logger.info("signal received: stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard limit, as the JVM does for Kafka.

    Every segment keeps its file open, so a broker with many partitions needs many
    descriptors; Linux's default soft limit (often 1024) would make topic creation
    fail long before the hard limit (often 524288) is reached. When the limit is
    still too low, CreateTopics answers KAFKA_STORAGE_ERROR and creates nothing.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError) as exc:
        logger.warning("cannot raise the open files limit from %d to %d: %s", soft, want, exc)
        return
    logger.info("raised the open files limit from %d to %d", soft, want)


def serve(
    listen: str = "127.0.0.1:9092",
    data_dir: Path | str = "./data",
    advertised_listener: str | None = None,
    **options: Any,
) -> None:
    """Run a broker in the foreground until SIGINT/SIGTERM (blocking).

    ``listen`` and ``advertised_listener`` are ``host:port``; ``options`` are
    further :class:`BrokerConfig` fields (``flush="interval"``,
    ``auto_create_topics=False``...). Called by ``python -m backbone.broker``
    and the CLI's ``backbone broker``. Raises ValueError for bad options.
    """
    config = BrokerConfig.from_listeners(listen, data_dir, advertised_listener, **options)
    asyncio.run(run_until_signalled(config))
