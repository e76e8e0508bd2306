"""The connector contract: what a source or a sink implements, and who calls what.

A *source* turns an outside system into records. The runner calls, in order:

- ``open(position)`` once. ``position`` is the last position the runtime saved for
  this connector (after the broker acknowledged every record up to it), or ``None``
  on the very first start: then the connector starts where its options say. A
  source resumes *strictly after* the position it is given.
- ``read()`` again and again. It returns a list of records (possibly empty) and
  must return regularly (say within a second or two) even when there is nothing
  new, so the runner can stop it; it never blocks forever. Each record carries
  the JSON-able ``position`` reached *after* that record.
- ``ack(position)`` whenever every record up to ``position`` is durable in the
  broker and the position was saved. Optional (e.g. archive a finished file).
- ``close()`` once; idempotent.

A *sink* writes records somewhere. The runner calls ``open()`` once,
``write(records)`` with a batch (from one or more partitions, in offset order
per partition) and ``close()`` once. ``write`` returns only after the whole batch
is durably written, or raises:

- :class:`~backbone.errors.RetriableError` -> the runner backs off and retries
  the same batch;
- :class:`~backbone.errors.DataError` -> nothing of the batch was written; the
  runner isolates the bad records (writes one at a time) and sends them to the
  dead-letter topic;
- :class:`~backbone.errors.FatalError` (or any other exception) -> the connector
  stops in state FAILED.

Blocking libraries stay inside the connector (``asyncio.to_thread``); the contract
itself is async. Each connector kind declares one pydantic options model (derive
from :class:`ConnectorOptions`) and registers a :class:`ConnectorKind` under the
entry-point group ``backbone.connectors``.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ConnectorContext",
    "ConnectorKind",
    "ConnectorOptions",
    "Header",
    "Sink",
    "SinkRecord",
    "Source",
    "SourceRecord",
]

Header = tuple[str, bytes]
"""A record header: a name and raw bytes."""


class ConnectorOptions(BaseModel):
    """Base of every connector kind's options model.

    Unknown keys are errors; field docstrings become the option descriptions shown
    by ``backbone connectors NAME`` and in the JSON schema. The runtime reserves
    these names for itself, so options models must not define them: ``type``,
    ``topic``, ``topics``, ``dead_letter_topic``, ``retry``, ``start``.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


OptionsT = TypeVar("OptionsT", bound=ConnectorOptions)


@dataclass(slots=True)
class SourceRecord:
    """One record produced by a source.

    ``value`` is any JSON-able object (serialized as JSON), ``bytes`` (written
    as is) or ``None`` (a tombstone). ``key`` likewise; keys carry the entity's
    identity so per-entity order holds and compaction works. ``position`` is the
    JSON-able source position reached after this record. ``topic`` overrides the
    connector's topic for this record; ``event_type`` becomes the CloudEvents
    ``ce_type`` header.

    ``identity``: what names this change for the CloudEvents ``ce_id`` (JSON-able),
    when the position does not: the runtime derives ``ce_id`` deterministically from
    ``identity`` if set, else from ``position`` -- so a source whose records can share
    one position (several changes in one read) sets an identity unique per change
    within the connector, and re-reading the same change repeats its ``ce_id``.

    ``error``: set it (to the reason) for input the source could not parse, with
    ``value`` holding the raw input (bytes or text) and ``position`` the position
    after it. The runner sends such a record to the connector's
    ``dead_letter_topic`` (headers ``backbone.error.*``) and moves on; without a
    dead-letter topic the source stops in state FAILED.
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
            from backbone.errors import DataError

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
    ``state_dir`` is a folder private to this connector for local state.
    """

    name: str
    base_dir: Path
    state_dir: Path
    logger: logging.Logger

    def resolve(self, path: str | Path) -> Path:
        """``path`` made absolute against the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()


class Source(ABC, Generic[OptionsT]):
    """A source connector (see the module docstring for the call order)."""

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
    """A sink connector (see the module docstring for the call order)."""

    def __init__(self, options: OptionsT, context: ConnectorContext) -> None:
        self.options = options
        self.context = context

    async def open(self) -> None:
        """Called once before the first write."""

    @abstractmethod
    async def write(self, records: Sequence[SinkRecord]) -> None:
        """Durably write the whole batch, or raise (see the module docstring)."""

    async def check(self) -> None:
        """Live check for ``backbone validate --check``: raise if misconfigured."""

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

    RESERVED: ClassVar[frozenset[str]] = frozenset(
        {"type", "topic", "topics", "dead_letter_topic", "retry", "start"}
    )
