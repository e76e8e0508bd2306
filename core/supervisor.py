"""One connector under the runner: its worker's task, and pause / resume / restart.

The runner makes one :class:`Supervisor` per configured source, sink and
processor, with a ``build`` function that creates a fresh connector instance and
its worker. :meth:`Supervisor.start` runs it in its own task; an exception leaves
the connector FAILED with the error (the others go on). The admin API calls
:meth:`pause`, :meth:`resume` and :meth:`restart`:

- pause: the worker finishes (or abandons, uncommitted) its batch, a source has
  everything read acknowledged and its position saved, a sink or processor stops
  its consumer and so leaves its group (its offsets can then be moved); PAUSED;
- resume: back to RUNNING (a sink or processor rejoins its group);
- restart: a graceful stop (bounded by ``grace``), then a new instance from the
  last saved position or committed offsets; also how a FAILED connector is retried.

The :class:`~backbone.worker.ConnectorStatus` object lives as long as the runner,
so counters go on across restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from backbone.errors import BackboneError
from backbone.worker import ConnectorState, ConnectorStatus, Control, Worker

if TYPE_CHECKING:
    from backbone.cluster import SourceCluster

__all__ = [
    "ClusterSource",
    "ConnectorHandle",
    "ConnectorStateError",
    "Supervisor",
    "run_worker",
]

logger = logging.getLogger(__name__)

Build = Callable[[Control], Worker]


class ConnectorStateError(BackboneError):
    """The connector cannot do that in its state (pause a FAILED one, ...)."""


class ConnectorHandle(Protocol):
    """What the admin API needs of a connector of the runner."""

    name: str
    status: ConnectorStatus

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def restart(self) -> None: ...

    def lag(self) -> dict[tuple[str, int], int]: ...


def _failed(status: ConnectorStatus, exc: BaseException) -> None:
    status.state = ConnectorState.FAILED
    status.failed(exc)
    logger.error("%s %s FAILED: %s", status.role, status.name, status.error, exc_info=exc)


def _lag_of(worker: Worker | None) -> dict[tuple[str, int], int]:
    lag = getattr(worker, "lag", None)
    if lag is None:
        return {}
    found = {}
    for tp, (committed, highwater) in lag().items():
        if committed is not None and highwater is not None:
            found[(tp.topic, tp.partition)] = max(highwater - committed, 0)
    return found


async def run_worker(worker: Worker, *, on_stop: Callable[[str], None] | None = None) -> None:
    """Run ``worker`` to its end: STOPPED when it returns or is cancelled, FAILED (with
    the error, logged) when it raises; ``on_stop(name)`` afterwards either way."""
    status = worker.status
    try:
        await worker.run()
    except asyncio.CancelledError:
        status.state = ConnectorState.STOPPED
        raise
    except Exception as exc:
        _failed(status, exc)
        return
    finally:
        if on_stop is not None:
            on_stop(worker.name)
    status.state = ConnectorState.STOPPED


class Supervisor:
    """Runs, pauses, resumes and restarts one connector (see the module docstring).

    ``on_stop(name)`` is called each time the worker's task ends (the runner removes
    the connector's HTTP routes there).
    """

    def __init__(
        self,
        status: ConnectorStatus,
        build: Build,
        *,
        grace: float,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.status = status
        self.name = status.name
        self.grace = grace
        self._build = build
        self._on_stop = on_stop
        self.control = Control()
        self.worker: Worker | None = None
        self.task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        """Whether its task is alive."""
        return self.task is not None and not self.task.done()

    def lag(self) -> dict[tuple[str, int], int]:
        """A sink's or processor's lag per (topic, partition) it holds now (from what its
        consumer last fetched: no request is made); empty for sources and when it holds
        nothing."""
        return _lag_of(self.worker)

    def start(self) -> None:
        """Build and run the worker in a new task."""
        assert not self.running, f"{self.name} is already running"
        self.control = Control()
        self.task = asyncio.create_task(self._run(self.control), name=f"backbone:{self.name}")

    async def _run(self, control: Control) -> None:
        try:
            self.worker = self._build(control)
        except Exception as exc:  # e.g. a processor function that cannot be imported
            _failed(self.status, exc)
            if self._on_stop is not None:
                self._on_stop(self.name)
            return
        await run_worker(self.worker, on_stop=self._on_stop)

    def pause(self) -> None:
        """Ask the worker to pause (it reports PAUSED once it holds nothing)."""
        if not self.running:
            raise ConnectorStateError(
                f"{self.status.role} {self.name} is {self.status.state.value}: only a running "
                "connector can be paused (restart it)"
            )
        self.control.pause()

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if not self.running:
            raise ConnectorStateError(
                f"{self.status.role} {self.name} is {self.status.state.value}: only a paused "
                "connector can be resumed (restart it)"
            )
        self.control.resume()

    async def stop(self, grace: float | None = None) -> bool:
        """Ask the worker to stop; cancel it after ``grace`` s. ``True`` if it drained."""
        task = self.task
        if task is None or task.done():
            return True
        self.control.stop()
        done, _ = await asyncio.wait({task}, timeout=self.grace if grace is None else grace)
        if done:
            return True
        logger.warning("%s did not drain in time: cancelled", task.get_name())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    async def restart(self) -> None:
        """Stop gracefully, then start a fresh instance (also for a FAILED connector)."""
        async with self._lock:
            await self.stop()
            status = self.status
            status.restarts += 1
            status.error = None
            status.state = ConnectorState.STARTING
            logger.info("%s %s restarting", status.role, self.name)
            self.start()


class ClusterSource:
    """A source the gateway cluster runs (:mod:`backbone.cluster`): pause and resume act
    on its worker while this process runs it; restart hands it back to the cluster,
    which claims it again and starts a fresh instance from its saved position (also
    after FAILED). ``workers`` maps names to the worker the runner made last."""

    def __init__(
        self, status: ConnectorStatus, cluster: SourceCluster, workers: Mapping[str, Worker]
    ) -> None:
        self.status = status
        self.name = status.name
        self.cluster = cluster
        self.workers = workers

    def _local(self) -> Worker:
        worker = self.workers.get(self.name)
        running = self.cluster.running.get(self.name)
        if worker is None or running is None or running.task.done():
            where = self.status.worker or "no gateway process"
            raise ConnectorStateError(
                f"source {self.name} is {self.status.state.value} and runs in {where}, not "
                f"here ({self.cluster.worker}): ask that process"
            )
        return worker

    def pause(self) -> None:
        self._local().control.pause()

    def resume(self) -> None:
        self._local().control.resume()

    async def restart(self) -> None:
        await self.cluster.restart(self.name)
        self.status.restarts += 1

    def lag(self) -> dict[tuple[str, int], int]:
        return {}
