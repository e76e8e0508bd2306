"""Where an operator command finds its broker: ``--bootstrap``, or the config's broker.

:func:`connect` yields a :class:`Target` (the bootstrap address and a
:class:`~backbone.clients.KafkaClients` for it):

- ``--bootstrap HOST:PORT``: that cluster;
- ``--config FILE`` with ``broker.bootstrap``: that cluster;
- ``--config FILE`` with the embedded broker: when a broker runs on the config's
  data directory (a running gateway, or ``backbone broker``), the command talks to
  it at the address it announced in its lock file (:func:`backbone.broker.lock.holder`);
  when none does, the command starts the embedded broker on that data directory
  itself (on a free loopback port, so it is never mistaken for the gateway) and
  stops it when done. The broker's lock keeps a gateway started meanwhile from
  opening the same data directory (it fails with a message naming this process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from backbone.clients import KafkaClients, remove_static_member
from backbone.errors import BackboneError
from backbone.instance import stopped_instances
from backbone.settings import Config

__all__ = ["Target", "connect", "release_stopped_members"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """The broker a command talks to.

    ``started`` is true when the command started the embedded broker itself (the
    gateway is not running); ``data_dir`` is the embedded broker's data directory
    (``None`` for an external cluster), used to read partition sizes on disk.
    """

    bootstrap: str
    clients: KafkaClients
    config: Config | None = None
    started: bool = False
    data_dir: Path | None = None


@asynccontextmanager
async def connect(config: Config | None, bootstrap: str | None) -> AsyncIterator[Target]:
    """The :class:`Target` for ``--config``/``--bootstrap`` (see the module docstring)."""
    if bootstrap is not None:
        yield Target(bootstrap, KafkaClients(bootstrap), config)
        return
    if config is None:
        raise BackboneError("give --config FILE or --bootstrap HOST:PORT")
    settings = config.broker
    if settings.bootstrap is not None:
        address = ",".join(settings.bootstrap)
        yield Target(address, KafkaClients(address, settings), config)
        return
    assert settings.embedded is not None
    data_dir = config.resolve(settings.embedded.data_dir)
    try:
        from backbone.broker import Broker, BrokerConfig
        from backbone.broker.lock import holder
    except ImportError as exc:  # pragma: no cover - a build without the broker
        raise BackboneError(f"the embedded broker is not available in this build ({exc})") from exc
    running = await asyncio.to_thread(holder, data_dir)
    if running is not None:
        logger.debug("broker pid %d serves %s on %s", running.pid, data_dir, running.bootstrap)
        clients = KafkaClients(running.bootstrap, settings)
        yield Target(running.bootstrap, clients, config, False, data_dir)
        return
    broker = Broker(BrokerConfig(data_dir=data_dir, host="127.0.0.1", port=0))
    async with broker:
        logger.debug("started the embedded broker on %s at %s", data_dir, broker.bootstrap)
        address = broker.bootstrap
        yield Target(address, KafkaClients(address, settings), config, True, data_dir)


async def release_stopped_members(target: Target, group: str) -> list[str]:
    """Remove from ``group`` (``backbone.<sink or processor>`` of ``target.config``) the
    static members that gateways of this config left when they stopped
    (:func:`backbone.instance.stopped_instances`): they hold no partitions but would
    count as live until their session times out. Members of running gateways stay.
    Returns the instance ids removed."""
    config = target.config
    name = group.removeprefix("backbone.")
    if (
        config is None
        or name == group
        or (name not in config.sinks and name not in config.processors)
    ):
        return []
    removed = []
    for instance in stopped_instances(config.resolve(config.runtime.state_dir)):
        member = f"{instance}.{name}"
        if await remove_static_member(target.clients, group, member):
            logger.info("removed %s from group %s (left by a stopped gateway)", member, group)
            removed.append(member)
    return removed
