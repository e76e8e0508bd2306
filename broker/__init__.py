"""The embedded Kafka-compatible broker (a standalone library: imports nothing of the gateway).

Embed it::

    from backbone.broker import Broker, BrokerConfig

    async with Broker(BrokerConfig(data_dir=path, port=0)) as broker:
        ...  # point any Kafka client at broker.bootstrap

or run it standalone: ``python -m backbone.broker --listen 127.0.0.1:9092
--data-dir ./data`` (the same command line as ``backbone broker``; ``serve`` is
the blocking entry point behind both).

The names below are imported on first use, so ``import backbone.broker.config``
(what the gateway needs to check addresses) does not load the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the static view of the lazy names below
    from .broker import Broker, serve
    from .config import BrokerConfig
    from .errors import BrokerError

__all__ = ["Broker", "BrokerConfig", "BrokerError", "serve"]

_LAZY = {
    "Broker": ".broker",
    "serve": ".broker",
    "BrokerConfig": ".config",
    "BrokerError": ".errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
