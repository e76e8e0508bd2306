"""Options models of the ``file`` source and sink (the YAML contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from backbone.sdk import ByteSize, ConnectorOptions, Duration

__all__ = ["ColumnType", "FileSinkOptions", "FileSourceOptions", "Rotate"]

ColumnType = Literal["string", "integer", "number", "boolean", "json"]

_CSV_ONLY = ("header", "delimiter", "columns", "types")


def _one_char(value: str) -> str:
    if len(value) != 1:
        raise ValueError(f"expected a single character (got {value!r})")
    return value


class FileSourceOptions(ConnectorOptions):
    """Options of the ``file`` source: files in a folder become records, one per line."""

    path: str
    """The folder to watch (relative to the config file). It must exist."""

    pattern: str = "*"
    """Glob matched against file names in ``path`` (not in sub-folders), e.g. ``*.csv``.
    Names starting with a dot are never read (write a file as ``.name`` and rename it
    when complete)."""

    format: Literal["lines", "jsonl", "csv"] = "lines"
    """``lines``: each line as raw bytes; ``jsonl``: each line is a JSON value (a line
    that is not JSON goes to the dead-letter topic); ``csv``: each row is a JSON object
    keyed by the header's column names. Blank lines are skipped in ``jsonl`` and
    ``csv``."""

    mode: Literal["spool", "tail"] = "spool"
    """``spool``: each complete file is read once, then moved to ``done_dir`` (or deleted)
    once all its records are acknowledged. ``tail``: files are followed as they grow,
    like ``tail -F``, through rotation (rename + new file) and truncation."""

    min_age: Duration = 0.0
    """Ignore files modified more recently than this (still being written), e.g. ``10s``."""

    key: str | None = None
    """The record key: ``filename`` (the file's name), or a field of the record
    (``jsonl`` objects, ``csv`` columns). Default: no key."""

    batch_size: int = Field(default=5000, ge=1)
    """Most records returned by one read."""

    header: bool = True
    """``csv``: the first row holds the column names."""

    delimiter: str = ","
    """``csv``: the field delimiter (one character; ``"\\t"`` for TSV)."""

    columns: list[str] | None = None
    """``csv``: the column names (required with ``header: false``; with a header, they
    replace its names)."""

    types: dict[str, ColumnType] = Field(default_factory=dict)
    """``csv``: column types, ``string`` (default), ``integer``, ``number``, ``boolean``
    (true/false/yes/no/1/0) or ``json``; an empty field becomes null. A value that does
    not convert sends the row to the dead-letter topic."""

    encoding: str = "utf-8"
    """Text encoding of ``csv`` files (``lines`` are passed as bytes; ``jsonl`` is UTF-8)."""

    done_dir: str | None = None
    """``spool``: where finished files go (default: ``done`` inside ``path``)."""

    on_done: Literal["move", "delete"] = "move"
    """``spool``: ``move`` finished files to ``done_dir``, or ``delete`` them."""

    error_dir: str | None = None
    """``spool``: where files that cannot be read at all go (default: ``error`` inside
    ``path``)."""

    initial: Literal["beginning", "end"] = "beginning"
    """``tail``, at the very first start: read the files already there from the
    ``beginning``, or only what is appended after the ``end``."""

    rescan: Duration = Field(default=5.0, gt=0)
    """How often the folder is listed again, besides the file-system events (a fallback
    when events are lost or the watch limit is reached)."""

    max_line: ByteSize = Field(default=1 << 20, gt=0)
    """Longest line read whole; a longer one goes to the dead-letter topic (its start as
    the value) and reading goes on after it."""

    event_type: str | None = None
    """The CloudEvents ``ce_type`` of the records (default ``backbone.file``)."""

    _check_delimiter = field_validator("delimiter")(_one_char)

    @model_validator(mode="after")
    def _consistent(self) -> FileSourceOptions:
        given = self.model_fields_set
        if self.format != "csv":
            wrong = [name for name in _CSV_ONLY if name in given]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to format: csv")
        elif not self.header and not self.columns:
            raise ValueError("format: csv with header: false needs columns (the names)")
        if self.mode == "tail":
            wrong = [n for n in ("done_dir", "on_done", "error_dir") if n in given]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to mode: spool")
        elif "initial" in given:
            raise ValueError("initial only applies to mode: tail")
        if self.format == "lines" and self.key not in (None, "filename"):
            raise ValueError(
                f"key: {self.key!r}: format: lines has no fields; use key: filename or no key"
            )
        for name in self.types:
            if self.columns is not None and name not in self.columns:
                raise ValueError(f"types names column {name!r}, which is not in columns")
        return self


class Rotate(ConnectorOptions):
    """When the file sink closes a file and starts the next one."""

    size: ByteSize | None = Field(default=64 << 20, gt=0)
    """Close a file once it holds this many bytes (it may end a little past it)."""

    records: int | None = Field(default=None, gt=0)
    """Close a file once it holds this many records."""

    interval: Duration | None = Field(default=600.0, gt=0)
    """Close a file once its records span this much time (record timestamps), and a
    file open this long even without new records."""


class FileSinkOptions(ConnectorOptions):
    """Options of the ``file`` sink: records become files ``<topic>-<partition>-<offset>``."""

    path: str
    """The folder files are written to (relative to the config file). It must exist."""

    format: Literal["jsonl", "csv", "raw"] = "jsonl"
    """``jsonl``: each value as one JSON line (a value that is not JSON goes to the
    dead-letter topic); ``csv``: each value (a JSON object) as a row of ``columns``;
    ``raw``: each value's bytes followed by ``separator``. Tombstones are skipped."""

    rotate: Rotate = Field(default_factory=Rotate)
    """When a file is closed and published: ``size``, ``records``, ``interval``."""

    columns: list[str] | None = None
    """``csv``: the fields written, in order (required for csv)."""

    header: bool = True
    """``csv``: write the column names as the first row of each file."""

    delimiter: str = ","
    """``csv``: the field delimiter (one character)."""

    separator: str = "\n"
    """``raw``: written after each value."""

    extension: str | None = None
    """File name extension (default: ``jsonl``, ``csv`` or ``raw``)."""

    _check_delimiter = field_validator("delimiter")(_one_char)

    @field_validator("extension")
    @classmethod
    def _plain_extension(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value.startswith(".")):
            raise ValueError(f"expected an extension like 'jsonl' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FileSinkOptions:
        given = self.model_fields_set
        if self.format == "csv":
            if not self.columns:
                raise ValueError("format: csv needs columns (the fields to write, in order)")
        else:
            wrong = [n for n in ("columns", "header", "delimiter") if n in given]
            if wrong:
                raise ValueError(f"{', '.join(wrong)} only apply to format: csv")
        if self.format != "raw" and "separator" in given:
            raise ValueError("separator only applies to format: raw")
        return self
