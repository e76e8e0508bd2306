"""The workers the runner supervises, one per configured connector (a facade).

- :mod:`backbone.worker`: status, backoff, dead-letter sends (:class:`Worker`);
- :mod:`backbone.source_worker`: :class:`SourceWorker`;
- :mod:`backbone.batcher`: :class:`ProducerBatcher`, the produce path;
- :mod:`backbone.consumers`: :class:`SinkWorker`;
- :mod:`backbone.processor_worker`: :class:`ProcessorWorker`.
"""

from __future__ import annotations

from backbone.batcher import BIG_RECORD, ProducerBatcher
from backbone.consumers import ConsumingWorker, SinkWorker
from backbone.processor_worker import ProcessorWorker, load_function
from backbone.source_worker import MAX_IN_FLIGHT, SourceWorker
from backbone.worker import ConnectorState, ConnectorStatus, Shared, Stopping, Worker

__all__ = [
    "BIG_RECORD",
    "MAX_IN_FLIGHT",
    "ConnectorState",
    "ConnectorStatus",
    "ConsumingWorker",
    "ProcessorWorker",
    "ProducerBatcher",
    "Shared",
    "SinkWorker",
    "SourceWorker",
    "Stopping",
    "Worker",
    "load_function",
]
