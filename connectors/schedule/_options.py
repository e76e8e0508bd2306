"""Options model of the ``schedule`` source (the YAML contract), with its four jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from backbone.sdk import ConnectorOptions, Duration, Timetable

__all__ = ["CommandJob", "HttpJob", "Job", "ScheduleOptions", "SqlJob", "TickJob"]


class TickJob(ConnectorOptions):
    """An event per fire: ``{"scheduled": "<fire time in the schedule's zone>"}``."""

    type: Literal["tick"] = "tick"


class SqlJob(ConnectorOptions):
    """Run a query through SQLAlchemy at each fire; each row becomes an event."""

    type: Literal["sql"]
    url: SecretStr
    """SQLAlchemy URL (``sqlite:///shop.db`` relative to the config file, or
    ``postgresql+psycopg://user:pw@host/db``). Treated as a secret."""
    query: str
    """The SELECT to run. ``:scheduled`` in it is bound to the fire time (a timestamp
    with time zone; on SQLite the UTC text ``YYYY-MM-DD HH:MM:SS``)."""
    key: list[str] | None = None
    """Columns whose JSON object is the record key (default: no key)."""

    @field_validator("key", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class HttpJob(ConnectorOptions):
    """Call a URL at each fire (httpx); the JSON response, or each of its items, is an event."""

    type: Literal["http"]
    url: str
    """The URL; ``{scheduled}`` in it is the fire time in the schedule's zone, with an
    optional format: ``{scheduled:%Y-%m-%d}``."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Request headers (values are secrets: never printed)."""
    params: dict[str, str] = Field(default_factory=dict)
    """Query parameters (``{scheduled...}`` works here too)."""
    body: Any = None
    """A JSON request body."""
    timeout: Duration = 30.0
    """Seconds for the whole call."""
    items: str | None = None
    """JSON pointer to the array of items in the response (``/data/items``; ``""``: the
    response is the array): one event per item. Default: the whole response is one
    event (raw bytes if it is not JSON)."""
    key: str | None = None
    """With ``items``: JSON pointer into each item for the record key, e.g. ``/id``."""

    @field_validator("items", "key")
    @classmethod
    def _pointer(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not value.startswith("/"):
            raise ValueError(
                f"expected a JSON pointer like /data/items ('' = the whole body), got {value!r}"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL (got {value!r})")
        return value


class CommandJob(ConnectorOptions):
    """Run a program at each fire: the crontab replacement."""

    type: Literal["command"]
    command: list[str] | str
    """The program and its arguments (a list, or a string split like a shell would,
    without running one); with ``shell: true``, a shell command line."""
    shell: bool = False
    """Run ``command`` with ``/bin/sh -c`` (pipes, redirections, ``&&``)."""
    cwd: str | None = None
    """Working directory (relative to the config file; default: the config's folder)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables. Every run also gets ``BACKBONE_SCHEDULED`` (the
    fire time, ISO 8601 in the schedule's zone) and ``BACKBONE_CONNECTOR``."""
    timeout: Duration = Field(default=3600.0, gt=0)
    """A run still going after this long is stopped (SIGTERM to its process group,
    SIGKILL 5 s later) and reported as timed out."""
    output: Literal["status", "lines", "jsonl"] = "status"
    """``status``: one event per run with ``exit_code``, ``timed_out``, ``duration_ms``
    and the ends of ``stdout``/``stderr``; ``lines``: each stdout line as an event
    (bytes); ``jsonl``: each stdout line is a JSON event. With ``lines``/``jsonl`` a
    failed run (exit code not 0, timeout) also sends an error record (stderr's end)
    to the dead-letter topic."""

    @model_validator(mode="after")
    def _runnable(self) -> CommandJob:
        if not self.command:
            raise ValueError("command is empty")
        if self.shell and not isinstance(self.command, str):
            raise ValueError("shell: true needs command as one string")
        return self


def _job_shortcut(value: Any) -> Any:
    """``job: tick`` (or ``sql``...) is short for ``job: {type: tick}``."""
    return {"type": value} if isinstance(value, str) else value


Job = Annotated[
    TickJob | SqlJob | HttpJob | CommandJob,
    Field(discriminator="type"),
    BeforeValidator(_job_shortcut),
]


class ScheduleOptions(ConnectorOptions):
    """Options of the ``schedule`` source: cron or interval fires become events."""

    cron: str | None = None
    """When to fire: a 5-field crontab line (``minute hour day month weekday``, crontab
    semantics: 0 or 7 = Sunday) or ``@daily``, ``@hourly``... Exactly one of ``cron``
    and ``interval``."""
    interval: Duration | None = Field(default=None, gt=0)
    """Fire every this long (at whole multiples since the Unix epoch: ``5m`` fires at
    :00, :05, ...)."""
    timezone: str = "UTC"
    """IANA zone the cron line is read in (e.g. ``Europe/Berlin``; DST as cron does)."""
    job: Job = Field(default_factory=TickJob)
    """What a fire does: ``tick``, ``sql``, ``http`` or ``command`` (``job: tick`` or
    ``job: {type: sql, url: ..., query: ...}``)."""
    catch_up: Literal["none", "latest", "all"] = "latest"
    """Fires missed while Backbone was down (after the last fire saved as the position):
    ``none`` skips them, ``latest`` runs only the most recent one, ``all`` runs each in
    order. Nothing is skipped because it is late otherwise."""
    concurrency: Literal["forbid", "allow"] = "forbid"
    """A fire while the previous run still runs: ``forbid`` skips it (a warning; the
    position moves past it), ``allow`` starts it anyway. Events are emitted in fire
    order either way; caught-up fires run one after another."""
    jitter: Duration = 0.0
    """Start each run up to this long after its fire time (random), to spread load; the
    event id and the ``scheduled`` time stay the fire time."""
    event_type: str | None = None
    """The CloudEvents ``ce_type`` (default ``backbone.schedule``)."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        Timetable(cron=None, interval=60, timezone=value)  # ValueError naming an unknown zone
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleOptions:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of cron and interval")
        Timetable(cron=self.cron, interval=self.interval, timezone=self.timezone)
        return self
