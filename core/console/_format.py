"""How the console writes figures: times, sizes, JSON, and the small rate chart (SVG)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

from backbone.views import RateSample

__all__ = ["FILTERS", "rate_chart"]

WIDTH, HEIGHT = 600, 120


def when(value: Any) -> str:
    """A datetime, or milliseconds since the epoch, as ``2026-01-31 12:00:00 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    assert isinstance(value, dt.datetime)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_ms(value: int) -> str:
    """Milliseconds since the epoch as ISO-8601 with milliseconds (UTC)."""
    stamp = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def size(value: int | None) -> str:
    """Bytes as ``12.3 KiB``."""
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover


def count(value: int | None) -> str:
    """A whole number with thousands separators (``—`` for none)."""
    return "—" if value is None else f"{value:,}"


def rate(value: float | None) -> str:
    """A per-second rate, short."""
    if value is None:
        return "—"
    return f"{value:,.1f}/s" if value < 100 else f"{value:,.0f}/s"


def byte_rate(value: float | None) -> str:
    """Bytes per second as ``12.3 KiB/s`` (``—`` while unknown)."""
    return "—" if value is None else f"{size(int(value))}/s"


def pretty(value: Any) -> str:
    """JSON indented (text as it is)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def compact(value: Any) -> str:
    """JSON on one line (text as it is)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "iso_ms": iso_ms,
    "size": size,
    "count": count,
    "rate": rate,
    "byte_rate": byte_rate,
    "pretty": pretty,
    "compact": compact,
}


def rate_chart(history: Sequence[RateSample]) -> dict[str, Any]:
    """Records in and out per second between consecutive samples, as SVG polyline points.

    Returns ``points_in``/``points_out`` (``"x,y x,y ..."`` in a ``WIDTH x HEIGHT``
    box), ``peak`` (the top of the scale), ``last_in``/``last_out`` (the latest rates),
    ``minutes`` (the span shown) and ``samples``.
    """
    rates: list[tuple[float, float, float]] = []
    for before, after in itertools.pairwise(history):
        seconds = (after.at - before.at).total_seconds()
        if seconds <= 0:
            continue
        rates.append(
            (
                after.at.timestamp(),
                max(after.records_in - before.records_in, 0) / seconds,
                max(after.records_out - before.records_out, 0) / seconds,
            )
        )
    result: dict[str, Any] = {
        "width": WIDTH,
        "height": HEIGHT,
        "samples": len(rates),
        "points_in": "",
        "points_out": "",
        "peak": 0.0,
        "last_in": rates[-1][1] if rates else None,
        "last_out": rates[-1][2] if rates else None,
        "minutes": 0.0,
    }
    if len(rates) < 2:
        return result
    first, last = rates[0][0], rates[-1][0]
    span = max(last - first, 1.0)
    peak = max(max(r[1], r[2]) for r in rates) or 1.0

    def points(index: int) -> str:
        return " ".join(
            f"{(at - first) / span * WIDTH:.1f},{HEIGHT - values[index] / peak * (HEIGHT - 4):.1f}"
            for at, *values in ((r[0], r[1], r[2]) for r in rates)
        )

    result.update(points_in=points(0), points_out=points(1), peak=peak, minutes=round(span / 60, 1))
    return result
