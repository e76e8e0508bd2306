"""Every config in configs/ is run by a test (the sql-* ones and quickstart elsewhere).

``existing-kafka.yaml`` runs as shipped (``KAFKA_BOOTSTRAP``, ``replication_factor:
-1``) against Backbone's broker in its own process and against Tansu; the
embedded-broker configs run on a free port with their data in ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backbone.testing import Gateway, wait_until
from tests.servers import free_port, wait_for_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RUN_ELSEWHERE = {
    "quickstart.yaml": "tests/test_foundation.py",
    **{p.name: "tests/connectors/test_sql_configs.py" for p in CONFIGS.glob("sql-*.yaml")},
    "webhook-to-http.yaml": "tests/connectors/test_http_configs.py",
    "http-poll.yaml": "tests/connectors/test_http_configs.py",
}
RUN_HERE = {"existing-kafka.yaml", "shop.yaml", "processors.yaml"}


def test_every_config_is_run_by_a_test() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(RUN_ELSEWHERE) | RUN_HERE
    for name, test in RUN_ELSEWHERE.items():
        assert name in (ROOT / test).read_text() or name.startswith("sql-"), (name, test)


@pytest.fixture(params=["backbone", "tansu"])
def kafka(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, bool]:
    """(bootstrap, is Tansu) of a broker that is not embedded in the gateway."""
    if request.param == "tansu":
        return request.getfixturevalue("tansu").bootstrap, True
    port = free_port()
    log = (tmp_path / "broker.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "backbone.broker"),
            *("--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "broker")),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    request.addfinalizer(lambda: _stop(proc, log))
    wait_for_port(port, timeout=60, proc=proc)
    return f"127.0.0.1:{port}", False


def _stop(proc: subprocess.Popen[bytes], log: object) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
    log.close()  # type: ignore[attr-defined]


def _copy(name: str, tmp_path: Path, text: str | None = None) -> Path:
    """The config in tmp_path/configs, so ``../data`` lands in tmp_path/data."""
    folder = tmp_path / "configs"
    folder.mkdir(exist_ok=True)
    copy = folder / name
    shutil.copy(CONFIGS / name, copy)
    if text is not None:
        copy.write_text(text)
    return copy


async def test_existing_kafka_config_runs_as_shipped(
    kafka: tuple[str, bool], tmp_path: Path
) -> None:
    bootstrap, tansu = kafka
    text = (CONFIGS / "existing-kafka.yaml").read_text()
    assert "replication_factor: -1" in text
    config = _copy("existing-kafka.yaml", tmp_path)
    if tansu:  # Tansu refuses idempotent producers: the one line the file says to change
        config.write_text(text.replace("# idempotence: false", "idempotence: false"))
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap}
    gateway = Gateway(config, tmp_path / "out.jsonl", tmp_path / "gw.log", env=env)
    try:
        gateway.start()
        await wait_until(
            lambda: len([x for x in gateway.lines() if x.get("topic") == "demo.events"]) >= 3,
            within=60,
            what="3 events printed",
        )
        assert gateway.terminate() == 0
    finally:
        gateway.stop_quietly()
    log = gateway.log.read_text()
    assert "error" not in log.lower().split("backbone running")[0], log[-2000:]
    seqs = [x["value"]["seq"] for x in gateway.lines() if x.get("topic") == "demo.events"]
    assert len(set(seqs)) == len(seqs) and min(seqs) >= 1


@pytest.mark.parametrize(
    ("name", "topic"), [("shop.yaml", "shop.orders.big"), ("processors.yaml", "orders.big")]
)
async def test_embedded_config_runs(name: str, topic: str, tmp_path: Path) -> None:
    text = (CONFIGS / name).read_text()
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{free_port()}")
    text = re.sub(r"127\.0\.0\.1:8080", f"127.0.0.1:{free_port()}", text)
    config = _copy(name, tmp_path, text)
    env = {**os.environ, "ORDER_RATE": "50"}
    gateway = Gateway(config, tmp_path / "out.jsonl", tmp_path / "gw.log", env=env)
    try:
        gateway.start()
        await wait_until(
            lambda: any(x.get("topic") == topic for x in gateway.lines()),
            within=60,
            what=f"an event of {topic} printed",
        )
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGINT)
        assert gateway.proc.wait(60) == 0
    finally:
        gateway.stop_quietly()
    assert (tmp_path / "data").is_dir()  # ../data relative to the config file
