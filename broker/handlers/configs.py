"""DescribeConfigs (v0-4), AlterConfigs (v0-2), IncrementalAlterConfigs (v0-1).

Topic configs (resource type 2) are the log's ``LogConfig`` (overrides over the
broker defaults), described, replaced (AlterConfigs: the given set becomes the
whole override set) or edited (IncrementalAlterConfigs: SET, DELETE, APPEND,
SUBTRACT). Broker configs (resource type 4) are the topic defaults, described
read-only; altering them is refused.
"""

from __future__ import annotations

from ..errors import BrokerError, InvalidConfig, InvalidRequest
from ..log.config import ConfigEntry
from ..log.manager import Topic
from ..protocol import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from .base import Handler, RequestContext, error_code, error_message

__all__ = ["HANDLERS"]

TOPIC = 2
BROKER = 4
# Kafka's ConfigSource values
_TOPIC_CONFIG = 1
_STATIC_BROKER_CONFIG = 4
_DEFAULT_CONFIG = 5

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3

ResourceResult = DescribeConfigsResponse.DescribeConfigsResourceResult


def _entries(
    ctx: RequestContext, resource: DescribeConfigsRequest.DescribeConfigsResource, synonyms: bool
) -> list[DescribeConfigsResponse.DescribeConfigsResult.DescribeConfigsResourceResult]:
    if resource.resource_type == TOPIC:
        topic = ctx.logs.topic(resource.resource_name)
        described: list[ConfigEntry] = topic.config.describe()
        read_only = False
    elif resource.resource_type == BROKER:
        if resource.resource_name not in ("", str(ctx.config.node_id)):
            raise InvalidRequest(
                f"broker {resource.resource_name!r} does not exist (this is broker "
                f"{ctx.config.node_id})"
            )
        described = ctx.logs.defaults.describe()
        read_only = True
    else:
        raise InvalidRequest(
            f"resource type {resource.resource_type} is not supported (2 = topic, 4 = broker)"
        )
    wanted = resource.configuration_keys
    results = []
    for entry in described:
        if wanted is not None and entry.name not in wanted:
            continue
        if resource.resource_type == BROKER:
            source = _STATIC_BROKER_CONFIG
        else:
            source = _DEFAULT_CONFIG if entry.is_default else _TOPIC_CONFIG
        result = ResourceResult(
            name=entry.name,
            value=entry.value,
            read_only=read_only or entry.read_only,
            is_default=entry.is_default,
            config_source=source,
            is_sensitive=entry.is_sensitive,
            documentation=None,  # null unless asked for (and none is kept), as Kafka
        )
        if synonyms:
            result.synonyms = [
                DescribeConfigsResponse.DescribeConfigsSynonym(
                    name=entry.name, value=entry.value, source=source
                )
            ]
        results.append(result)
    return results


async def handle_describe_configs(
    ctx: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    """DescribeConfigs v0-4: topic configs (with their source; v0: is_default) and broker
    defaults."""
    results = []
    for resource in request.resources:
        result = DescribeConfigsResponse.DescribeConfigsResult(
            error_code=0,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        try:
            result.configs = _entries(ctx, resource, request.include_synonyms)
        except BrokerError as exc:
            result.error_code = error_code(exc)
            result.error_message = error_message(exc)
        results.append(result)
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


def _check_topic_resource(
    ctx: RequestContext,
    resource: AlterConfigsRequest.AlterConfigsResource
    | IncrementalAlterConfigsRequest.AlterConfigsResource,
) -> Topic:
    if resource.resource_type == BROKER:
        raise InvalidRequest("broker configs are static: set them when starting the broker")
    if resource.resource_type != TOPIC:
        raise InvalidRequest(f"resource type {resource.resource_type} is not supported (2 = topic)")
    return ctx.logs.topic(resource.resource_name)


async def handle_alter_configs(
    ctx: RequestContext, request: AlterConfigsRequest
) -> AlterConfigsResponse:
    """AlterConfigs v0-2: the given configs replace the topic's whole override set."""
    responses = []
    for resource in request.resources:
        response = AlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=0,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        try:
            topic = _check_topic_resource(ctx, resource)
            configs: dict[str, str | None] = {c.name: c.value for c in resource.configs}
            await ctx.logs.alter_configs(
                topic.name, configs, incremental=False, validate_only=request.validate_only
            )
        except BrokerError as exc:
            response.error_code = error_code(exc)
            response.error_message = error_message(exc)
        responses.append(response)
    return AlterConfigsResponse(throttle_time_ms=0, responses=responses)


def _apply_operation(
    current: dict[str, str],
    config: IncrementalAlterConfigsRequest.AlterConfigsResource.AlterableConfig,
) -> str | None:
    """The new value of one config after an incremental operation (None = delete)."""
    op = config.config_operation
    if op == SET:
        if config.value is None:
            raise InvalidConfig(f"SET {config.name} needs a value")
        return str(config.value)
    if op == DELETE:
        return None
    if op in (APPEND, SUBTRACT):
        items = [v for v in current.get(config.name, "").split(",") if v]
        given = [v for v in (config.value or "").split(",") if v]
        if op == APPEND:
            items += [v for v in given if v not in items]
        else:
            items = [v for v in items if v not in given]
        return ",".join(items) if items else None
    raise InvalidRequest(
        f"config operation {op} is unknown (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)"
    )


async def handle_incremental_alter_configs(
    ctx: RequestContext, request: IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse:
    """IncrementalAlterConfigs v0-1: SET / DELETE / APPEND / SUBTRACT topic configs."""
    responses = []
    for resource in request.resources:
        response = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=0,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        try:
            topic = _check_topic_resource(ctx, resource)
            current = {e.name: e.value for e in topic.config.describe() if e.value is not None}
            changes: dict[str, str | None] = {}
            for config in resource.configs:
                changes[config.name] = _apply_operation(current, config)
            await ctx.logs.alter_configs(
                topic.name, changes, incremental=True, validate_only=request.validate_only
            )
        except BrokerError as exc:
            response.error_code = error_code(exc)
            response.error_message = error_message(exc)
        responses.append(response)
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=responses)


HANDLERS = (
    Handler(DescribeConfigsRequest, DescribeConfigsResponse, handle_describe_configs, 0, 4),
    Handler(AlterConfigsRequest, AlterConfigsResponse, handle_alter_configs, 0, 2),
    Handler(
        IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
        handle_incremental_alter_configs,
        0,
        1,
    ),
)
