"""The handler registry: one thin handler per Kafka API, merged from the family modules.

Each module (``metadata``, ``produce``, ``fetch``, ``offsets``, ``topics``,
``configs``, ``producers``, ``groups``) exports ``HANDLERS: dict[int, Handler]``;
:func:`build_registry` merges them. ApiVersions is computed from the result, so
nothing is advertised without a handler.
"""

from __future__ import annotations

import importlib

from .base import BrokerState, Handler, RequestContext

__all__ = ["FAMILIES", "BrokerState", "Handler", "RequestContext", "build_registry"]

FAMILIES = (
    "metadata",
    "produce",
    "fetch",
    "offsets",
    "topics",
    "configs",
    "producers",
    "groups",
)


def build_registry(families: tuple[str, ...] = FAMILIES) -> dict[int, Handler]:
    """Merge the ``HANDLERS`` tables of the family modules (missing modules are skipped)."""
    registry: dict[int, Handler] = {}
    for family in families:
        try:
            module = importlib.import_module(f"{__name__}.{family}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{family}":
                raise
            continue
        for key, handler in module.HANDLERS.items():
            if key in registry:
                raise ValueError(f"api key {key} is registered by two handler modules")
            registry[key] = handler
    return registry
