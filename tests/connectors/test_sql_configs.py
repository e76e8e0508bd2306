"""Every configs/sql-*.yaml runs as documented: its setup SQL, then rows reach the sink."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from backbone.config import load_config
from backbone.testing import running, wait_until
from tests.connectors.test_sql_pipeline import registry
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("sql-*.yaml"))
MODES = {
    "sql-bulk.yaml",
    "sql-changelog.yaml",
    "sql-incrementing.yaml",
    "sql-snapshot-diff.yaml",
    "sql-timestamp-incrementing.yaml",
    "sql-timestamp.yaml",
}


def setup_sql(text: str) -> str:
    """The SQL in the config's header comment (between ''' and ''')."""
    comment = "\n".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    match = re.search(r"executescript\('''(.*?)'''\)", comment, re.S)
    assert match, "the config's header shows how to create the table"
    return match.group(1)


def test_there_is_one_config_per_mode() -> None:
    assert {path.name for path in CONFIGS} == MODES


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path: Path) -> None:
    config = load_config(path, registry())
    assert config.sources["orders-db"].type == "sql"


def warehouse(data: Path) -> list[tuple[object, ...]]:
    file = data / "warehouse.db"
    if not file.exists():
        return []
    with sqlite3.connect(file) as conn:
        try:
            return conn.execute("SELECT id, customer FROM orders ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []  # not created yet


def prepare(path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The config copied to tmp_path/configs (free broker port) and its data/shop.db set up."""
    text = path.read_text()
    folder = tmp_path / "configs"
    folder.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "shop.db") as conn:
        conn.executescript(setup_sql(text))
        if "timestamp" in path.name:
            # rows must be older than lag (5s) before the timestamp modes read them
            conn.execute("UPDATE orders SET updated_at = datetime('now', '-1 minute')")
    copy = folder / path.name
    shutil.copy(path, copy)
    copy.write_text(text.replace("127.0.0.1:9092", f"127.0.0.1:{free_port()}"))
    return copy, data


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
async def test_config_runs_and_copies_the_table(path: Path, tmp_path: Path) -> None:
    copy, data = prepare(path, tmp_path)
    async with running(copy, registry=registry()):
        await wait_until(lambda: warehouse(data) == [(1, "ann"), (2, "bob")], what="rows copied")
        if path.name == "sql-changelog.yaml":
            with sqlite3.connect(data / "shop.db") as conn:
                conn.execute("UPDATE orders SET customer = 'ANN' WHERE id = 1")
                conn.execute("DELETE FROM orders WHERE id = 2")
            await wait_until(lambda: warehouse(data) == [(1, "ANN")], what="changes copied")


@pytest.mark.parametrize("side", ["source", "sink"])
def test_every_option_is_documented_and_has_a_json_schema(side: str) -> None:
    from backbone.config import member_model
    from backbone.connectors.sql import CONNECTOR

    options = getattr(CONNECTOR, f"{side}_options")
    assert options is not None
    assert not set(options.model_fields) & CONNECTOR.RESERVED
    for name, field in options.model_fields.items():
        assert field.description, f"{side} option {name!r} has no description"
    schema = member_model(CONNECTOR, side).model_json_schema()
    assert set(options.model_fields) <= set(schema["properties"])
    assert schema["properties"]["url"]["format"] == "password"  # a secret, never printed
