"""The house stands: packaging, CLI, and the real servers the suite relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from tests.servers import Postgres, Tansu

ROOT = Path(__file__).resolve().parents[1]


def test_import_names_are_mapped_from_the_folders() -> None:
    import backbone
    import backbone.broker
    import backbone.connectors

    assert Path(backbone.__file__).parent == ROOT / "core"
    assert Path(backbone.broker.__file__).parent == ROOT / "broker"
    assert Path(backbone.connectors.__file__).parent == ROOT / "connectors"


def test_no_generic_top_level_names_installed() -> None:
    code = (
        "import importlib.util as u;"
        "print([n for n in ('core', 'broker', 'connectors') if u.find_spec(n)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"


def test_cli_version_and_help() -> None:
    exe = Path(sys.executable).parent / "backbone"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.startswith("backbone ")
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert helptext.returncode == 0
    assert "Usage" in helptext.stdout


def test_tansu_fixture_round_trip(tansu: Tansu) -> None:
    admin = KafkaAdminClient(bootstrap_servers=tansu.bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic("fixture-check", num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=tansu.bootstrap)
    try:
        producer.send("fixture-check", key=b"k", value=b"hello tansu").get(timeout=20)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(
        "fixture-check",
        bootstrap_servers=tansu.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    try:
        got = [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()
    assert got == [(b"k", b"hello tansu")]


@pytest.mark.postgres
def test_postgres_fixture_round_trip(postgres_server: Postgres) -> None:
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fixture_check (id int primary key, v text)")
        conn.execute(
            "INSERT INTO fixture_check VALUES (1, 'hello postgres') ON CONFLICT DO NOTHING"
        )
        row = conn.execute(
            "SELECT v, current_setting('server_version_num') FROM fixture_check"
        ).fetchone()
    assert row is not None
    assert row[0] == "hello postgres"
    assert int(row[1]) >= 120000


def test_regular_install_puts_only_backbone_in_site_packages(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert [name for name in top if name not in {"bin", "__pycache__"}] == ["backbone"]
    code = "import backbone, backbone.broker, backbone.connectors; print(backbone.broker.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(target / "backbone" / "broker" / "__init__.py")


@pytest.mark.timeout(120)
def test_quickstart_runs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """What `make run` starts (configs/quickstart.yaml, embedded broker), on a free port."""
    import json
    import signal
    import time

    from tests.servers import free_port

    port = free_port()
    text = (ROOT / "configs" / "quickstart.yaml").read_text()
    assert "listen: 127.0.0.1:9092" in text and "data_dir: ../data " in text
    assert "listen: 127.0.0.1:8080" in text  # the console and admin API
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{port}")
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{free_port()}")
    text = text.replace("../data", str(tmp_path / "data"))
    config = tmp_path / "quickstart.yaml"
    config.write_text(text)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    backbone = Path(sys.executable).parent / "backbone"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([str(backbone), "run", str(config)], stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 60
            while len(out.read_text().splitlines()) < 2:
                assert proc.poll() is None, err.read_text()[-2000:]
                assert time.monotonic() < deadline, "quickstart printed no events"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = err.read_text()
    assert "SIGINT received: stopping" in log
    assert f"embedded broker listening on 127.0.0.1:{port}" in log
    assert "backbone stopped" in log and "Traceback" not in log
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["topic"] for e in events} == {"demo.events"}
    seqs = [e["value"]["seq"] for e in events]
    assert len(seqs) >= 2 and len(set(seqs)) == len(seqs) and min(seqs) >= 1
    assert all(e["key"].startswith("key-") for e in events)


def test_importing_the_broker_loads_neither_pydantic_nor_the_gateway() -> None:
    code = (
        "import backbone.broker, sys; "
        "loaded = sorted(m for m in ('pydantic', 'aiokafka', 'backbone.runner', "
        "'backbone.config', 'backbone.connector') if m in sys.modules); print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# import name -> distribution, for third-party names whose distribution is named otherwise
_DISTRIBUTIONS = {"ruamel": "ruamel.yaml", "yaml": "pyyaml"}


def test_every_imported_package_is_declared() -> None:
    """Each third-party top-level name imported by core/, broker/, connectors/ is a
    declared dependency (the PostgreSQL driver is imported by SQLAlchemy, declared in
    the ``postgres`` extra)."""
    import ast
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=!\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")
        for spec in project["dependencies"]
    }
    imported: dict[str, str] = {}
    for folder in ("core", "broker", "connectors"):
        for path in (ROOT / folder).rglob("*.py"):
            if "_generated" in path.parts or path.name == "generate.py":
                continue  # the codec generator runs at development time only
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    imported.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    third_party = {
        name: where
        for name, where in imported.items()
        if name not in sys.stdlib_module_names and name not in {"backbone", "__future__"}
    }
    missing = {
        name: where
        for name, where in third_party.items()
        if _DISTRIBUTIONS.get(name, name).lower().replace("_", "-") not in declared
    }
    assert missing == {}
    assert {"aiokafka", "pydantic", "sqlalchemy", "typer", "ruamel", "crc32c"} <= set(third_party)
