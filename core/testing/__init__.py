"""The connector conformance suite: checks a connector author runs against a connector.

Plain async functions (no pytest plugin needed; with pytest, mark the tests async
via pytest-asyncio or anyio). Each takes a *factory*, a zero-argument callable
returning a fresh, unopened connector instance, so a check can "restart" the
connector as the runtime would::

    from backbone import testing

    async def test_my_source(tmp_path):
        def make():
            return MySource(MyOptions(path="in.jsonl"), testing.context(tmp_path))

        await testing.check_source(make, minimum=10, bad_input=write_a_broken_line)

Sources (:func:`check_source` runs them all):

- :func:`check_source_resumes`: opened with the position of record k, a new
  instance returns exactly the records after k (resume after a restart, nothing
  skipped);
- :func:`check_source_replays`: a run that was never acknowledged is read again
  identically, with the same ``ce_id``s; every change has its own ``ce_id``; the
  runtime's record rules hold (:func:`check_source_rules`);
- :func:`check_source_cancellation`: a pending ``read()`` cancelled lets
  ``CancelledError`` through, the instance still works, ``close()`` twice works;
- :func:`check_source_idle_read`: ``read()`` returns within a bound when idle;
- :func:`check_source_bad_input`: bad input becomes a record with ``error`` set
  (raw input as value, the position after it), never a raised ``DataError``.

Sinks (:func:`check_sink` runs them all): :func:`check_sink_writes` (what
``precommit`` reports durable -- after ``flush``, everything -- is in the
target; ``close()`` twice),
:func:`check_sink_data_error_is_all_or_nothing` (a ``DataError`` leaves nothing of
its batch behind), :func:`check_sink_errors_are_typed` (a broken target raises
``RetriableError``/``DataError``/``FatalError``, not a library's exception).
Retrying a ``RetriableError`` is the runtime's job, not the connector's.
:func:`check_sink_commits` plays a crash: offsets ``precommit`` returns are
durable, and redelivering everything after them leaves each record once.

Push sources (``context.push``, e.g. webhooks): :func:`check_push_source` with a
:class:`PushRecorder` (an in-memory push path with the runtime's checks and
encoding; it can hold acknowledgements back or fail like an unreachable broker).

Through the real runtime and a real broker (embedded, or any Kafka via
``bootstrap``): :func:`check_source_dead_letters` (bad input reaches the source's
dead-letter topic with ``backbone.error.class: DataError``),
:func:`check_sink_dead_letters` (bad records reach the sink's dead-letter topic,
good ones the target), :func:`check_source_through_crash` (``backbone run``
SIGKILLed and restarted: at least once). Helpers: :func:`running`,
:func:`consume`, :class:`Gateway`, :func:`broker_yaml`, :data:`FAST_RUNTIME`,
:func:`context`, :func:`read_at_least`, :func:`wait_until`, :func:`sink_record`,
:func:`written_offsets`, :class:`ManualClock` (a clock a test moves, for
``context(clock=...)``) and the ``VALUES`` source kind
(``type: "backbone.testing:VALUES"``).
"""

from __future__ import annotations

from backbone.testing._clock import ManualClock
from backbone.testing._pipeline import (
    FAST_RUNTIME,
    VALUES,
    VALUES_SOURCE,
    Gateway,
    broker_yaml,
    check_sink_dead_letters,
    check_source_dead_letters,
    check_source_through_crash,
    consume,
    running,
)
from backbone.testing._push import Pushed, PushRecorder, check_push_source
from backbone.testing._sink import (
    SinkFactory,
    check_sink,
    check_sink_commits,
    check_sink_data_error_is_all_or_nothing,
    check_sink_errors_are_typed,
    check_sink_writes,
    written_offsets,
)
from backbone.testing._source import (
    Identity,
    SourceFactory,
    check_source,
    check_source_bad_input,
    check_source_cancellation,
    check_source_idle_read,
    check_source_replays,
    check_source_resumes,
    check_source_rules,
    event_ids,
)
from backbone.testing._support import context, identity, read_at_least, sink_record, wait_until

__all__ = [
    "FAST_RUNTIME",
    "VALUES",
    "VALUES_SOURCE",
    "Gateway",
    "Identity",
    "ManualClock",
    "PushRecorder",
    "Pushed",
    "SinkFactory",
    "SourceFactory",
    "broker_yaml",
    "check_push_source",
    "check_sink",
    "check_sink_commits",
    "check_sink_data_error_is_all_or_nothing",
    "check_sink_dead_letters",
    "check_sink_errors_are_typed",
    "check_sink_writes",
    "check_source",
    "check_source_bad_input",
    "check_source_cancellation",
    "check_source_dead_letters",
    "check_source_idle_read",
    "check_source_replays",
    "check_source_resumes",
    "check_source_rules",
    "check_source_through_crash",
    "consume",
    "context",
    "event_ids",
    "identity",
    "read_at_least",
    "running",
    "sink_record",
    "wait_until",
    "written_offsets",
]
