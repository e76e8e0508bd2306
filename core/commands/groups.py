"""``backbone groups list|describe|reset``."""

from __future__ import annotations

import datetime as dt
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
    parse_datetime,
    run,
    table,
)

app = typer.Typer(
    name="groups",
    help="Consumer groups: list, describe (lag per partition), reset offsets.",
    no_args_is_help=True,
)


@app.command("list")
def list_groups(
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Every consumer group: state, live members, topics and total lag."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            groups = await cluster.groups()
        if as_json:
            echo_json(groups)
            return
        table(
            ["GROUP", "STATE", "MEMBERS", "LAG", "TOPICS"],
            [(g.name, g.state, g.members, g.lag, ",".join(g.topics)) for g in groups],
        )

    run(body, debug=debug, log_level=log_level, log_format=log_format)


@app.command()
def describe(
    group: str = typer.Argument(..., help="The consumer group."),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Per partition: committed offset, end offset, lag and the member holding it."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect

        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            view = await cluster.group(group)
        if as_json:
            echo_json(view)
            return
        typer.echo(
            f"group {view.name}: {view.state}, {len(view.members)} member(s), lag {view.lag}"
        )
        table(
            ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
            [
                (p.topic, p.partition, p.committed, p.end_offset, p.lag, p.member)
                for p in view.partitions
            ],
        )
        if view.members:
            typer.echo("")
            table(
                ["MEMBER", "CLIENT", "HOST", "PARTITIONS"],
                [
                    (
                        m.member_id,
                        m.client_id,
                        m.host,
                        " ".join(
                            f"{t}[{','.join(map(str, ps))}]" for t, ps in m.assignment.items()
                        ),
                    )
                    for m in view.members
                ],
            )

    run(body, debug=debug, log_level=log_level, log_format=log_format)


def parse_target(text: str) -> str | int | dt.datetime:
    """``--to``: earliest, latest, an offset or an ISO-8601 date-time."""
    if text in ("earliest", "latest"):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return parse_datetime(text, "--to")
    except UsageError:
        raise UsageError(
            "--to: expected earliest, latest, an offset or an ISO-8601 date-time like "
            f"2024-05-01T12:00:00Z (got {text!r})"
        ) from None


@app.command()
def reset(
    group: str = typer.Argument(..., help="The consumer group (it must have no live members)."),
    topic: str = typer.Option(..., "--topic", "-t", help="The topic whose offsets move."),
    to: str = typer.Option(
        ...,
        "--to",
        help="earliest, latest, an offset (on every partition) or an ISO-8601 date-time "
        "(no offset = UTC): the first record at or after it.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the new offsets, change nothing."),
    config: Path | None = CONFIG_OPTION,
    bootstrap: str | None = BOOTSTRAP_OPTION,
    as_json: bool = JSON_OPTION,
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Move GROUP's committed offsets on TOPIC (refused while the group has live members)."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.target import connect, release_stopped_members

        where = parse_target(to)
        async with (
            connect(load(config, bootstrap), bootstrap) as target,
            KafkaAdmin(target.clients, target.data_dir) as cluster,
        ):
            await release_stopped_members(target, group)
            await cluster.require_idle(group)
            changes = await cluster.plan_reset(group, topic, where)
            if not dry_run:
                await cluster.reset_offsets(group, changes)
        if as_json:
            echo_json(changes)
        else:
            table(
                ["TOPIC", "PARTITION", "CURRENT", "NEW"],
                [(c.topic, c.partition, c.current, c.new) for c in changes],
            )
            if dry_run:
                typer.echo("dry run: nothing changed")
            else:
                typer.echo(f"group {group}: offsets of {topic} moved")

    run(body, debug=debug, log_level=log_level, log_format=log_format)
