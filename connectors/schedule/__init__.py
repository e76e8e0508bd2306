"""The ``schedule`` connector kind: cron lines and intervals become events.

Source (:class:`ScheduleSource`, options :class:`ScheduleOptions`). A ``cron``
line (5 fields, crontab semantics, in ``timezone``) or an ``interval`` fires;
each fire runs its ``job``:

- ``tick``: one event ``{"scheduled": "<fire time>"}``;
- ``sql``: a query through SQLAlchemy, one event per row (``:scheduled`` is bound
  to the fire time);
- ``http``: a call through httpx, the JSON response (or each of its ``items``) as
  events; 5xx, 408, 429 and network errors are retried (honouring Retry-After),
  other 4xx answers go to the dead-letter topic;
- ``command``: a program (the crontab replacement) with a ``timeout``, emitting
  its exit status, or its stdout lines.

The position is the last fire emitted; ``catch_up`` (``none | latest | all``)
decides what happens to fires missed while Backbone was down, and
``concurrency`` (``forbid | allow``) to a fire that comes while the previous run
still runs. Event ids are deterministic from the connector and the scheduled
time. The SDK's :class:`~backbone.sdk.Timetable` computes the fire times (APScheduler
3's cron fields, with crontab's weekday and day rules and DST handled on top);
nothing relies on a scheduler's misfire grace time. See :mod:`._source` for the details.
"""

from __future__ import annotations

from backbone.sdk import ConnectorKind

from ._options import CommandJob, HttpJob, ScheduleOptions, SqlJob, TickJob
from ._source import ScheduleSource

__all__ = [
    "CONNECTOR",
    "CommandJob",
    "HttpJob",
    "ScheduleOptions",
    "ScheduleSource",
    "SqlJob",
    "TickJob",
]

EXAMPLE = """\
sources:
  heartbeat:
    type: schedule
    topic: ticks
    interval: 1m                # or cron: "*/5 * * * *"
  nightly-export:
    type: schedule
    topic: jobs.export
    cron: "0 2 * * *"           # 02:00 every night
    timezone: Europe/Berlin
    catch_up: latest            # run once at start if last night's run was missed
    job:
      type: command
      command: [/usr/local/bin/export.sh, --day, yesterday]
      timeout: 30m
  open-orders:
    type: schedule
    topic: reports.open-orders
    cron: "0 * * * *"
    job:
      type: sql
      url: sqlite:///shop.db
      query: SELECT id, amount FROM orders WHERE status = 'open'
      key: [id]
"""

CONNECTOR = ConnectorKind(
    name="schedule",
    summary="Cron lines and intervals to events: ticks, or the results of a SQL query, "
    "an HTTP call or a command run at each fire.",
    source=ScheduleSource,
    source_options=ScheduleOptions,
    example=EXAMPLE,
)
