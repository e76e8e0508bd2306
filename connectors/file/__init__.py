"""The ``file`` connector kind: files in a folder to topics, and topics to files.

Source (:class:`FileSource`, options :class:`FileSourceOptions`), watchdog-based:

- ``mode: spool`` -- a drop folder. Each file matching ``pattern`` (older than
  ``min_age``) is read once, oldest first, and moved to ``done_dir`` (or deleted,
  ``on_done: delete``) once every record of it was acknowledged by the broker; a
  file that cannot be read at all (permissions, a CSV header that does not decode)
  moves to ``error_dir``. Files dropped while Backbone was down are picked up at
  start: an initial listing, watchdog events, and a listing every ``rescan`` as a
  fallback when events are lost or watches run out.
- ``mode: tail`` -- files followed as they grow, like ``tail -F``: a rotation
  (rename + new file) finishes the old file (by its open descriptor) and starts the
  new one from its beginning; a truncation starts the file over.

``format``: ``lines`` (each line as bytes), ``jsonl`` (each line a JSON value; the
line's bytes are the record value), ``csv`` (a JSON object per row, ``header``,
``delimiter``, ``columns``, ``types``). Every record carries the headers
``file.name`` and ``file.line``; a malformed line becomes a record with ``error``
(the dead-letter topic, with those headers) and the rest of the file goes on.
Positions name each file by device and inode (plus its name) with the byte offset
and line number after the last record: a restart resumes exactly after the
acknowledged data (see :mod:`._source`).

Sink (:class:`FileSink`, options :class:`FileSinkOptions`): ``jsonl``, ``csv`` or
``raw`` files named ``<topic>-<partition>-<first offset>.<ext>``, written under a
temporary name and published (fsync, rename, folder fsync) when ``rotate`` says;
offsets are committed only for records in published files (see :mod:`._sink`).
"""

from __future__ import annotations

from backbone.sdk import ConnectorKind

from ._options import FileSinkOptions, FileSourceOptions, Rotate
from ._sink import FileSink, file_name
from ._source import FileSource

__all__ = [
    "CONNECTOR",
    "FileSink",
    "FileSinkOptions",
    "FileSource",
    "FileSourceOptions",
    "Rotate",
    "file_name",
]

EXAMPLE = """\
sources:
  partner-orders:
    type: file
    topic: orders.imported
    path: inbox/orders          # the drop folder
    pattern: "*.csv"
    format: csv
    types: {amount: number, quantity: integer}
    key: order_id
    mode: spool
    min_age: 10s                # files still being written are left alone
    done_dir: inbox/done
    dead_letter_topic: orders.rejected
  app-log:
    type: file
    topic: logs.app
    path: /var/log/myapp
    pattern: "app.log"
    mode: tail
sinks:
  archive:
    type: file
    topics: [orders.imported]
    path: archive
    format: jsonl
    rotate: {size: 64MiB, interval: 10m}
"""

CONNECTOR = ConnectorKind(
    name="file",
    summary="Files in a folder to topics (spool a drop folder, or tail growing files); "
    "topics to JSON-lines, CSV or raw files.",
    source=FileSource,
    source_options=FileSourceOptions,
    sink=FileSink,
    sink_options=FileSinkOptions,
    example=EXAMPLE,
)
