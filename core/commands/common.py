"""What every operator command shares: ``--config``/``--bootstrap``, errors, output.

Each command module builds its typer commands with these options, runs its async
body through :func:`run` (which maps errors to exit codes: 2 for config and usage
errors, 1 for everything else, tracebacks only with ``--debug``) and prints
tables with :func:`table`. Output meant for programs is ``--json``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel

from backbone.errors import BackboneError, ConfigError
from backbone.settings import Config

if TYPE_CHECKING:
    from backbone.registry import Registry

__all__ = [
    "BOOTSTRAP_OPTION",
    "CONFIG_OPTION",
    "DEBUG_OPTION",
    "JSON_OPTION",
    "LOG_FORMAT_OPTION",
    "LOG_LEVEL_OPTION",
    "QUIET_LOG_LEVEL_OPTION",
    "LogFormat",
    "LogLevel",
    "UsageError",
    "echo_json",
    "load",
    "load_gateway",
    "parse_datetime",
    "run",
    "setup_logging",
    "table",
]

logger = logging.getLogger("backbone.cli")

T = TypeVar("T")

CONFIG_OPTION = typer.Option(
    None,
    "--config",
    "-c",
    help="The gateway's config file: its broker (the running one, or the embedded broker "
    "started on its data directory for this command).",
)
BOOTSTRAP_OPTION = typer.Option(
    None,
    "--bootstrap",
    "-b",
    help="HOST:PORT[,HOST:PORT] of a Kafka cluster (instead of --config).",
)
DEBUG_OPTION = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")


class LogLevel(enum.StrEnum):
    """``--log-level`` (``backbone.broker.logging_setup.LOG_LEVELS``)."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"


class LogFormat(enum.StrEnum):
    """``--log-format`` (``backbone.broker.logging_setup.LOG_FORMATS``)."""

    text = "text"
    json = "json"


LOG_LEVEL_OPTION = typer.Option(
    "info", "--log-level", case_sensitive=False, help="Least severe log records written to stderr."
)
LOG_FORMAT_OPTION = typer.Option(
    "text",
    "--log-format",
    help="text lines, or one JSON object per line (time, level, logger, message, extra) "
    "for log shippers.",
)
QUIET_LOG_LEVEL_OPTION = typer.Option(
    "warning",
    "--log-level",
    case_sensitive=False,
    help="Least severe log records written to stderr.",
)


def setup_logging(
    debug: bool, log_level: LogLevel = LogLevel.info, log_format: LogFormat = LogFormat.text
) -> None:
    """Log to stderr (``backbone.broker.logging_setup``, shared with the broker's command
    line); aiokafka's own INFO chatter only with ``--debug``."""
    from backbone.broker.logging_setup import configure_logging

    configure_logging("DEBUG" if debug else log_level.value, log_format.value)
    if not debug:
        logging.getLogger("aiokafka").setLevel(
            logging.WARNING if log_level in (LogLevel.debug, LogLevel.info) else logging.ERROR
        )


JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


class UsageError(BackboneError):
    """The command line is wrong (exit code 2)."""


def load(config: Path | None, bootstrap: str | None, *, need_config: bool = False) -> Config | None:
    """The validated config of ``--config`` (``None`` without one); checks the pair."""
    if config is not None and bootstrap is not None:
        raise UsageError("give either --config or --bootstrap, not both")
    if config is None:
        if need_config:
            raise UsageError("this command needs --config FILE (the gateway's config)")
        if bootstrap is None:
            raise UsageError("give --config FILE or --bootstrap HOST:PORT")
        return None
    from backbone.config import load_config
    from backbone.registry import Registry

    return load_config(config, Registry.from_entry_points())


def load_gateway(config: Path) -> tuple[Config, Registry]:
    """The validated config of a command that runs connectors, and its registry."""
    from backbone.config import load_config
    from backbone.registry import Registry

    registry = Registry.from_entry_points()
    return load_config(config, registry), registry


def run(
    body: Callable[[], Awaitable[T]],
    *,
    debug: bool,
    log_level: LogLevel = LogLevel.warning,
    log_format: LogFormat = LogFormat.text,
) -> T:
    """Run ``body()`` on a fresh event loop; turn errors into messages and exit codes."""
    setup_logging(debug, log_level, log_format)
    try:
        return asyncio.run(_main(body))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(2) from None
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        if debug:
            logger.exception("backbone failed")
        else:
            from backbone.kafka_admin import describe_error

            message = str(exc) if isinstance(exc, BackboneError) else describe_error(exc)
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


async def _main(body: Callable[[], Awaitable[T]]) -> T:
    return await body()


def parse_datetime(text: str, option: str) -> dt.datetime:
    """An ISO-8601 date-time (no offset = UTC); :class:`UsageError` naming ``option``."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: expected an ISO-8601 date-time like 2024-05-01T12:00:00Z (got {text!r})"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print aligned columns (numbers right-aligned), ``-`` for ``None``."""
    cells = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    typer.echo(line(headers))
    for row in cells:
        typer.echo(line(row))


def echo_json(value: Any) -> None:
    """Print ``value`` (models, lists of models, plain data) as indented JSON."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def size_text(size: int | None) -> str | None:
    """``1.5 MiB`` style (``None`` stays ``None``)."""
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # pragma: no cover
