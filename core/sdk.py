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
- fire times: :class:`Timetable` (5-field cron with crontab semantics, or an
  interval, in a time zone);
- files that appear whole: :class:`StagedFile` (written under a temporary name,
  published by fsync + rename + folder fsync), :func:`move_file` (a durable move
  that never replaces a file) and :func:`fsync_dir`;
- the push path and HTTP (the ``webhook``/``http``/``http_poll`` connectors use
  them; see each module): ``context.push`` (:class:`Push`, returning
  :class:`Delivery`: produce now, await the broker's acknowledgement),
  ``context.http`` (:class:`HttpRoutes`: routes on the gateway's HTTP server;
  raise :class:`HttpError` for a JSON error answer), :class:`DedupeWindow`
  (durable keys-seen window), webhook signatures (:class:`SignatureError`,
  :func:`verify_hmac`, :func:`verify_github`, :func:`verify_stripe`,
  :func:`verify_standard_webhook` and the matching signers), and
  :func:`json_pointer`, :func:`parse_retry_after`, :class:`Template`;
- JSON on the record path: :func:`json_loads` (orjson, exact beyond 64-bit
  integers, ``ValueError`` when it is not JSON) and :func:`maybe_json` (a cheap
  check that spares a decode that could only fail, e.g. for keys like ``key-5``);
  :func:`orjson_exact` checks a batch's documents at once, after which
  :func:`orjson.loads` decodes each as :func:`json_loads` would (when it succeeds);
  :class:`IdentityJSON` (a record identity given as its ``ce_id`` JSON text, for a
  source that writes it per batch).

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
from backbone.dedupe import DedupeWindow
from backbone.errors import (
    BackboneError,
    ConnectorError,
    ContractError,
    DataError,
    FatalError,
    RetriableError,
)
from backbone.events import IdentityJSON, maybe_json
from backbone.events import loads as json_loads
from backbone.files import StagedFile, fsync_dir, move_file
from backbone.httpapp import HttpError, HttpRoutes
from backbone.json_codec import orjson_exact
from backbone.offload import Offload
from backbone.push import Delivery, Push
from backbone.signatures import (
    SignatureError,
    hmac_signature,
    standard_webhook_key,
    standard_webhook_signature,
    stripe_signature,
    verify_github,
    verify_hmac,
    verify_standard_webhook,
    verify_stripe,
)
from backbone.state import StateDir
from backbone.timetable import Timetable
from backbone.types import (
    ByteSize,
    Duration,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)
from backbone.webtools import MISSING, Template, json_pointer, parse_retry_after

__all__ = [
    "MISSING",
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
    "DedupeWindow",
    "Delivery",
    "Duration",
    "FatalError",
    "Header",
    "HttpError",
    "HttpRoutes",
    "IdentityJSON",
    "Offload",
    "Push",
    "RetriableError",
    "SignatureError",
    "Sink",
    "SinkRecord",
    "Source",
    "SourceRecord",
    "StagedFile",
    "StateDir",
    "SystemClock",
    "Template",
    "Timetable",
    "TopicPartition",
    "format_duration",
    "format_size",
    "fsync_dir",
    "hmac_signature",
    "json_loads",
    "json_pointer",
    "maybe_json",
    "move_file",
    "orjson_exact",
    "parse_duration",
    "parse_retry_after",
    "parse_size",
    "standard_webhook_key",
    "standard_webhook_signature",
    "stripe_signature",
    "verify_github",
    "verify_hmac",
    "verify_standard_webhook",
    "verify_stripe",
]
