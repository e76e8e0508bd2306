"""Building a configured connector's worker: shared by the runner and the operator commands.

The runner builds every connector this way (and again on each restart);
``backbone replay`` and ``backbone dlq redrive`` build one sink or processor with
the same functions, so it behaves exactly as in the gateway (same options, state
folder, retries, dead-letter topic), with a bounded run (``stop_at``) or another
group and a subclass that changes what each batch is.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TypeVar

from backbone.connector import ConnectorContext
from backbone.consumers import SinkWorker
from backbone.processor_worker import ProcessorWorker
from backbone.registry import Registry
from backbone.schema import connector_options
from backbone.settings import Config

__all__ = ["connector_context", "processor_path", "processor_worker", "sink_worker"]

SinkT = TypeVar("SinkT", bound=SinkWorker)
ProcessorT = TypeVar("ProcessorT", bound=ProcessorWorker)


def connector_context(config: Config, name: str, **services: Any) -> ConnectorContext:
    """The context of connector ``name`` (its state folder created); ``services`` are the
    runtime's extras (``http``, ``push``)."""
    state_dir = config.resolve(config.runtime.state_dir) / name
    state_dir.mkdir(parents=True, exist_ok=True)
    return ConnectorContext(
        name=name,
        base_dir=config.base_dir,
        state_dir=state_dir,
        logger=logging.getLogger(f"backbone.connector.{name}"),
        **services,
    )


def processor_path(config: Config) -> None:
    """Let processor functions live next to the config file (its folder on ``sys.path``)."""
    base = str(config.base_dir)
    if config.processors and base not in sys.path:
        sys.path.insert(0, base)


def sink_worker(
    config: Config,
    registry: Registry,
    name: str,
    *,
    context: ConnectorContext | None = None,
    worker: type[SinkT] = SinkWorker,  # type: ignore[assignment]
    **common: Any,
) -> SinkT:
    """A fresh instance of sink ``name`` in a ``worker`` (``common``: shared, status,
    control, and optionally stop_at, group, topics, start)."""
    entry = config.sinks[name]
    kind = registry.get(entry.type)
    assert kind.sink is not None and kind.sink_options is not None
    sink = kind.sink(
        connector_options(entry, kind.sink_options), context or connector_context(config, name)
    )
    options: dict[str, Any] = {
        "topics": entry.topics,
        "start": entry.start,
        "retry": entry.retry,
        "dead_letter_topic": entry.dead_letter_topic,
        **common,
    }
    return worker(name, sink=sink, **options)


def processor_worker(
    config: Config,
    name: str,
    *,
    worker: type[ProcessorT] = ProcessorWorker,  # type: ignore[assignment]
    **common: Any,
) -> ProcessorT:
    """Processor ``name`` in a ``worker`` (``common`` as for :func:`sink_worker`)."""
    settings = config.processors[name]
    options: dict[str, Any] = {
        "retry": settings.retry,
        "dead_letter_topic": settings.dead_letter_topic,
        **common,
    }
    return worker(name, settings=settings, **options)
