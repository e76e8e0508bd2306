"""``backbone replay CONFIG --sink NAME --from earliest|DATETIME [--to DATETIME]``.

See :mod:`backbone.replay` for what moves where. This module decides the mode:

- the gateway runs (its admin API on ``http.listen`` knows the sink): pause the
  sink through the admin API, move its group to ``--from``, resume it;
- the sink's group has live members but no admin API answers: refuse (a running
  consumer would overwrite the offsets);
- otherwise (the gateway is stopped): run only that sink here up to where it was
  (or ``--to``), with progress, then exit 0.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import typer

from backbone.commands.common import (
    DEBUG_OPTION,
    LOG_FORMAT_OPTION,
    QUIET_LOG_LEVEL_OPTION,
    LogFormat,
    LogLevel,
    UsageError,
    load_gateway,
    parse_datetime,
    run,
)

__all__ = ["replay"]


def replay(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="The gateway's config file."),
    sink: str = typer.Option(..., "--sink", "-s", help="The sink to replay into."),
    start: str = typer.Option(
        ...,
        "--from",
        help="earliest, or an ISO-8601 date-time (no offset = UTC): the first record at or "
        "after it.",
    ),
    to: str | None = typer.Option(
        None,
        "--to",
        help="Stop before the first record at or after this date-time (gateway stopped only); "
        "the sink then goes on where it was.",
    ),
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = QUIET_LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Deliver a sink's topics again from --from: with the gateway running, pause the sink
    through the admin API, move its consumer group and resume it; with the gateway stopped,
    run only that sink until it is back where it was (or at --to), then exit 0."""

    async def body() -> None:
        from backbone.kafka_admin import KafkaAdmin
        from backbone.replay import plan_replay
        from backbone.target import connect, release_stopped_members

        begin: str | dt.datetime = (
            "earliest" if start == "earliest" else parse_datetime(start, "--from")
        )
        until = parse_datetime(to, "--to") if to is not None else None
        config, registry = load_gateway(config_path)
        async with connect(config, None) as target:
            async with KafkaAdmin(target.clients, target.data_dir) as cluster:
                plan = await plan_replay(cluster, config, sink, begin, until)
                admin = await _gateway_admin(config, sink)
                if admin is None:
                    await release_stopped_members(target, plan.group)
                    await cluster.require_idle(plan.group)
            if admin is not None:
                if until is not None:
                    raise UsageError(
                        "--to needs the gateway stopped (the replay then runs the sink alone "
                        "up to --to); with the gateway running the sink goes on from --from "
                        "to the newest record"
                    )
                await _replay_running(admin, target, plan)
            else:
                await _replay_stopped(target, config, registry, plan, start)

    run(body, debug=debug, log_level=log_level, log_format=log_format)


async def _gateway_admin(config: Any, sink: str) -> Any | None:
    """An admin API client of the running gateway that has ``sink``, or ``None``."""
    from backbone.adminclient import AdminClient, AdminUnavailable

    if config.http is None:
        return None
    client = AdminClient.for_config(config)
    if client is None:
        return None
    try:
        await client.connector(sink)
    except AdminUnavailable:
        await client.close()
        return None
    return client


async def _replay_running(admin: Any, target: Any, plan: Any) -> None:
    from backbone.kafka_admin import KafkaAdmin, commit_offsets

    try:
        await admin.pause(plan.sink)
        typer.echo(f"sink {plan.sink}: paused", err=True)
        try:
            async with KafkaAdmin(target.clients, target.data_dir) as cluster:
                await cluster.wait_idle(plan.group, within=30.0)
            await commit_offsets(target.clients, plan.group, plan.begin)
            typer.echo(
                f"sink {plan.sink}: group {plan.group} moved back {plan.total} record(s)",
                err=True,
            )
        finally:
            await admin.resume(plan.sink)  # also when moving failed: never leave it paused
        typer.echo(f"sink {plan.sink}: resumed; it delivers its topics again from --from", err=True)
    finally:
        await admin.close()


async def _replay_stopped(target: Any, config: Any, registry: Any, plan: Any, start: str) -> None:
    from backbone.commands.progress import Progress
    from backbone.replay import replay_alone
    from backbone.worker import Control

    control = Control()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, control.stop)
    try:
        with Progress(f"replay {plan.sink}", plan.total) as progress:
            status = await replay_alone(
                target, config, registry, plan, control=control, progress=progress.update
            )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if control.stopping:
        typer.echo(
            f"replay {plan.sink}: stopped after {status.records_in} of {plan.total} record(s); "
            f"group {plan.group} stays where the replay got to",
            err=True,
        )
        raise typer.Exit(130)
    dead = f", {status.dead_lettered} dead-lettered" if status.dead_lettered else ""
    typer.echo(  # on stderr: a sink may write to standard output
        f"replayed {status.records_in} record(s) into sink {plan.sink} from {start}"
        f" ({status.records_out} written{dead}); group {plan.group} is back where it was",
        err=True,
    )
