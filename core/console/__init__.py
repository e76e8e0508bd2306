"""The web console: see and steer the gateway in a browser, from its own HTTP server.

Server-rendered HTML (Jinja2 templates in ``templates/``) with a little plain
JavaScript and CSS shipped in the package (``static/``, served at ``/ui/static``):
no build step, no CDN, every page works without JavaScript; with it, the overview
and connector pages refresh themselves every few seconds.

======  ===================================  =========================================
GET     /                                    overview: the flow, broker summary (live)
GET     /ui/connectors/{name}                one connector: state, counters, lag, chart
POST    /ui/connectors/{name}/pause          pause | resume | restart (then back to it)
POST    /ui/connectors/{name}/replay         a sink from a date-time: plan, then confirm
GET     /ui/topics                           topics (``?internal=1`` with internal ones)
GET     /ui/topics/{name}                    partitions, configs and the message browser
GET     /ui/groups, /ui/groups/{name}        consumer groups, members, lag per partition
GET     /ui/dead-letters                     connectors with a dead-letter topic
GET     /ui/dead-letters/{name}              its dead letters with their error headers
POST    /ui/dead-letters/{name}/redrive      redrive the pending ones
GET     /ui/login, POST /ui/login, /logout   only with ``http.admin_token``
======  ===================================  =========================================

Every figure comes from the same code the admin API answers with
(:class:`backbone.admin.AdminApi`), so the two always agree. Access and the
cross-site request check: :mod:`backbone.console._auth`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

import backbone
from backbone.console._auth import COOKIE, ConsoleAuth
from backbone.console._format import FILTERS, rate_chart
from backbone.errors import BackboneError
from backbone.httpapp import HttpApp, HttpError, refuse_cross_site
from backbone.kafka_admin import GroupBusyError, UnknownTopicError, browse, commit_offsets
from backbone.supervisor import ConnectorStateError
from backbone.views import RecordView, RedriveResult

if TYPE_CHECKING:
    from backbone.admin import AdminApi
    from backbone.runner import Runner

__all__ = ["OWNER", "Console"]

OWNER = "console"
HERE = Path(__file__).parent
REFRESH_MS = 3000
"""How often the overview and connector pages refresh themselves."""

Page = Callable[[Request], Awaitable[Response]]

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
_DONE = {
    "paused": "Paused.",
    "resumed": "Resumed.",
    "restarted": "Restarted.",
    "replayed": "Replay started: the sink's group was moved back {n} record(s).",
    "pause-pending": "Asked to pause; not PAUSED yet.",
    "resume-pending": "Asked to resume; still PAUSED.",
}


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")


def _int(text: str | None, what: str, *, low: int = 0, high: int | None = None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{what}: expected a whole number (got {text!r})") from None
    if value < low or (high is not None and value > high):
        raise HttpError(400, f"{what}: {value} is out of range ({low}..{high})")
    return value


def _when(text: str | None, what: str) -> dt.datetime | None:
    """An ISO-8601 date-time (a browser's ``datetime-local`` included); UTC if naive."""
    if text is None or not text.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise HttpError(
            400, f"{what}: expected a date-time like 2026-01-31T12:00 (got {text!r})"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class Console:
    """The console's routes for one runner (see the module docstring)."""

    def __init__(self, runner: Runner, admin: AdminApi) -> None:
        self.runner = runner
        self.admin = admin
        settings = runner.config.http
        token = settings.admin_token if settings is not None else None
        self.auth = ConsoleAuth(admin, token.get_secret_value() if token is not None else None)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self._samples: deque[tuple[float, int, int, int]] = deque(maxlen=64)

    # -- wiring -----------------------------------------------------------------

    def install(self, http: HttpApp) -> None:
        """Add the console's routes and static files to ``http`` (owner ``console``)."""
        pages: list[tuple[str, str, Page, bool]] = [
            ("GET", "/", self.overview, True),
            ("GET", "/ui/connectors/{name}", self.connector, True),
            ("POST", "/ui/connectors/{name}/pause", self.pause, True),
            ("POST", "/ui/connectors/{name}/resume", self.resume, True),
            ("POST", "/ui/connectors/{name}/restart", self.restart, True),
            ("POST", "/ui/connectors/{name}/replay", self.replay, True),
            ("GET", "/ui/topics", self.topics, True),
            ("GET", "/ui/topics/{name}", self.topic, True),
            ("GET", "/ui/groups", self.groups, True),
            ("GET", "/ui/groups/{name}", self.group, True),
            ("GET", "/ui/dead-letters", self.dead_letter_index, True),
            ("GET", "/ui/dead-letters/{name}", self.dead_letters, True),
            ("POST", "/ui/dead-letters/{name}/redrive", self.redrive, True),
            ("GET", "/ui/login", self.login_page, False),
            ("POST", "/ui/login", self.login, False),
            ("POST", "/ui/logout", self.logout, False),
        ]
        for method, path, handler, guarded in pages:
            http.add_route(
                path, self._endpoint(handler, method, guarded), methods=(method,), owner=OWNER
            )
        http.add_mount("/ui/static", StaticFiles(directory=HERE / "static"), owner=OWNER)

    def _endpoint(self, handler: Page, method: str, guarded: bool) -> Page:
        async def endpoint(request: Request) -> Response:
            try:
                if method == "POST":
                    request.state.form = await _form(request)
                    if guarded:
                        self.auth.check_post(request, request.state.form.get("csrf"))
                    else:
                        refuse_cross_site(request)
                elif guarded and not self.auth.allowed(request):
                    if self.auth.needs_login:
                        target = urllib.parse.quote(request.url.path, safe="/")
                        return RedirectResponse(f"/ui/login?next={target}", status_code=303)
                    self.auth.check(request)
                return await handler(request)
            except HttpError as exc:
                return self._error(request, exc.status_code, str(exc.detail), exc.headers)
            except UnknownTopicError as exc:
                return self._error(request, 404, str(exc))
            except (ConnectorStateError, GroupBusyError, BackboneError) as exc:
                return self._error(request, 409, str(exc))

        return endpoint

    # -- rendering --------------------------------------------------------------

    def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """``template`` rendered with ``context`` and what every page needs."""
        context.setdefault("section", "")
        context.setdefault("refresh", 0)
        html = self.env.get_template(template).render(
            request=request,
            csrf=self.auth.csrf(request),
            logged_in=self.auth.needs_login and bool(request.cookies.get(COOKIE)),
            version=backbone.__version__,
            rendered=dt.datetime.now(dt.UTC),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def _error(
        self, request: Request, status: int, message: str, headers: Any = None
    ) -> HTMLResponse:
        response = self.render(
            request, "error.html", status=status, status_code=status, message=message
        )
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def _back(self, path: str, **query: Any) -> RedirectResponse:
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return RedirectResponse(path + suffix, status_code=303)

    # -- overview ---------------------------------------------------------------

    def _broker_rates(self) -> dict[str, float | None] | None:
        """Requests and bytes per second of the embedded broker over the last minute."""
        stats = self.runner.broker_stats()
        if stats is None:
            return None
        apis = stats.by_api().values()
        now = time.monotonic()
        sample = (
            now,
            sum(a.requests for a in apis),
            sum(a.bytes_in for a in apis),
            sum(a.bytes_out for a in apis),
        )
        self._samples.append(sample)
        while len(self._samples) > 2 and now - self._samples[1][0] >= 60:
            self._samples.popleft()
        first = self._samples[0]
        elapsed = now - first[0]
        if elapsed < 0.5:  # the first look: rates show on the next refresh
            return {"requests": None, "bytes_in": None, "bytes_out": None, "total": sample[1]}
        return {
            "requests": (sample[1] - first[1]) / elapsed,
            "bytes_in": (sample[2] - first[2]) / elapsed,
            "bytes_out": (sample[3] - first[3]) / elapsed,
            "total": sample[1],
        }

    async def overview(self, request: Request) -> Response:
        connectors = [self.admin.view(name) for name in self.runner.status]
        cluster = await self.admin.cluster()
        every = await cluster.topics(internal=True)
        topics = [t for t in every if not t.internal]
        # topics in flow order: what sources write, what processors write, the rest
        order = [t for c in connectors if c.role == "source" for t in c.topics]
        order += [t for c in connectors if c.role == "processor" for t in c.outputs]
        order += [t for c in connectors for t in c.topics]
        rank = {name: i for i, name in reversed(list(enumerate(order)))}
        sizes = [t.size_bytes for t in every]
        broker = {
            "bootstrap": self.runner.bootstrap,
            "embedded": self.runner.broker_stats() is not None,
            "topics": len(topics),
            "partitions": sum(len(t.partitions) for t in topics),
            "records": sum(t.records for t in topics),
            "size_bytes": None if None in sizes else sum(s or 0 for s in sizes),
            "rates": self._broker_rates(),
        }
        flow = {
            "sources": [c for c in connectors if c.role == "source"],
            "topics": sorted(topics, key=lambda t: (rank.get(t.name, len(order)), t.name)),
            "processors": [c for c in connectors if c.role == "processor"],
            "sinks": [c for c in connectors if c.role == "sink"],
        }
        return self.render(
            request,
            "overview.html",
            section="overview",
            refresh=REFRESH_MS,
            connectors=connectors,
            flow=flow,
            broker=broker,
        )

    # -- connectors -------------------------------------------------------------

    async def connector(self, request: Request) -> Response:
        detail = await self.admin.get_connector(request)
        done = request.query_params.get("done")
        note = _DONE.get(done or "", "").format(n=_int(request.query_params.get("n"), "n") or 0)
        return self.render(
            request,
            "connector.html",
            section="overview",
            refresh=REFRESH_MS,
            c=detail,
            chart=rate_chart(detail.history),
            note=note,
            now=dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat(),
        )

    async def pause(self, request: Request) -> Response:
        answer = await self.admin.pause(request)
        name = request.path_params["name"]
        done = "paused" if answer.status_code == 200 else "pause-pending"
        return self._back(f"/ui/connectors/{_q(name)}", done=done)

    async def resume(self, request: Request) -> Response:
        answer = await self.admin.resume(request)
        name = request.path_params["name"]
        done = "resumed" if answer.status_code == 200 else "resume-pending"
        return self._back(f"/ui/connectors/{_q(name)}", done=done)

    async def restart(self, request: Request) -> Response:
        await self.admin.restart(request)
        return self._back(f"/ui/connectors/{_q(request.path_params['name'])}", done="restarted")

    async def replay(self, request: Request) -> Response:
        from backbone.replay import plan_replay

        name = request.path_params["name"]
        if name not in self.runner.config.sinks:
            raise HttpError(409, f"only a sink can replay (no sink {name!r})")
        form = request.state.form
        start_text = form.get("from", "").strip()
        start: str | dt.datetime
        if form.get("earliest") or start_text == "earliest":
            start = "earliest"
        else:
            when = _when(start_text, "from")
            if when is None:
                raise HttpError(400, "from: give a date-time, or tick 'from the beginning'")
            start = when
        cluster = await self.admin.cluster()
        plan = await plan_replay(cluster, self.runner.config, name, start, None)
        if form.get("confirm") != "yes":
            rows = [
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": plan.committed.get(tp),
                    "begin": plan.begin[tp],
                    "records": max(plan.stop[tp] - plan.begin[tp], 0),
                }
                for tp in sorted(plan.begin)
            ]
            return self.render(
                request,
                "replay.html",
                section="overview",
                name=name,
                start=start if isinstance(start, str) else start.isoformat(),
                earliest=start == "earliest",
                start_text=start_text,
                rows=rows,
                total=plan.total,
            )
        supervisor = self.runner.connectors[name]
        kafka = self.runner.kafka
        assert kafka is not None
        supervisor.pause()
        try:
            await cluster.wait_idle(plan.group, within=30.0)
            await commit_offsets(kafka, plan.group, plan.begin)
        finally:
            supervisor.resume()  # also when moving failed: never leave it paused
        return self._back(f"/ui/connectors/{_q(name)}", done="replayed", n=plan.total)

    # -- topics -----------------------------------------------------------------

    async def topics(self, request: Request) -> Response:
        internal = _flag(request, "internal")
        views = await (await self.admin.cluster()).topics(internal=internal)
        return self.render(
            request, "topics.html", section="topics", topics=views, internal=internal
        )

    async def topic(self, request: Request) -> Response:
        name = request.path_params["name"]
        cluster = await self.admin.cluster()
        (view,) = await cluster.topics([name], configs=True)
        query = request.query_params
        mode = query.get("mode", "newest")
        if mode not in ("newest", "offset", "time"):
            raise HttpError(400, f"mode: expected newest, offset or time (got {mode!r})")
        partition = _int(query.get("partition"), "partition", high=len(view.partitions) - 1)
        offset = _int(query.get("offset"), "offset") if mode == "offset" else None
        when = _when(query.get("from"), "from") if mode == "time" else None
        if mode == "offset" and offset is None:
            raise HttpError(400, "offset: give the offset to browse from")
        if mode == "time" and when is None:
            raise HttpError(400, "from: give the date-time to browse from")
        limit = _int(query.get("limit"), "limit", low=1, high=1000) or 50
        text = query.get("filter", "")
        tps = [TopicPartition(name, p.partition) for p in view.partitions]
        if partition is not None:
            tps = [TopicPartition(name, partition)]
        found = await browse(cluster, tps, offset=offset, when=when, limit=limit)
        records = [
            RecordView.of(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, m.headers)
            for m in found
        ]
        shown = [r for r in records if _matches(r, text)]
        main = ("retention.ms", "retention.bytes", "cleanup.policy", "segment.bytes")
        configs = sorted(view.configs, key=lambda c: (c.name not in main, c.name))
        return self.render(
            request,
            "topic.html",
            section="topics",
            t=view,
            configs=configs,
            main=main,
            records=shown,
            read=len(records),
            mode=mode,
            form={
                "partition": "" if partition is None else str(partition),
                "offset": "" if offset is None else str(offset),
                "from": query.get("from", "") if mode == "time" else "",
                "limit": str(limit),
                "filter": text,
            },
        )

    # -- groups -----------------------------------------------------------------

    async def groups(self, request: Request) -> Response:
        views = await (await self.admin.cluster()).groups()
        return self.render(request, "groups.html", section="groups", groups=views)

    async def group(self, request: Request) -> Response:
        view = await self.admin.group(request)
        return self.render(request, "group.html", section="groups", g=view)

    # -- dead letters -----------------------------------------------------------

    async def dead_letter_index(self, request: Request) -> Response:
        views = [self.admin.view(name) for name in self.runner.status]
        rows = [view for view in views if view.dead_letter_topic is not None]
        return self.render(request, "dead_letters_index.html", section="dead", connectors=rows)

    async def dead_letters(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = self.admin.view(name) if name in self.runner.status else None
        if view is None:
            raise HttpError(404, f"no connector {name!r}")
        letters = await self.admin.dead_letters(request) if view.dead_letter_topic else []
        query = request.query_params
        result = None
        if "records" in query:
            result = {
                key: _int(query.get(key), key) or 0 for key in ("records", "delivered", "failed")
            }
        return self.render(
            request,
            "dead_letters.html",
            section="dead",
            c=view,
            letters=letters,
            everything=_flag(request, "all"),
            result=result,
        )

    async def redrive(self, request: Request) -> Response:
        name = request.path_params["name"]
        chosen = request.state.form.get("record")
        if chosen is None:
            result = await self.admin.redrive(request)
        else:
            result = await self._redrive_one(name, chosen)
        return self._back(
            f"/ui/dead-letters/{_q(name)}",
            records=result.records,
            delivered=result.delivered,
            failed=result.failed_again,
        )

    async def _redrive_one(self, name: str, chosen: str) -> RedriveResult:
        from backbone.redrive import redrive

        if name not in self.runner.connectors:
            raise HttpError(404, f"no connector {name!r}")
        partition, _, offset = chosen.partition(":")
        where = (_int(partition, "partition"), _int(offset, "offset"))
        if where[0] is None or where[1] is None:
            raise HttpError(400, f"record: expected PARTITION:OFFSET (got {chosen!r})")
        kafka = self.runner.kafka
        assert kafka is not None
        config, registry = self.runner.config, self.runner.registry
        return await redrive(kafka, config, registry, name, only=(where[0], where[1]))

    # -- login ------------------------------------------------------------------

    async def login_page(self, request: Request, *, status: int = 200, error: str = "") -> Response:
        return self.render(
            request,
            "login.html",
            status=status,
            next=_safe_next(request.query_params.get("next")),
            error=error,
            needs_login=self.auth.needs_login,
        )

    async def login(self, request: Request) -> Response:
        form = request.state.form
        session = self.auth.login(form.get("token", ""))
        if session is None:
            return await self.login_page(request, status=401, error="That token is not right.")
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        response.set_cookie(
            COOKIE,
            session,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host`` or a URL with a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _matches(record: RecordView, text: str) -> bool:
    if not text:
        return True
    blob = json.dumps([record.key, record.value, record.headers], ensure_ascii=False)
    return text.lower() in blob.lower()


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the console's forms) as a dict."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        return {}
    if kind != "application/x-www-form-urlencoded":
        raise HttpError(415, f"expected a form (application/x-www-form-urlencoded), got {kind!r}")
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs)
