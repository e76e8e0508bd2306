"""Prometheus metrics of a gateway, read at scrape time (``GET /metrics``).

Nothing is counted for Prometheus on the hot path: :class:`GatewayCollector` turns
the connectors' :class:`~backbone.worker.ConnectorStatus` counters (updated once
per batch) and, with the embedded broker, the broker's own request statistics
into metric families when Prometheus scrapes. Names (all prefixed ``backbone_``):

=========================================== ======= =====================================
name                                        type    labels
=========================================== ======= =====================================
backbone_connector_records_in_total         counter connector, role
backbone_connector_records_out_total        counter connector, role
backbone_connector_errors_total             counter connector, role
backbone_connector_dead_lettered_total      counter connector, role
backbone_connector_retries_total            counter connector, role
backbone_connector_up                       gauge   connector, role, state (1 for the
                                                    current state)
backbone_connector_last_record_timestamp_   gauge   connector, role
seconds
backbone_source_freshness_seconds           gauge   connector (age of the newest record)
backbone_sink_lag_records                   gauge   connector, role, topic, partition
                                                    (sinks and processors)
backbone_broker_requests_total              counter api
backbone_broker_request_bytes_total         counter api (bytes received)
backbone_broker_response_bytes_total        counter api (bytes sent)
backbone_broker_request_seconds             histo.  api (request latency)
=========================================== ======= =====================================

The broker families are there only with the embedded broker (an external Kafka
cluster has its own exporters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backbone.worker import ConnectorState, ConnectorStatus

__all__ = ["CONTENT_TYPE", "GatewayCollector", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Lag = Callable[[str], Mapping[tuple[str, int], int]]


class GatewayCollector(Collector):
    """Metric families of the connectors (and the embedded broker) of one gateway.

    ``lag(name)`` gives a sink's or processor's lag per (topic, partition);
    ``broker_stats()`` the embedded broker's request statistics (or ``None``).
    """

    def __init__(
        self,
        statuses: Mapping[str, ConnectorStatus],
        lag: Lag,
        broker_stats: Callable[[], Any | None] = lambda: None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.statuses = statuses
        self.lag = lag
        self.broker_stats = broker_stats
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._connectors()
        stats = self.broker_stats()
        if stats is not None:
            yield from _broker(stats)

    def _connectors(self) -> Iterator[Metric]:
        labels = ["connector", "role"]
        counters = {
            field: CounterMetricFamily(f"backbone_connector_{field}", text, labels=labels)
            for field, text in (
                ("records_in", "Records read or pushed (sources), consumed (sinks, processors)."),
                ("records_out", "Records acknowledged by the broker (sources, processors) or "
                 "written (sinks); dead letters excluded."),
                ("errors", "Failed connector calls that were retried, plus records that "
                 "failed for good."),
                ("dead_lettered", "Records sent to the dead-letter topic."),
                ("retries", "Waits before another attempt."),
            )
        }  # fmt: skip
        up = GaugeMetricFamily(
            "backbone_connector_up",
            "1 for the connector's current state, 0 for the others.",
            labels=[*labels, "state"],
        )
        last = GaugeMetricFamily(
            "backbone_connector_last_record_timestamp_seconds",
            "Timestamp of the newest record (sources: when it was read).",
            labels=labels,
        )
        freshness = GaugeMetricFamily(
            "backbone_source_freshness_seconds",
            "Seconds since a source's newest record.",
            labels=["connector"],
        )
        lag = GaugeMetricFamily(
            "backbone_sink_lag_records",
            "Records a sink or processor is behind, per partition it holds.",
            labels=[*labels, "topic", "partition"],
        )
        now = self.clock()
        for name, status in self.statuses.items():
            values = [name, status.role]
            for field, family in counters.items():
                family.add_metric(values, getattr(status, field))
            for state in ConnectorState:
                up.add_metric([*values, state.value], 1.0 if status.state is state else 0.0)
            if status.last_record_ms is not None:
                last.add_metric(values, status.last_record_ms / 1000)
                if status.role == "source":
                    freshness.add_metric([name], max(now - status.last_record_ms / 1000, 0.0))
            if status.role != "source":
                for (topic, partition), behind in sorted(self.lag(name).items()):
                    lag.add_metric([*values, topic, str(partition)], behind)
        yield from counters.values()
        yield from (up, last, freshness, lag)


def _broker(stats: Any) -> Iterable[Metric]:
    """Families from the embedded broker's ``RequestStats`` (see backbone.broker)."""
    requests = CounterMetricFamily(
        "backbone_broker_requests", "Requests the embedded broker answered.", labels=["api"]
    )
    received = CounterMetricFamily(
        "backbone_broker_request_bytes", "Bytes of requests received.", labels=["api"]
    )
    sent = CounterMetricFamily(
        "backbone_broker_response_bytes", "Bytes of responses sent.", labels=["api"]
    )
    latency = HistogramMetricFamily(
        "backbone_broker_request_seconds",
        "Time from a request's arrival to its response being handed to the socket.",
        labels=["api"],
    )
    bounds = [*stats.buckets, float("inf")]
    for api, entry in sorted(stats.by_api().items()):
        requests.add_metric([api], entry.requests)
        received.add_metric([api], entry.bytes_in)
        sent.add_metric([api], entry.bytes_out)
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, entry.histogram, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        latency.add_metric([api], buckets, entry.seconds)
    return (requests, received, sent, latency)


def render(collector: Collector) -> bytes:
    """The Prometheus text exposition of ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
