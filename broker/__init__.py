"""The embedded Kafka-compatible broker (a standalone library: imports nothing of the gateway).

Embed it::

    from backbone.broker import Broker, BrokerConfig

    async with Broker(BrokerConfig(data_dir=path, port=0)) as broker:
        ...  # point any Kafka client at broker.bootstrap

or run it standalone: ``python -m backbone.broker --listen 127.0.0.1:9092
--data-dir ./data`` (``serve`` is the blocking entry point behind it).
"""

from .broker import Broker, BrokerConfig, serve
from .errors import BrokerError

__all__ = ["Broker", "BrokerConfig", "BrokerError", "serve"]
