"""What a fire does: ``tick``, ``sql`` (SQLAlchemy), ``http`` (httpx), ``command``.

Each job class turns one :class:`Fire` into records through ``emit`` (a coroutine
taking a list of records; it waits while the source has too many unread). Records
carry only what the job knows (value, key, error); the source adds identity,
position, timestamp and headers. A job raises :class:`RetriableError` for a
transient failure (the fire is run again after a backoff) and
:class:`FatalError` when it cannot work at all; bad data it can report is an
error record (the dead-letter topic).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa

from backbone.connectors.sql import (
    create_engine,
    database_errors,
    redacted,
    require_file,
    resolve_url,
    to_json,
)
from backbone.sdk import (
    ConnectorContext,
    DataError,
    FatalError,
    Offload,
    RetriableError,
    SourceRecord,
    json_pointer,
    parse_retry_after,
)

from ._options import CommandJob, HttpJob, Job, SqlJob, TickJob

__all__ = ["Fire", "Runner", "runner_for"]

Emit = Callable[[list[SourceRecord]], Awaitable[None]]

TAIL = 64 * 1024
"""Bytes of stdout/stderr kept for a command's status event and error records."""

KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL for a command that timed out or is cancelled."""


@dataclass(frozen=True)
class Fire:
    """One fire: its time in UTC and in the schedule's zone."""

    at: dt.datetime
    zone: ZoneInfo

    @property
    def iso(self) -> str:
        """The fire time in UTC, ISO 8601 with ``Z``: ``2024-05-01T00:00:00Z``."""
        return self.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

    @property
    def local(self) -> dt.datetime:
        return self.at.astimezone(self.zone)


class Runner:
    """Runs one kind of job (see the module docstring)."""

    def __init__(self, job: Job, context: ConnectorContext, zone: ZoneInfo) -> None:
        self.job = job
        self.context = context
        self.zone = zone

    async def open(self) -> None:
        return None

    async def run(self, fire: Fire, emit: Emit) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None


class TickRunner(Runner):
    async def run(self, fire: Fire, emit: Emit) -> None:
        await emit([SourceRecord(value={"scheduled": fire.local.isoformat()})])


_SCHEDULED = re.compile(r"(?<![:\w]):scheduled\b")


class SqlRunner(Runner):
    """The query's rows as JSON objects (column values mapped as by the sql connector)."""

    job: SqlJob

    async def open(self) -> None:
        self.call = Offload()
        self.url = resolve_url(self.job.url.get_secret_value(), self.context)
        require_file(self.url, "create the database first")
        self.engine = create_engine(self.url, str(self.zone))
        statement = sa.text(self.job.query)
        if _SCHEDULED.search(self.job.query):
            statement = statement.bindparams(
                sa.bindparam("scheduled", type_=sa.DateTime(timezone=True))
            )
        self.statement = statement

    def _rows(self, scheduled: dt.datetime | None) -> list[dict[str, Any]]:
        params = {} if scheduled is None else {"scheduled": scheduled}
        doing = "running the scheduled query"
        with database_errors(self.engine, doing), self.engine.connect() as conn:
            result = conn.execute(self.statement, params)
            return [dict(row._mapping) for row in result]

    async def run(self, fire: Fire, emit: Emit) -> None:
        scheduled = fire.at if _SCHEDULED.search(self.job.query) else None
        try:
            rows = await self.call(self._rows, scheduled)
        except DataError as exc:  # a query failing on data is not a bad record: it is broken
            raise FatalError(str(exc)) from exc
        zone = self.zone  # of naive timestamp columns
        key_columns = self.job.key
        records = []
        for row in rows:
            value = {name: to_json(item, zone) for name, item in row.items()}
            key = None
            if key_columns:
                key = {name: value.get(name) for name in key_columns}
            records.append(SourceRecord(value=value, key=key))
        for start in range(0, len(records), 1000):
            await emit(records[start : start + 1000])

    async def check(self) -> None:
        await self.open()
        try:
            await self.call(self._probe)
        finally:
            await self.close()

    def _probe(self) -> None:
        with database_errors(self.engine, "connecting"), self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        call = getattr(self, "call", None)
        if call is not None:
            await call.settle()
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.dispose()

    def __repr__(self) -> str:
        return f"SqlRunner({redacted(self.url)})"


class HttpRunner(Runner):
    """One call per fire: the response (or each item of it) as events."""

    job: HttpJob

    async def open(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.job.timeout, follow_redirects=True)

    async def run(self, fire: Fire, emit: Emit) -> None:
        job = self.job
        local = fire.local
        try:
            url = job.url.format(scheduled=local)
            params = {name: value.format(scheduled=local) for name, value in job.params.items()}
        except (KeyError, IndexError, ValueError) as exc:
            raise FatalError(f"url or params: cannot fill in {exc} (only {{scheduled}})") from exc
        headers = {name: value.get_secret_value() for name, value in job.headers.items()}
        what = f"{job.method} {url}"
        try:
            response = await self.client.request(
                job.method, url, params=params, headers=headers, json=job.body
            )
        except httpx.TimeoutException as exc:
            raise RetriableError(f"{what} timed out after {job.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise RetriableError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (408, 425, 429) or status >= 500:
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), now=self.context.clock.time()
            )
            raise RetriableError(
                f"{what} answered {status} {response.reason_phrase}", retry_after=retry_after
            )
        if status >= 400:
            body = response.content[:TAIL]
            error = f"{what} answered {status} {response.reason_phrase}"
            await emit([SourceRecord(value=body or error.encode(), error=error)])
            return
        try:
            document = response.json()
        except ValueError as exc:
            if job.items is None:
                await emit([SourceRecord(value=response.content)])
                return
            error = f"{what}: the response is not JSON ({exc}), so it has no items"
            await emit([SourceRecord(value=response.content[:TAIL], error=error)])
            return
        if job.items is None:
            await emit([SourceRecord(value=document)])
            return
        items = json_pointer(document, job.items, None)
        if not isinstance(items, list):
            error = f"{what}: items {job.items!r} is not a list in the response"
            await emit([SourceRecord(value=response.content[:TAIL], error=error)])
            return
        key = job.key
        records = [
            SourceRecord(value=item, key=None if key is None else json_pointer(item, key, None))
            for item in items
        ]
        for start in range(0, len(records), 1000):
            await emit(records[start : start + 1000])

    async def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            await client.aclose()


class CommandRunner(Runner):
    """A program per fire: its exit status, or its output lines, as events."""

    job: CommandJob

    def argv(self) -> list[str]:
        job = self.job
        if job.shell:
            assert isinstance(job.command, str)
            return ["/bin/sh", "-c", job.command]
        return shlex.split(job.command) if isinstance(job.command, str) else list(job.command)

    async def check(self) -> None:
        program = self.argv()[0]
        if shutil.which(program, path=os.environ.get("PATH")) is None and not os.access(
            self.context.resolve(program), os.X_OK
        ):
            raise FatalError(f"command: program {program!r} is not found or not executable")

    async def run(self, fire: Fire, emit: Emit) -> None:
        job = self.job
        argv = self.argv()
        env = {
            **os.environ,
            **job.env,
            "BACKBONE_SCHEDULED": fire.local.isoformat(),
            "BACKBONE_CONNECTOR": self.context.name,
        }
        cwd = self.context.resolve(job.cwd) if job.cwd else self.context.base_dir
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=env,
                limit=1 << 20,
                start_new_session=True,  # its own process group: a timeout stops all of it
            )
        except OSError as exc:
            raise FatalError(f"command {argv[0]!r} cannot be started: {exc}") from exc
        stderr = bytearray()
        stdout = bytearray()
        timed_out = False
        try:
            errors = asyncio.create_task(_collect(process.stderr, stderr))
            try:
                async with asyncio.timeout(job.timeout):
                    await self._stdout(process, stdout, emit)
                    await errors
                    await process.wait()
            except TimeoutError:
                timed_out = True
                await _stop(process)
            finally:
                errors.cancel()
                await asyncio.gather(errors, return_exceptions=True)
        except BaseException:  # cancelled (the source closes): leave nothing running
            await _stop(process)
            raise
        code = process.returncode
        elapsed = int((time.monotonic() - started) * 1000)
        if job.output == "status":
            await emit(
                [
                    SourceRecord(
                        value={
                            "scheduled": fire.local.isoformat(),
                            "command": argv,
                            "exit_code": code,
                            "timed_out": timed_out,
                            "duration_ms": elapsed,
                            "stdout": _text(stdout),
                            "stderr": _text(stderr),
                        }
                    )
                ]
            )
            return
        if timed_out or code != 0:
            why = f"timed out after {job.timeout:g}s" if timed_out else f"exited with code {code}"
            error = f"command {shlex.join(argv)} {why}"
            await emit([SourceRecord(value=bytes(stderr) or error.encode(), error=error)])

    async def _stdout(self, process: Any, kept: bytearray, emit: Emit) -> None:
        """Read stdout: keep its end (``status``) or emit its lines, soon after they come."""
        stream = process.stdout
        lines_mode = self.job.output != "status"
        pending: list[SourceRecord] = []
        number = 0
        while True:
            try:
                # lines waiting are emitted once the program pauses for 100 ms
                line = await asyncio.wait_for(stream.readline(), 0.1 if pending else None)
            except TimeoutError:
                await emit(pending)
                pending = []
                continue
            except ValueError:  # a line over the stream limit (1 MiB): cut into parts
                line = await stream.read(1 << 20)
            if not line:
                break
            if not lines_mode:
                _keep(kept, line)
                continue
            number += 1
            text = line.rstrip(b"\r\n")
            if self.job.output == "jsonl":
                if not text.strip():
                    continue
                try:
                    pending.append(SourceRecord(value=json.loads(text)))
                except ValueError as exc:
                    error = f"stdout line {number} is not JSON: {exc}"
                    pending.append(SourceRecord(value=text, error=error))
            else:
                pending.append(SourceRecord(value=text))
            if len(pending) >= 500:
                await emit(pending)
                pending = []
        if pending:
            await emit(pending)


async def _collect(stream: Any, kept: bytearray) -> None:
    while chunk := await stream.read(1 << 16):
        _keep(kept, chunk)


def _keep(kept: bytearray, data: bytes) -> None:
    kept += data
    if len(kept) > TAIL:
        del kept[: len(kept) - TAIL]


def _text(data: bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL after KILL_GRACE; wait for it."""
    if process.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), wait)
            return
        except TimeoutError:
            continue


_RUNNERS: dict[type, type[Runner]] = {
    TickJob: TickRunner,
    SqlJob: SqlRunner,
    HttpJob: HttpRunner,
    CommandJob: CommandRunner,
}


def runner_for(job: Job, context: ConnectorContext, zone: ZoneInfo) -> Runner:
    """The runner of ``job`` (``zone``: the schedule's time zone)."""
    return _RUNNERS[type(job)](job, context, zone)
