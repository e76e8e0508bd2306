"""DeleteTopics v6 by topic id (name null), over a real socket to an in-process broker."""

from __future__ import annotations

import uuid

import pytest

from backbone.broker import Broker
from backbone.broker import protocol as kp
from tests.broker.test_server import call

pytestmark = pytest.mark.timeout(30)

UNKNOWN_TOPIC_ID = 100


async def test_delete_topics_by_id(broker: Broker) -> None:
    doomed = await broker.logs.create_topic("doomed", 2)
    kept = await broker.logs.create_topic("kept", 1)
    stranger = uuid.uuid4()
    state = kp.DeleteTopicsRequest.DeleteTopicState
    request = kp.DeleteTopicsRequest(
        topics=[state(name=None, topic_id=doomed.topic_id), state(name=None, topic_id=stranger)],
        timeout_ms=5000,
    )
    response = await call(broker.port, request, 6)
    results = [(r.name, r.topic_id, r.error_code) for r in response.responses]  # type: ignore[attr-defined]
    assert results == [("doomed", doomed.topic_id, 0), (None, stranger, UNKNOWN_TOPIC_ID)]
    assert sorted(broker.logs.topics) == ["__consumer_offsets", "kept"]
    assert broker.logs.topic_by_id(kept.topic_id) is broker.logs.topic("kept")
    assert broker.logs.topic_by_id(doomed.topic_id) is None
