"""InitProducerId v0-5: producer ids for idempotent (non-transactional) producers.

Every call allocates a fresh producer id (epoch 0) from the log manager's
persisted counter, including the v3+ re-initialisation of a known producer:
a new id is as good as a bumped epoch for an idempotent producer.
Transactional ids are refused (transactions are not supported).
"""

from __future__ import annotations

from ..errors import BrokerError, InvalidRequest
from ..protocol import InitProducerIdRequest, InitProducerIdResponse
from .base import Handler, RequestContext, error_code

__all__ = ["HANDLERS"]


async def handle_init_producer_id(
    ctx: RequestContext, request: InitProducerIdRequest
) -> InitProducerIdResponse:
    """InitProducerId v0-5: allocate a producer id; refuse transactional ids."""
    if request.transactional_id is not None:
        return InitProducerIdResponse(
            throttle_time_ms=0, error_code=InvalidRequest.code, producer_id=-1, producer_epoch=-1
        )
    try:
        producer_id = await ctx.logs.allocate_producer_id()
    except BrokerError as exc:  # KafkaStorageError: the id block could not be persisted
        return InitProducerIdResponse(
            throttle_time_ms=0, error_code=error_code(exc), producer_id=-1, producer_epoch=-1
        )
    return InitProducerIdResponse(
        throttle_time_ms=0, error_code=0, producer_id=producer_id, producer_epoch=0
    )


HANDLERS = (Handler(InitProducerIdRequest, InitProducerIdResponse, handle_init_producer_id, 0, 5),)
