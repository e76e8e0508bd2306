"""The nightly ETL job Backbone replaces: copy the shop's ``orders`` table (SQLite)
into the reporting database by full reload (wipe, then copy every row).

    python3 etl_nightly.py [SHOP_URL] [REPORTING_URL]

It runs from cron at 02:00 (see ``crontab``); between two runs the reports are stale.
"""

from __future__ import annotations

import os
import sys
import time

import sqlalchemy as sa


def reload(shop_url: str, reporting_url: str) -> tuple[int, float]:
    """Copy every order; (rows copied, seconds taken)."""
    started = time.monotonic()
    shop, reporting = sa.create_engine(shop_url), sa.create_engine(reporting_url)
    with shop.connect() as src:
        rows = src.execute(sa.text("SELECT id, customer, amount, updated_at FROM orders")).all()
    with reporting.begin() as dst:
        dst.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS orders_nightly (id INTEGER PRIMARY KEY, "
                "customer TEXT, amount NUMERIC(10, 2), updated_at TEXT)"
            )
        )
        dst.execute(sa.text("DELETE FROM orders_nightly"))
        if rows:
            dst.execute(
                sa.text(
                    "INSERT INTO orders_nightly (id, customer, amount, updated_at) "
                    "VALUES (:id, :customer, :amount, :updated_at)"
                ),
                [{**row._mapping, "updated_at": str(row.updated_at)} for row in rows],
            )
    shop.dispose()
    reporting.dispose()
    return len(rows), time.monotonic() - started


if __name__ == "__main__":
    args = sys.argv[1:]
    shop_url = args[0] if args else os.environ.get("SHOP_URL", "sqlite:///data/shop.db")
    reporting_url = args[1] if len(args) > 1 else os.environ["REPORTING_URL"]
    count, seconds = reload(shop_url, reporting_url)
    print(f"copied {count} orders in {seconds:.2f} s")
