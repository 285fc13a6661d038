"""The ingest service: ``create_app(settings, sinks)`` (an ASGI app, run by uvicorn in the container).

POST /v1/events validates each event on its own, keeps rejected ones in the
bad-events sink with their reason, and answers 202 only once the accepted ones
are durable (in the stream, or in the dead-letter queue when the stream fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from time import monotonic, time_ns
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ingest.batcher import TOO_LONG, GroupCommitter
from ingest.limits import RateLimiter
from ingest.metrics import Metrics
from streamboard.badevents import keep_bad_events
from streamboard.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    http_status,
)
from streamboard.overflow import overflow_pointer
from streamboard.ports import App, AppRegistry, DeadLetterQueue, EventStream, Lake, StreamRecord
from streamboard.registry import REGISTRY, InvalidEvent, Registry, format_ts, repeats_top_level_key
from streamboard.serving import NO_BODY_ALLOWANCE, BodyGuard
from streamboard.settings import Settings

if TYPE_CHECKING:
    from streamboard.usage import Usage

log = logging.getLogger("streamboard.ingest")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass
class IngestSinks:
    stream: EventStream
    dlq: DeadLetterQueue
    apps: AppRegistry
    lake: Lake  # where the bad-events sink writes
    usage: Usage | None = None  # the local stack's billable units: the events made durable are counted


class _AuthCache:
    """Key-hash lookups cached briefly, so a hot app does not hit the registry on every request. The handler
    looks a key (as the header carries it, bytes) up in :attr:`cache` itself, and calls :meth:`load` on a miss
    or an expired entry."""

    def __init__(self, apps: AppRegistry, ttl: float = 30.0) -> None:
        self.apps, self.ttl = apps, ttl
        self.cache: dict[bytes, tuple[float, App | None]] = {}  # by key: (until, its app)

    def load(self, key: bytes) -> App | None:
        """Look the key up in the registry (decoded as latin-1) and keep the answer for ``ttl`` seconds."""
        app = self.apps.authenticate(key.decode("latin-1"))
        if len(self.cache) > 10_000:
            self.cache.clear()
        self.cache[key] = (monotonic() + self.ttl, app)
        return app


async def _read_body(receive: Receive, limit: int, encoding: str, message: MutableMapping[str, Any]) -> bytes:
    """The body, from its first message on, at most ``limit`` bytes as it arrives (:class:`PayloadTooLarge`
    past it), inflated if gzip (capped again once inflated). :class:`ClientDisconnect` when the client goes
    away first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if encoding == "gzip":
        body = gunzip(body, limit)
    elif encoding not in ("identity", ""):
        raise BadRequest(f"unsupported content-encoding {encoding!r}; send gzip or no encoding")
    return body


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, every member of it (RFC 1952 allows several, one after another), inflated to at most
    ``limit`` bytes: a zip bomb stops at the limit."""
    out: list[bytes] = []
    size, rest = 0, body
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}") from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest("body is not valid gzip: it ends inside a member")
        out.append(part)
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # trailing zero padding, which gzip(1) ignores too
            break
    return b"".join(out)


def _events_of(body: bytes, max_events: int) -> list[Any]:
    if not body.strip():
        raise BadRequest('empty body; send {"events": [...]} or one event object')
    try:
        doc = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: a string is not valid UTF-8 ({exc.reason}); "
                         "send text encoded as UTF-8") from None
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    if isinstance(doc, dict) and "events" in doc:
        if set(doc) != {"events"}:
            raise BadRequest("a batch body has only the key 'events'")
        if repeats_top_level_key(body):
            raise BadRequest("the key 'events' appears more than once; send one 'events' array")
        events = doc["events"]
        if not isinstance(events, list):
            raise BadRequest("'events' must be an array of event objects")
    elif isinstance(doc, dict):
        events = [doc]
    else:
        raise BadRequest('body must be {"events": [...]} or one event object')
    if not events:
        raise BadRequest("'events' is empty")
    if len(events) > max_events:
        raise PayloadTooLarge(f"{len(events)} events in one request; the limit is {max_events}")
    return events


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded by msgspec (Starlette's JSONResponse goes through the stdlib encoder)."""
    return Response(_encoder.encode(content), status, headers, media_type="application/json")


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")


async def _send_json(send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]] | None = None, *,
                     close: bool = False) -> None:
    body = _encoder.encode(content)
    head = [_JSON, (b"content-length", b"%d" % len(body))]
    if headers:
        head += headers
    if close:
        head.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _accepted_answer(count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages of the 202 to a body whose ``count`` events were all accepted (made once per
    count: the hot path sends them as they are)."""
    body = _encoder.encode({"accepted": count, "rejected": []})
    return ({"type": "http.response.start", "status": 202,
             "headers": [_JSON, (b"content-length", b"%d" % len(body))]},
            {"type": "http.response.body", "body": body})


class _Clock:
    """The time a request arrived, from ``time.time_ns()``: ``format_ts`` of it (to the millisecond), its text
    up to the second made once a second; :attr:`second` is the datetime of that second's start."""

    def __init__(self) -> None:
        self.at = -1
        self.second = dt.datetime.fromtimestamp(0, dt.UTC)
        self.prefix = ""

    def text(self, ns: int) -> str:
        at, rest = divmod(ns, 1_000_000_000)
        if at != self.at:
            self.at, self.second = at, dt.datetime.fromtimestamp(at, dt.UTC)
            self.prefix = format_ts(self.second)[:-4]
        return f"{self.prefix}{rest // 1_000_000:03d}Z"

    def exact(self, ns: int) -> dt.datetime:
        """The datetime of ``ns`` (after :meth:`text` of it)."""
        return self.second + dt.timedelta(microseconds=ns % 1_000_000_000 // 1000)


class _Asgi:
    """An ASGI callable as a Starlette endpoint (a plain function would be wrapped in a Request)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class IngestApp(Protocol):
    """What :func:`create_app` returns: the ingest service's ASGI callable, ``POST /v1/events`` handled in it
    and everything else (health, the OpenAPI document, lifespan, 404 and 405) passed to its Starlette app,
    whose ``state`` it carries (``state.committer``)."""

    state: Any

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]: ...


def _count_accepted(usage: Usage) -> Callable[[int], None]:
    return lambda events: usage.add(events_accepted=events)


def create_app(settings: Settings, sinks: IngestSinks, registry: Registry = REGISTRY) -> IngestApp:
    metrics = Metrics("ingest")
    tally = metrics.counter("Requests", "EventsAccepted", "EventsRejected")  # each answered request's counts
    committer = GroupCommitter(sinks.stream, sinks.dlq, linger_ms=settings.ingest_linger_ms,
                               max_pending=settings.ingest_max_pending, max_in_flight=settings.ingest_max_in_flight,
                               oversize=overflow_pointer(sinks.lake), metrics=metrics,
                               written=None if sinks.usage is None else _count_accepted(sinks.usage),
                               request_timeout=settings.ingest_request_timeout_s)
    limiter = RateLimiter(settings.rate_limit_events_per_s, settings.rate_limit_burst)
    limiting = settings.rate_limit_events_per_s > 0
    max_events = settings.ingest_max_events
    auth = _AuthCache(sinks.apps)
    auth_cache = auth.cache  # looked up in the handler first (a call less per request)
    max_future = dt.timedelta(seconds=settings.max_future_seconds)
    max_body = settings.ingest_max_body
    clock = _Clock()
    accepted_answers: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}  # by count, for bodies all accepted

    async def ingest_app(scope: Scope, receive: Receive, send: Send) -> None:
        """The app; ``POST /v1/events`` here, as a plain ASGI callable: the hot path skips the framework's
        routing, middleware and request objects (a third of a single event's cost under Starlette). Body
        limits as :class:`BodyGuard` sets them for the other routes: a declared length over the cap is refused
        before the body is read; a body cut off at the cap, or any answer before the body was read to its end,
        closes the connection. Two deadlines, each ``ingest_request_timeout_s``: the body's arrival (408, kept
        by the connection: streamboard.serving), and its events' write (503, not acknowledged; kept by the
        group committer, per group)."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/events":
            await framework(scope, receive, send)
            return
        head = dict(scope["headers"])  # (a repeated header: its last value, as a loop over them would take)
        key = head.get(b"x-api-key")
        encoding = head.get(b"content-encoding")
        chunked = b"transfer-encoding" in head
        length = head.get(b"content-length")
        declared = None if length is None else int(length) if length.isdigit() and len(length) < 19 else -1
        if declared is not None and (declared < 0 or declared > max_body):
            await _send_json(send, 413, {"error": f"the request body is over the limit of {max_body} bytes "
                                                  f"(content-length: {declared if declared >= 0 else 'invalid'})"},
                             close=True)
            return
        read = not chunked and not declared  # the body was read to its end (none was sent)
        try:
            if not key:
                raise Unauthorized("missing x-api-key header")
            hit = auth_cache.get(key)
            app = hit[1] if hit is not None and hit[0] > monotonic() else auth.load(key)
            if app is None:
                raise Unauthorized("unknown API key")
            if app.role != "app":
                raise Forbidden(f"a key of role {app.role!r} cannot post events; use an app's key")
            # The body's deadline is the connection's (streamboard.serving: 408 and close, and this request
            # then sees its client gone).
            message = await receive()
            if message.get("more_body") or encoding is not None or message["type"] != "http.request":
                body = await _read_body(receive, max_body,
                                        "identity" if encoding is None else encoding.decode("latin-1").lower(),
                                        message)
            else:
                body = message["body"]
                if len(body) > max_body:
                    raise PayloadTooLarge(f"request body exceeds the limit of {max_body} bytes")
            read = True
            ns = time_ns()
            now_text = clock.text(ns)
            # Fast path: a body whose every event is valid, checked in one pass. Its bound on ts is from the
            # start of this second (stricter by less than a second: an event past it takes the slow path).
            fast = registry.validate_batch(body, app_id=app.app_id, received_at=clock.second,
                                           received_at_text=now_text, max_future=max_future, max_events=max_events)
            if fast is not None:
                count, records = fast
                rejected = bad = None
                if limiting:
                    limit(app, count)
            else:
                count, records, rejected, bad = checked_each(app, body, ns, now_text)
            if bad:
                try:
                    await asyncio.to_thread(keep_bad_events, sinks.lake, f"ingest-{app.app_id}", bad,
                                            dt.datetime.now(dt.UTC))
                except OSError as exc:
                    log.error("bad-events sink failed: %s", exc)
                    raise Unavailable("cannot keep the rejected events right now; nothing was accepted, "
                                      "retry later", 2.0) from exc
            if records:
                try:
                    await committer.join(records, count)
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # this request's own task is cancelled (the server stops)
                    # another request of the group was cancelled while waiting, and the group's wait with it;
                    # the records are still written: not acknowledged, the client retries
                    raise Unavailable(TOO_LONG, 2.0) from None
        except ClientDisconnect:
            return  # nobody to answer
        except Exception as exc:  # noqa: BLE001 - mapped to a status; unexpected ones logged, never leaked
            status, content, headers = error_answer(scope["path"], exc)
            await _send_json(send, status, content, headers, close=not read)
            return
        counts = tally.counts
        counts[0] += 1
        counts[1] += count
        if rejected:
            counts[2] += len(rejected)
            await _send_json(send, 202, {"accepted": count, "rejected": rejected})
            return
        answer = accepted_answers.get(count)
        if answer is None:
            answer = accepted_answers[count] = _accepted_answer(count)
        await send(answer[0])
        await send(answer[1])

    def checked_each(app: App, body: bytes, ns: int, now_text: str) -> tuple[
            int, list[StreamRecord], list[dict[str, Any]], list[tuple[Any, str]]]:
        """The slow path: each event checked on its own. The accepted events' count and stream records, and the
        rejected events, for the answer (index, reason) and for the bad-events sink (event, reason)."""
        now = clock.exact(ns)
        events = _events_of(body, max_events)
        if limiting:  # before each event's checks: a request over the limit costs no more than its decode
            limit(app, len(events))
        valid, rejected, bad = [], [], []
        for i, raw in enumerate(events):
            try:
                valid.append(registry.check(raw, app_id=app.app_id, received_at=now, max_future=max_future))
            except InvalidEvent as exc:
                rejected.append({"index": i, "error": str(exc)})
                bad.append((raw, str(exc)))
        records = registry.records(valid, app_id=app.app_id, received_at_text=now_text)
        return len(valid), records, rejected, bad

    def limit(app: App, events: int) -> None:
        try:
            limiter.check(app.app_id, events)
        except RateLimited:
            metrics.add("Throttled")
            raise

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document(registry, settings))

    def error_answer(path: str, exc: Exception) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        """An error's status, JSON and headers (``Retry-After`` where retrying helps)."""
        status = http_status(exc)
        headers = []
        if isinstance(exc, RateLimited | Unavailable):
            headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
        if status >= 500 and not isinstance(exc, Unavailable):
            # One line per kind of failure now and then (the log's RepeatFilter), never a trace to the client.
            log.error("ingest failed on %s", path, exc_info=exc)
            return 500, {"error": "internal error; the failure was logged"}, []
        return status, {"error": str(exc)}, headers

    def error_response(request: Request, exc: Exception) -> Response:
        status, content, headers = error_answer(request.url.path, exc)
        return json_response(content, status, {k.decode(): v.decode() for k, v in headers})

    def guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Every error becomes its response here: nothing propagates to Starlette or uvicorn, which would
        log a traceback per request."""
        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except ClientDisconnect:
                return Response(status_code=400)
            except Exception as exc:  # noqa: BLE001 - mapped to a status; unexpected ones logged, never leaked
                return error_response(request, exc)
        return run

    async def on_http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404 and 405 (with ``Allow``), in the JSON shape of every other error."""
        assert isinstance(exc, HTTPException)
        return json_response({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await committer.start()
        reporter = asyncio.create_task(_report(), name="metrics")
        try:
            yield
        finally:
            await committer.stop(settings.stop_timeout_s)  # flush: nothing acknowledged is left unwritten
            reporter.cancel()
            metrics.flush()

    async def _report() -> None:
        while True:
            await asyncio.sleep(10)
            metrics.observe("BufferDepth", committer.pending)
            metrics.add("BreakerOpen", 1 if committer.breaker.state != "closed" else 0)
            metrics.flush()

    framework = Starlette(
        routes=[
            # reached only by other methods (405 with Allow: POST): ingest_app serves every POST itself
            Route("/v1/events", _Asgi(ingest_app), methods=["POST"]),
            Route("/healthz", guarded(healthz), methods=["GET"]),
            Route("/openapi.json", guarded(openapi), methods=["GET"]),
        ],
        # The body is capped on the wire as it arrives; gzip is capped again once inflated (_read_body).
        middleware=[Middleware(BodyGuard, body_limit=lambda method, path: max_body if path == "/v1/events"
                               else NO_BODY_ALLOWANCE)],
        exception_handlers={HTTPException: on_http_error},
        lifespan=lifespan,
    )
    framework.state.committer = committer
    ingest_app.state = framework.state  # type: ignore[attr-defined]
    return cast(IngestApp, ingest_app)


def openapi_document(registry: Registry, settings: Settings) -> dict[str, Any]:
    """The ingest API's OpenAPI document, with one event schema per registered type."""
    schemas, refs = {}, []
    for t in registry:
        props: dict[str, Any] = {"event_type": {"const": t.name}}
        for f in t.columns:
            if f.name in ("app_id", "received_at", "event_type"):
                continue
            props[f.name] = msgspec.json.schema(f.py_type)
            props[f.name].pop("$defs", None)
            if f.doc:
                props[f.name]["description"] = f.doc
        props["app_id"] = {"type": "string", "description": "optional; must equal the key's app"}
        server_set = ("app_id", "received_at", "event_type")
        required = ["event_type"] + [f.name for f in t.columns if f.required and f.name not in server_set]
        schemas[f"{t.name}_event"] = {"type": "object", "properties": props, "required": required,
                                      "additionalProperties": False, "description": t.doc}
        refs.append({"$ref": f"#/components/schemas/{t.name}_event"})
    error = {"type": "object", "properties": {"error": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Streamboard ingest API", "version": "1"},
        "paths": {
            "/v1/events": {
                "post": {
                    "summary": f"Post up to {settings.ingest_max_events} events ({settings.ingest_max_body} bytes)",
                    "parameters": [{"name": "x-api-key", "in": "header", "required": True,
                                    "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                        {"type": "object", "properties": {"events": {"type": "array", "items": {"oneOf": refs},
                                                                     "maxItems": settings.ingest_max_events}},
                         "required": ["events"]},
                        *refs,
                    ]}}}},
                    "responses": {
                        "202": {"description": "Accepted events are durable", "content": {"application/json": {
                            "schema": {"type": "object", "properties": {
                                "accepted": {"type": "integer"},
                                "rejected": {"type": "array", "items": {"type": "object", "properties": {
                                    "index": {"type": "integer"}, "error": {"type": "string"}}}}}}}}},
                        **{code: {"description": d, "content": {"application/json": {"schema": error}}}
                           for code, d in [("400", "Malformed body"), ("401", "Missing or unknown key"),
                                           ("413", "Too large"), ("429", "Rate limited"),
                                           ("503", "Stream and dead-letter queue unavailable")]},
                    },
                }
            },
            "/healthz": {"get": {"responses": {"200": {"description": "Healthy"}}}},
        },
        "components": {"schemas": schemas},
    }


