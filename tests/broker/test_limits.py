"""Running out of file descriptors while creating partitions: a clear error, nothing lost.

A real broker process started with a hard limit of 256 open files (so it cannot raise
it), real librdkafka admin and producer clients.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.timeout(120)

LIMIT = 256


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        argv = [sys.executable, "-m", "backbone.broker", "--listen", f"127.0.0.1:{port}"]
        argv += ["--data-dir", str(data_dir), "--no-auto-create-topics"]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_low_limit,
        )
    wait_for_port(port, timeout=20, proc=proc)
    return proc


def _error(future: object) -> KafkaError | None:
    try:
        future.result(30)  # type: ignore[attr-defined]
    except KafkaException as exc:
        return exc.args[0]  # type: ignore[no-any-return]
    return None


def _produce(bootstrap: str, topic: str, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failures: list[str] = []
    for p in range(partitions):
        producer.produce(
            topic,
            value=f"v{p}".encode(),
            partition=p,
            on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
        )
    assert producer.flush(30) == 0
    assert failures == []


def test_too_many_partitions_for_the_fd_limit_creates_nothing(tmp_path: Path) -> None:
    data, log, port = tmp_path / "data", tmp_path / "broker.log", free_port()
    bootstrap = f"127.0.0.1:{port}"
    proc = _start(data, port, log)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        error = _error(admin.create_topics([NewTopic("big", 2 * LIMIT, 1)])["big"])
        assert error is not None and error.code() == KafkaError.KAFKA_STORAGE_ERROR
        assert error.str().startswith("cannot create partition ")
        assert "of topic big: [Errno 24] Too many open files" in error.str()
        assert not [p.name for p in data.iterdir() if p.name.startswith("big-")]
        # the broker is still usable: smaller topics are created, grown and written
        assert _error(admin.create_topics([NewTopic("small", 2, 1)])["small"]) is None
        grow = admin.create_partitions([NewPartitions("small", 2 * LIMIT)])["small"]
        grown = _error(grow)
        assert grown is not None and grown.code() == KafkaError.KAFKA_STORAGE_ERROR
        assert _error(admin.create_partitions([NewPartitions("small", 4)])["small"]) is None
        _produce(bootstrap, "small", 4)
        topics = admin.list_topics(timeout=10).topics
        assert "big" not in topics and len(topics["small"].partitions) == 4
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(("big", "small"))) == [
        f"small-{i}" for i in range(4)
    ]
    stderr = log.read_text()
    assert "Traceback" not in stderr and "bug:" not in stderr
