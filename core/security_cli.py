"""``backbone users`` and ``backbone certs``: the command line of the security features.

``users add|list|delete NAME --config FILE`` manage the SCRAM users of the config's
broker (:mod:`backbone.users`: the running broker through Kafka's API, or the
users file of a stopped gateway). ``certs create`` makes a local CA and certificates
for trying TLS (:mod:`backbone.certs`). Registered on the main app by
:mod:`backbone.cli`; errors become exit codes there (:func:`backbone.cli._fail`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

if TYPE_CHECKING:
    from backbone.users import UserInfo, Users

__all__ = ["certs_app", "users_app"]

T = TypeVar("T")

users_app = typer.Typer(
    help="SCRAM users of the broker (SASL PLAIN and SCRAM-SHA-256/512).",
    no_args_is_help=True,
)
certs_app = typer.Typer(help="A local CA and certificates for trying TLS.", no_args_is_help=True)

CONFIG_OPTION = typer.Option(..., "--config", "-c", help="The gateway's config file.")
MECHANISM_OPTION = typer.Option(
    None,
    "--mechanism",
    "-m",
    help="SCRAM-SHA-512 or SCRAM-SHA-256; repeat for both (add: default SCRAM-SHA-512 and "
    "SCRAM-SHA-256; delete: default all).",
)


def _run(body: Callable[[], Awaitable[T]], debug: bool) -> T:
    from backbone.cli import _fail
    from backbone.commands.common import setup_logging

    setup_logging(debug)
    try:
        return asyncio.run(_await(body))
    except typer.Exit:
        raise
    except Exception as exc:
        raise _fail(exc, debug) from None


async def _await(body: Callable[[], Awaitable[T]]) -> T:
    return await body()


async def _with_users(config_path: Path, action: Callable[[Users], Awaitable[T]]) -> T:
    from backbone.config import load_config
    from backbone.registry import Registry
    from backbone.users import open_users

    config = load_config(config_path, Registry.from_entry_points())
    users = await open_users(config)
    try:
        return await action(users)
    finally:
        await users.close()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.readline()
        password = text[:-1] if text.endswith("\n") else text
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise typer.BadParameter("the password is empty", param_hint="password")
    return password


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="The user name."),
    config: Path = CONFIG_OPTION,
    mechanism: list[str] | None = MECHANISM_OPTION,
    iterations: int = typer.Option(4096, "--iterations", help="PBKDF2 iterations (4096-16384)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    """Add a user (or set its password): salted credentials only, never the password."""
    mechanisms = mechanism or ["SCRAM-SHA-512", "SCRAM-SHA-256"]
    password = _password(password_stdin)

    async def add(users: Users) -> str:
        await users.add(name, password, mechanisms, iterations)
        return users.where

    where = _run(lambda: _with_users(config, add), debug)
    typer.echo(f"user {name} ({', '.join(mechanisms)}, {iterations} iterations) saved in {where}")


@users_app.command("list")
def users_list(
    config: Path = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    """List the users and their SCRAM mechanisms."""

    async def listing(users: Users) -> list[UserInfo]:
        return await users.users()

    found = _run(lambda: _with_users(config, listing), debug)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": u.name,
                        "credentials": [
                            {"mechanism": m, "iterations": i} for m, i in u.credentials
                        ],
                    }
                    for u in found
                ],
                indent=2,
            )
        )
        return
    for user in found:
        mechanisms = ", ".join(f"{m} ({i})" for m, i in user.credentials)
        typer.echo(f"{user.name}  {mechanisms}")


@users_app.command("delete")
def users_delete(
    name: str = typer.Argument(..., help="The user name."),
    config: Path = CONFIG_OPTION,
    mechanism: list[str] | None = MECHANISM_OPTION,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    """Delete a user's credentials (all of them unless --mechanism says which)."""

    async def delete(users: Users) -> tuple[list[str], str]:
        return await users.delete(name, mechanism or None), users.where

    deleted, where = _run(lambda: _with_users(config, delete), debug)
    typer.echo(f"user {name}: {', '.join(deleted)} deleted from {where}")


@certs_app.command("create")
def certs_create(
    out: Path = typer.Option(Path("certs"), "--out", "-o", help="Folder to write the files to."),
    host: list[str] | None = typer.Option(
        None,
        "--host",
        help="Host name or IP address clients connect to (repeat; default localhost and "
        "127.0.0.1).",
    ),
    client: list[str] | None = typer.Option(
        None, "--client", help="Also make a client certificate CN=NAME for mutual TLS (repeat)."
    ),
    days: int = typer.Option(825, "--days", min=1, help="Validity of the certificates."),
) -> None:
    """Make ca.pem/ca.key, server.pem/server.key (and NAME.pem/NAME.key per --client).

    An existing ca.pem/ca.key in the folder is reused, so certificates made later
    chain to the same CA. For trying TLS; use your organisation's CA in production.
    """
    from backbone.certs import create_files

    written = create_files(out, host or ["localhost", "127.0.0.1"], client or [], days)
    for path in written:
        typer.echo(str(path))
