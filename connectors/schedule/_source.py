"""The ``schedule`` source: fires of a cron line or interval, and what their job emits.

Time comes from ``context.clock`` only (a test drives it with
``backbone.testing.ManualClock``). The position is ``{"fire": "<UTC ISO time>"}``:
the last fire whose events were all emitted (or which was skipped). At ``open``
the fires missed since then are decided by ``catch_up`` alone -- ``none``,
``latest`` or ``all`` -- never by a grace time.

Each fire becomes a *run* (a task running the job). Runs may overlap
(``concurrency: allow``) but their events are returned in fire order: a run's
records wait until every earlier run was emitted. A run's records carry
``position=None`` and the identity ``[fire time, index]`` (so the CloudEvents id
of each event depends only on the connector and the scheduled time, and a re-run
of the same fire repeats it); the last record of the run carries the position
``{"fire": ...}``, or, when the run emitted nothing (an empty query, a skipped
fire), a position-only record does. Every record has the header
``schedule.time`` (the fire time, UTC ISO) and the fire time as its timestamp.

With ``concurrency: forbid`` a fire is skipped only when the previous run is really
executing at the time (fires that became due together, say after a slow read, are
queued instead). A run failing with :class:`RetriableError` is run again (``read`` raises it, the
runtime backs off and reads again); :class:`FatalError` stops the source.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from backbone.sdk import RetriableError, Source, SourceRecord, Timetable

from ._jobs import Fire, Runner, runner_for
from ._options import ScheduleOptions, TickJob

__all__ = ["ScheduleSource"]

IDLE = 0.5
"""Longest real-time wait (seconds) in one idle ``read()``."""

BUFFERED = 8
"""Most unread record lists one run may hold before its job waits."""


@dataclass(eq=False)
class _Run:
    """One fire and its job's progress."""

    fire: Fire
    catch_up: bool = False
    skipped: bool = False
    chunks: deque[list[SourceRecord]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    started: bool = False
    """The job began (its task is executing, not just created)."""
    done: bool = False
    error: BaseException | None = None
    emitted: int = 0
    space: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.done

    @property
    def waiting(self) -> bool:
        return self.task is None and not self.done


class ScheduleSource(Source[ScheduleOptions]):
    """Emits fires and job results (see the module docstring)."""

    async def open(self, position: Any | None) -> None:
        options = self.options
        self.clock = self.context.clock
        self.log = self.context.logger
        self.timetable = Timetable(
            cron=options.cron, interval=options.interval, timezone=options.timezone
        )
        self.zone = self.timetable.zone
        self.job: Runner = runner_for(options.job, self.context, self.zone)
        self.tick = isinstance(options.job, TickJob)
        self.runs: deque[_Run] = deque()
        self.changed = asyncio.Event()
        self.rng = random.Random()
        self.backlog_until: dt.datetime | None = None
        self._previous: dt.datetime | None = None
        await self.job.open()
        now = self.clock.now()
        last = None if position is None else dt.datetime.fromisoformat(position["fire"])
        self.next = self.timetable.after(now)
        if last is None:
            self.log.info("schedule %s: first fire at %s", self.timetable.description, self.next)
            return
        first_missed = self.timetable.after(last)
        if first_missed is None or first_missed > now:
            self.next = first_missed
            return
        policy = options.catch_up
        if policy == "all":
            self.next, self.backlog_until = first_missed, now
            self.log.info(
                "catching up every fire missed since %s (catch_up: all)", Fire(last, self.zone).iso
            )
        elif policy == "latest":
            latest = self.timetable.last(last, now)
            assert latest is not None
            self.runs.append(_Run(Fire(latest, self.zone), catch_up=True))
            self.log.info(
                "running the latest fire missed since %s: %s (catch_up: latest)",
                Fire(last, self.zone).iso,
                Fire(latest, self.zone).iso,
            )
        else:
            self.log.info(
                "skipping the fires missed since %s (catch_up: none); next at %s",
                Fire(last, self.zone).iso,
                self.next,
            )

    # ------------------------------------------------------------------ reading

    async def read(self) -> list[SourceRecord]:
        while True:
            self.changed.clear()
            self._schedule_due()
            self._start_runs()
            records = self._take()
            if records:
                return records
            if not await self._wait():
                return []

    async def _wait(self) -> bool:
        """Wait for a run's progress or the next fire (at most IDLE real seconds)."""
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.changed.wait())}
        if self.next is not None:
            waits.add(asyncio.ensure_future(self.clock.sleep_until(self.next.timestamp())))
        try:
            done, _ = await asyncio.wait(waits, timeout=IDLE, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in waits:
                pending.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return bool(done)

    def _schedule_due(self) -> None:
        """Turn fires whose time came into runs (started, queued or skipped)."""
        now = self.clock.now()
        while self.next is not None and self.next <= now:
            moment = self.next
            catch_up = self.backlog_until is not None and moment <= self.backlog_until
            if catch_up and any(run.waiting for run in self.runs):
                return  # caught-up fires are made into runs one at a time
            self.next = self.timetable.after(moment)
            fire = Fire(moment, self.zone)
            # a run that is really executing: fires merely due together are queued
            busy = any(run.started and not run.done for run in self.runs)
            if self.options.concurrency == "forbid" and busy and not catch_up:
                self.log.warning(
                    "fire at %s skipped: the previous run still runs (concurrency: forbid)",
                    fire.iso,
                )
                self.runs.append(_Run(fire, skipped=True, done=True))
                continue
            self.runs.append(_Run(fire, catch_up=catch_up))

    def _start_runs(self) -> None:
        allow = self.options.concurrency == "allow"
        for run in self.runs:
            if not run.waiting:
                continue
            one_at_a_time = run.catch_up or not allow
            if one_at_a_time and any(other.running for other in self.runs):
                continue
            run.task = asyncio.create_task(self._execute(run), name=f"schedule:{run.fire.iso}")

    async def _execute(self, run: _Run) -> None:
        async def emit(records: list[SourceRecord]) -> None:
            while len(run.chunks) >= BUFFERED:
                run.space.clear()
                await run.space.wait()
            run.chunks.append(records)
            self.changed.set()

        run.started = True
        try:
            jitter = self.options.jitter
            if jitter:
                await self.clock.sleep(self.rng.uniform(0, jitter))
            await self.job.run(run.fire, emit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            run.error = exc
        finally:
            run.done = True
            self.changed.set()

    def _take(self) -> list[SourceRecord]:
        """Records of the oldest runs, in fire order; raises the error of a failed run."""
        out: list[SourceRecord] = []
        event_type = self.options.event_type
        while self.runs:
            run = self.runs[0]
            fire = run.fire
            stamp = int(fire.at.timestamp() * 1000)
            header = ("schedule.time", fire.iso.encode())
            while run.chunks:
                for record in run.chunks.popleft():
                    record.identity = fire.iso if self.tick else [fire.iso, run.emitted]
                    record.timestamp_ms = stamp
                    record.headers = [header, *record.headers]
                    if event_type:
                        record.event_type = event_type
                    run.emitted += 1
                    out.append(record)
                run.space.set()
            if not run.done:
                break
            if run.error is not None:
                if out:
                    return out  # the error is raised by the next read
                error, run.error = run.error, None
                run.done, run.task, run.emitted = False, None, 0  # it runs again
                if isinstance(error, RetriableError):
                    self.log.warning("the run of %s failed; it runs again: %s", fire.iso, error)
                raise error
            self.runs.popleft()
            position = {"fire": fire.iso}
            if out and out[-1].produce and out[-1].position is None and run.emitted:
                out[-1].position = position
            else:
                out.append(SourceRecord.position_only(position))
        return out

    # ------------------------------------------------------------------ the rest

    async def check(self) -> None:
        options = self.options
        timetable = Timetable(
            cron=options.cron, interval=options.interval, timezone=options.timezone
        )
        await runner_for(options.job, self.context, timetable.zone).check()

    async def close(self) -> None:
        runs = getattr(self, "runs", None)
        if runs:
            tasks = [run.task for run in runs if run.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            runs.clear()
        job = getattr(self, "job", None)
        if job is not None:
            await job.close()
            self.job = None  # type: ignore[assignment]
