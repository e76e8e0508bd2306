"""The ``backbone`` command line (typer). Only this module turns errors into exit codes.

Exit codes: 0 success, 1 runtime failure, 2 config or usage error. Tracebacks are
hidden unless ``--debug`` is given (after the subcommand, like every option).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

import backbone
from backbone.commands.common import (
    DEBUG_OPTION,
    LOG_FORMAT_OPTION,
    LOG_LEVEL_OPTION,
    LogFormat,
    LogLevel,
    setup_logging,
)
from backbone.errors import BackboneError, ConfigError

app = typer.Typer(
    name="backbone",
    help="Backbone: an event backbone with an embedded Kafka-compatible broker.",
    no_args_is_help=True,
    add_completion=True,
)

logger = logging.getLogger("backbone.cli")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"backbone {backbone.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Backbone: an event backbone with an embedded Kafka-compatible broker."""


def _fail(exc: BaseException, debug: bool) -> typer.Exit:
    """Report ``exc`` on stderr and return the exit to raise (2 config, 1 otherwise)."""
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            typer.echo(problem, err=True)
        return typer.Exit(2)
    if debug:
        logger.exception("backbone failed")
    else:
        typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _registry() -> Any:
    from backbone.registry import Registry

    return Registry.from_entry_points()


@app.command()
def validate(
    configs: list[Path] = typer.Argument(..., help="Config files to check."),
    check: bool = typer.Option(
        False, "--check", help="Also run each connector's live check (connects to systems)."
    ),
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Validate config files: print every problem (exit 2) or one "ok: FILE" line per file."""
    from backbone.config import load_config

    setup_logging(debug, log_level, log_format)

    registry = _registry()
    failed = False
    for path in configs:
        try:
            config = load_config(path, registry)
            if check:
                asyncio.run(_live_check(config, registry))
        except ConfigError as exc:
            failed = True
            for problem in exc.problems:
                typer.echo(problem, err=True)
            continue
        except Exception as exc:
            if debug:
                logger.exception("validate failed")
            failed = True
            typer.echo(f"{path}: {type(exc).__name__}: {exc}", err=True)
            continue
        typer.echo(f"ok: {path}")
    if failed:
        raise typer.Exit(2)


async def _broker_check(config: Any) -> str | None:
    """``broker.bootstrap``: connect and authenticate; the embedded broker: its TLS files
    load. One line saying what failed, or None."""
    from backbone.clients import KafkaClients
    from backbone.config import security_files

    settings = config.broker
    missing = [
        f"{where}: file {path} does not exist"
        for where, path in security_files(config)
        if not path.is_file()
    ]
    if missing:
        return "; ".join(missing)
    try:
        if settings.bootstrap is not None:
            await KafkaClients(",".join(settings.bootstrap), settings).check()
        elif settings.embedded is not None and settings.embedded.tls is not None:
            from backbone.broker.security.tls import server_context

            tls = settings.embedded.broker_options()["tls"]
            server_context(tls)
    except BackboneError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:
        return f"embedded.tls: {exc}"
    return None


async def _live_check(config: Any, registry: Any) -> None:
    """Build each connector and await its ``check()``; collect every failure."""
    from backbone.config import connector_options
    from backbone.connector import ConnectorContext
    from backbone.processor_worker import load_function

    problems = []
    problem = await _broker_check(config)
    if problem is not None:
        problems.append(f"{config.file}: broker: {problem}")
    for section, side in (("sources", "source"), ("sinks", "sink")):
        for name, entry in getattr(config, section).items():
            kind = registry.get(entry.type)
            impl = getattr(kind, side)
            options = connector_options(entry, getattr(kind, f"{side}_options"))
            context = ConnectorContext(
                name=name,
                base_dir=config.base_dir,
                state_dir=config.resolve(config.runtime.state_dir) / name,
                logger=logging.getLogger(f"backbone.connector.{name}"),
            )
            connector = impl(options, context)
            try:
                await connector.check()
            except Exception as exc:
                problems.append(f"{config.file}: {section}.{name}: check failed: {exc}")
    base = str(config.base_dir)
    if config.processors and base not in sys.path:
        sys.path.insert(0, base)
    for name, settings in config.processors.items():
        if settings.function:
            try:
                load_function(settings.function)
            except Exception as exc:
                problems.append(f"{config.file}: processors.{name}.function: {exc}")
    if problems:
        raise ConfigError(problems)


@app.command()
def run(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="The config file."),
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """Run the pipeline in CONFIG until SIGINT/SIGTERM (then drain and exit 0)."""
    from backbone.config import load_config
    from backbone.runner import Runner, tune_gc

    setup_logging(debug, log_level, log_format)
    try:
        registry = _registry()
        config = load_config(config_path, registry)
        tune_gc()
        asyncio.run(_run(Runner(config, registry)))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except asyncio.CancelledError:  # a second SIGINT/SIGTERM: stopped without draining
        typer.echo("stopped without draining (second signal)", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        raise _fail(exc, debug) from None


async def _run(runner: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            main.cancel()
            return
        logger.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await runner.run(stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@app.command()
def status(
    config_path: Path = typer.Option(..., "--config", help="The config file of the gateways."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="HOST:PORT of the broker (default: from the config)."
    ),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Show which gateway process runs each connector (read from the Kafka cluster)."""
    from backbone.config import load_config
    from backbone.status import cluster_status

    try:
        registry = _registry()
        config = load_config(config_path, registry)
        entries = asyncio.run(cluster_status(config, registry, bootstrap=bootstrap))
    except Exception as exc:
        raise _fail(exc, debug) from None
    if as_json:
        typer.echo(json.dumps(entries))
        return
    rows = [("CONNECTOR", "KIND", "WORKER", "STATE")]
    rows += [(e["connector"], e["kind"], e["worker"] or "-", e["state"]) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        typer.echo("  ".join([*padded, row[3]]))


def _unit(annotation: Any, metadata: typing.Sequence[Any] = ()) -> str | None:
    """``"duration"``/``"size"`` when the field is a :data:`Duration`/:data:`ByteSize`.

    Pydantic moves a field's top-level ``Annotated`` metadata into
    ``FieldInfo.metadata`` (the annotation is then plain ``float``), while an
    ``Optional[Duration]`` keeps it inside the annotation: both are searched.
    """
    from backbone.types import parse_duration, parse_size

    for item in metadata:
        func = getattr(item, "func", None)
        if func is parse_duration:
            return "duration"
        if func is parse_size:
            return "size"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)
        return _unit(args[0], args[1:])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unit(arg)
            if found is not None:
                return found
    return None


def _type_name(annotation: Any, metadata: typing.Sequence[Any] = ()) -> str:
    """How ``backbone connectors NAME`` writes a field's type (``duration``, ``str | null``)."""
    unit = _unit(None, metadata)
    if unit is not None:
        return unit
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        args = typing.get_args(annotation)
        return _type_name(args[0], args[1:])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(value: Any, annotation: Any, metadata: typing.Sequence[Any] = ()) -> str:
    """A default as users write it: ``5s`` for durations, ``64MiB`` for sizes, a nested
    model as a YAML flow mapping, anything else as its ``repr``."""
    from backbone.types import format_duration, format_size

    unit = _unit(annotation, metadata)
    if unit == "duration" and isinstance(value, int | float) and not isinstance(value, bool):
        return format_duration(value)
    if unit == "size" and isinstance(value, int) and not isinstance(value, bool):
        return format_size(value)
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        inner = ", ".join(
            f"{name}: {_default_text(getattr(value, name), f.annotation, f.metadata)}"
            for name, f in fields.items()
        )
        return "{" + inner + "}"
    return repr(value)


def _options_table(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "(required)"
        else:
            value = field.get_default(call_default_factory=True)
            default = _default_text(value, field.annotation, field.metadata)
        type_name = _type_name(field.annotation, field.metadata)
        rows.append((field.alias or name, type_name, default, field.description or ""))
    return rows


@app.command()
def connectors(
    name: str | None = typer.Argument(None, help="A connector kind to describe."),
    json_schema: bool = typer.Option(
        False, "--json-schema", help="Print the JSON schema (of NAME, or of the whole config)."
    ),
    debug: bool = DEBUG_OPTION,
    log_level: LogLevel = LOG_LEVEL_OPTION,
    log_format: LogFormat = LOG_FORMAT_OPTION,
) -> None:
    """List connector kinds, or show one kind's options and example."""
    from backbone.schema import build_config_model, member_model

    setup_logging(debug, log_level, log_format)

    registry = _registry()
    if name is None:
        if json_schema:
            typer.echo(json.dumps(build_config_model(registry).model_json_schema(), indent=2))
            return
        for kind in registry:
            sides = "/".join(s for s in ("source", "sink") if getattr(kind, s) is not None)
            typer.echo(f"{kind.name:<12} {sides:<12} {kind.summary}")
        for broken, reason in sorted(registry.broken.items()):
            typer.echo(f"{broken:<12} {'BROKEN':<12} {reason}")
        return
    try:
        kind = registry.get(name)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]} (known: {', '.join(registry.names())})", err=True)
        raise typer.Exit(2) from None
    if json_schema:
        schemas = {
            side: member_model(kind, side).model_json_schema()
            for side in ("source", "sink")
            if getattr(kind, side) is not None
        }
        typer.echo(json.dumps(schemas, indent=2))
        return
    typer.echo(f"{kind.name}: {kind.summary}")
    for side in ("source", "sink"):
        options = getattr(kind, f"{side}_options")
        if options is None:
            continue
        typer.echo(f"\n{side} options:")
        common = member_model(kind, side)
        for row in _options_table(common):
            opt, type_name, default, description = row
            typer.echo(f"  {opt:<20} {type_name:<24} default {default}")
            if description:
                typer.echo(f"      {description}")
    if kind.example:
        typer.echo("\nexample:\n" + kind.example.rstrip())


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def broker(ctx: typer.Context) -> None:
    """Run only the embedded Kafka-compatible broker until SIGINT/SIGTERM.

    Takes the options of ``python -m backbone.broker`` (one implementation:
    ``backbone broker --help`` lists them).
    """
    try:
        from backbone.broker.cli import main as broker_main
    except ImportError as exc:
        typer.echo(f"error: the embedded broker is not available in this build ({exc})", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(broker_main(ctx.args, prog="backbone broker"))


def _security_commands() -> None:
    from backbone.security_cli import certs_app, users_app

    app.add_typer(users_app, name="users")
    app.add_typer(certs_app, name="certs")


_security_commands()


def _register_commands() -> None:
    from backbone.commands import register

    register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
