"""configs/file-drop-folder.yaml and configs/file-tail.yaml run as their comments say."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from backbone.testing import consume, running, wait_until
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def prepare(name: str, tmp_path: Path) -> Path:
    """The config copied to tmp_path/configs (free broker port; data in tmp_path/data)."""
    folder = tmp_path / "configs"
    folder.mkdir()
    copy = folder / name
    shutil.copy(ROOT / "configs" / name, copy)
    copy.write_text(copy.read_text().replace("127.0.0.1:9092", f"127.0.0.1:{free_port()}"))
    return copy


def append(path: Path, text: str) -> None:
    with open(path, "a") as file:
        file.write(text)


def old(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = path.stat().st_mtime - 60  # older than min_age
    os.utime(path, (stamp, stamp))


async def test_the_drop_folder_config_imports_archives_and_rejects(tmp_path: Path) -> None:
    config = prepare("file-drop-folder.yaml", tmp_path)
    data = tmp_path / "data"
    inbox = data / "inbox" / "orders"
    inbox.mkdir(parents=True)
    (data / "archive").mkdir()
    old(inbox / "day1.csv", "order_id,customer,amount,quantity\nA-1,ann,12.50,2\nA-2,bob,x,1\n")
    async with running(config) as runner:
        assert runner.bootstrap is not None
        await wait_until(lambda: (data / "inbox" / "done" / "day1.csv").exists(), what="done")
        [rejected] = await consume(runner.bootstrap, "orders.rejected", count=1)
        [imported] = await consume(runner.bootstrap, "orders.imported", count=1)
    assert json.loads(imported.value) == {
        "order_id": "A-1",
        "customer": "ann",
        "amount": 12.5,
        "quantity": 2,
    }
    assert imported.key == b"A-1"
    headers = dict(rejected.headers)
    assert headers["file.name"] == b"day1.csv" and headers["file.line"] == b"3"
    assert rejected.value == b"A-2,bob,x,1"
    # the runner stopped: the archive's open file was published
    [archived] = [p for p in (data / "archive").iterdir() if not p.name.startswith(".")]
    assert archived.name.startswith("orders.imported-") and archived.suffix == ".jsonl"
    assert json.loads(archived.read_text())["order_id"] == "A-1"


async def test_the_tail_config_follows_the_log(tmp_path: Path) -> None:
    config = prepare("file-tail.yaml", tmp_path)
    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    log = logs / "app.log"
    log.write_text("service started\n")
    async with running(config) as runner:
        assert runner.bootstrap is not None
        append(log, "user ann logged in\n")
        records = await consume(runner.bootstrap, "logs.app", count=2)
    assert [(r.key, r.value) for r in records] == [
        (b"app.log", b"service started"),
        (b"app.log", b"user ann logged in"),
    ]
