"""Retry timing and dead-letter headers, shared by every runner worker.

:func:`backoff_delay` gives the wait before the next attempt: exponential from
``initial_backoff`` (doubling per attempt, capped at ``max_backoff``) with "equal
jitter" (a random factor in [0.5, 1.0]) and never less than the error's
``retry_after``. :func:`dead_letter_headers` builds the headers a dead-lettered
record carries.
"""

from __future__ import annotations

import random

from backbone.connector import Header
from backbone.settings import RetryPolicy

__all__ = ["backoff_delay", "dead_letter_headers", "error_message"]

_MAX_MESSAGE = 2000


def backoff_delay(
    policy: RetryPolicy, attempt: int, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    base = min(policy.max_backoff, policy.initial_backoff * (2 ** max(attempt - 1, 0)))
    delay = base * (0.5 + 0.5 * rng.random())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return float(delay)


def error_message(error: BaseException) -> str:
    """The error's message, shortened for a header."""
    text = str(error) or type(error).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def dead_letter_headers(
    *,
    connector: str,
    error: BaseException,
    attempts: int,
    original: tuple[str, int, int] | None = None,
) -> list[Header]:
    """``backbone.error.{connector,class,message,attempts}`` and
    ``backbone.original.{topic,partition,offset}`` (when the record came from a topic)."""
    headers: list[Header] = [
        ("backbone.error.connector", connector.encode()),
        ("backbone.error.class", type(error).__name__.encode()),
        ("backbone.error.message", error_message(error).encode()),
        ("backbone.error.attempts", str(attempts).encode()),
    ]
    headers += list(getattr(error, "headers", None) or ())
    if original is not None:
        topic, partition, offset = original
        headers += [
            ("backbone.original.topic", topic.encode()),
            ("backbone.original.partition", str(partition).encode()),
            ("backbone.original.offset", str(offset).encode()),
        ]
    return headers
