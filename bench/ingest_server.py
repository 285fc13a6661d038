"""The server side of bench/ingest.py, one process per measurement, each on 127.0.0.1:PORT:

- ``full``: OUR ingest server, as ``python -m ingest`` builds it (``create_app`` under
  ``streamboard.serving.build_server``: uvicorn with our connection hygiene, on httptools and uvloop
  ), with a null stream sink and rate limiting off;
- ``bare_asgi``: a plain ASGI callable (no framework, no middleware) that reads the body, decodes it with
  msgspec and answers 202, under plain uvicorn with uvloop and httptools;
- ``bare_ours``: that callable on our server stack (``build_server``: the same uvicorn with our connection
  hygiene), the bare app on the stack ours runs on;
- ``bare_aiohttp``: the same handler in aiohttp (its C HTTP parser) on uvloop;
- ``bare_typed``: ``bare_asgi`` decoding by the event schemas (a reference, not a ceiling).

Each bare endpoint answers the same JSON as ours (``{"accepted": N, "rejected": []}``). Once it serves,
each writes what it runs on (event loop class, HTTP parser) to ``--info`` as JSON, for the results.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import uvicorn

from bench.common import lifespan
from ingest.app import IngestApp, IngestSinks, create_app
from streamboard.adapters.local.lake import LocalLake
from streamboard.adapters.local.queue import LocalQueue
from streamboard.adapters.local.stores import LocalAppRegistry
from streamboard.ports import PutResult, ReadRecord, StreamRecord
from streamboard.registry import REGISTRY
from streamboard.serving import build_server, connection_limits
from streamboard.settings import Settings

KEY = "bench-key"
OK = PutResult("shardId-000000000000", "1")
MODES = ("full", "bare_asgi", "bare_ours", "bare_aiohttp", "bare_typed")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class NullStream:
    """Takes every record at once and keeps nothing: the ceiling of what the stream could cost."""

    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]:
        return [OK] * len(records)

    def shard_ids(self) -> list[str]:
        return []

    def read(self, shard_id: str, after: str | None, limit: int) -> list[ReadRecord]:
        return []

    def latest(self, shard_id: str) -> str | None:
        return None


def _answer(body: bytes) -> bytes:
    """Decode the body as JSON (a batch ``{"events": [...]}`` or one event) and say how many it held."""
    doc = _decode(body)
    n = len(doc["events"]) if isinstance(doc, dict) and "events" in doc else 1
    return _encode({"accepted": n, "rejected": []})


_HEADERS = [(b"content-type", b"application/json")]


def _typed_answer(body: bytes) -> tuple[int, bytes]:
    """Decode the body by the event schemas (``Registry.decode``: every field's type and bounds) and say how
    many events it held: the least a validating endpoint does."""
    decoded = REGISTRY.decode(body)
    return (202, _encode({"accepted": len(decoded[0]), "rejected": []})) if decoded else (400, b"{}")


def bare_endpoint(answer: Callable[[bytes], tuple[int, bytes]]) -> Callable[..., Awaitable[None]]:
    """A plain ASGI callable: read the whole body, ``answer`` it (status, JSON): uvicorn's own cost per request
    plus the answer's."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        status, payload = answer(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


bare_asgi = bare_endpoint(lambda body: (202, _answer(body)))  # the ceiling's: an untyped decode
bare_typed = bare_endpoint(_typed_answer)  # a reference, not a ceiling (bench/README.md)


def _write_info(path: Path, mode: str, http: str, server: str) -> None:
    loop = type(asyncio.get_running_loop())
    path.write_text(json.dumps({"mode": mode, "server": server, "loop": f"{loop.__module__}.{loop.__qualname__}",
                                "http": http}))


def _uvicorn_http(protocol: type) -> str:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return "httptools" if issubclass(protocol, HttpToolsProtocol) else "h11"


def serve_uvicorn(server: uvicorn.Server, mode: str, info: Path, label: str) -> None:
    """Run a uvicorn server, writing the info file from inside its loop once it listens."""
    startup = server.startup

    async def startup_then_info(sockets: Any = None) -> None:
        await startup(sockets)
        protocol = server.config.http if isinstance(server.config.http, type) else server.config.http_protocol_class
        _write_info(info, mode, _uvicorn_http(protocol), label)

    server.startup = startup_then_info  # type: ignore[method-assign]
    server.run()


def ours(data: Path) -> tuple[IngestApp, Settings]:
    """OUR ingest app as ``python -m ingest`` builds it, its key ``KEY``, rate limiting off, group commit into
    :class:`NullStream`, its stores in ``data``; and its settings."""
    apps = LocalAppRegistry(data / "apps.db")
    apps.create("bench", key=KEY)
    settings = Settings(data_dir=data, rate_limit_events_per_s=0)
    sinks = IngestSinks(NullStream(), LocalQueue(data / "queues.db", "dlq"), apps, LocalLake(data / "lake"))
    return create_app(settings, sinks), settings


def serve_full(port: int, info: Path, data: Path) -> None:
    app, settings = ours(data)
    server = build_server(app, host="127.0.0.1", port=port, limits=connection_limits(settings, servers=1),
                          handle_signals=True)
    _freeze()
    serve_uvicorn(server, "full", info, f"uvicorn {uvicorn.__version__} via streamboard.serving.build_server")


def serve_bare_ours(port: int, info: Path) -> None:
    """The bare endpoint on our server stack, built as ``serve_full`` builds ours (default settings' limits)."""
    server = build_server(bare_asgi, host="127.0.0.1", port=port, limits=connection_limits(Settings(), servers=1),
                          handle_signals=True)
    _freeze()
    serve_uvicorn(server, "bare_ours", info, f"uvicorn {uvicorn.__version__} via streamboard.serving.build_server, "
                                             "plain ASGI callable")


def serve_bare(app: Callable[..., Awaitable[None]], mode: str, port: int, info: Path, what: str) -> None:
    """A bare endpoint under plain uvicorn with uvloop and httptools."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws="none",
                            log_level="warning", access_log=False, lifespan="on")
    _freeze()
    serve_uvicorn(uvicorn.Server(config), mode, info, f"uvicorn {uvicorn.__version__}, {what}")


def serve_bare_aiohttp(port: int, info: Path) -> None:
    import aiohttp
    import uvloop
    from aiohttp import http_parser, web

    async def events(request: web.Request) -> web.Response:
        return web.Response(status=202, body=_answer(await request.read()), content_type="application/json")

    async def on_startup(app: web.Application) -> None:
        c_parser = http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser"
        # on_startup runs before the site listens; the info file is read only after an answer, so it is in time
        _write_info(info, "bare_aiohttp", "llhttp (C)" if c_parser else "pure Python",
                    f"aiohttp {aiohttp.__version__}")

    app = web.Application()
    app.router.add_post("/v1/events", events)
    app.on_startup.append(on_startup)
    _freeze()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


def _freeze() -> None:
    # As python -m ingest does, in every mode: the same process set-up for ours and the bare ones.
    gc.collect()
    gc.freeze()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--info", type=Path, required=True, help="where to write what the server runs on (JSON)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "full":
        with tempfile.TemporaryDirectory() as tmp:
            serve_full(args.port, args.info, Path(tmp))
    elif args.mode == "bare_asgi":
        serve_bare(bare_asgi, "bare_asgi", args.port, args.info, "plain ASGI callable")
    elif args.mode == "bare_ours":
        serve_bare_ours(args.port, args.info)
    elif args.mode == "bare_typed":
        serve_bare(bare_typed, "bare_typed", args.port, args.info, "plain ASGI callable, schema-typed decode")
    else:
        serve_bare_aiohttp(args.port, args.info)


if __name__ == "__main__":
    main()
