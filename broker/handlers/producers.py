"""InitProducerId v0-5: producer ids for idempotent (non-transactional) producers.

Every call allocates a fresh producer id (epoch 0) from the log manager's
persisted counter, including the v3+ re-initialisation of a known producer:
a new id is as good as a bumped epoch for an idempotent producer.
Transactional ids are refused (transactions are not supported). With ACLs, an
idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
(as Kafka 3: KIP-679), else CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from ..errors import BrokerError, InvalidRequest
from ..protocol import InitProducerIdRequest, InitProducerIdResponse
from ..security import AclOperation, ResourceType
from ..security.acls import CLUSTER_NAME
from ..security.errors import ClusterAuthorizationFailed
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
    if not _may_write(ctx):
        return InitProducerIdResponse(
            throttle_time_ms=0,
            error_code=ClusterAuthorizationFailed.code,
            producer_id=-1,
            producer_epoch=-1,
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


def _may_write(ctx: RequestContext) -> bool:
    if ctx.authorized(AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME):
        return True
    security = ctx.state.security
    assert security is not None and security.authorizer is not None  # else authorized above
    return security.authorizer.authorize_any(
        ctx.principal, ctx.connection.host, AclOperation.WRITE, ResourceType.TOPIC
    )


HANDLERS = (Handler(InitProducerIdRequest, InitProducerIdResponse, handle_init_producer_id, 0, 5),)
