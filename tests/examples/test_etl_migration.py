"""examples/etl-migration: the demo, run as its README says, against PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.examples.support import copy_example, run_script
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_etl_migration_catches_up_in_postgresql(tmp_path: Path, postgres_url: str) -> None:
    folder = copy_example("etl-migration", tmp_path)
    env = {
        "REPORTING_URL": postgres_url,
        "BROKER_PORT": str(free_port()),
        "SUMMARY_CRON": "* * * * *",  # the daily summary fires within the minute
    }
    result = run_script(folder, "demo.py", env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1].startswith("before: the nightly job copied 1000 orders in ")
    assert "reporting matches the shop: True" in result.stdout
    figures = json.loads((folder / "data" / "result.json").read_text())
    assert figures["matches"] is True and figures["gateway_exit"] == 0
    for kind in ("insert", "update", "delete"):
        assert figures[f"{kind}_ms"]["max"] >= figures[f"{kind}_ms"]["median"] > 0
    # the reporting database (PostgreSQL) holds exactly the shop's orders
    with sqlite3.connect(folder / "data" / "shop.db") as shop:
        expected = {
            i: (c, Decimal(str(a)).quantize(Decimal("0.01")))
            for i, c, a in shop.execute("SELECT id, customer, amount FROM orders")
        }
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as db:
            rows = db.execute(sa.text("SELECT id, customer, amount FROM orders")).all()
            nightly = db.execute(sa.text("SELECT count(*) FROM orders_nightly")).scalar_one()
            summary = db.execute(sa.text("SELECT day, orders FROM daily_summary")).all()
    finally:
        engine.dispose()
    got = {int(i): (c, Decimal(str(a)).quantize(Decimal("0.01"))) for i, c, a in rows}
    assert got == expected
    assert len(expected) == figures["shop_orders"] and 990 <= len(expected) <= 1010
    assert nightly == 1000  # the old job's copy, made before the changes
    assert len(summary) >= 1 and summary[0].orders == figures["summary"]["orders"]
