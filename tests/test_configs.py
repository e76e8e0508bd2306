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
from tests.records import headers, read_data_dir, values
from tests.servers import free_port, wait_for_port

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
RUN_ELSEWHERE = {
    "quickstart.yaml": "tests/test_foundation.py",
    **{p.name: "tests/connectors/test_sql_configs.py" for p in CONFIGS.glob("sql-*.yaml")},
    "secured.yaml": "tests/core/test_security.py",
    "managed-kafka.yaml": "tests/core/test_security.py",
    "webhook-to-http.yaml": "tests/connectors/test_http_configs.py",
    "http-poll.yaml": "tests/connectors/test_http_configs.py",
    "file-drop-folder.yaml": "tests/connectors/test_file_configs.py",
    "file-tail.yaml": "tests/connectors/test_file_configs.py",
    "schedule.yaml": "tests/connectors/test_schedule_pipeline.py",
}
RUN_HERE = {"existing-kafka.yaml", "shop.yaml", "processors.yaml", "throughput.yaml"}


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
    ("name", "printed"),
    [("shop.yaml", ["shop.orders.big"]), ("processors.yaml", ["orders.big", "orders.big.at"])],
)
async def test_embedded_config_runs(name: str, printed: list[str], tmp_path: Path) -> None:
    text = (CONFIGS / name).read_text()
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{free_port()}")
    text = re.sub(r"127\.0\.0\.1:8080", f"127.0.0.1:{free_port()}", text)
    config = _copy(name, tmp_path, text)
    env = {**os.environ, "ORDER_RATE": "50"}
    gateway = Gateway(config, tmp_path / "out.jsonl", tmp_path / "gw.log", env=env)
    try:
        gateway.start()
        await wait_until(
            lambda: (
                {x.get("topic") for x in gateway.lines()} >= set(printed)
                and max(x["value"]["seq"] for x in gateway.lines() if "value" in x) > 100
            ),
            within=90,
            what=f"events of {printed} printed, up to seq 100 (seq 56 is malformed)",
        )
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGINT)
        assert gateway.proc.wait(60) == 0
    finally:
        gateway.stop_quietly()
    assert (tmp_path / "data").is_dir()  # ../data relative to the config file
    # the generator's fields vary: the filter drops some, routes fire, the DLQ fills
    if name == "shop.yaml":
        found = await read_data_dir(
            tmp_path / "data", ["shop.orders", "shop.orders.big", "shop.orders.dlq"]
        )
        orders, big = values(found["shop.orders"]), values(found["shop.orders.big"])
        assert all(o["amount"] >= 100 and o["country"] in ("DE", "AT") for o in big)
        assert {o["card"] for o in big} == {"****"}
        kept = [o for o in orders if o["amount"] >= 100 and o["country"] in ("DE", "AT")]
        assert 0 < len(kept) < len(orders)
        assert {o["seq"] for o in big} <= {o["seq"] for o in kept}
        dead = found["shop.orders.dlq"]
        assert len(dead) >= 1 and len(dead) < len(orders) / 5
        assert headers(dead[0])["backbone.error.class"] == "DataError"
        assert "is not valid JSON" in headers(dead[0])["backbone.error.message"]
    else:
        found = await read_data_dir(
            tmp_path / "data", ["orders.raw", "orders.big", "orders.big.at"]
        )
        big, at = values(found["orders.big"]), values(found["orders.big.at"])
        assert {o["country"] for o in big} <= {"DE"} and {o["country"] for o in at} <= {"AT"}
        assert all(o["amount"] > 100 for o in big + at)
        assert len(big) + len(at) < len(found["orders.raw"])


def test_validate_check_on_a_fresh_clone(tmp_path: Path) -> None:
    """README: after ``make run``'s set-up (configs/demo_data.py), ``backbone validate
    --check configs/*.yaml`` passes except for the configs that need an outside system (a
    Kafka cluster, certificates, a REST API); without it, plain ``validate`` passes and
    ``--check`` names what is missing."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    files = sorted(str(p) for p in (tmp_path / "configs").glob("*.yaml"))
    backbone = [sys.executable, "-m", "backbone"]
    closed = free_port()  # http-poll.yaml's API and the Kafka cluster: not running
    env = {
        **os.environ,
        "SHOP_WEBHOOK_SECRET": "s3cret",
        "TICKETS_URL": f"http://127.0.0.1:{closed}/tickets",
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}",
    }

    def validate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*backbone, "validate", *args, *files], capture_output=True, text=True, env=env,
            timeout=120,
        )  # fmt: skip

    plain = validate()
    assert plain.returncode == 0, plain.stderr
    assert len(plain.stdout.splitlines()) == len(files)
    before = validate("--check")
    assert before.returncode == 2
    assert "data/shop.db does not exist" in before.stderr
    setup = subprocess.run(
        [sys.executable, str(tmp_path / "configs" / "demo_data.py")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    assert f"created {tmp_path / 'data' / 'shop.db'}" in setup.stdout
    after = validate("--check")
    assert after.returncode == 2
    folder = tmp_path / "configs"
    refused = f"Connect call failed ('127.0.0.1', {closed})"
    problems = after.stderr.splitlines()
    assert [line.split(":")[0] for line in problems] == [
        str(folder / name)
        for name in ("existing-kafka.yaml", "http-poll.yaml", "managed-kafka.yaml", "secured.yaml")
    ]
    assert problems[0].endswith(refused) and problems[2].endswith(refused)
    assert problems[1] == (
        f"{folder / 'http-poll.yaml'}: sources.tickets: check failed: GET "
        f"http://127.0.0.1:{closed}/tickets failed: ConnectError: All connection attempts failed"
    )
    assert "certs/server.pem does not exist" in problems[3]
    assert len(after.stdout.splitlines()) == len(files) - 4
    rerun = subprocess.run(
        [sys.executable, str(tmp_path / "configs" / "demo_data.py")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rerun.returncode == 0 and rerun.stdout == ""  # idempotent: nothing changed


async def test_throughput_config_delivers_every_event(tmp_path: Path) -> None:
    text = (CONFIGS / "throughput.yaml").read_text()
    assert "count: 1000000" in text
    config = _copy("throughput.yaml", tmp_path, text.replace("count: 1000000", "count: 20000"))
    out = tmp_path / "out.jsonl"
    gateway = Gateway(config, out, tmp_path / "gw.log")
    try:
        gateway.start()
        await wait_until(
            lambda: out.exists() and out.read_bytes().count(b"\n") >= 20000,
            within=90,
            what="20000 events printed",
        )
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGINT)
        assert gateway.proc.wait(60) == 0
    finally:
        gateway.stop_quietly()
    seqs = sorted(x["value"]["seq"] for x in gateway.lines())
    assert seqs == list(range(1, 20001))
    assert (tmp_path / "data" / "throughput").is_dir()
