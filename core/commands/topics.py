"""``backbone topics list|describe|create|delete``."""

from __future__ import annotations

from pathlib import Path

import typer

from backbone.commands.common import (
    BOOTSTRAP_OPTION,
    CONFIG_OPTION,
    DEBUG_OPTION,
    JSON_OPTION,
    LOG_FORMAT_OPTION,
    QUIET_LOG_LEVEL_OPTION,
    LogFormat,
    LogLevel,
    UsageError,
    echo_json,
    load,
    run,
    size_text,
    table,
)

app = typer.Typer(
    name="topics",
    help="List, describe, create and delete topics.",
    no_args_is_help=True,
)


def _config_pairs(pairs: list[str]) -> dict[str, str]:
    from backbone.fields import kafka_number

    configs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--topic-config expects KEY=VALUE (got {pair!r})")
        try:
            configs[key] = str(kafka_number(key, value))
        except ValueError as exc:
            raise UsageError(f"--topic-config {key}: {exc}") from None
    return configs


@app.command("list")
def list_topics(
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    internal: bool = typer.Option(
        False, "--internal", help="Also list internal topics (names starting with '_')."
    ),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Every topic with its partitions, records and size on disk."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            topics = await cluster.topics(internal=internal)
        if as_json:
            echo_json(topics)
            return
        table(
            ["TOPIC", "PARTITIONS", "RECORDS", "SIZE"],
            [(t.name, len(t.partitions), t.records, size_text(t.size_bytes)) for t in topics],
        )

    run(body, debug=debug, log_level=log_level, log_format=log_format)


@app.command()
def describe(
    topic: str = typer.Argument(..., help="The topic."),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    all_configs: bool = typer.Option(
        False, "--all-configs", help="Show every config, not only the topic's own settings."
    ),
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Partitions (leader, start and end offsets, records, size) and configs of TOPIC."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            (view,) = await cluster.topics([topic], configs=True)
        if as_json:
            echo_json(view)
            return
        typer.echo(
            f"topic {view.name}: {len(view.partitions)} partition(s), {view.records} record(s)"
            + (f", {size_text(view.size_bytes)} on disk" if view.size_bytes is not None else "")
        )
        table(
            ["PARTITION", "LEADER", "START", "END", "RECORDS", "SIZE"],
            [
                (
                    p.partition,
                    p.leader,
                    p.start_offset,
                    p.end_offset,
                    p.records,
                    size_text(p.size_bytes),
                )
                for p in view.partitions
            ],
        )
        shown = [c for c in view.configs if all_configs or not c.default]
        typer.echo("")
        if not shown:
            typer.echo("configs: broker defaults (--all-configs shows them)")
            return
        table(
            ["CONFIG", "VALUE", "SOURCE"],
            [(c.name, c.value, "default" if c.default else "topic") for c in shown],
        )

    run(body, debug=debug, log_level=log_level, log_format=log_format)


@app.command()
def create(
    topic: str = typer.Argument(..., help="The topic to create."),
    partitions: int = typer.Option(1, "--partitions", "-p", min=1, help="Number of partitions."),
    replication_factor: int = typer.Option(
        1, "--replication-factor", "-r", min=-1, help="Replicas (-1: the cluster's default)."
    ),
    entries: list[str] = typer.Option(
        [],
        "--topic-config",
        help="A topic config KEY=VALUE (repeatable), e.g. retention.ms=7d, segment.bytes=64MiB.",
    ),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Create TOPIC."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        configs = _config_pairs(entries)
        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            await cluster.create_topic(
                topic,
                partitions=partitions,
                replication_factor=replication_factor,
                configs=configs,
            )
        typer.echo(f"created topic {topic} ({partitions} partition(s))")

    run(body, debug=debug, log_level=log_level, log_format=log_format)


@app.command()
def delete(
    topic: str = typer.Argument(..., help="The topic to delete, with all its records."),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Delete TOPIC and its records (committed offsets on it are dropped too)."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            await cluster.delete_topic(topic)
        typer.echo(f"deleted topic {topic}")

    run(body, debug=debug, log_level=log_level, log_format=log_format)
