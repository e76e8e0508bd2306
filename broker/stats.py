"""Request statistics of the broker: counts, bytes and a latency histogram per API.

The server records each answered request once (:meth:`RequestStats.record`: a few
integer additions and one bucket search, per request, never per record). Readers
(the gateway's ``/metrics``) call :meth:`RequestStats.by_api` for a snapshot keyed
by API name. Latency is from the whole request frame's arrival to its response
being handed to the socket (queueing behind earlier requests of the connection
included: what a client waits).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BUCKETS", "ApiStats", "RequestStats"]

BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
"""Upper bounds (seconds) of the latency histogram buckets; one more bucket is +Inf."""


@dataclass
class ApiStats:
    """Totals of one API: requests, bytes in and out, latency histogram and sum."""

    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    """Requests per bucket (not cumulative); the last one is +Inf."""


class RequestStats:
    """Per-API request statistics (see the module docstring); ``names`` maps API keys to
    names (``{1: "Fetch"}``), unknown keys are named ``api-<key>``."""

    buckets = BUCKETS

    def __init__(self, names: Mapping[int, str] | None = None) -> None:
        self.names = dict(names or {})
        self._by_key: dict[int, ApiStats] = {}

    def record(self, api_key: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        """One answered request."""
        entry = self._by_key.get(api_key)
        if entry is None:
            entry = self._by_key[api_key] = ApiStats()
        entry.requests += 1
        entry.bytes_in += bytes_in
        entry.bytes_out += bytes_out
        entry.seconds += seconds
        entry.histogram[bisect.bisect_left(BUCKETS, seconds)] += 1

    def by_api(self) -> dict[str, ApiStats]:
        """A snapshot (copies) by API name."""
        return {
            self.names.get(key, f"api-{key}"): ApiStats(
                e.requests, e.bytes_in, e.bytes_out, e.seconds, list(e.histogram)
            )
            for key, e in self._by_key.items()
        }
