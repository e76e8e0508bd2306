"""The handler registry: handlers registered by their generated request/response classes,
checked when declared; ApiVersions computed from what is registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.broker import Broker, BrokerConfig
from backbone.broker.handlers import api_versions_response, build_registry
from backbone.broker.handlers.base import Handler, RequestContext
from backbone.broker.protocol import (
    ApiVersionsRequest,
    FetchRequest,
    FetchResponse,
    ProduceResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)
from tests.broker.expect import exactly
from tests.broker.test_server import call


async def fetch(ctx: RequestContext, request: FetchRequest) -> FetchResponse:
    return FetchResponse()


def test_a_handler_names_one_api_with_versions_the_codec_handles() -> None:
    with pytest.raises(
        ValueError,
        match=exactly(
            "FetchRequest and ProduceResponse are not the request and response of one API"
        ),
    ):
        Handler(FetchRequest, ProduceResponse, fetch, 4, 12)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=exactly("Fetch v0-v12 cannot be served: the codec handles v4-v18")
    ):
        Handler(FetchRequest, FetchResponse, fetch, 0, 12)
    with pytest.raises(
        ValueError, match=exactly("Fetch v5-v4 cannot be served: the codec handles v4-v18")
    ):
        Handler(FetchRequest, FetchResponse, fetch, 5, 4)
    handler = Handler(FetchRequest, FetchResponse, fetch, 4, 12)
    assert (handler.api_key, handler.name) == (1, "Fetch")


def test_the_registry_is_keyed_by_the_classes_api_keys() -> None:
    registry = build_registry()
    assert all(key == handler.request.api_key for key, handler in registry.items())
    replaced = Handler(FetchRequest, FetchResponse, fetch, 4, 5)
    assert build_registry([replaced])[1] is replaced
    ranges = {
        a.api_key: (a.min_version, a.max_version)
        for a in api_versions_response(build_registry([replaced])).api_keys
    }
    assert ranges[1] == (4, 5) and ranges == {
        key: (h.min_version, h.max_version) for key, h in build_registry([replaced]).items()
    }


async def test_an_added_api_is_advertised_and_served(tmp_path: Path) -> None:
    async def handshake(
        ctx: RequestContext, request: SaslHandshakeRequest
    ) -> SaslHandshakeResponse:
        return SaslHandshakeResponse(error_code=33, mechanisms=[f"seen {request.mechanism}"])

    extra = Handler(SaslHandshakeRequest, SaslHandshakeResponse, handshake, 0, 1)
    async with Broker(BrokerConfig(data_dir=tmp_path, port=0), handlers=[extra]) as running:
        versions = await call(running.port, ApiVersionsRequest(), 3)
        assert (17, 0, 1) in [(a.api_key, a.min_version, a.max_version) for a in versions.api_keys]
        answer = await call(running.port, SaslHandshakeRequest(mechanism="PLAIN"), 1)
        assert (answer.error_code, answer.mechanisms) == (33, ["seen PLAIN"])
