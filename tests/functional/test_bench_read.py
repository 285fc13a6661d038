"""bench/read.py's ceiling is honest only if its bare endpoint sends what the read API sends: the same body,
ETag and Cache-Control for the same board, and the same 304. No timing here (bench/README.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from bench.read_server import SKIPPED_HEADERS, bare_app, capture, seed_data_dir
from streamboard.backend import build_local_backend
from streamboard.runtime.stack import read_api_app
from streamboard.settings import Settings

URLS = ["/v1/leaderboards/overall?window=all&limit=10", "/v1/leaderboards/overall?window=all&limit=100"]


def _headers(resp: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The headers as sent, less those uvicorn adds, with the max-age's count masked (below)."""
    return [(k.lower(), re.sub(rb"max-age=\d+", b"max-age=N", v)) for k, v in resp.headers.raw
            if k.decode().lower() not in SKIPPED_HEADERS]


def _same_freshness(a: httpx.Response, b: httpx.Response) -> None:
    """The board's max-age counts down from when the board store read the board (it keeps a head for a
    second or so), so ours may say 299 where the replayed answer says 300: the same directive, a second
    apart at most."""
    pattern = re.compile(r"public, max-age=(\d+)")
    ma, mb = pattern.fullmatch(a.headers["cache-control"]), pattern.fullmatch(b.headers["cache-control"])
    assert ma and mb, (a.headers["cache-control"], b.headers["cache-control"])
    assert abs(int(ma.group(1)) - int(mb.group(1))) <= 2


def test_bare_endpoint_sends_the_read_apis_bytes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_data_dir(data, users=150, events=600)
    ours = TestClient(read_api_app(build_local_backend(Settings(data_dir=data))))
    captured = json.loads(json.dumps(capture(ours, URLS)))  # as the benchmark hands it to the bare server
    bare = TestClient(bare_app(captured))

    for url, limit in zip(URLS, (10, 100), strict=True):
        a, b = ours.get(url), bare.get(url)
        assert a.status_code == b.status_code == 200
        assert len(a.json()["entries"]) == limit
        assert a.content == b.content
        assert a.headers["etag"] == b.headers["etag"] == captured[url]["etag"]
        _same_freshness(a, b)
        assert _headers(a) == _headers(b)

        etag = a.headers["etag"]
        a, b = ours.get(url, headers={"if-none-match": etag}), bare.get(url, headers={"if-none-match": etag})
        assert a.status_code == b.status_code == 304
        assert a.content == b.content == b""
        assert a.headers["etag"] == b.headers["etag"] == etag
        _same_freshness(a, b)
        assert _headers(a) == _headers(b)

        stale = '"0123456789abcdef0123456789abcdef"'
        a, b = ours.get(url, headers={"if-none-match": stale}), bare.get(url, headers={"if-none-match": stale})
        assert a.status_code == b.status_code == 200
        assert a.content == b.content

    assert bare.get("/v1/leaderboards/overall?limit=10").status_code == 404  # only the benchmarked URLs
