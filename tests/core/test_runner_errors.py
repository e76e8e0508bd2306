"""The runner's start-up failures: each is one clear BackboneError, nothing left running.

Real embedded broker and real sockets: an address where nothing listens, a topic the
broker refuses to create, a producer the broker refuses.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from backbone.config import load_config
from backbone.errors import BackboneError
from backbone.registry import Registry
from backbone.runner import Runner
from backbone.testing import FAST_RUNTIME, broker_yaml
from tests.servers import Tansu, free_port

pytestmark = pytest.mark.timeout(60)


async def _run(tmp_path: Path, text: str) -> BackboneError:
    """Run the config; it must fail to start with a BackboneError, which is returned."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    registry = Registry.from_entry_points()
    runner = Runner(load_config(path, registry), registry)
    with pytest.raises(BackboneError) as caught:
        await asyncio.wait_for(runner.run(asyncio.Event()), 30)
    assert not runner.started.is_set()
    return caught.value


async def test_unreachable_cluster_names_the_address_and_the_option(tmp_path: Path) -> None:
    port = free_port()
    error = await _run(
        tmp_path,
        f"broker: {{bootstrap: ['127.0.0.1:{port}']}}\n"
        "sinks:\n  out: {type: stdout, topics: [t]}\n",
    )
    assert str(error).startswith(
        f"cannot reach the Kafka cluster at 127.0.0.1:{port} (broker.bootstrap): "
        "KafkaConnectionError: Unable to bootstrap from"
    )


async def test_refused_topic_creation_is_reported_per_topic(tmp_path: Path) -> None:
    topic = f"t.{uuid.uuid4().hex[:8]}"
    text = (
        broker_yaml("embedded", data_dir=tmp_path / "data")
        + FAST_RUNTIME
        + f"topics:\n  {topic}: {{partitions: 2, config: {{cleanup.policy: shred}}}}\n"
        + f"sinks:\n  out: {{type: stdout, topics: [{topic}]}}\n"
    )
    error = await _run(tmp_path, text)
    assert str(error).startswith(f"cannot create topics: topic {topic}: error 40 (")
    # the embedded broker was shut down with the failed start: its data dir holds no topic
    # of that name, and a second run fails the same way (no half-created state)
    assert not list((tmp_path / "data").glob(f"{topic}-*"))
    again = await _run(tmp_path, text)
    assert str(again) == str(error)


@pytest.mark.tansu
async def test_refused_idempotent_producer_hints_at_the_option(
    tmp_path: Path, tansu: Tansu
) -> None:
    # Tansu refuses aiokafka's InitProducerId v0; the runner says which option to change
    text = broker_yaml("tansu", tansu=tansu).replace("idempotence: false", "idempotence: true")
    text += "sinks:\n  out: {type: stdout, topics: [t]}\n"
    error = await _run(tmp_path, text)
    assert str(error).startswith(f"cannot start the producer on {tansu.bootstrap}: ")
    assert str(error).endswith(
        "(the broker may refuse idempotent producers: set broker.idempotence: false)"
    )
