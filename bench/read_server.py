"""The server side of bench/read.py, one process per measurement, each on 127.0.0.1:PORT:

- ``ours``: OUR local read API, as ``streamboard up`` serves it (``streamboard.runtime.stack.read_api_app``
  over the local backend of a data dir, under ``streamboard.serving.build_server``: uvicorn with our
  connection hygiene, on httptools and uvloop);
- ``bare``: a plain ASGI callable (no framework, no middleware) under plain uvicorn with uvloop and
  httptools, answering each benchmarked URL with the very bytes and headers ours sent for it (captured from
  ours by :func:`capture`), and 304 with ours' 304 headers when ``If-None-Match`` is its ETag.

Also here: :func:`seed_data_dir`, which makes a data dir with real boards (the local pipeline, synthetic
events, one refresh). Once it serves, each server writes what it runs on (event loop class, HTTP parser) to
``--info`` as JSON, for the results.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.common import lifespan
from bench.ingest_server import serve_uvicorn

MODES = ("ours", "bare")
SKIPPED_HEADERS = {"date", "server"}  # uvicorn adds both itself, to ours and to the bare endpoint alike
Captured = dict[str, Any]  # URL (path?query) -> {"etag", "ok": response, "not_modified": response}


# --- a data dir with real boards --------------------------------------------------------------------------

def seed_data_dir(data: Path, users: int = 2000, events: int = 20000) -> dict[str, Any]:
    """Synthetic score events from ``users`` players through the local pipeline (stream, router, lake, crawl)
    and one refresh, so the boards are real ones with at least ``min(users, 1000)`` entries."""
    from streamboard.ports import StreamRecord
    from streamboard.registry import REGISTRY, format_ts
    from streamboard.runtime.stack import Pipeline
    from streamboard.settings import Settings

    pipeline = Pipeline(Settings(data_dir=data))
    now = dt.datetime.now(dt.UTC)
    received = format_ts(now)
    batch = []
    for i in range(events):
        batch.append({"event_id": f"00000000-0000-4000-8000-{i:012d}", "event_type": "score",
                      "user_id": f"user-{i % users}", "user_name": f"Player {i % users}",
                      "ts": (now - dt.timedelta(minutes=i % 600)).isoformat(),
                      "category": ("arcade", "puzzle", "racing")[i % 3], "points": 1 + i * 7 % 1000})
        if len(batch) == 100 or i == events - 1:
            checked = [REGISTRY.check(e, app_id="local", received_at=now) for e in batch]
            records = [StreamRecord(k, d) for k, d in REGISTRY.records(checked, app_id="local",
                                                                        received_at_text=received)]
            pipeline.backend.stream.put_records(records)
            batch = []
    summary = pipeline.refresh()
    return {"events": events, "users": users, "refresh": summary}


# --- ours -------------------------------------------------------------------------------------------------

def serve_ours(port: int, info: Path, data: Path) -> None:
    from streamboard.backend import build_local_backend
    from streamboard.runtime.stack import read_api_app
    from streamboard.serving import build_server, connection_limits
    from streamboard.settings import Settings

    settings = Settings(data_dir=data)
    backend = build_local_backend(settings)
    # as LocalStack.serve builds the read API's server (it shares the descriptors with ingest: servers=2)
    server = build_server(read_api_app(backend), host="127.0.0.1", port=port,
                          limits=connection_limits(settings, servers=2), handle_signals=True)
    serve_uvicorn(server, "ours", info, f"uvicorn {uvicorn.__version__} via streamboard.serving.build_server")


# --- capturing ours' answers, and the bare endpoint that replays them -------------------------------------

def _response(resp: httpx.Response) -> dict[str, Any]:
    headers = [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in resp.headers.raw
               if k.decode("latin-1").lower() not in SKIPPED_HEADERS]
    return {"status": resp.status_code, "headers": headers, "body_b64": base64.b64encode(resp.content).decode()}


def capture(client: httpx.Client, urls: list[str]) -> Captured:
    """Ours' 200 answer to each URL (relative to the client's base URL) and its 304 answer to a request that
    sends the 200's ETag in ``If-None-Match``: status, headers in the order sent (less Date and Server), body."""
    out: Captured = {}
    for url in urls:
        ok = client.get(url)
        etag = ok.headers.get("etag")
        if ok.status_code != 200 or not etag:
            raise RuntimeError(f"{url}: answered {ok.status_code} with ETag {etag!r}: {ok.text[:300]}")
        not_modified = client.get(url, headers={"if-none-match": etag})
        if not_modified.status_code != 304:
            raise RuntimeError(f"{url} with If-None-Match {etag}: answered {not_modified.status_code}")
        out[url] = {"etag": etag, "ok": _response(ok), "not_modified": _response(not_modified)}
    return out


def bare_app(captured: Captured) -> Any:
    """A plain ASGI callable answering every captured URL with ours' bytes: the 304 when ``If-None-Match``
    names its ETag (a plain comparison: wrk sends exactly that), the 200 otherwise; 404 for anything else."""
    table: dict[tuple[str, bytes], tuple[bytes, tuple[Any, bytes], tuple[Any, bytes]]] = {}
    for url, c in captured.items():
        path, _, query = url.partition("?")

        def start_body(r: dict[str, Any]) -> tuple[Any, bytes]:
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r["headers"]]
            return ({"type": "http.response.start", "status": r["status"], "headers": headers},
                    base64.b64decode(r["body_b64"]))

        table[(path, query.encode("latin-1"))] = (c["etag"].encode("latin-1"), start_body(c["ok"]),
                                                  start_body(c["not_modified"]))
    missing = ({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]}, b"")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        entry = table.get((scope["path"], scope["query_string"]))
        if entry is None:
            start, body = missing
        else:
            etag, (start, body) = entry[0], entry[1]
            for name, value in scope["headers"]:
                if name == b"if-none-match" and value == etag:
                    start, body = entry[2]
                    break
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return app


def serve_bare(port: int, info: Path, captured_file: Path) -> None:
    app = bare_app(json.loads(captured_file.read_text()))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws="none",
                            log_level="warning", access_log=False, lifespan="on")
    serve_uvicorn(uvicorn.Server(config), "bare", info, f"uvicorn {uvicorn.__version__}, plain ASGI callable")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--info", type=Path, required=True, help="where to write what the server runs on (JSON)")
    p.add_argument("--data-dir", type=Path, help="ours: the data dir with the boards")
    p.add_argument("--captured", type=Path, help="bare: ours' answers, from capture() (JSON)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "ours":
        serve_ours(args.port, args.info, args.data_dir)
    else:
        serve_bare(args.port, args.info, args.captured)


if __name__ == "__main__":
    main()
