"""kafkajs 2.2.4 (Node.js) against the embedded broker: manual offset commits (issue 13).

The client runs as a node subprocess (``tests/js/commit_offsets.js``; ``make test``
installs Node.js and ``npm ci`` the pinned kafkajs into ``tests/js/node_modules``).

Issue 13 saw ``admin.fetchOffsets`` answer -2 for one partition after a running
consumer committed 5, 6, 7. -2 is no offset the broker makes up: it is kafkajs's
EARLIEST sentinel, which kafkajs *commits* (``OffsetManager.setDefaultOffset``) when a
Fetch answers OFFSET_OUT_OF_RANGE and the subscription is ``fromBeginning``. That
happens when the committed offset is past the end of the partition and the consumer
fetches from it (its first fetch after the commit, a rebalance, a restart): Kafka
accepts any committed offset (``OffsetMetadataManager.commitOffset`` checks only the
metadata size) and answers a fetch past the log end offset with OFFSET_OUT_OF_RANGE
(``LocalLog.read``), so Kafka shows the same -2. kafkajs resets one partition per fetch
(it stops at the first partition error of a response whose partitions it shuffles),
hence "one of the three, a different one each run". The tests pin both sides: commits
of a running consumer read back exactly, and the past-the-end case ends as on Kafka.
(Tansu answers a fetch past the end without an error, unlike Kafka, so it is the peer
only of the first test.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backbone.broker import Broker, BrokerConfig
from backbone.broker.protocol import OffsetCommitRequest, OffsetFetchRequest
from tests.broker.test_groups_wire import Client, joined_member
from tests.broker.test_log_support import make_batch
from tests.broker.test_wire_behaviour import by_partition, fetch_request, produce
from tests.servers import unavailable

pytestmark = pytest.mark.timeout(120)

JS_DIR = Path(__file__).resolve().parents[1] / "js"
OFFSET_OUT_OF_RANGE = 1
EARLIEST = -2  # kafkajs's EARLIEST_OFFSET, committed as is by its out-of-range reset


def node_with_kafkajs() -> str:
    """The node binary, once tests/js holds the kafkajs version package.json pins."""
    node = shutil.which("node")
    if node is None:  # fails in CI: `make test` installs Node.js
        unavailable("Node.js is not installed (make test installs it and kafkajs)")
        raise AssertionError("unreachable")
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]["kafkajs"]
    installed = JS_DIR / "node_modules" / "kafkajs" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        unavailable(f"kafkajs {wanted} is not installed in tests/js (make test runs npm ci)")
    return node


async def kafkajs(scenario: str, bootstrap: str, topic: str, group: str) -> list[dict[str, Any]]:
    """Run one scenario of commit_offsets.js; its JSON lines (raises with its stderr)."""
    proc = await asyncio.create_subprocess_exec(
        node_with_kafkajs(),
        "commit_offsets.js",
        scenario,
        bootstrap,
        topic,
        group,
        cwd=JS_DIR,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"exit {proc.returncode}: {err.decode()}"
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as running:
        yield running


@pytest.mark.parametrize("peer", ["backbone", pytest.param("tansu", marks=pytest.mark.tansu)])
async def test_commits_of_a_running_consumer_read_back_exactly(
    tmp_path: Path, request: pytest.FixtureRequest, peer: str
) -> None:
    """The issue's scenario with records below the committed offsets: 5, 6, 7 come back
    as committed (one call, then three concurrent calls), also after the consumer left.
    Tansu, an independent broker, runs the same script as a check on the script."""
    node_with_kafkajs()
    if peer == "tansu":
        steps = await kafkajs("running", request.getfixturevalue("tansu").bootstrap, "c", "g")
    else:
        async with Broker(BrokerConfig(data_dir=tmp_path, port=0)) as broker:
            steps = await kafkajs("running", broker.bootstrap, "c", "g")
    assert steps == [
        {"step": "consumed", "received": 30},
        {"step": "committed together", "offsets": [5, 6, 7]},
        {"step": "committed concurrently", "offsets": [8, 9, 10]},
        {"step": "after leaving", "offsets": [8, 9, 10], "outOfRange": []},
    ]


async def test_commit_past_the_end_is_kept_until_kafkajs_resets_it(broker: Broker) -> None:
    """Where issue 13's -2 comes from, ending as it does on Kafka: 5, 6, 7 committed on
    partitions of 3 records are stored as given; the next consumer fetches there, gets
    OFFSET_OUT_OF_RANGE for each partition, commits -2 (kafkajs's EARLIEST) for each and
    reads every record from offset 0."""
    [committed, second] = await kafkajs("past-end", broker.bootstrap, "p", "g")
    assert committed == {"step": "committed past the end", "offsets": [5, 6, 7]}
    assert second == {
        "step": "second consumer",
        "offsets": [EARLIEST] * 3,
        "outOfRange": [0, 1, 2],
        "received": [[p, o] for p in range(3) for o in range(3)],
    }
    group = broker.groups.fetch_offsets("g", [("p", p) for p in range(3)])
    assert [c.offset for c in group] == [EARLIEST] * 3


async def test_kafkajs_exchange_on_the_wire(broker: Broker) -> None:
    """The requests kafkajs 2.2.4 sends in that exchange, at its versions (OffsetCommit
    v5 with generation and member id, OffsetFetch v4, Fetch v11), answered as Kafka
    answers them: a commit past the log end is accepted and read back; a fetch there is
    OFFSET_OUT_OF_RANGE (at the end it is empty, no error); -2 is stored as given."""
    await broker.logs.create_topic("t", 2)
    assert await produce(broker.port, "t", 0, make_batch([b"a", b"b", b"c"])) == 0
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    client = Client(reader, writer)
    try:
        joined = await joined_member(client, 5)

        async def commit(offsets: dict[int, int]) -> list[int]:
            response = await client.send(
                OffsetCommitRequest(
                    group_id="g",
                    generation_id_or_member_epoch=joined.generation_id,
                    member_id=joined.member_id,
                    topics=[
                        OffsetCommitRequest.OffsetCommitRequestTopic(
                            name="t",
                            partitions=[
                                OffsetCommitRequest.OffsetCommitRequestPartition(
                                    partition_index=p, committed_offset=o
                                )
                                for p, o in offsets.items()
                            ],
                        )
                    ],
                ),
                5,
            )
            return [p.error_code for p in response.topics[0].partitions]

        async def fetch_committed() -> list[int]:
            response = await client.send(
                OffsetFetchRequest(
                    group_id="g",
                    topics=[
                        OffsetFetchRequest.OffsetFetchRequestTopic(
                            name="t", partition_indexes=[0, 1]
                        )
                    ],
                ),
                4,
            )
            assert response.error_code == 0
            return [p.committed_offset for p in response.topics[0].partitions]

        assert await commit({0: 7, 1: 6}) == [0, 0]
        assert await fetch_committed() == [7, 6]
        fetched = await client.send(fetch_request([("t", 0, 7), ("t", 1, 6)]), 11)
        answers = by_partition(fetched)
        assert answers[("t", 0)].error_code == OFFSET_OUT_OF_RANGE
        assert answers[("t", 1)].error_code == OFFSET_OUT_OF_RANGE
        at_end = by_partition(await client.send(fetch_request([("t", 0, 3), ("t", 1, 0)]), 11))
        assert [(a.error_code, a.high_watermark) for a in at_end.values()] == [(0, 3), (0, 0)]
        assert await commit({0: EARLIEST}) == [0]
        assert await fetch_committed() == [EARLIEST, 6]
    finally:
        writer.close()
        await writer.wait_closed()
