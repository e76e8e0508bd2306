"""The sql source on tables whose names need quoting (mixed case), against real databases."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.connectors.test_sql_support import execute, read_n, serial, source

pytestmark = pytest.mark.timeout(60)


def _trigger_ids(url: str) -> list[tuple[str, int]]:
    """(name, oid) of the changelog triggers; a reinstall gives new oids (PostgreSQL)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                rows = conn.exec_driver_sql(
                    "SELECT name, rowid FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
                )
            else:
                rows = conn.exec_driver_sql(
                    "SELECT tgname, oid::int FROM pg_trigger "
                    "WHERE starts_with(tgname, 'backbone_changelog_') ORDER BY tgname"
                )
            return [(str(name), int(oid)) for name, oid in rows]
    finally:
        engine.dispose()


async def test_changelog_on_a_mixed_case_table_installs_its_triggers_once(
    url: str, tmp_path: Path
) -> None:
    execute(url, f'CREATE TABLE "OrderItems" ("Id" {serial(url)}, "Sku" TEXT NOT NULL)')
    execute(url, """INSERT INTO "OrderItems" ("Sku") VALUES ('a')""")
    options = {"table": "OrderItems", "mode": "changelog", "install_triggers": True}
    first = source(url, tmp_path, **options)
    await first.open(None)
    try:
        [snapshot] = await read_n(first, 1)
        execute(url, """INSERT INTO "OrderItems" ("Sku") VALUES ('b')""")
        [created] = await read_n(first, 1)
    finally:
        await first.close()
    installed = _trigger_ids(url)
    assert installed, "no changelog trigger was installed"
    again = source(url, tmp_path, **options)
    await again.open(created.position)
    try:
        execute(url, """UPDATE "OrderItems" SET "Sku" = 'c' WHERE "Id" = 1""")
        [updated] = await read_n(again, 1)
    finally:
        await again.close()
    assert _trigger_ids(url) == installed  # found by its quoted name: not dropped and recreated
    assert (snapshot.value["op"], snapshot.key, snapshot.value["after"]["Sku"]) == (
        "r",
        {"Id": 1},
        "a",
    )
    assert (created.value["op"], created.key, created.value["after"]["Sku"]) == (
        "c",
        {"Id": 2},
        "b",
    )
    assert (updated.value["op"], updated.key, updated.value["after"]["Sku"]) == (
        "u",
        {"Id": 1},
        "c",
    )
