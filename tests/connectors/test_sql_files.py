"""A missing SQLite file: the live check and the source never create it; the sink only
with ``auto_create``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backbone import FatalError
from tests.connectors.test_sql_support import rows, sink, sink_record, source

pytestmark = pytest.mark.timeout(60)

BACKBONE = Path(sys.executable).parent / "backbone"


async def test_source_check_and_open_refuse_a_missing_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    src = source(f"sqlite:///{db}", tmp_path, table="orders", mode="bulk")
    expected = (
        f"url: SQLite database file {db} does not exist; check the path (a relative path "
        "starts at the config file's folder)"
    )
    with pytest.raises(FatalError) as at_check:
        await src.check()
    with pytest.raises(FatalError) as at_open:
        await src.open(None)
    await src.close()
    assert str(at_check.value) == expected
    assert str(at_open.value) == expected
    assert not db.exists()


async def test_source_resolves_a_relative_file_against_the_config_folder(tmp_path: Path) -> None:
    src = source("sqlite:///data/shop.db", tmp_path, table="orders", mode="bulk")
    with pytest.raises(FatalError) as caught:
        await src.check()
    assert str(caught.value).startswith(
        f"url: SQLite database file {tmp_path / 'data' / 'shop.db'} does not exist; "
    )
    assert not (tmp_path / "data").exists()


async def test_sink_without_auto_create_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    out = sink(f"sqlite:///{db}", tmp_path, table="t")
    expected = (
        f"url: SQLite database file {db} does not exist; create it (with the table) or "
        "set auto_create: true"
    )
    with pytest.raises(FatalError) as at_check:
        await out.check()
    with pytest.raises(FatalError) as at_open:
        await out.open()
    await out.close()
    assert str(at_check.value) == expected
    assert str(at_open.value) == expected
    assert not db.exists()


async def test_sink_with_auto_create_checks_without_creating_then_creates_at_open(
    tmp_path: Path,
) -> None:
    db = tmp_path / "new.db"
    out = sink(f"sqlite:///{db}", tmp_path, table="t", auto_create=True)
    await out.check()
    assert not db.exists()
    await out.open()
    try:
        await out.write([sink_record({"id": 1, "name": "ann"}, {"id": 1})])
    finally:
        await out.close()
    assert rows(f"sqlite:///{db}", "SELECT id, name FROM t") == [(1, "ann")]


async def test_sink_with_auto_create_in_a_missing_folder_is_fatal(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "new.db"
    out = sink(f"sqlite:///{db}", tmp_path, table="t", auto_create=True)
    expected = f"url: folder {db.parent} of SQLite database file {db} does not exist"
    with pytest.raises(FatalError) as at_check:
        await out.check()
    with pytest.raises(FatalError) as at_open:
        await out.open()
    await out.close()
    assert str(at_check.value) == expected
    assert str(at_open.value) == expected


async def test_in_memory_sqlite_is_not_a_file(tmp_path: Path) -> None:
    out = sink("sqlite://", tmp_path, table="t", auto_create=True)
    await out.check()
    src = source("sqlite:///:memory:", tmp_path, table="orders", mode="bulk")
    with pytest.raises(FatalError) as caught:
        await src.check()
    assert str(caught.value).startswith("table: table 'orders' does not exist in sqlite:///")


def test_validate_check_reports_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "sources:\n"
        "  orders-db: {type: sql, topic: shop.orders, url: 'sqlite:///shop.db', "
        "table: orders, mode: bulk}\n"
        "sinks:\n"
        "  warehouse: {type: sql, topics: [shop.orders], url: 'sqlite:///warehouse.db', "
        "table: orders}\n"
    )
    done = subprocess.run(
        [str(BACKBONE), "validate", "--check", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{config}: sources.orders-db: check failed: url: SQLite database file "
        f"{tmp_path / 'shop.db'} does not exist; check the path (a relative path starts at "
        "the config file's folder)",
        f"{config}: sinks.warehouse: check failed: url: SQLite database file "
        f"{tmp_path / 'warehouse.db'} does not exist; create it (with the table) or set "
        "auto_create: true",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.yaml"]


async def test_a_missing_postgresql_driver_names_the_extra(tmp_path: Path) -> None:
    src = source("postgresql+psycopg2://app@127.0.0.1:1/db", tmp_path, table="t", mode="bulk")
    with pytest.raises(FatalError) as info:
        await src.open(None)
    assert str(info.value) == (
        "cannot use url postgresql+psycopg2://app@127.0.0.1:1/db: No module named 'psycopg2'; "
        "the PostgreSQL driver is not installed: pip install 'backbone[postgres]' installs "
        "psycopg 3 (urls postgresql+psycopg://...)"
    )
