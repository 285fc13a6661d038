"""Connection hygiene of every HTTP server (streamboard.serving), on a real uvicorn server on 127.0.0.1 in a
background thread: Nagle off, deadlines for request heads and idle keep-alive, a connection cap that closes
the longest-idle connection first, bodies refused early, and no traceback per request."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest.app import IngestSinks, create_app
from streamboard.backend import Backend, build_local_backend
from streamboard.ports import Board, BoardEntry
from streamboard.registry import format_ts
from streamboard.runtime.stack import read_api_app
from streamboard.serving import ConnectionLimits, Server, build_server, listening_socket
from streamboard.settings import Settings
from tests.conftest import free_port

HOST = "127.0.0.1"
QUICK = ConnectionLimits(header_timeout_s=0.5, keep_alive_s=1, max_connections=100)


class Running:
    def __init__(self, server: Server, port: int) -> None:
        self.server, self.port = server, port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def connect(self) -> socket.socket:
        s = socket.create_connection((HOST, self.port), timeout=5)
        return s

    def server_sockets(self) -> list[socket.socket]:
        return [p.transport.get_extra_info("socket") for p in list(self.server.server_state.connections)]


Serve = Callable[..., Running]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start an app on a hygienic uvicorn server in a thread (bounded start-up); stopped at teardown."""
    running: list[tuple[Server, threading.Thread]] = []

    def start(app: Any, limits: ConnectionLimits = QUICK) -> Running:
        port = free_port()
        server = build_server(app, host=HOST, port=port, limits=limits, graceful_s=2)
        sock = listening_socket(HOST, port)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return Running(server, port)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(10)


def hello_app() -> Starlette:
    async def hello(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/healthz", hello)])


def read_ok(s: socket.socket) -> bytes:
    """Read one whole `{"status":"ok"}` response (it may come in more than one segment)."""
    got = b""
    deadline = time.monotonic() + 5
    while not got.endswith(b'{"status":"ok"}') and time.monotonic() < deadline:
        got += s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got
    return got


def closed_by_peer(s: socket.socket, within: float) -> tuple[bool, bytes]:
    """Wait up to ``within`` seconds for the server to close ``s``; returns (closed, what it sent first)."""
    got = b""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], 0.05)
        if ready:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                return True, got
            if not data:
                return True, got
            got += data
    return False, got


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def test_listening_sockets_are_tcp_so_asyncio_sets_nodelay() -> None:
    sock = listening_socket(HOST, 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_every_accepted_connection_has_nagle_off(serve: Serve) -> None:
    running = serve(hello_app())
    with running.connect() as s:
        s.sendall(GET)
        read_ok(s)
        [server_side] = running.server_sockets()
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_connection_that_sends_nothing_is_closed_after_the_head_deadline(serve: Serve) -> None:
    running = serve(hello_app())
    with running.connect() as s:
        closed, sent = closed_by_peer(s, within=5)
    assert closed and sent == b""


def test_a_trickled_request_head_gets_408_at_the_deadline(serve: Serve) -> None:
    running = serve(hello_app())
    with running.connect() as s:
        started = time.monotonic()
        for byte in GET[:-4]:  # never finishes the head
            s.sendall(bytes([byte]))
            ready, _, _ = select.select([s], [], [], 0.05)
            if ready or time.monotonic() - started > 5:
                break
        closed, sent = closed_by_peer(s, within=5)
    assert closed
    assert sent.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 5  # held for the deadline (0.5 s), not as long as the client liked


def test_a_kept_alive_connection_is_closed_when_idle_and_can_not_trickle_the_next_head(serve: Serve) -> None:
    running = serve(hello_app())
    with running.connect() as s:
        s.sendall(GET)
        read_ok(s)
        closed, _ = closed_by_peer(s, within=5)  # keep-alive of 1 s
        assert closed
    with running.connect() as s:
        s.sendall(GET)
        read_ok(s)
        s.sendall(b"GET /hea")  # the next head starts, and stalls
        closed, sent = closed_by_peer(s, within=5)
        assert closed and sent.startswith(b"HTTP/1.1 408")


def test_each_request_head_has_its_own_deadline_on_a_busy_kept_alive_connection(serve: Serve) -> None:
    """The deadline runs from each head's first byte: a connection busy with requests for three deadlines in a
    row is served throughout, and a head that then stalls still gets its 408 one deadline (0.5 s) later."""
    running = serve(hello_app())
    with running.connect() as s:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            s.sendall(GET)
            read_ok(s)
            time.sleep(0.05)
        stalled = time.monotonic()
        s.sendall(b"GET /hea")
        closed, sent = closed_by_peer(s, within=5)
        assert closed and sent.startswith(b"HTTP/1.1 408")
        assert 0.4 <= time.monotonic() - stalled < 2


def body_app(seen: list[str]) -> Starlette:
    """POST /echo reads its whole body and says how long it was; ``seen`` gets each request's fate."""
    async def echo(request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:
            seen.append("disconnected")
            raise
        seen.append(f"read {len(body)}")
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/healthz", echo)])


def post_head(length: int) -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_request_body_that_stalls_gets_408_at_the_body_deadline(serve: Serve) -> None:
    seen: list[str] = []
    running = serve(body_app(seen), ConnectionLimits(header_timeout_s=5, body_timeout_s=0.5, keep_alive_s=5,
                                                     max_connections=100))
    with running.connect() as s:
        started = time.monotonic()
        s.sendall(post_head(100) + b"x" * 10)  # 90 bytes never come
        closed, sent = closed_by_peer(s, within=5)
        held = time.monotonic() - started
    assert closed and sent.startswith(b"HTTP/1.1 408"), sent
    assert b"the request body did not arrive within 0.5 s" in sent
    assert 0.4 <= held < 3  # the body's deadline (0.5 s), not the head's (5 s) nor as long as the client liked
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["disconnected"]  # the app never saw a partial body as a whole one


def test_a_body_that_arrives_in_pieces_within_its_deadline_is_served_and_the_connection_kept(serve: Serve) -> None:
    """The body has its own deadline, from the head's end: a body slower than the head deadline (0.3 s) but
    within its own (3 s) is read whole; the next request on the connection is served too."""
    seen: list[str] = []
    running = serve(body_app(seen), ConnectionLimits(header_timeout_s=0.3, body_timeout_s=3, keep_alive_s=5,
                                                     max_connections=100))
    with running.connect() as s:
        s.sendall(post_head(40))
        for _ in range(4):
            time.sleep(0.2)
            s.sendall(b"y" * 10)
        read_ok(s)
        s.sendall(post_head(3) + b"abc")
        read_ok(s)
    assert seen == ["read 40", "read 3"]


def test_ingest_answers_a_stalled_body_with_408_and_writes_nothing(serve: Serve, settings: Settings,
                                                                   backend: Backend) -> None:
    backend.apps.create("game", key="game-key")
    quick = ConnectionLimits(header_timeout_s=5, body_timeout_s=0.3, keep_alive_s=5, max_connections=100)
    running = serve(create_app(settings, IngestSinks(backend.stream, backend.dlq, backend.apps, backend.lake)),
                    quick)
    body = b'{"events": []}' * 10
    with running.connect() as s:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nx-api-key: game-key\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20])
        closed, sent = closed_by_peer(s, within=5)
    assert closed and sent.startswith(b"HTTP/1.1 408") and b"did not arrive" in sent, sent
    assert [r for shard in backend.stream.shard_ids() for r in backend.stream.read(shard, None, 10)] == []


def test_at_the_cap_the_longest_idle_connection_makes_room(serve: Serve) -> None:
    running = serve(hello_app(), ConnectionLimits(header_timeout_s=30, keep_alive_s=30, max_connections=3))
    idle = [running.connect() for _ in range(3)]
    time.sleep(0.2)  # accepted in this order
    try:
        with running.connect() as newcomer:
            newcomer.sendall(GET)
            read_ok(newcomer)
        assert closed_by_peer(idle[0], within=5)[0]  # the oldest went
        assert not closed_by_peer(idle[2], within=0.2)[0]  # the newest stays
    finally:
        for s in idle:
            s.close()


def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_a_clean_503(serve: Serve) -> None:
    release = threading.Event()

    async def slow(request: Request) -> Response:
        await asyncio.to_thread(release.wait, 10)
        return JSONResponse({"status": "done"})

    app = Starlette(routes=[Route("/slow", slow)])
    running = serve(app, ConnectionLimits(header_timeout_s=30, keep_alive_s=30, max_connections=2))
    busy = [running.connect() for _ in range(2)]
    try:
        for s in busy:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        with running.connect() as newcomer:
            closed, sent = closed_by_peer(newcomer, within=5)
        assert closed
        assert sent.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in sent.lower()
        release.set()
        for s in busy:
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        release.set()
        for s in busy:
            s.close()


def test_a_declared_body_over_the_route_limit_is_refused_before_it_is_sent(serve: Serve, settings: Settings,
                                                                          backend: Backend) -> None:
    running = serve(create_app(settings, IngestSinks(backend.stream, backend.dlq, backend.apps, backend.lake)))
    with running.connect() as s:
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nx-api-key: nope\r\nContent-Length: 1073741824\r\n\r\n")
        closed, sent = closed_by_peer(s, within=5)  # answered without a byte of the body
    assert closed
    assert sent.startswith(b"HTTP/1.1 413")


def test_an_unexpected_failure_is_one_log_record_and_no_trace_to_the_client(
    serve: Serve, settings: Settings, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenApps:
        def authenticate(self, key: str) -> None:
            raise RuntimeError("the app registry is broken")

    app = create_app(settings, IngestSinks(backend.stream, backend.dlq, BrokenApps(), backend.lake))  # type: ignore[arg-type]
    running = serve(app)
    with caplog.at_level(logging.WARNING), httpx.Client(trust_env=False) as client:
        resp = client.post(f"{running.url}/v1/events", headers={"x-api-key": "k"}, json={"events": []})
    assert resp.status_code == 500
    assert resp.json() == {"error": "internal error; the failure was logged"}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["streamboard.ingest"]  # not a second trace from the server


# --- the local read API on a real server ------------------------------------------------------------------


@pytest.fixture
def read_api(serve: Serve, tmp_path: Path) -> Running:
    from streamboard.backend import build_local_backend

    return serve(read_api_app(build_local_backend(Settings(data_dir=tmp_path / "data"))))


def test_read_api_newline_in_a_path_is_not_dropped(read_api: Running) -> None:
    with httpx.Client(trust_env=False) as client:
        plain = client.get(f"{read_api.url}/v1/leaderboards/overall")
        newline = client.get(f"{read_api.url}/v1/leaderboards/overall%0a")
    assert plain.status_code == 200
    assert newline.status_code == 404
    inside = client_get(read_api, "/v1/leaderboards/a%3B%0A%C3%96b")  # a newline inside the path, not at its end
    assert inside.status_code == 404 and "no leaderboard" in inside.json()["error"]  # the handler's JSON error


def client_get(running: Running, path: str) -> httpx.Response:
    with httpx.Client(trust_env=False) as client:
        return client.get(f"{running.url}{path}")


def test_read_api_head_and_allow(read_api: Running) -> None:
    with httpx.Client(trust_env=False) as client:
        head = client.head(f"{read_api.url}/healthz")
        wrong = client.post(f"{read_api.url}/v1/leaderboards/overall")
    assert head.status_code == 200 and head.content == b""
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD, OPTIONS"


def test_read_api_cuts_off_a_chunked_body(read_api: Running) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 64 MiB if it were all read
            yield b"x" * (1 << 20)

    with httpx.Client(trust_env=False) as client:
        try:
            resp = client.post(f"{read_api.url}/v1/admin/refresh", content=chunks())
        except httpx.TransportError:
            return  # closed while we were still sending: refused, not read
    assert resp.status_code == 413
    assert resp.headers["connection"] == "close"


def test_read_api_caching_and_cors_over_http(serve: Serve, tmp_path: Path) -> None:
    """What a browser or a CDN sees from the local server: a board fresh until 40 s before the next hourly
    refresh, a 304 with no body while it holds, and CORS preflights answered."""
    backend = build_local_backend(Settings(data_dir=tmp_path / "data"))
    refreshed = format_ts(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=backend.settings.refresh_seconds - 40))
    backend.boards.replace_boards([Board("overall", "all", refreshed, refreshed, (BoardEntry(1, "ann", "Ann", 9),))])
    api = serve(read_api_app(backend))
    with httpx.Client(trust_env=False) as client:
        board = client.get(f"{api.url}/v1/leaderboards/overall", headers={"origin": "https://game.example"})
        cached = client.get(f"{api.url}/v1/leaderboards/overall", headers={"if-none-match": board.headers["etag"]})
        preflight = client.options(f"{api.url}/v1/leaderboards/overall", headers={
            "origin": "https://game.example", "access-control-request-method": "GET"})
        admin = client.post(f"{api.url}/v1/admin/refresh", headers={"origin": "https://game.example"})
    assert board.status_code == 200 and board.json()["entries"][0]["user_id"] == "ann"
    age = int(board.headers["cache-control"].removeprefix("public, max-age="))
    assert 30 <= age <= 40
    assert board.headers["access-control-allow-origin"] == "*" and board.headers["access-control-expose-headers"]
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == board.headers["etag"]
    assert preflight.status_code == 204 and preflight.content == b""
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert int(preflight.headers["access-control-max-age"]) > 0
    assert admin.status_code == 401 and admin.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in admin.headers
