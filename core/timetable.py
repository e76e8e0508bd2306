"""Fire times: 5-field cron (crontab semantics) or a fixed interval, in a time zone.

In the connector SDK (``backbone.sdk.Timetable``) for every connector that acts on a
schedule (the ``schedule`` source; any poller): ``Timetable(cron=..., interval=...,
timezone=...)``, then :meth:`Timetable.after` (the next fire time strictly after a
moment), :meth:`Timetable.between` and :meth:`Timetable.last`. Times are aware UTC
datetimes; pair it with ``context.clock`` so tests drive time.

APScheduler 3's triggers compute the times; APScheduler's scheduler is not used
(nothing here runs jobs, keeps a job store or applies a misfire grace time).

The cron fields are matched on wall-clock time by a ``CronTrigger`` in UTC (which
has no daylight-saving jumps: APScheduler 3.11 skips a day when it adds whole days
across a DST change in a zone, e.g. the midnight after Berlin's spring change);
the zone is applied here, as cron does: a fire in the hour a DST change skips
happens right after the change; a fire in the hour repeated by a change happens
once, at its first occurrence.

Two crontab rules APScheduler 3 does not follow are applied too:

- day-of-week numbers are crontab's (0 and 7 = Sunday, 1 = Monday ... 6 =
  Saturday); APScheduler 3 counts 0 = Monday. The field is expanded to day
  names before it reaches APScheduler (``0 2 * * 0`` runs on Sundays);
- when both day-of-month and day-of-week are restricted (neither starts with
  ``*``), a day matching *either* fires, as in Vixie cron (``0 0 1 * 1``: the
  1st of each month and every Monday); APScheduler alone would need both.

``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``
and ``@hourly`` are accepted. An ``interval`` fires at whole multiples of it
since the Unix epoch (``5m``: :00, :05, ...), so fire times do not depend on
when Backbone started and a restart finds the same ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.combining import OrTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

__all__ = ["Timetable", "iso_utc", "zone"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TICK = dt.timedelta(microseconds=1)


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin)") from exc


def iso_utc(moment: dt.datetime) -> str:
    """``2024-05-01T00:00:00Z`` (UTC, seconds; microseconds only when set)."""
    text = moment.astimezone(dt.UTC).isoformat()
    return text.replace("+00:00", "Z")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _DAYS and token.isalpha():
        return _DAYS.index(token[:3])
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun-sat)")


def _weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (``*`` stays ``*``)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in day of week {part!r}")
        if spec == "*":
            first, last = 0, 6
        elif "-" in spec:
            start, _, end = spec.partition("-")
            first, last = _day(start), _day(end)
            if last == 0 and first > 0:
                last = 7  # "5-7", "fri-sun": Friday to Sunday
            if last < first:
                raise ValueError(f"day-of-week range {spec!r} goes backwards")
        else:
            first = _day(spec)
            last = 6 if step_text else first
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    order = [1, 2, 3, 4, 5, 6, 0]  # APScheduler's week starts on Monday
    return ",".join(_DAYS[day] for day in order if day in days)


def cron_trigger(expression: str) -> Any:
    """The trigger of a 5-field crontab line, matching wall-clock times given in UTC."""
    text = MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day-of-month month day-of-week) or a macro "
            f"like @daily, got {len(fields)} in {expression!r}"
        )
    minute, hour, day, month, weekday = fields
    names = _weekdays(weekday)

    def make(day_field: str, weekday_field: str) -> CronTrigger:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day_field,
            month=month,
            day_of_week=weekday_field,
            timezone=dt.UTC,
        )

    if not day.startswith("*") and not weekday.startswith("*"):
        return OrTrigger([make(day, "*"), make("*", names)])
    return make(day, names)


class Timetable:
    """The fire times of one schedule (see the module docstring)."""

    def __init__(self, *, cron: str | None, interval: float | None, timezone: str) -> None:
        self.zone = zone(timezone)
        self.cron: Any = None
        if cron is not None:
            self.cron = cron_trigger(cron)
            self.description = f"cron {cron!r} ({timezone})"
        elif interval is not None:
            self.every = IntervalTrigger(seconds=interval, start_date=_EPOCH, timezone=dt.UTC)
            self.description = f"every {interval:g}s"
        else:
            raise ValueError("give cron or interval")

    def after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after ``moment``, in UTC (None if there is none)."""
        if self.cron is None:
            found = self.every.get_next_fire_time(None, moment.astimezone(dt.UTC) + _TICK)
            return None if found is None else found.astimezone(dt.UTC)
        wall = moment.astimezone(self.zone).replace(tzinfo=None)
        for _ in range(1000):
            match = self.cron.get_next_fire_time(None, (wall + _TICK).replace(tzinfo=dt.UTC))
            if match is None:
                return None
            wall = match.replace(tzinfo=None)
            assert isinstance(wall, dt.datetime)
            for candidate in self._instants(wall):
                if candidate > moment:
                    return candidate
        raise RuntimeError(f"no fire time found after {moment}")  # pragma: no cover

    def _instants(self, wall: dt.datetime) -> list[dt.datetime]:
        """The UTC instants of the local wall-clock time ``wall``: one; the first instant
        after the jump when a DST change skips it; the first of two when one repeats it."""
        zone = self.zone
        first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
        if first.astimezone(zone).replace(tzinfo=None) != wall:  # skipped: in a DST gap
            instant = min(first, second)
            while instant.astimezone(zone).replace(tzinfo=None) < wall:
                instant += dt.timedelta(minutes=1)
            return [instant.replace(second=0, microsecond=0)]
        return [first]  # when repeated, the first of the two (fold=0)

    def between(self, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        """Fire times in ``(start, end]``, in order (lazily)."""
        moment = self.after(start)
        while moment is not None and moment <= end:
            yield moment
            moment = self.after(moment)

    def last(self, start: dt.datetime, end: dt.datetime) -> dt.datetime | None:
        """The latest fire time in ``(start, end]`` (None if there is none), found without
        walking every fire of a long gap."""
        window = dt.timedelta(minutes=1)
        while True:
            low = max(start, end - window)
            found = None
            for found in self.between(low, end):  # noqa: B007 - the last one is wanted
                pass
            if found is not None or low == start:
                return found
            window *= 8
