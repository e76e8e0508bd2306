"""ETL migration, measured: the nightly full reload next to the Backbone stream.

    python demo.py

1. creates ``data/shop.db`` with 1,000 orders (SQLite) and runs the old nightly job
   (``before/etl_nightly.py``) once, timing it;
2. starts ``backbone run backbone.yaml`` and waits until the reporting database holds
   the 1,000 orders (the sql source's initial snapshot);
3. inserts, updates and deletes orders one at a time and prints how long each takes
   to show up in the reporting database, next to when the old job would copy it;
4. checks the reporting table equals the shop's, stops the gateway (Ctrl-C drains it)
   and writes the figures to ``data/result.json``.

Environment: ``REPORTING_URL`` (default ``sqlite:///data/reporting.db``; any SQLAlchemy
URL, e.g. PostgreSQL), ``BROKER_PORT`` (default 19101), ``SUMMARY_CRON`` (default
``5 0 * * *``; with ``"* * * * *"`` the script also waits for the first daily summary).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SHOP_URL = f"sqlite:///{DATA / 'shop.db'}"
REPORTING_URL = os.environ.get("REPORTING_URL", f"sqlite:///{DATA / 'reporting.db'}")
ORDERS = 1000
CHANGES = 10  # of each kind
sys.path.insert(0, str(HERE / "before"))
from etl_nightly import reload  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def orders(engine: sa.Engine, table: str = "orders") -> dict[int, tuple[str, Decimal]]:
    with engine.connect() as db:
        try:
            rows = db.execute(sa.text(f"SELECT id, customer, amount FROM {table}")).all()
        except sa.exc.DBAPIError:
            return {}  # not created yet
    return {int(r.id): (r.customer, Decimal(str(r.amount)).quantize(Decimal("0.01"))) for r in rows}


def reset() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir()
    reporting = sa.create_engine(REPORTING_URL)
    with reporting.begin() as db:
        for table in ("orders", "orders_nightly", "daily_summary"):
            db.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    reporting.dispose()
    shop = sa.create_engine(SHOP_URL)
    rng = random.Random(7)
    with shop.begin() as db:
        db.execute(
            sa.text(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "customer TEXT NOT NULL, amount NUMERIC(10, 2), "
                "updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )
        )
        db.execute(
            sa.text("INSERT INTO orders (customer, amount) VALUES (:customer, :amount)"),
            [
                {
                    "customer": f"customer-{rng.randrange(200)}",
                    "amount": rng.randrange(500, 50000) / 100,
                }
                for _ in range(ORDERS)
            ],
        )
    shop.dispose()


def next_night(now: dt.datetime) -> dt.timedelta:
    run = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if run <= now:
        run += dt.timedelta(days=1)
    return run - now


def wait_for(check, what: str, within: float = 60.0) -> float:  # type: ignore[no-untyped-def]
    """Poll ``check()`` every 10 ms until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise SystemExit(f"gave up after {within:.0f} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def main() -> None:
    reset()
    shop, reporting = sa.create_engine(SHOP_URL), sa.create_engine(REPORTING_URL)
    say(f"shop: {ORDERS} orders in data/shop.db; reporting: {reporting.url.render_as_string()}")

    copied, seconds = reload(SHOP_URL, REPORTING_URL)
    wait_old = next_night(dt.datetime.now())
    say(f"before: the nightly job copied {copied} orders in {seconds:.2f} s (full reload);")
    say(f"        a change made now reaches the reports at 02:00, in {str(wait_old).split('.')[0]}")

    log = (DATA / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "backbone", "run", "backbone.yaml"],
        cwd=HERE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    result: dict[str, object] = {"orders": ORDERS, "old_job_seconds": round(seconds, 3)}
    try:
        started = wait_for(lambda: len(orders(reporting)) == ORDERS, "the initial snapshot", 120)
        say(
            f"after:  backbone run backbone.yaml: {ORDERS} orders in the reporting database "
            f"after {started:.1f} s (initial snapshot)"
        )
        latencies: dict[str, list[float]] = {"insert": [], "update": [], "delete": []}
        rng = random.Random(11)
        for n in range(CHANGES):
            with shop.begin() as db:
                new = db.execute(
                    sa.text("INSERT INTO orders (customer, amount) VALUES (:c, :a) RETURNING id"),
                    {"c": f"customer-new-{n}", "a": 19.99 + n},
                ).scalar_one()
            latencies["insert"].append(
                wait_for(lambda n=new: n in orders(reporting), f"insert of order {new}")
            )
            target = rng.randrange(1, ORDERS + 1)
            amount = Decimal(rng.randrange(100, 99999)) / 100
            with shop.begin() as db:
                db.execute(
                    sa.text(
                        "UPDATE orders SET amount = :a, updated_at = CURRENT_TIMESTAMP "
                        "WHERE id = :id"
                    ),
                    {"a": float(amount), "id": target},
                )
            latencies["update"].append(
                wait_for(
                    lambda t=target, a=amount: orders(reporting).get(t, ("", None))[1] == a,
                    f"update of order {target}",
                )
            )
            gone = rng.randrange(1, ORDERS + 1)
            with shop.begin() as db:
                db.execute(sa.text("DELETE FROM orders WHERE id = :id"), {"id": gone})
            latencies["delete"].append(
                wait_for(lambda g=gone: g not in orders(reporting), f"delete of order {gone}")
            )
        for kind, values in latencies.items():
            median, most = statistics.median(values) * 1000, max(values) * 1000
            say(
                f"        {kind:6}: in the reports after median {median:.0f} ms, "
                f"max {most:.0f} ms ({len(values)} changes)"
            )
            result[f"{kind}_ms"] = {
                "median": round(statistics.median(values) * 1000),
                "max": round(max(values) * 1000),
            }
        same = orders(shop) == orders(reporting)
        say(f"        reporting matches the shop: {same} ({len(orders(shop))} orders)")
        result["matches"] = same
        result["shop_orders"] = len(orders(shop))
        if os.environ.get("SUMMARY_CRON") == "* * * * *":
            wait_for(lambda: summaries(reporting), "the daily summary (cron every minute)", 90)
            result["summary"] = summaries(reporting)[0]
            say(f"        daily summary (schedule source): {result['summary']}")
        else:
            say("        the daily summary runs at 00:05 (schedule source daily-summary)")
    finally:
        gateway.send_signal(signal.SIGINT)
        code = gateway.wait(60)
        log.close()
    result["gateway_exit"] = code
    (DATA / "result.json").write_text(json.dumps(result, indent=2, default=str))
    say(f"gateway stopped (exit {code}); figures in data/result.json")
    shop.dispose()
    reporting.dispose()


def summaries(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as db:
        try:
            rows = db.execute(sa.text("SELECT day, orders, revenue FROM daily_summary")).all()
        except sa.exc.DBAPIError:
            return []
    return [dict(r._mapping) for r in rows]


if __name__ == "__main__":
    main()
