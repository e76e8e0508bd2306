"""The admin HTTP API, served on the gateway's HTTP app (``http.listen``).

Routes (JSON in the models of :mod:`backbone.views`; errors ``{"error": "..."}``;
the whole list with schemas at ``GET /openapi.json``):

======  ====================================  ==========================================
GET     /connectors                           every connector (:class:`ConnectorView`)
GET     /connectors/{name}                    one, with per-partition lag and history
POST    /connectors/{name}/pause              pause; answers once PAUSED (202 if not yet)
POST    /connectors/{name}/resume             resume; answers once it left PAUSED
POST    /connectors/{name}/restart            graceful stop, then a fresh instance
GET     /connectors/{name}/dead-letters       its dead letters (``?all=true&limit=N``)
POST    /connectors/{name}/dead-letters/redrive  send them back (:mod:`backbone.redrive`)
GET     /topics                               topics with partitions, offsets, sizes
GET     /topics/{name}                        one topic with its configs
GET     /topics/{name}/records                browse: newest first, or ``?offset=``/``?from=``
GET     /groups                               consumer groups with lag
GET     /groups/{name}                        members and per-partition lag
GET     /health                               liveness (the HTTP app's own route)
GET     /ready                                200, or 503 with the reasons
GET     /metrics                              Prometheus text (:mod:`backbone.metrics`)
GET     /openapi.json                         this API as OpenAPI 3.1
======  ====================================  ==========================================

**Access.** With ``http.admin_token`` every admin route needs ``Authorization:
Bearer <token>`` (else 401); without one they answer only clients on loopback
whose ``Host`` is ``localhost`` or a loopback address (else 403; the ``Host`` check
stops DNS rebinding). ``/health`` and ``/ready`` are always open, for probes.
:meth:`AdminApi.authorize` is the check, for other routes (the console) to reuse.

**Cross-site requests.** A route that changes state (every POST) also refuses
what a browser sends from another site, so that a hostile page open on the
operator's machine cannot pause or restart a connector through a loopback-only
admin API: 403 when ``Origin`` or ``Sec-Fetch-Site`` names another site
(:func:`backbone.httpapp.refuse_cross_site`, the console's check too) and, without
``http.admin_token``, 415 for a form body (``application/x-www-form-urlencoded``,
``multipart/form-data``, ``text/plain``: what a cross-site form can send even
from a browser that sends neither header). These routes read no body; curl,
httpx and the ``backbone`` CLI send neither header and no form body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import backbone
from backbone.errors import BackboneError
from backbone.httpapp import HttpApp, HttpError, form_body, refuse_cross_site
from backbone.kafka_admin import (
    GroupBusyError,
    KafkaAdmin,
    UnknownTopicError,
    browse,
    describe_error,
)
from backbone.metrics import CONTENT_TYPE, GatewayCollector, render
from backbone.openapi import Operation, Parameter, document
from backbone.supervisor import ConnectorStateError
from backbone.views import (
    ConnectorDetail,
    ConnectorPartition,
    ConnectorView,
    DeadLetterView,
    GroupSummary,
    GroupView,
    RateSample,
    RecordPage,
    RecordView,
    RedriveResult,
    TopicView,
)
from backbone.worker import ConnectorState

if TYPE_CHECKING:
    from backbone.runner import Runner

__all__ = ["OWNER", "AdminApi", "Readiness"]

OWNER = "admin"
WAIT = 30.0
"""How long pause/resume wait for the connector to get there before answering 202."""

Handler = Callable[[Request], Awaitable[Any]]


class Readiness(BaseModel):
    """``GET /ready``: whether the gateway does its work, and if not, why."""

    ready: bool
    reasons: list[str]


def _when(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)


def _json(value: Any, status: int = 200) -> JSONResponse:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    return JSONResponse(data, status_code=status)


class AdminApi:
    """The admin routes of one runner (see the module docstring)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        settings = runner.config.http
        token = settings.admin_token if settings is not None else None
        self._token = token.get_secret_value().encode() if token is not None else None
        self._cluster: KafkaAdmin | None = None
        self._cluster_lock = asyncio.Lock()
        self.collector = GatewayCollector(runner.status, self._lag, runner.broker_stats)
        self.operations = self._operations()

    # -- wiring -----------------------------------------------------------------

    def install(self, http: HttpApp) -> None:
        """Add every admin route to ``http`` (owner ``admin``)."""
        for op, handler, guarded in self.operations:
            http.add_route(
                op.path, self._endpoint(handler, guarded), methods=(op.method,), owner=OWNER
            )

    async def close(self) -> None:
        """Close the admin API's Kafka clients (idempotent)."""
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.__aexit__(None, None, None)

    def authorize(self, request: Request) -> None:
        """Raise :class:`HttpError` 401/403 unless ``request`` may use the admin routes."""
        if self._token is not None:
            sent = request.headers.get("authorization", "")
            scheme, _, credential = sent.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), self._token
            ):
                raise HttpError(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <http.admin_token>)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return
        host = request.client.host if request.client is not None else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise HttpError(
                403,
                "the admin API answers only on loopback unless http.admin_token is set",
            )
        name = _host_name(request.headers.get("host", ""))
        if not _is_loopback_name(name):
            # DNS rebinding: a hostile name resolving to 127.0.0.1 makes a browser send
            # its page's requests here with that name as Host (and a matching Origin)
            raise HttpError(
                403,
                f"Host {name!r} is not a loopback name: without http.admin_token the admin "
                "API answers only requests for localhost or a loopback address",
            )

    def refuse_forgery(self, request: Request) -> None:
        """Raise :class:`HttpError` 403/415 if ``request`` may be a cross-site forgery.

        For the routes that change state: see "Cross-site requests" in the module
        docstring. With a token, the bearer credential already proves the sender.
        """
        refuse_cross_site(request)
        media = form_body(request)
        if media is not None and self._token is None:
            raise HttpError(
                415,
                f"the admin API takes no form body (Content-Type: {media}), "
                "since a page on another site could send one: send no body "
                "or Content-Type: application/json",
            )

    def _endpoint(
        self, handler: Handler, guarded: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if guarded:
                self.authorize(request)
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                self.refuse_forgery(request)
            try:
                result = await handler(request)
            except UnknownTopicError as exc:
                raise HttpError(404, str(exc)) from None
            except (ConnectorStateError, GroupBusyError) as exc:
                raise HttpError(409, str(exc)) from None
            if isinstance(result, Response):
                return result
            return _json(result)

        return endpoint

    async def cluster(self) -> KafkaAdmin:
        """The admin API's :class:`KafkaAdmin` (started on first use)."""
        async with self._cluster_lock:
            if self._cluster is None:
                kafka = self.runner.kafka
                if kafka is None:
                    raise HttpError(503, "the gateway is still starting")
                data_dir = None
                embedded = self.runner.config.broker.embedded
                if embedded is not None and self.runner.config.broker.bootstrap is None:
                    data_dir = self.runner.config.resolve(embedded.data_dir)
                self._cluster = await KafkaAdmin(kafka, data_dir).__aenter__()
            return self._cluster

    # -- connectors -------------------------------------------------------------

    def _supervisor(self, request: Request) -> Any:
        name = request.path_params["name"]
        found = self.runner.connectors.get(name)
        if found is None:
            raise HttpError(404, f"no connector {name!r}")
        return found

    def _lag(self, name: str) -> dict[tuple[str, int], int]:
        supervisor = self.runner.connectors.get(name)
        return supervisor.lag() if supervisor is not None else {}

    def view(self, name: str) -> ConnectorView:
        """The :class:`ConnectorView` of connector ``name``."""
        return ConnectorView(**self._fields(name))

    def _fields(self, name: str) -> dict[str, Any]:
        config = self.runner.config
        status = self.runner.status[name]
        topics: list[str]
        outputs: list[str] = []
        group = None
        if status.role == "source":
            entry: Any = config.sources[name]
            kind, topics = entry.type, [entry.topic]
        elif status.role == "sink":
            entry = config.sinks[name]
            kind, topics, group = entry.type, list(entry.topics), f"backbone.{name}"
        else:
            entry = config.processors[name]
            kind = "function" if entry.function else "transforms"
            topics, group = list(entry.topics), f"backbone.{name}"
            outputs = [entry.to] if entry.to else []
            for step in entry.transforms or ():
                route = getattr(step, "route", None)
                if route is not None:
                    outputs += [*route.topics.values(), *([route.default] if route.default else [])]
        lag = self._lag(name) if status.role != "source" else {}
        reporter = self.runner.reporter
        rate_in, rate_out = reporter.rates(name) if reporter is not None else (0.0, 0.0)
        return {
            "name": name,
            "role": status.role,
            "kind": kind,
            "state": status.state.value,
            "error": status.error,
            "last_error": status.last_error,
            "last_error_at": _when(status.last_error_at),
            "records_in": status.records_in,
            "records_out": status.records_out,
            "dead_lettered": status.dead_lettered,
            "retries": status.retries,
            "errors": status.errors,
            "rate_in": round(rate_in, 3),
            "rate_out": round(rate_out, 3),
            "last_record_at": _when(
                status.last_record_ms / 1000 if status.last_record_ms is not None else None
            ),
            "position": status.position if status.role == "source" else None,
            "lag": sum(lag.values()) if lag else None,
            "topics": topics,
            "outputs": sorted(set(outputs)),
            "dead_letter_topic": entry.dead_letter_topic,
            "group": group,
            "restarts": status.restarts,
            "worker": status.worker,
        }

    async def list_connectors(self, request: Request) -> list[ConnectorView]:
        return [self.view(name) for name in self.runner.status]

    async def get_connector(self, request: Request) -> ConnectorDetail:
        supervisor = self._supervisor(request)
        fields = self._fields(supervisor.name)
        partitions: list[ConnectorPartition] = []
        if fields["group"] is not None:
            cluster = await self.cluster()
            try:
                group = await cluster.group(fields["group"])
            except BackboneError:
                group = None  # never committed anything yet
            if group is not None:
                partitions = [
                    ConnectorPartition(
                        topic=p.topic,
                        partition=p.partition,
                        committed=p.committed,
                        end_offset=p.end_offset,
                        lag=p.lag,
                    )
                    for p in group.partitions
                    if p.topic in fields["topics"]
                ]
        reporter = self.runner.reporter
        history = [
            RateSample(at=dt.datetime.fromtimestamp(at, dt.UTC), records_in=i, records_out=o)
            for at, i, o in (reporter.history(supervisor.name) if reporter is not None else [])
        ]
        return ConnectorDetail(**fields, partitions=partitions, history=history)

    async def _until(self, name: str, done: Callable[[ConnectorState], bool]) -> bool:
        status = self.runner.status[name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not done(status.state):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def pause(self, request: Request) -> Response:
        supervisor = self._supervisor(request)
        supervisor.pause()
        reached = await self._until(
            supervisor.name,
            lambda s: s in (ConnectorState.PAUSED, ConnectorState.FAILED, ConnectorState.STOPPED),
        )
        return _json(self.view(supervisor.name), 200 if reached else 202)

    async def resume(self, request: Request) -> Response:
        supervisor = self._supervisor(request)
        supervisor.resume()
        reached = await self._until(supervisor.name, lambda s: s is not ConnectorState.PAUSED)
        return _json(self.view(supervisor.name), 200 if reached else 202)

    async def restart(self, request: Request) -> ConnectorView:
        supervisor = self._supervisor(request)
        await supervisor.restart()
        return self.view(supervisor.name)

    async def dead_letters(self, request: Request) -> list[DeadLetterView]:
        from backbone.redrive import dead_letters

        supervisor = self._supervisor(request)
        cluster = await self.cluster()
        pending = request.query_params.get("all", "false").lower() not in ("true", "1", "yes")
        limit = _int_param(request, "limit", 100, low=1, high=10_000)
        try:
            return await dead_letters(
                cluster, self.runner.config, supervisor.name, pending=pending, limit=limit
            )
        except UnknownTopicError:
            return []  # the dead-letter topic was never written to
        except BackboneError as exc:
            raise HttpError(409, str(exc)) from None

    async def redrive(self, request: Request) -> RedriveResult:
        from backbone.redrive import redrive

        supervisor = self._supervisor(request)
        kafka = self.runner.kafka
        assert kafka is not None
        try:
            return await redrive(kafka, self.runner.config, self.runner.registry, supervisor.name)
        except UnknownTopicError:
            raise HttpError(409, f"{supervisor.name} has no dead letters yet") from None
        except BackboneError as exc:
            raise HttpError(409, str(exc)) from None

    # -- topics and groups ------------------------------------------------------

    async def topics(self, request: Request) -> list[TopicView]:
        internal = request.query_params.get("internal", "false").lower() in ("true", "1", "yes")
        return await (await self.cluster()).topics(internal=internal)

    async def topic(self, request: Request) -> TopicView:
        name = request.path_params["name"]
        (view,) = await (await self.cluster()).topics([name], configs=True)
        return view

    async def records(self, request: Request) -> RecordPage:
        name = request.path_params["name"]
        cluster = await self.cluster()
        tps = await cluster.partitions(name)
        partition = request.query_params.get("partition")
        if partition is not None:
            number = _int_param(request, "partition", 0, low=0, high=len(tps) - 1)
            tps = [TopicPartition(name, number)]
        offset = request.query_params.get("offset")
        when_text = request.query_params.get("from")
        when = None
        if when_text is not None:
            try:
                when = dt.datetime.fromisoformat(when_text)
            except ValueError:
                raise HttpError(
                    400, f"from: expected an ISO-8601 date-time (got {when_text!r})"
                ) from None
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        found = await browse(
            cluster,
            tps,
            offset=None if offset is None else _int_param(request, "offset", 0, low=0),
            when=when,
            limit=_int_param(request, "limit", 50, low=1, high=1000),
        )
        return RecordPage(
            topic=name,
            records=[
                RecordView.of(
                    m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, m.headers
                )
                for m in found
            ],
        )

    async def groups(self, request: Request) -> list[GroupSummary]:
        return await (await self.cluster()).groups()

    async def group(self, request: Request) -> GroupView:
        cluster = await self.cluster()
        name = request.path_params["name"]
        try:
            return await cluster.group(name)
        except BackboneError as exc:
            raise HttpError(404, str(exc)) from None

    # -- health, readiness, metrics, schema -------------------------------------

    async def ready(self, request: Request) -> Response:
        reasons = []
        try:
            cluster = await self.cluster()
            await asyncio.wait_for(cluster.admin.list_topics(), 5.0)
        except Exception as exc:
            reasons.append(f"broker {self.runner.bootstrap} unreachable: {describe_error(exc)}")
        for name, status in self.runner.status.items():
            if status.state not in (ConnectorState.RUNNING, ConnectorState.PAUSED):
                why = f": {status.error}" if status.error else ""
                reasons.append(f"{status.role} {name} is {status.state.value}{why}")
        body = Readiness(ready=not reasons, reasons=reasons)
        return _json(body, 200 if body.ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(render(self.collector), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        ops = [op for op, _, _ in self.operations]
        return JSONResponse(document("Backbone admin API", backbone.__version__, ops))

    def _operations(self) -> list[tuple[Operation, Handler, bool]]:
        name = Parameter("name", {"type": "string"}, "The connector, topic or group.", "path")
        auth = (401, 403)
        post = (*auth, 415)
        return [
            (Operation("GET", "/connectors", "Every connector: state, counters, rate, lag.",
                       list[ConnectorView], errors=auth), self.list_connectors, True),
            (Operation("GET", "/connectors/{name}", "One connector with per-partition lag and "
                       "its totals every 5 s over the last 10 minutes.", ConnectorDetail,
                       [name], errors=(*auth, 404)), self.get_connector, True),
            (Operation("POST", "/connectors/{name}/pause", "Pause; answers once PAUSED (202 if "
                       "it is not yet after 30 s). A paused sink leaves its group.",
                       ConnectorView, [name], errors=(*post, 404, 409),
                       extra_responses={202: "asked, not PAUSED yet"}), self.pause, True),
            (Operation("POST", "/connectors/{name}/resume", "Resume a paused connector.",
                       ConnectorView, [name], errors=(*post, 404, 409),
                       extra_responses={202: "asked, still PAUSED"}), self.resume, True),
            (Operation("POST", "/connectors/{name}/restart", "Stop gracefully and start a fresh "
                       "instance (also a FAILED one).", ConnectorView, [name],
                       errors=(*post, 404)), self.restart, True),
            (Operation("GET", "/connectors/{name}/dead-letters", "Its dead-lettered records, "
                       "oldest first: pending ones (all with all=true).", list[DeadLetterView],
                       [name, Parameter("all", {"type": "boolean"}, "Include redriven ones."),
                        Parameter("limit", {"type": "integer"}, "At most this many (100).")],
                       errors=(*auth, 404, 409)), self.dead_letters, True),
            (Operation("POST", "/connectors/{name}/dead-letters/redrive", "Send its pending dead "
                       "letters back (sinks: through the sink; processors: through the "
                       "processor; sources: re-published to the topic).", RedriveResult, [name],
                       errors=(*post, 404, 409)), self.redrive, True),
            (Operation("GET", "/topics", "Topics with partitions, offsets and sizes on disk.",
                       list[TopicView],
                       [Parameter("internal", {"type": "boolean"}, "Include internal topics.")],
                       errors=auth), self.topics, True),
            (Operation("GET", "/topics/{name}", "One topic with every config.", TopicView,
                       [name], errors=(*auth, 404)), self.topic, True),
            (Operation("GET", "/topics/{name}/records", "Browse records: the newest first, or "
                       "oldest first from an offset or a date-time.", RecordPage,
                       [name, Parameter("partition", {"type": "integer"}, "Only this one."),
                        Parameter("offset", {"type": "integer"}, "From this offset."),
                        Parameter("from", {"type": "string", "format": "date-time"},
                                  "From the first record at or after this time."),
                        Parameter("limit", {"type": "integer"}, "At most (50, max 1000).")],
                       errors=(*auth, 400, 404)), self.records, True),
            (Operation("GET", "/groups", "Consumer groups with state and lag.",
                       list[GroupSummary], errors=auth), self.groups, True),
            (Operation("GET", "/groups/{name}", "A consumer group: members, per-partition lag.",
                       GroupView, [name], errors=(*auth, 404)), self.group, True),
            (Operation("GET", "/ready", "200 when the broker answers and every connector runs "
                       "(or is paused), else 503 with the reasons.", Readiness,
                       extra_responses={503: "not ready"}, tag="probes"), self.ready, False),
            (Operation("GET", "/metrics", "Prometheus text exposition.", None, errors=auth),
             self.metrics, True),
            (Operation("GET", "/openapi.json", "This document.", {"type": "object"},
                       errors=auth), self.openapi, True),
        ]  # fmt: skip


def _int_param(
    request: Request, name: str, default: int, *, low: int | None = None, high: int | None = None
) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{name}: expected a whole number (got {text!r})") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise HttpError(400, f"{name}: {value} is out of range ({low}..{high})")
    return value


def _host_name(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_loopback_name(name: str) -> bool:
    """``localhost`` (or a name under it) or a loopback IP address."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
