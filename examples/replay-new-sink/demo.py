"""Replay into a new sink, checked: a week of history, a new archive, a repaired day.

    python demo.py

1. writes a week of orders to ``shop.orders`` with back-dated timestamps (60 a day on
   each of 3 partitions, the last day being yesterday), through the embedded broker;
2. runs ``backbone run backbone.yaml``: the new ``archive`` file sink (``start:
   earliest``) catches up, writing one file per partition and day; a day's file is
   published when the next day's first record arrives, and the last day's when the
   gateway stops;
3. deletes yesterday's files (as if they were lost) and runs ``backbone replay
   backbone.yaml --sink archive --from <yesterday>T00:00:00Z``: with the gateway
   stopped, it moves the sink's group to the first record of yesterday, runs only
   that sink until it is back where it was, and puts the group back;
4. checks the archive holds exactly the week: every order once, 21 files, yesterday's
   rewritten under the same names (file names come from offsets).

Environment: ``BROKER_PORT`` (default 19301).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from backbone.broker import Broker, BrokerConfig

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
ARCHIVE = DATA / "archive"
DAYS, PARTITIONS, PER_DAY = 7, 3, 60  # 60 orders a day on each partition
STEP = 86_400 // PER_DAY  # seconds between two orders of one partition


def say(text: str) -> None:
    print(text, flush=True)


def history(today: dt.datetime) -> list[tuple[int, int, dict[str, object]]]:
    """(partition, timestamp ms, value) of a week of orders, oldest first."""
    first = today - dt.timedelta(days=DAYS)
    out = []
    for day in range(DAYS):
        for n in range(PER_DAY):
            for p in range(PARTITIONS):
                stamp = first + dt.timedelta(days=day, seconds=n * STEP + p * 60)
                order = f"{stamp:%Y%m%d}-{p}-{n:02d}"
                value = {"order_id": order, "day": f"{stamp:%Y-%m-%d}", "amount": 10 + n}
                out.append((p, int(stamp.timestamp() * 1000), value))
    return out


async def write_history(records: list[tuple[int, int, dict[str, object]]]) -> None:
    async with Broker(BrokerConfig(data_dir=DATA / "broker", port=0)) as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            config = {"retention.ms": str(30 * 86_400_000)}
            await admin.create_topics(
                [NewTopic("shop.orders", PARTITIONS, 1, topic_configs=config)]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            sent = [
                await producer.send(
                    "shop.orders",
                    json.dumps(value).encode(),
                    key=str(value["order_id"]).encode(),
                    partition=p,
                    timestamp_ms=stamp,
                )
                for p, stamp, value in records
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()


def archived() -> dict[str, list[dict[str, object]]]:
    """The published archive files and their records."""
    return {
        path.name: [json.loads(line) for line in path.read_text().splitlines() if line]
        for path in sorted(ARCHIVE.glob("shop.orders-*.jsonl"))
    }


def backbone(*args: str) -> list[str]:
    return [sys.executable, "-m", "backbone", *args]


def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    ARCHIVE.mkdir(parents=True)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - dt.timedelta(days=1)
    records = history(today)
    asyncio.run(write_history(records))
    say(
        f"history: {len(records)} orders on shop.orders, {DAYS} days back-dated "
        f"({records[0][2]['day']} .. {records[-1][2]['day']}), {PARTITIONS} partitions"
    )

    started = time.monotonic()
    log = (DATA / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        backbone("run", "backbone.yaml"), cwd=HERE, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        older = (DAYS - 1) * PER_DAY * PARTITIONS  # yesterday's files stay open while running
        deadline = time.monotonic() + 120
        while sum(len(v) for v in archived().values()) < older:
            if gateway.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the archive sink did not catch up: see data/gateway.log")
            time.sleep(0.1)
    finally:
        gateway.send_signal(signal.SIGINT)
        code = gateway.wait(60)
        log.close()
    files = archived()
    say(
        f"new sink (start: earliest): {sum(len(v) for v in files.values())} orders in "
        f"{len(files)} daily files after {time.monotonic() - started:.1f} s (gateway exit {code})"
    )

    lost = sorted(name for name, rows in files.items() if rows[0]["day"] == f"{yesterday:%Y-%m-%d}")
    for name in lost:
        (ARCHIVE / name).unlink()
    say(f"lost: {len(lost)} files of {yesterday:%Y-%m-%d} deleted from data/archive")

    since = f"{yesterday:%Y-%m-%dT%H:%M:%SZ}"
    say(f"$ backbone replay backbone.yaml --sink archive --from {since}")
    replay = subprocess.run(
        backbone("replay", "backbone.yaml", "--sink", "archive", "--from", since),
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = replay.stderr.strip().splitlines()[-1:] or [""]
    say(f"  {summary[0]} (exit {replay.returncode})")
    if replay.returncode != 0:
        raise SystemExit(replay.stderr[-2000:])

    files = archived()
    rows = [row for name in sorted(files) for row in files[name]]
    ids = [row["order_id"] for row in rows]
    expected = sorted(str(value["order_id"]) for _, _, value in records)
    exact = sorted(ids) == expected
    rewritten = sorted(name for name in files if name in lost)
    say(
        f"archive: {len(rows)} orders in {len(files)} files; every order exactly once: {exact}; "
        f"{len(rewritten)} of {len(lost)} lost files rewritten under the same names"
    )
    result = {
        "history": len(records),
        "archived": len(rows),
        "files": len(files),
        "exactly_once": exact,
        "lost": lost,
        "rewritten": rewritten,
        "replay_exit": replay.returncode,
        "replay_summary": summary[0],
        "gateway_exit": code,
    }
    (DATA / "result.json").write_text(json.dumps(result, indent=2))
    if not exact or rewritten != lost:
        raise SystemExit("the archive does not hold exactly the week")


if __name__ == "__main__":
    main()
