"""The connector contract: what a source or a sink implements, and who calls what.

Connector authors import everything from :mod:`backbone.sdk` (or ``backbone``).

A *source* turns an outside system into records. The runner calls, in order:

- ``open(position)`` once. ``position`` is the last position the runtime saved for
  this connector (after the broker acknowledged every record up to it), or ``None``
  on the very first start: then the connector starts where its options say. A
  source resumes *strictly after* the position it is given.
- ``read()`` again and again. It returns a list of records (possibly empty) and
  must return regularly (say within a second or two) even when there is nothing
  new, so the runner can stop it; it never blocks forever, and a cancelled
  ``read()`` lets ``CancelledError`` through and changes nothing.
- ``ack(position)`` whenever every record up to ``position`` is durable in the
  broker and the position was saved. Optional (e.g. archive a finished file).
- ``close()`` once; idempotent (it may also be called after a failed ``open``).

A *sink* writes records somewhere. The runner calls ``open()`` once,
``write(records)`` with a batch (from one or more partitions, in offset order
per partition) and ``close()`` once (idempotent). ``write`` returns only after the
whole batch is durably written (or, for a sink that stages records, handed to
its staging: see ``precommit`` below), or raises:

- :class:`~backbone.errors.RetriableError` -> the runner backs off and retries
  the same batch;
- :class:`~backbone.errors.DataError` -> nothing of the batch was written; the
  runner isolates the bad records (writes one at a time) and sends them to the
  dead-letter topic;
- :class:`~backbone.errors.FatalError` (or any other exception) -> the connector
  stops in state FAILED.

Both lifecycles are symmetric: ``open`` and ``close`` are abstract on
:class:`Source` and :class:`Sink` alike (write ``pass`` when there is nothing to do).

Committing (as Kafka Connect's ``SinkTask.preCommit``): before every commit of
consumer offsets, and at least once a second while records are written but not
committed, the runner calls ``precommit(offsets)`` with, per
:class:`TopicPartition`, the offset after the last record whose ``write``
returned. The sink returns the offsets it has made durable (at most those); only
they are committed. The default returns ``offsets``: ``write`` returning means
durable. A sink that stages records (an open file renamed when complete) returns
less, and ``flush(partitions)`` -- called when the runner stops and before a
rebalance takes partitions away -- makes everything written for those partitions
durable now, so the next ``precommit`` covers all of it. A sink that is closed
without ``flush`` (or a process that dies) leaves its staged records
uncommitted: they are delivered again, to this sink or the partition's next owner.

Rules for source records (the runtime enforces what it can check cheaply and
raises :class:`~backbone.errors.ContractError`, stopping the source FAILED):

1. ``position`` is the JSON-able position reached *after* the record.
   ``position=None`` means "do not advance": the runtime keeps the last position.
2. A change that spans several records (a delete followed by its tombstone, one
   file split into several events): every record but the last carries
   ``position=None``; the last carries the position reached after the whole
   change. So a crash can never save a position between the parts of one change.
3. Records that share a position (including the ``None`` ones of rule 2) must set
   ``identity``: the CloudEvents ``ce_id`` is derived from ``identity`` when set,
   else from ``position``, so two records with one position and no identity would
   get the same ``ce_id``. The runtime checks every record against the one before
   it (across reads, starting from the position given to ``open``): the same
   position, or ``None``, without an identity is a :class:`ContractError`.
4. Bad input from the outside system (a line that is not JSON, a malformed
   payload) is reported one way: a record with ``error`` set to the reason,
   ``value`` holding the raw input (bytes or text) and ``position`` the position
   after it. The runtime sends it to the connector's ``dead_letter_topic`` with
   ``backbone.error.class: DataError`` (without one, the source stops FAILED).
   ``read()`` raising :class:`~backbone.errors.DataError` is a contract violation
   (:class:`ContractError`); ``DataError`` is how a *sink* (or a processor)
   rejects a record.
5. ``read()`` raising :class:`~backbone.errors.RetriableError` is retried without
   limit with backoff; any other exception stops the source FAILED.
6. A position can advance without a record (a scheduled job that found nothing, a
   fire skipped): :meth:`SourceRecord.position_only` makes a record that is never
   produced; the runtime saves its position once every record before it is
   acknowledged (and calls ``ack``). It must carry a position.

Blocking libraries stay inside the connector: run blocking calls through
:class:`~backbone.offload.Offload` (cancel-safe), keep local state with
:class:`~backbone.state.StateDir` (``context.state``). The contract itself is
async. Wall-clock time comes from ``context.clock`` (:class:`~backbone.clock.Clock`),
so tests can drive it. Each connector kind declares one pydantic options model (derive from
:class:`ConnectorOptions`) and registers a :class:`ConnectorKind` under the
entry-point group ``backbone.connectors``. :mod:`backbone.testing` checks a
connector against these rules.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict

from backbone.clock import Clock, SystemClock
from backbone.errors import DataError
from backbone.state import StateDir

if TYPE_CHECKING:
    from backbone.httpapp import HttpRoutes
    from backbone.push import Push

__all__ = [
    "RESERVED_OPTIONS",
    "ConnectorContext",
    "ConnectorKind",
    "ConnectorOptions",
    "Header",
    "Sink",
    "SinkRecord",
    "Source",
    "SourceRecord",
    "TopicPartition",
]

Header = tuple[str, bytes]
"""A record header: a name and raw bytes."""


class ConnectorOptions(BaseModel):
    """Base of every connector kind's options model.

    Unknown keys are errors; field docstrings become the option descriptions shown
    by ``backbone connectors NAME`` and in the JSON schema. The runtime reserves
    the names in :data:`RESERVED_OPTIONS` for itself (``type``, ``topic``,
    ``topics``, ``dead_letter_topic``, ``retry``, ``start``): an options model that
    defines one is refused when its kind is registered.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


OptionsT = TypeVar("OptionsT", bound=ConnectorOptions)

RESERVED_OPTIONS: frozenset[str] = frozenset(
    {"type", "topic", "topics", "dead_letter_topic", "retry", "start"}
)
"""Option names the runtime owns (the fields every source or sink entry has)."""


@dataclass(slots=True)
class SourceRecord:
    """One record produced by a source.

    ``value`` is any JSON-able object (serialized as JSON), ``bytes`` (written
    as is) or ``None`` (a tombstone). ``key`` likewise; keys carry the entity's
    identity so per-entity order holds and compaction works. ``position`` is the
    JSON-able source position reached after this record (``None``: do not advance,
    see rules 1 and 2 of the module docstring). ``topic`` overrides the
    connector's topic for this record; ``event_type`` becomes the CloudEvents
    ``ce_type`` header.

    ``identity``: what names this change for the CloudEvents ``ce_id`` (JSON-able),
    when the position does not: the runtime derives ``ce_id`` deterministically from
    ``identity`` if set, else from ``position`` -- so a source whose records can share
    one position (several changes in one read, or ``position=None``) must set an
    identity unique per change within the connector (rule 3), and re-reading the
    same change repeats its ``ce_id``.

    ``error``: the one way to report bad input (rule 4): set it (to the reason) for
    input the source could not parse, with ``value`` holding the raw input (bytes or
    text) and ``position`` the position after it. The runner sends such a record to
    the connector's ``dead_letter_topic`` (headers ``backbone.error.*``, class
    ``DataError``) and moves on; without a dead-letter topic the source stops in
    state FAILED.

    ``produce``: ``False`` for a position-only record (rule 6, made by
    :meth:`position_only`): nothing is sent to the broker; its position is saved
    once every record before it was acknowledged.
    """

    value: Any
    key: Any = None
    headers: list[Header] = field(default_factory=list)
    timestamp_ms: int | None = None
    position: Any = None
    topic: str | None = None
    event_type: str | None = None
    error: str | None = None
    identity: Any = None
    produce: bool = True

    @classmethod
    def position_only(cls, position: Any) -> SourceRecord:
        """A record that only moves the position: nothing is produced (rule 6).

        For progress without output: a scheduled run that emitted nothing, a file
        that held no lines. The runtime saves ``position`` (and calls ``ack``) once
        every record returned before it was acknowledged by the broker.
        """
        return cls(value=None, position=position, produce=False)


class TopicPartition(NamedTuple):
    """A topic and partition (equal to aiokafka's and kafka-python's tuples of the same)."""

    topic: str
    partition: int


@dataclass(slots=True)
class SinkRecord:
    """One record consumed from the broker and handed to a sink (raw bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)
    timestamp_ms: int = -1

    def json(self) -> Any:
        """The value decoded as JSON (``None`` for a tombstone).

        Raises :class:`~backbone.errors.DataError` if the value is not JSON.
        """
        if self.value is None:
            return None
        try:
            return json.loads(self.value)
        except ValueError as exc:
            raise DataError(
                f"record {self.topic}/{self.partition}@{self.offset} is not JSON: {exc}"
            ) from exc

    def key_json(self) -> Any:
        """The key decoded as JSON, or as text if it is not JSON (``None`` if absent)."""
        if self.key is None:
            return None
        try:
            return json.loads(self.key)
        except ValueError:
            return self.key.decode("utf-8", "replace")

    def header(self, name: str) -> bytes | None:
        """The last header named ``name``, or ``None``."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the runtime hands every connector instance.

    ``base_dir`` is the config file's folder (resolve relative paths against it);
    ``state_dir`` is a folder private to this connector for local state, and
    :attr:`state` the helper that reads and durably writes JSON files in it.
    ``clock`` is the wall clock to read and sleep on (a
    :class:`~backbone.clock.SystemClock` unless a test injects another).

    ``http``: the connector's routes on the gateway's HTTP server
    (:class:`~backbone.httpapp.HttpRoutes`), ``None`` when the config has no
    ``http:`` section. ``push``: the push path of a source
    (:mod:`backbone.push`: hand records to the runtime and await the broker's
    acknowledgement), ``None`` for sinks and where the runtime offers none.
    """

    name: str
    base_dir: Path
    state_dir: Path
    logger: logging.Logger
    clock: Clock = field(default_factory=SystemClock)
    http: HttpRoutes | None = None
    push: Push | None = None

    def resolve(self, path: str | Path) -> Path:
        """``path`` made absolute against the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    @property
    def state(self) -> StateDir:
        """JSON state files in :attr:`state_dir`, written atomically and durably."""
        return StateDir(self.state_dir)


class Source(ABC, Generic[OptionsT]):
    """A source connector (see the module docstring for the call order).

    ``ingress = True`` marks a source that only receives pushed records
    (``context.push``, :mod:`backbone.push`) and never returns any from ``read()``:
    it keeps no position, so the runtime may run it in every gateway process.
    """

    ingress: ClassVar[bool] = False

    def __init__(self, options: OptionsT, context: ConnectorContext) -> None:
        self.options = options
        self.context = context

    @abstractmethod
    async def open(self, position: Any | None) -> None:
        """Called once before reading; resume strictly after ``position``."""

    @abstractmethod
    async def read(self) -> list[SourceRecord]:
        """Return the next records (possibly none); return within a second or two."""

    async def ack(self, position: Any) -> None:
        """Everything up to ``position`` is durable in the broker. Optional."""

    async def check(self) -> None:
        """Live check for ``backbone validate --check``: raise if misconfigured."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources; idempotent."""


class Sink(ABC, Generic[OptionsT]):
    """A sink connector (see the module docstring for the call order).

    ``batch_size`` and ``batch_wait`` (read by the runtime after ``open()``) shape the
    batches ``write`` gets: at most ``batch_size`` records (default
    ``runtime.max_batch``), and when fewer are there, the runtime waits up to
    ``batch_wait`` seconds for more before calling ``write`` (default 0: whatever
    one poll returned). A sink that sends one request per batch (an HTTP endpoint
    taking a JSON array) sets them from its options.
    """

    batch_size: int | None = None
    batch_wait: float = 0.0

    def __init__(self, options: OptionsT, context: ConnectorContext) -> None:
        self.options = options
        self.context = context

    @abstractmethod
    async def open(self) -> None:
        """Called once before the first write."""

    @abstractmethod
    async def write(self, records: Sequence[SinkRecord]) -> None:
        """Durably write the whole batch, or raise (see the module docstring)."""

    async def precommit(
        self, offsets: Mapping[TopicPartition, int]
    ) -> Mapping[TopicPartition, int]:
        """Which offsets may be committed now (as Kafka Connect's ``SinkTask.preCommit``).

        Called by the runner before every commit, and at least once a second while
        written records are not committed yet. ``offsets`` maps each partition the
        sink holds records of to the offset after the last record whose ``write``
        returned. Return, per partition, the offset after the last record that is
        durable in the target (never more than given; a partition left out is not
        committed). Default: ``offsets`` -- ``write`` returning means durable. A sink
        that stages records returns less; it may also finish staged work here (close
        a file whose time is up).
        """
        return offsets

    async def flush(self, partitions: Collection[TopicPartition]) -> None:
        """Make everything written for ``partitions`` durable now.

        Called when the runner stops and before a rebalance takes ``partitions``
        away; the runner then calls :meth:`precommit`, which must cover every record
        written for them, and commits. Default: nothing to do.
        """

    async def check(self) -> None:
        """Live check for ``backbone validate --check``: raise if misconfigured."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources; idempotent."""


@dataclass(frozen=True)
class ConnectorKind:
    """A connector kind as registered under the entry-point group ``backbone.connectors``.

    ``name`` is the YAML ``type``. A kind offers a source, a sink, or both; each
    side has its own options model. ``example`` is a YAML snippet shown by
    ``backbone connectors NAME``.
    """

    name: str
    summary: str
    source: type[Source[Any]] | None = None
    source_options: type[ConnectorOptions] | None = None
    sink: type[Sink[Any]] | None = None
    sink_options: type[ConnectorOptions] | None = None
    example: str = ""

    RESERVED: ClassVar[frozenset[str]] = RESERVED_OPTIONS
