"""Options models of the ``sql`` source and sink (the YAML contract).

The runtime validates a connector's YAML block against these models; their field
docstrings are what ``backbone connectors sql`` prints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from backbone.sdk import ConnectorOptions, Duration

__all__ = ["Mode", "SqlSinkOptions", "SqlSourceOptions"]

Mode = Literal[
    "incrementing", "timestamp", "timestamp+incrementing", "bulk", "changelog", "snapshot_diff"
]


def _column_list(value: object) -> object:
    """Accept ``"id"`` as shorthand for ``["id"]``."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SqlSourceOptions(ConnectorOptions):
    """Options of the ``sql`` source: database changes become change events."""

    url: SecretStr
    """SQLAlchemy database URL, e.g. ``sqlite:///shop.db`` (relative to the config file)
    or ``postgresql+psycopg://user:pw@host/db``. Treated as a secret. A SQLite file must
    exist: the source (and ``validate --check``) never creates an empty one."""

    table: str | None = None
    """Table to capture (``name`` or ``schema.name``). Exactly one of ``table`` and ``query``."""

    query: str | None = None
    """A SELECT whose rows are captured instead of a table (not in ``changelog`` mode;
    ``snapshot_diff`` then needs ``key``). The connector wraps it as a subquery."""

    mode: Mode
    """How changes are found: ``incrementing``, ``timestamp``, ``timestamp+incrementing``,
    ``bulk``, ``changelog`` (trigger-fed changelog table, sees deletes) or ``snapshot_diff``."""

    incrementing_column: str | None = None
    """Strictly increasing integer column (``incrementing`` and ``timestamp+incrementing``)."""

    timestamp_column: str | None = None
    """Last-modified date/time column (``timestamp`` and ``timestamp+incrementing``)."""

    key: list[str] | None = None
    """Columns whose JSON is the record key (default: the table's primary key)."""

    poll_interval: Duration = 1.0
    """Time between two polls of the database (``bulk``/``snapshot_diff``: between runs)."""

    batch_size: int = Field(default=1000, ge=1)
    """Most rows read per query."""

    lag: Duration = 5.0
    """Safety window for late commits: timestamp modes only read rows older than this;
    incrementing mode keeps re-reading ids seen within this window to catch ids of
    transactions that commit late."""

    initial: Literal["snapshot", "latest"] = "snapshot"
    """On the very first start: ``snapshot`` emits the rows already there as ``op: r``
    (also after a restart mid-snapshot), ``latest`` starts with changes made from now on
    (``bulk``: the first run comes after one ``poll_interval``)."""

    install_triggers: bool = False
    """``changelog`` mode: create the changelog table and the insert/update/delete triggers
    (SQLite and PostgreSQL). Without it the changelog table must already exist. The source
    deletes changelog rows once their changes are acknowledged (saved), so one changelog
    table feeds one source."""

    timezone: str = "UTC"
    """IANA zone of naive (zone-less) timestamp columns, e.g. ``Europe/Berlin``."""

    tombstones: bool = False
    """After each delete event also emit a tombstone (null value) so compacted topics
    forget the row."""

    _validate_key = field_validator("key", mode="before")(_column_list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like 'UTC')") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SqlSourceOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' and 'query'")
        needs_inc = self.mode in ("incrementing", "timestamp+incrementing")
        needs_ts = self.mode in ("timestamp", "timestamp+incrementing")
        if needs_inc and not self.incrementing_column:
            raise ValueError(f"mode {self.mode!r} needs 'incrementing_column'")
        if needs_ts and not self.timestamp_column:
            raise ValueError(f"mode {self.mode!r} needs 'timestamp_column'")
        if self.mode in ("changelog",) and self.query is not None:
            raise ValueError("mode 'changelog' captures a table: use 'table', not 'query'")
        if self.mode == "snapshot_diff" and self.query is not None and not self.key:
            raise ValueError("mode 'snapshot_diff' with 'query' needs 'key'")
        if self.install_triggers and self.mode != "changelog":
            raise ValueError("'install_triggers' only applies to mode 'changelog'")
        return self


class SqlSinkOptions(ConnectorOptions):
    """Options of the ``sql`` sink: records (change envelopes or JSON objects) become rows."""

    url: SecretStr
    """SQLAlchemy database URL (relative SQLite paths resolve against the config file).
    A missing SQLite file is an error, except with ``auto_create``: then the sink creates
    it at start (its folder must exist; ``validate --check`` creates nothing)."""

    table: str
    """Target table (``name`` or ``schema.name``)."""

    insert_mode: Literal["insert", "upsert", "update"] = "upsert"
    """``insert`` (plain INSERT), ``upsert`` (INSERT ... ON CONFLICT DO UPDATE by ``key``;
    replaying records is idempotent) or ``update`` (UPDATE by ``key``)."""

    key: list[str] | None = None
    """Key columns for upsert/update/delete (default: the table's primary key; with
    ``auto_create``, the fields of the record key). A delete always needs key columns:
    ``upsert``/``update``/``delete_on_tombstone`` without any are refused at start, and
    with ``insert`` an ``op: d`` record is a DataError (dead-letter topic), never a
    DELETE of every row."""

    delete_on_tombstone: bool = False
    """Delete the row named by the record key when a record's value is null. (Change
    envelopes with ``op: d`` always delete.) When false, tombstones are skipped."""

    auto_create: bool = False
    """Create the table when it does not exist, with column types inferred from the
    first records."""

    fields: list[str] | dict[str, str] | None = None
    """Fields to write: a list selects fields, a mapping ``{field: column}`` selects and
    renames. Default: every field, each to the column of the same name."""

    batch_size: int = Field(default=500, ge=1)
    """Most rows per INSERT/UPDATE statement; a ``write`` is still one transaction."""

    _validate_key = field_validator("key", mode="before")(_column_list)
