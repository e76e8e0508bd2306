"""The connector SDK: everything a connector author imports, in one place.

``from backbone.sdk import ...`` (the same names are re-exported by ``backbone``):

- the contract (:mod:`backbone.connector`, whose docstring states the call order
  and the rules for records): :class:`Source`, :class:`Sink`,
  :class:`ConnectorOptions` (base of a kind's options model), :class:`SourceRecord`,
  :class:`SinkRecord`, :data:`Header`, :class:`ConnectorContext`,
  :class:`ConnectorKind` (what the ``backbone.connectors`` entry point names),
  :class:`TopicPartition` (the keys of a sink's ``precommit`` offsets) and
  :data:`RESERVED_OPTIONS` (option names the runtime owns);
- the errors that tell the runtime what to do: :class:`RetriableError` (back off
  and retry), :class:`DataError` (this record goes to the dead-letter topic; a
  sink's way to reject a record), :class:`FatalError` (stop FAILED), their base
  :class:`ConnectorError`, and :class:`ContractError` (raised by the runtime when
  a connector breaks the contract);
- option value types: :data:`Duration` (``"5s"`` -> seconds) and :data:`ByteSize`
  (``"64MiB"`` -> bytes), with :func:`parse_duration`, :func:`parse_size`,
  :func:`format_duration`, :func:`format_size`;
- helpers every connector needs: :class:`Offload` (blocking calls in a thread,
  cancel-safe and serialized), :class:`StateDir` (durable JSON state beside the
  position; every connector has one as ``context.state``) and :class:`Clock`
  (wall-clock time and sleeps, ``context.clock``; :class:`SystemClock` in
  production, ``backbone.testing.ManualClock`` in tests);
- files that appear whole: :class:`StagedFile` (written under a temporary name,
  published by fsync + rename + folder fsync), :func:`move_file` (a durable move
  that never replaces a file) and :func:`fsync_dir`.

:mod:`backbone.testing` is the conformance suite to run against a connector.
"""

from __future__ import annotations

from backbone.clock import Clock, SystemClock
from backbone.connector import (
    RESERVED_OPTIONS,
    ConnectorContext,
    ConnectorKind,
    ConnectorOptions,
    Header,
    Sink,
    SinkRecord,
    Source,
    SourceRecord,
    TopicPartition,
)
from backbone.errors import (
    BackboneError,
    ConnectorError,
    ContractError,
    DataError,
    FatalError,
    RetriableError,
)
from backbone.files import StagedFile, fsync_dir, move_file
from backbone.offload import Offload
from backbone.state import StateDir
from backbone.types import (
    ByteSize,
    Duration,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

__all__ = [
    "RESERVED_OPTIONS",
    "BackboneError",
    "ByteSize",
    "Clock",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorKind",
    "ConnectorOptions",
    "ContractError",
    "DataError",
    "Duration",
    "FatalError",
    "Header",
    "Offload",
    "RetriableError",
    "Sink",
    "SinkRecord",
    "Source",
    "SourceRecord",
    "StagedFile",
    "StateDir",
    "SystemClock",
    "TopicPartition",
    "format_duration",
    "format_size",
    "fsync_dir",
    "move_file",
    "parse_duration",
    "parse_size",
]
