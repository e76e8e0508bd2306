"""The handler registry: one thin handler per Kafka API, gathered from the family modules.

Each module (``metadata``, ``produce``, ``fetch``, ``offsets``, ``topics``,
``configs``, ``producers``, ``groups``, ``group_offsets``, ``sasl``, ``acls``,
``users``) lists its handlers as
``HANDLERS``, a tuple of :class:`~.base.Handler` naming the generated request and
response classes;
:func:`build_registry` indexes them by the API key those classes carry.
ApiVersions is computed from the result (:func:`api_versions_response`), so
nothing is advertised without a handler.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from ..protocol import ApiVersionsResponse
from .base import BrokerState, Handler, RequestContext

__all__ = [
    "FAMILIES",
    "BrokerState",
    "Handler",
    "RequestContext",
    "api_versions_response",
    "build_registry",
]

FAMILIES = (
    "metadata",
    "produce",
    "fetch",
    "offsets",
    "topics",
    "configs",
    "producers",
    "groups",
    "group_offsets",
    "sasl",
    "acls",
    "users",
)


def build_registry(
    overrides: Iterable[Handler[Any, Any]] = (), families: tuple[str, ...] = FAMILIES
) -> dict[int, Handler[Any, Any]]:
    """API key -> handler, from the ``HANDLERS`` of the family modules; ``overrides``
    replace (or add) the handler of their API. Raises ValueError when two family
    modules serve one API."""
    registry: dict[int, Handler[Any, Any]] = {}
    for family in families:
        module = importlib.import_module(f"{__name__}.{family}")
        for handler in module.HANDLERS:
            if handler.api_key in registry:
                raise ValueError(f"{handler.name} is served by two handler modules")
            registry[handler.api_key] = handler
    for handler in overrides:
        registry[handler.api_key] = handler
    return registry


def api_versions_response(
    registry: Mapping[int, Handler[Any, Any]], code: int = 0
) -> ApiVersionsResponse:
    """The ApiVersions answer computed from the handler registry (no tagged fields)."""
    return ApiVersionsResponse(
        error_code=code,
        api_keys=[
            ApiVersionsResponse.ApiVersion(
                api_key=h.api_key, min_version=h.min_version, max_version=h.max_version
            )
            for h in sorted(registry.values(), key=lambda h: h.api_key)
        ],
    )
