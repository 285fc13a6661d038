"""Read API Lambda (API Gateway HTTP API, payload format 2.0): leaderboards (the top, or the entries around a
user), profiles with every board's rank, pipeline health, admin refresh, and the web console
(``processors.webconsole``) at ``/``.

Leaderboards are public to read; the refresh needs an admin key. Every error is
a JSON ``{"error": ...}`` with a 4xx status a person can act on; nothing unexpected
leaks a trace to the client.

Caching (DESIGN section 5): a board changes only when a refresh lands, so its response carries an ``ETag`` of
its snapshot and a max-age that ends at the next scheduled refresh (at most :data:`BOARD_MAX_AGE`, so an
on-demand refresh shows up soon); profiles change with every event, so they get a few seconds. Health and
admin answers are ``no-store``. The board store keeps a board's head in this container for a second or so
(``streamboard.boards``): a board served from there is that much older, and its max-age that much shorter.
Reads allow CORS from any origin, without credentials; the admin route does not. API Gateway's HTTP API has
no CORS configuration (infra/streamboard_infra/read_api.py): these headers, and the preflight answers, are
this handler's alone, on AWS and locally.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
import time
from typing import Any
from urllib.parse import parse_qs

import msgspec

from processors import webconsole
from streamboard.backend import Backend
from streamboard.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StreamboardError,
    Unauthorized,
    http_status,
)
from streamboard.health import health_report
from streamboard.microcache import none_match
from streamboard.ports import Board
from streamboard.registry import parse_ts

log = logging.getLogger("streamboard.read_api")

WINDOWS = ("all", "30d", "365d")
MAX_LIMIT = 1000
MAX_BODY = 1024  # no route takes a request body; a tiny one (say `{}`) is ignored, anything larger is refused
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
_SCOPE = re.compile(r"[a-z0-9_-]{1,64}")  # fullmatch: `$` would let a trailing newline (%0a) through
READ_METHODS = ("GET", "HEAD", "OPTIONS")
BOARD_MAX_AGE = 300  # an on-demand refresh reaches every cache within 5 minutes
SHORT_MAX_AGE = 5  # profiles change with every event: a few seconds absorb a burst of identical reads
NO_STORE = "no-store"
HEALTH_PATH = "/v1/health"
NO_STORE_PATHS = ("/healthz", HEALTH_PATH, "/v1/admin/refresh")  # answers that are stale as soon as they are sent
ADMIN_KEY_HEADER = "x-api-key"  # the admin route's only credential (the CDN forwards this header to it and no other)
PREFLIGHT_MAX_AGE = 86400  # browsers cap it lower (Chrome: 2 h); the answer never changes between deployments
# Any origin, no credentials: the reads are public, and `*` is what a browser accepts without credentials.
CORS = {"access-control-allow-origin": "*", "access-control-expose-headers": "ETag"}
PREFLIGHT = {**CORS, "access-control-allow-methods": ", ".join(READ_METHODS),
             "access-control-allow-headers": "If-None-Match", "access-control-max-age": str(PREFLIGHT_MAX_AGE)}


class Preflight(Exception):
    """An OPTIONS request on a read route: answered with 204 and the CORS headers, never with a body."""


_encode = msgspec.json.Encoder().encode


def to_json(body: Any) -> str:
    """A body's JSON, compact, in UTF-8 (msgspec: a board of 100 entries in microseconds)."""
    return _encode(body).decode()


def _response(status: int, body: Any, headers: dict[str, str] | None = None, payload: str | None = None
              ) -> dict[str, Any]:
    """An API Gateway (v2) answer; ``payload``: the body's JSON when the caller has it already."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": to_json(body) if payload is None else payload,
        "isBase64Encoded": False,
    }


def _etag(*parts: str) -> str:
    """A strong validator: the same bytes for the same representation, different for any other."""
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return f'"{digest}"'


def board_max_age(board: dict[str, Any], refresh_seconds: float, now: float) -> int:
    """Seconds until the board's next scheduled refresh, within 0..BOARD_MAX_AGE.

    The handler does not see the schedule's phase, so the next refresh is taken as the last one plus the
    interval; the last one is when it started (``as_of``, the scheduled time on AWS) or when it landed
    (``refreshed_at``), whichever is earlier, so a cached copy never outlives the refresh that replaces it.
    An overdue refresh may land any moment: 0. A board never refreshed has nothing to wait for: 0."""
    stamps = [parse_ts(board[k]).timestamp() for k in ("as_of", "refreshed_at") if board.get(k)]
    if not stamps or refresh_seconds <= 0:
        return 0
    remaining = min(stamps) + refresh_seconds - now
    return int(max(0.0, min(float(BOARD_MAX_AGE), remaining)))


def _cache_headers(path: str, body: Any, params: dict[str, str], backend: Backend, now: float,
                   age: float = 0.0, payload: str | None = None) -> dict[str, str]:
    """The validator and freshness of a 200 answer on ``path`` (see the module docstring); ``age``: seconds
    since the board store read the board (it keeps a head for a second or so); ``payload``: the body's JSON,
    the answer's very bytes (the tag is theirs)."""
    payload = to_json(body) if payload is None else payload
    if path.startswith("/v1/leaderboards/") and path != "/v1/leaderboards/":  # that one lists the scopes
        # The body names the snapshot (refreshed_at) and the window; the limit is named too, so each
        # variant of a board has its own tag even when their entries coincide. A board the store had kept
        # for a while is that much older: the cap counts from when it was read.
        max_age = min(board_max_age(body, backend.settings.refresh_seconds, now),
                      max(0, BOARD_MAX_AGE - math.ceil(age)))
        # around a user: the ranks' version (refreshed_at) and that user name the variant as well
        variant = ("around", params["around"]) if "around" in params else ("board",)
        return {"etag": _etag(*variant, params.get("limit", "10"), payload),
                "cache-control": f"public, max-age={max_age}"}
    if path in NO_STORE_PATHS:
        return {"cache-control": NO_STORE}
    return {"etag": _etag("read", payload), "cache-control": f"public, max-age={SHORT_MAX_AGE}"}


def _limit(params: dict[str, str]) -> int:
    raw = params.get("limit", "10")
    # '²'.isdigit() is True; int() refuses over 4,300 digits: only short ASCII digit strings reach int().
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        shown = raw if len(raw) <= 40 else f"{raw[:20]}... ({len(raw)} characters)"
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, not {shown!r}")
    return int(raw)


def get_leaderboard(backend: Backend, scope: str, params: dict[str, str]) -> dict[str, Any]:
    return _leaderboard(backend, scope, params)[0]


def _leaderboard(backend: Backend, scope: str, params: dict[str, str]) -> tuple[dict[str, Any], float]:
    """The board's body, and its age (seconds since the store read it)."""
    window = params.get("window", "all")
    if window not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    limit = _limit(params)
    if not _SCOPE.fullmatch(scope):
        raise NotFound(f"no leaderboard {scope!r}: scope is 'overall' or a category slug")
    if "around" in params:
        return _around(backend, scope, window, params["around"], limit)
    board = backend.boards.get_board(scope, window, limit)
    if board is None:
        if scope != "overall":
            raise NotFound(f"no leaderboard for scope {scope!r} (no scores in that category yet)")
        return {"scope": scope, "window": window, "as_of": None, "refreshed_at": None, "entries": []}, 0.0
    return _board_body(board), board.age


def _board_body(board: Board) -> dict[str, Any]:
    return {"scope": board.scope, "window": board.window, "as_of": board.as_of, "refreshed_at": board.refreshed_at,
            "entries": [{"rank": e.rank, "user_id": e.user_id, "user_name": e.user_name, "score": e.score}
                        for e in board.entries]}


def _around(backend: Backend, scope: str, window: str, user_id: str, limit: int) -> tuple[dict[str, Any], float]:
    """The ``limit`` entries of the board centred on the user's place, as a board's body, and its age."""
    if not 1 <= len(user_id) <= 128:
        raise BadRequest("around must be a user_id of 1 to 128 characters")
    board = backend.ranks.around(scope, window, user_id, limit)
    if board is None:
        raise NotFound(f"{user_id!r} is not on the {scope} board of window {window}: no ranks were written yet "
                       "(the next refresh writes them)")
    return _board_body(board), board.age


def get_user(backend: Backend, user_id: str) -> dict[str, Any]:
    if not 1 <= len(user_id) <= 128:
        raise BadRequest("user_id must be 1 to 128 characters")
    profile = backend.profiles.get(user_id)
    if profile is None:
        raise NotFound(f"no user {user_id!r} (no scores received for this user yet)")
    ranks = backend.ranks.ranks_for(user_id)
    if ranks is None:  # a deployment whose first refresh with ranks has not run: the boards' top 1000 only
        ranks = backend.boards.ranks_for(user_id)
    return {
        "user_id": profile.user_id,
        "user_name": profile.user_name,
        "total": profile.total,
        "categories": profile.categories,
        "updated_at": profile.updated_at,
        "ranks": ranks,
    }


def admin_refresh(backend: Backend, headers: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
    """Refresh every board now; ``full=true`` builds the refresh's state again from the whole lake."""
    key = headers.get(ADMIN_KEY_HEADER)
    app = backend.apps.authenticate(key) if key else None
    if app is None or app.role != "admin":
        raise Unauthorized(f"an admin API key is required in the {ADMIN_KEY_HEADER} header")
    if backend.refresh is None:
        raise StreamboardError("refresh is not configured for this deployment")
    full = params.get("full", "false").lower()
    if full not in ("true", "false"):
        raise BadRequest(f"full must be true or false, not {full[:20]!r}")
    return backend.refresh(full=full == "true")


def get_health(backend: Backend) -> dict[str, Any]:
    """Pipeline health for the console and operators (the fields are described in ``streamboard.health``)."""
    figures = backend.health.figures() if backend.health is not None else None
    return health_report(figures, backend.boards.get_board("overall", "all", 1), dt.datetime.now(dt.UTC))


def route(method: str, path: str, params: dict[str, str], headers: dict[str, str],
          backend: Backend) -> tuple[int, Any, float]:
    """The status, body and age (seconds since the store read a board; 0 for other answers) of a request;
    :class:`Preflight` for an OPTIONS request on a read route."""
    if path == "/healthz":
        _require(method, "GET")
        return 200, {"status": "ok"}, 0.0
    if path in ("/v1/leaderboards", "/v1/leaderboards/"):
        _require(method, "GET")
        return 200, {"scopes": backend.boards.scopes() or ["overall"], "windows": list(WINDOWS)}, 0.0
    if path.startswith("/v1/leaderboards/"):
        _require(method, "GET")
        body, age = _leaderboard(backend, path[len("/v1/leaderboards/"):], params)
        return 200, body, age
    if path.startswith("/v1/users/"):
        _require(method, "GET")
        return 200, get_user(backend, path[len("/v1/users/"):]), 0.0
    if path == "/v1/admin/refresh":
        _require(method, "POST")
        return 200, admin_refresh(backend, headers, params), 0.0
    if path == "/openapi.json":
        _require(method, "GET")
        return 200, OPENAPI, 0.0
    if path == HEALTH_PATH:
        _require(method, "GET")
        return 200, get_health(backend), 0.0
    raise NotFound(f"no route {method} {path}")


def _require(method: str, expected: str) -> None:
    """405 with the ``Allow`` header unless ``method`` is the route's (HEAD and the CORS preflight, OPTIONS,
    go with GET)."""
    if expected == "GET" and method == "OPTIONS":
        raise Preflight
    if method != expected and not (method == "HEAD" and expected == "GET"):
        allowed = READ_METHODS if expected == "GET" else (expected,)
        raise MethodNotAllowed(f"use {expected} for this path", allowed)


def handle(event: dict[str, Any], backend: Backend, now: float | None = None) -> dict[str, Any]:
    """Answer one API Gateway (v2) event; ``now`` (epoch seconds) is the clock the max-ages count from."""
    # HTTP APIs deliver rawPath already percent-decoded (the local server does the same): no second decode.
    http = event.get("requestContext", {}).get("http", {})
    method = http.get("method", "GET").upper()
    path = event.get("rawPath") or http.get("path", "/")
    params = {k: v[-1] for k, v in parse_qs(event.get("rawQueryString", ""), keep_blank_values=True).items()}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if webconsole.serves(path):
        return _console(method, path, headers)
    try:
        if event.get("body") and len(event["body"]) > MAX_BODY:
            raise PayloadTooLarge(f"this API takes no request body (at most {MAX_BODY} bytes, ignored)")
        status, body, age = route(method, path, params, headers, backend)
        payload = to_json(body)  # once: the tag is over these bytes, and they are the body
        response = _response(status, body, _cache_headers(path, body, params, backend,
                                                          time.time() if now is None else now, age, payload),
                             payload)
        if method in ("GET", "HEAD") and "etag" in response["headers"] and \
                none_match(headers.get("if-none-match"), response["headers"]["etag"]):
            # The client's copy is current: validators and freshness again, no body (RFC 9110 15.4.5).
            del response["headers"]["content-type"]
            response.update(statusCode=304, body="")
    except Preflight:
        response = {"statusCode": 204, "headers": dict(PREFLIGHT), "body": "", "isBase64Encoded": False}
    except StreamboardError as exc:
        status = http_status(exc)
        if status >= 500:
            log.exception("read API failed on %s %s", method, path)
            response = _response(status, {"error": "internal error; the failure was logged"})
        else:
            allow = {"allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else {}
            # an error may not hold for long (a scope appears with the next refresh): no cache keeps it
            response = _response(status, {"error": str(exc)}, {**allow, "cache-control": NO_STORE})
    except Exception:  # noqa: BLE001 - never a trace to the client
        log.exception("read API failed on %s %s", method, path)
        response = _response(500, {"error": "internal error; the failure was logged"})
    response["headers"].setdefault("cache-control", NO_STORE)
    if path != "/v1/admin/refresh":  # browsers may read every read route from any origin; admin calls are not theirs
        response["headers"].update(CORS)
    if method == "HEAD":  # the headers a GET would get, no body
        response["body"] = ""
    return response


def _console(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The web console's page and files (``processors.webconsole``): static, public, no CORS (the console
    calls this API from its own origin)."""
    try:
        return webconsole.respond(method, path, headers.get("if-none-match"), none_match)
    except StreamboardError as exc:
        allow = {"allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else {}
        response = _response(http_status(exc), {"error": str(exc)}, {**allow, "cache-control": NO_STORE})
    except Exception:  # noqa: BLE001 - never a trace to the client
        log.exception("read API failed on %s %s", method, path)
        response = _response(500, {"error": "internal error; the failure was logged"}, {"cache-control": NO_STORE})
    if method == "HEAD":
        response["body"] = ""
    return response


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from processors.deployed import backend

    return handle(event, backend())


_BOARD_ENTRY = {
    "type": "object",
    "properties": {
        "rank": {"type": "integer"},
        "user_id": {"type": "string"},
        "user_name": {"type": ["string", "null"]},
        "score": {"type": "integer"},
    },
}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Streamboard read API", "version": "1"},
    "paths": {
        "/v1/leaderboards": {
            "get": {"summary": "The scopes that have leaderboards, and the windows",
                    "responses": {"200": {"description": "scopes and windows"}}}
        },
        "/v1/leaderboards/{scope}": {
            "get": {
                "summary": "A leaderboard: 'overall' or a category, over a trailing window",
                "parameters": [
                    {"name": "scope", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "window", "in": "query", "schema": {"enum": list(WINDOWS), "default": "all"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10}},
                    {"name": "around", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                     "description": "a user_id: the limit entries centred on that user's place (clipped at the "
                                    "first and the last), ranks and ties as on the board"},
                ],
                "responses": {
                    "200": {"description": "The board's latest snapshot", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"scope": {"type": "string"}, "window": {"type": "string"},
                                       "as_of": {"type": ["string", "null"]},
                                       "refreshed_at": {"type": ["string", "null"]},
                                       "entries": {"type": "array", "items": _BOARD_ENTRY}}}}}},
                    "400": {"description": "Bad window, limit or around"},
                    "404": {"description": "Unknown scope, or the around user is not on that board"},
                },
            }
        },
        "/v1/users/{user_id}": {
            "get": {
                "summary": "A user's near-real-time totals, and their rank, score, board size (of) and percentile"
                           " (the share of the board ranked strictly below) on every board at the last refresh",
                "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The profile"}, "404": {"description": "Unknown user"}},
            }
        },
        "/v1/health": {
            "get": {
                "summary": "Pipeline health: events per minute, stream backlog, DLQ depth, bad events (24 h), last "
                           "refresh and data freshness; null where the backend cannot tell (see README)",
                "responses": {"200": {"description": "The figures (never cached)", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "as_of": {"type": "string"},
                        "events_per_minute": {"type": ["number", "null"]},
                        "stream_backlog": {"type": "object", "properties": {
                            "records": {"type": ["integer", "null"]}, "age_seconds": {"type": ["number", "null"]}}},
                        "dlq_depth": {"type": ["integer", "null"]},
                        "bad_events": {"type": ["integer", "null"]},
                        "last_refresh": {"type": ["string", "null"]},
                        "freshness_seconds": {"type": ["number", "null"]}}}}}}},
            }
        },
        "/": {
            "get": {"summary": "The web console (HTML; its script and style sheet are under /console/)",
                    "responses": {"200": {"description": "The console page", "content": {"text/html": {}}}}}
        },
        "/v1/admin/refresh": {
            "post": {
                "summary": "Refresh every board now (admin key in x-api-key); full=true rebuilds the refresh's "
                           "state from the whole lake",
                "parameters": [{"name": "full", "in": "query", "schema": {"type": "boolean", "default": False}}],
                "responses": {"200": {"description": "Refreshed"}, "401": {"description": "Not an admin key"}},
            }
        },
    },
}
