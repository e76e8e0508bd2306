"""``backbone dlq list|show|redrive``: dead-lettered records and sending them back.

See :mod:`backbone.redrive` for what "redrive" does per connector role and why.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path

import typer

from backbone.commands.common import (
    DEBUG_OPTION,
    JSON_OPTION,
    LOG_FORMAT_OPTION,
    QUIET_LOG_LEVEL_OPTION,
    LogFormat,
    LogLevel,
    echo_json,
    load_gateway,
    run,
    table,
)

app = typer.Typer(
    name="dlq",
    help="Dead-lettered records: list, show with their errors, redrive.",
    no_args_is_help=True,
)

CONFIG_REQUIRED = typer.Option(..., "--config", "-c", help="The gateway's config file.")


def _short(value: object, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


@app.command("list")
def list_dead_letters(
    config: Path = CONFIG_REQUIRED,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Every connector with a dead-letter topic, and how many of its records wait there."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin, UnknownTopicError
        from backbone.redrive import dead_letters
        from backbone.target import connect

        loaded, _ = load_gateway(config)
        rows = []
        async with (
            connect(loaded, None) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            for section, role in (
                ("sources", "source"),
                ("sinks", "sink"),
                ("processors", "processor"),
            ):
                for name, entry in getattr(loaded, section).items():
                    if entry.dead_letter_topic is None:
                        continue
                    try:
                        pending = len(await dead_letters(cluster, loaded, name, limit=1 << 30))
                    except UnknownTopicError:
                        pending = 0  # not created yet: nothing was dead-lettered
                    rows.append(
                        {
                            "connector": name,
                            "role": role,
                            "topic": entry.dead_letter_topic,
                            "pending": pending,
                        }
                    )
        if as_json:
            echo_json(rows)
            return
        table(
            ["CONNECTOR", "ROLE", "TOPIC", "PENDING"],
            [(r["connector"], r["role"], r["topic"], r["pending"]) for r in rows],
        )

    run(body, debug=debug, log_level=log_level, log_format=log_format)


@app.command()
def show(
    name: str = typer.Argument(..., help="The connector."),
    config: Path = CONFIG_REQUIRED,
    include_all: bool = typer.Option(False, "--all", help="Also the records already redriven."),
    count: int = typer.Option(100, "-n", "--count", min=1, help="At most N records."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per record (record, error, original)."
    ),
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """The dead letters of connector NAME (pending ones unless --all), oldest first, with the
    error that sent each there and where it came from."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.redrive import dead_letters
        from backbone.target import connect

        loaded, _ = load_gateway(config)
        async with (
            connect(loaded, None) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            found = await dead_letters(cluster, loaded, name, pending=not include_all, limit=count)
        if as_json:
            for view in found:
                typer.echo(json.dumps(view.model_dump(mode="json"), ensure_ascii=False))
            return
        rows = []
        for view in found:
            record = view.record
            when = dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC)
            origin = (
                f"{view.original_topic}[{view.original_partition}]@{view.original_offset}"
                if view.original_topic
                else None
            )
            rows.append(
                (
                    f"{record.partition}@{record.offset}",
                    when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    f"{view.error_class}: {_short(view.error_message or '', 60)}",
                    origin,
                    _short(record.key) if record.key is not None else None,
                    _short(record.value),
                )
            )
        table(["DLQ", "TIME", "ERROR", "ORIGINAL", "KEY", "VALUE"], rows)

    run(body, debug=debug, log_level=log_level, log_format=log_format)


@app.command()
def redrive(
    name: str = typer.Argument(..., help="The connector whose dead letters go back."),
    config: Path = CONFIG_REQUIRED,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Send NAME's pending dead letters back through it (a sink writes them, a processor
    processes them, a source's are re-published to its topic) and report what failed again
    (exit 1 if any did: they are back on the dead-letter topic)."""

    async def body() -> None:
        import asyncio

        from backbone.commands.progress import Progress
        from backbone.redrive import redrive as run_redrive
        from backbone.target import connect
        from backbone.worker import Control

        loaded, registry = load_gateway(config)
        control = Control()
        loop = asyncio.get_running_loop()
        async with connect(loaded, None) as target:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, control.stop)
            try:
                bar: Progress | None = None

                def progress(done: int, total: int) -> None:
                    nonlocal bar
                    if bar is None:
                        bar = Progress(f"redrive {name}", total).__enter__()
                    bar.update(done)

                try:
                    result = await run_redrive(
                        target.clients, loaded, registry, name, control=control, progress=progress
                    )
                finally:
                    if bar is not None:
                        bar.__exit__(None, None, None)
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        if as_json:
            echo_json(result)
        else:
            how = {
                "sink": "written through the sink",
                "processor": "processed again",
                "republish": "re-published to the source's topic",
            }[result.mode]
            typer.echo(
                f"redrive {name}: {result.records} record(s), {result.delivered} {how}, "
                f"{result.failed_again} failed again"
            )
            for error in result.errors:
                typer.echo(f"  failed again: {error}")
        if control.stopping:
            raise typer.Exit(130)
        if result.failed_again:
            raise typer.Exit(1)

    run(body, debug=debug, log_level=log_level, log_format=log_format)
