"""A board read answered less than a second ago is answered again from memory (the local read API).

Boards change only when a refresh lands, and the board store already keeps a board's head for
``board_cache_seconds`` (1 s): within that time the handler would build the very same bytes again. This ASGI
layer in front of the local read API keeps, per board URL (method, path and query string), the last ``200``
the handler gave, for that long, and answers from it:

- with ``304`` and no body when ``If-None-Match`` matches its ``ETag`` (RFC 9110's weak comparison, as the
  handler does), else with the stored body;
- with the stored validators and headers, and a ``max-age`` counted down from the one the handler gave (by
  whole seconds, rounded up, as the handler counts a cached board's age): a response never outlives the next
  refresh, cached or not.

When an entry is missing or expired, one request per URL asks the handler; the requests that arrive
meanwhile wait for its answer and are answered from it (when it is kept), instead of all asking the handler
at once each time an entry expires.

Only what the handler marked ``public, max-age=N`` is kept (never an error, a ``no-store`` answer, or
anything but ``GET``/``HEAD`` on ``/v1/leaderboards/<scope>``), and a request with a body always reaches
the handler. After a refresh lands, a board shows at most this long late: the same bound as the board
store's own cache. On AWS, CloudFront plays this part in front of API Gateway (infra/README.md, the CDN).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MAX_AGE = re.compile(rb"^public, max-age=(\d+)$")
MAX_ENTRIES = 4096  # board URLs kept (scopes x windows x limits x around users); beyond it, the oldest go


@dataclass
class _Entry:
    until: float  # monotonic: served from memory before this
    generation: object  # the stores' writes when the handler answered
    stored: float  # monotonic: when the handler answered
    max_age: int  # the handler's max-age then
    etag: bytes
    headers: list[tuple[bytes, bytes]]  # the handler's, in its order (cache-control's value set per answer)
    body: bytes
    answers: dict[tuple[bool, int], list[tuple[bytes, bytes]]] = field(default_factory=dict)  # (304?, max-age)


def none_match(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (RFC 9110 13.1.2: weak comparison, a list, or ``*``); the
    read API's handler and this cache answer the same."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag.removeprefix("W/") in tags


def _without_body(receive: Receive) -> Receive:
    """``receive`` of a request without a body (only those reach the cache), for the app to call again."""
    given = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return replay


class MicroCache:
    """ASGI middleware: see the module docstring. ``seconds`` <= 0 turns it off."""

    def __init__(self, app: ASGIApp, seconds: float, prefix: str = "/v1/leaderboards/",
                 clock: Callable[[], float] = time.monotonic, generation: Callable[[], object] = lambda: 0) -> None:
        self.app, self.seconds, self.prefix, self.clock, self.generation = app, seconds, prefix, clock, generation
        self.entries: dict[tuple[str, str, bytes], _Entry] = {}
        self.filling: dict[tuple[str, bytes], asyncio.Future[None]] = {}  # URLs whose handler answer is awaited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.seconds <= 0 or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD")
                or not scope["path"].startswith(self.prefix) or len(scope["path"]) == len(self.prefix)):
            await self.app(scope, receive, send)
            return
        inm: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                inm = value
            elif name in (b"content-length", b"transfer-encoding") and value not in (b"0", b""):
                await self.app(scope, receive, send)  # a body: the handler caps it and says so
                return
        key = (scope["method"], scope["path"], scope["query_string"])
        now = self.clock()
        generation = self.generation()
        entry = self._live(key, now, generation)
        if entry is not None:
            await self._answer(entry, now, inm, scope["method"] == "HEAD", send)
            return
        # One request asks the handler per URL at a time; those arriving meanwhile wait for its answer (when it
        # is kept) instead of asking too: no stampede on the handler each time an entry expires.
        url = (scope["path"], scope["query_string"])
        filling = self.filling.get(url)
        if filling is not None:
            await asyncio.shield(filling)
            now = self.clock()
            entry = self._live(key, now, self.generation())
            if entry is not None:
                await self._answer(entry, now, inm, scope["method"] == "HEAD", send)
                return
            await self.app(scope, receive, send)  # nothing kept (an error, say): the handler answers
            return
        self.filling[url] = filled = asyncio.get_running_loop().create_future()
        try:
            await self._fill(scope, receive, send, key, now, generation, inm)
        finally:
            del self.filling[url]
            filled.set_result(None)

    def _live(self, key: tuple[str, str, bytes], now: float, generation: object) -> _Entry | None:
        """The entry kept for ``key``, if it may still be answered from (within its time, no store write since)."""
        entry = self.entries.get(key)
        return entry if entry is not None and now < entry.until and entry.generation == generation else None

    async def _fill(self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str, bytes], now: float,
                    generation: object, inm: bytes | None) -> None:
        """The handler's answer to this request, kept when it may be."""
        if inm is None or scope["method"] != "GET":
            await self.app(scope, receive, self._recording(key, now, generation, send))
            return
        # A conditional GET: the handler is asked without the condition (a 304 has no body to keep), once a
        # second per URL at most, and the condition is answered here from what it gave.
        unconditional = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"if-none-match"]}

        async def discard(message: MutableMapping[str, Any]) -> None:
            return None

        await self.app(unconditional, _without_body(receive), self._recording(key, now, generation, discard))
        entry = self.entries.get(key)
        if entry is not None and entry.stored == now and entry.generation == generation:
            await self._answer(entry, now, inm, False, send)
            return
        await self.app(scope, _without_body(receive), send)  # not kept (an error, say): the handler answers

    def _recording(self, key: tuple[str, str, bytes], started: float, generation: object, send: Send) -> Send:
        """``send`` that also keeps a ``200`` marked ``public, max-age=N`` with an ``ETag``."""
        start: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._keep(key, started, generation, start, b"".join(chunks))
            await send(message)

        return recording_send

    def _keep(self, key: tuple[str, str, bytes], started: float, generation: object,
              start: MutableMapping[str, Any], body: bytes) -> None:
        if start["status"] != 200 or key[0] != "GET":
            return
        headers, etag, max_age = list(start.get("headers", [])), None, None
        for name, value in headers:
            if name == b"etag":
                etag = value
            elif name == b"cache-control":
                m = _MAX_AGE.match(value)
                max_age = int(m.group(1)) if m else None
        if etag is None or max_age is None:
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.pop(next(iter(self.entries)))
        entry = _Entry(started + self.seconds, generation, started, max_age, etag, headers, body)
        self.entries[key] = entry
        self.entries[("HEAD", key[1], key[2])] = entry

    async def _answer(self, entry: _Entry, now: float, inm: bytes | None, head: bool, send: Send) -> None:
        max_age = max(0, entry.max_age - math.ceil(now - entry.stored))
        not_modified = inm is not None and (inm == entry.etag  # the usual case: the tag the client was given
                                            or none_match(inm.decode("latin-1"), entry.etag.decode("latin-1")))
        headers = entry.answers.get((not_modified, max_age))
        if headers is None:  # made once per second of max-age: the same list for every answer meanwhile
            cache = b"public, max-age=%d" % max_age
            # a 304 is the handler's headers less the body's (RFC 9110 15.4.5)
            headers = entry.answers[(not_modified, max_age)] = [
                (k, cache if k == b"cache-control" else v) for k, v in entry.headers
                if not (not_modified and k in (b"content-type", b"content-length"))]
        if not_modified:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else entry.body})
