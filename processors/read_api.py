"""Read API Lambda (API Gateway HTTP API, payload format 2.0): leaderboards, profiles, admin refresh.

Leaderboards are public to read; the refresh needs an admin key. Every error is
a JSON ``{"error": ...}`` with a 4xx status a person can act on; nothing unexpected
leaks a trace to the client.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs

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

log = logging.getLogger("streamboard.read_api")

WINDOWS = ("all", "30d", "365d")
MAX_LIMIT = 1000
MAX_BODY = 1024  # no route takes a request body; a tiny one (say `{}`) is ignored, anything larger is refused
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
_SCOPE = re.compile(r"[a-z0-9_-]{1,64}")  # fullmatch: `$` would let a trailing newline (%0a) through


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _limit(params: dict[str, str]) -> int:
    raw = params.get("limit", "10")
    # '²'.isdigit() is True; int() refuses over 4,300 digits: only short ASCII digit strings reach int().
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        shown = raw if len(raw) <= 40 else f"{raw[:20]}... ({len(raw)} characters)"
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, not {shown!r}")
    return int(raw)


def get_leaderboard(backend: Backend, scope: str, params: dict[str, str]) -> dict[str, Any]:
    window = params.get("window", "all")
    if window not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    limit = _limit(params)
    if not _SCOPE.fullmatch(scope):
        raise NotFound(f"no leaderboard {scope!r}: scope is 'overall' or a category slug")
    board = backend.boards.get_board(scope, window, limit)
    if board is None:
        if scope != "overall":
            raise NotFound(f"no leaderboard for scope {scope!r} (no scores in that category yet)")
        return {"scope": scope, "window": window, "as_of": None, "refreshed_at": None, "entries": []}
    return {
        "scope": board.scope,
        "window": board.window,
        "as_of": board.as_of,
        "refreshed_at": board.refreshed_at,
        "entries": [
            {"rank": e.rank, "user_id": e.user_id, "user_name": e.user_name, "score": e.score}
            for e in board.entries
        ],
    }


def get_user(backend: Backend, user_id: str) -> dict[str, Any]:
    if not 1 <= len(user_id) <= 128:
        raise BadRequest("user_id must be 1 to 128 characters")
    profile = backend.profiles.get(user_id)
    if profile is None:
        raise NotFound(f"no user {user_id!r} (no scores received for this user yet)")
    return {
        "user_id": profile.user_id,
        "user_name": profile.user_name,
        "total": profile.total,
        "categories": profile.categories,
        "updated_at": profile.updated_at,
        "ranks": backend.boards.ranks_for(user_id),
    }


def admin_refresh(backend: Backend, headers: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
    """Refresh every board now; ``full=true`` builds the refresh's state again from the whole lake."""
    key = headers.get("x-api-key")
    app = backend.apps.authenticate(key) if key else None
    if app is None or app.role != "admin":
        raise Unauthorized("an admin API key is required in the x-api-key header")
    if backend.refresh is None:
        raise StreamboardError("refresh is not configured for this deployment")
    full = params.get("full", "false").lower()
    if full not in ("true", "false"):
        raise BadRequest(f"full must be true or false, not {full[:20]!r}")
    return backend.refresh(full=full == "true")


def route(method: str, path: str, params: dict[str, str], headers: dict[str, str], backend: Backend) -> tuple[int, Any]:
    if path == "/healthz":
        _require(method, "GET")
        return 200, {"status": "ok"}
    if path in ("/v1/leaderboards", "/v1/leaderboards/"):
        _require(method, "GET")
        return 200, {"scopes": backend.boards.scopes() or ["overall"], "windows": list(WINDOWS)}
    if path.startswith("/v1/leaderboards/"):
        _require(method, "GET")
        return 200, get_leaderboard(backend, path[len("/v1/leaderboards/"):], params)
    if path.startswith("/v1/users/"):
        _require(method, "GET")
        return 200, get_user(backend, path[len("/v1/users/"):])
    if path == "/v1/admin/refresh":
        _require(method, "POST")
        return 200, admin_refresh(backend, headers, params)
    if path == "/openapi.json":
        _require(method, "GET")
        return 200, OPENAPI
    raise NotFound(f"no route {method} {path}")


def _require(method: str, expected: str) -> None:
    """405 with the ``Allow`` header unless ``method`` is the route's (HEAD goes with GET)."""
    if method != expected and not (method == "HEAD" and expected == "GET"):
        allowed = ("GET", "HEAD") if expected == "GET" else (expected,)
        raise MethodNotAllowed(f"use {expected} for this path", allowed)


def handle(event: dict[str, Any], backend: Backend) -> dict[str, Any]:
    # HTTP APIs deliver rawPath already percent-decoded (the local server does the same): no second decode.
    http = event.get("requestContext", {}).get("http", {})
    method = http.get("method", "GET").upper()
    path = event.get("rawPath") or http.get("path", "/")
    params = {k: v[-1] for k, v in parse_qs(event.get("rawQueryString", ""), keep_blank_values=True).items()}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        if event.get("body") and len(event["body"]) > MAX_BODY:
            raise PayloadTooLarge(f"this API takes no request body (at most {MAX_BODY} bytes, ignored)")
        status, body = route(method, path, params, headers, backend)
        response = _response(status, body)
    except StreamboardError as exc:
        status = http_status(exc)
        if status >= 500:
            log.exception("read API failed on %s %s", method, path)
            response = _response(status, {"error": "internal error; the failure was logged"})
        else:
            allow = {"allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else None
            response = _response(status, {"error": str(exc)}, allow)
    except Exception:  # noqa: BLE001 - never a trace to the client
        log.exception("read API failed on %s %s", method, path)
        response = _response(500, {"error": "internal error; the failure was logged"})
    if method == "HEAD":  # the headers a GET would get, no body
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
                ],
                "responses": {
                    "200": {"description": "The board's latest snapshot", "content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {"scope": {"type": "string"}, "window": {"type": "string"},
                                       "as_of": {"type": ["string", "null"]},
                                       "refreshed_at": {"type": ["string", "null"]},
                                       "entries": {"type": "array", "items": _BOARD_ENTRY}}}}}},
                    "400": {"description": "Bad window or limit"},
                    "404": {"description": "Unknown scope"},
                },
            }
        },
        "/v1/users/{user_id}": {
            "get": {
                "summary": "A user's near-real-time totals and ranks",
                "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The profile"}, "404": {"description": "Unknown user"}},
            }
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
