"""HTTP serving for every Streamboard server (the ingest container and the local stack's two APIs): uvicorn
with connection hygiene.

uvicorn on its own holds a connection that never sends a byte forever, lets a client trickle its request
head for as long as it likes, accepts connections until the process runs out of file descriptors, and (for
sockets created by the caller with protocol 0) leaves Nagle's algorithm on, which with delayed ACKs stalls
every keep-alive request by ~40 ms. Here every server gets:

- ``TCP_NODELAY`` on every accepted connection;
- a deadline for each request head (from the connection's start, or from the first byte of a later
  request on a kept-alive connection), and one for its body (from the head's end): past either, ``408`` and
  close (kept by the connection, so an app's request pays for no timer of its own);
- an idle keep-alive timeout (uvicorn's own, configurable);
- a cap on concurrent connections: at the cap the longest-idle connection (one with no request in
  progress) is closed to make room, and only when every connection is busy is the newcomer refused with a
  clean ``503`` and ``Retry-After``; connections are accepted a few per turn of the event loop
  (:class:`BoundedAccept`), so that a flood of them passes the cap by those few at most;
- :class:`BodyGuard`: request bodies refused early where a route takes none and capped where it takes one;
- :class:`RepeatFilter`: repeated log lines (the same error again and again) become rate-limited one-line
  summaries, never a traceback per request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import importlib.util
import logging
import resource
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from streamboard.errors import ConfigError, PayloadTooLarge
from streamboard.logs import RepeatFilter as RepeatFilter  # noqa: F401 - (moved there: the CLI needs no server)
from streamboard.logs import install_repeat_filter as install_repeat_filter  # noqa: F401
from streamboard.settings import Settings

log = logging.getLogger("streamboard.serving")

RESERVED_FDS = 512  # descriptors kept back for files, SQLite, DuckDB and the pipeline
# The listen backlog; asyncio also accepts up to this many connections in one go before any of them is
# counted against the cap, so a server may briefly hold its cap plus this.
BACKLOG = 2048
# the event loop of every server (build_server says why uvloop is safe with the cap); asyncio's without it
LOOP = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
NO_BODY_ALLOWANCE = 1024  # a route that takes no body still tolerates a tiny one (say `{}`) and ignores it
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-server connection hygiene (see the module docstring)."""

    header_timeout_s: float = 10.0  # to receive a whole request head
    body_timeout_s: float = 20.0  # then to receive its whole body
    keep_alive_s: float = 5.0  # an idle kept-alive connection is closed after this
    max_connections: int = 4096  # open connections per server (clamped to the descriptors the process has)


def raw_response(status: int, reason: str, error: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, for answers given outside any request
    (no request object exists yet)."""
    body = _encode({"error": error})
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_REFUSED = raw_response(503, "Service Unavailable", "too many connections; retry shortly", (("retry-after", "1"),))


def hygienic_protocol(base: type[asyncio.Protocol], limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """A subclass of a uvicorn HTTP protocol (h11 or httptools) with the connection hygiene above. Each call
    makes a new class, whose idle-connection registry belongs to one server."""
    header_timeout, body_timeout = limits.header_timeout_s, limits.body_timeout_s
    timed_out = raw_response(408, "Request Timeout", f"the request head did not arrive within {header_timeout:g} s")
    body_timed_out = raw_response(408, "Request Timeout",
                                  f"the request body did not arrive within {body_timeout:g} s")
    # Connections with no request in progress, the longest idle first: the ones to close at the cap.
    idle: collections.OrderedDict[Any, None] = collections.OrderedDict()

    class Hygienic(base):  # type: ignore[valid-type, misc]
        # The deadline (of a request's head, then of its body) is a time, checked by one timer per connection
        # that moves itself on when it fires early: a kept-alive connection's requests set and clear the
        # deadline without scheduling or cancelling a timer each (a TimerHandle made and cancelled per request
        # was a tenth of a 304's cost).
        _head_timer: asyncio.TimerHandle | None = None
        _head_deadline: float | None = None
        _head_bytes = False
        _body_due = False  # the deadline is the current request's body's

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                victim = next(iter(idle), None)
                if victim is None:  # every connection is serving a request: refuse this one, cleanly
                    self.connections.discard(self)
                    transport.write(_REFUSED)  # type: ignore[attr-defined]
                    transport.close()
                    return
                victim.close_idle()
            idle[self] = None
            self._arm(self.loop.time() + header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            idle.pop(self, None)
            self._head_deadline = None
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            waiting = before is None or before.response_complete  # for a request head
            if waiting and self._head_deadline is None:  # the first byte of a later request on a kept-alive one
                self._arm(self.loop.time() + header_timeout)
            super().data_received(data)
            cycle = self.cycle
            if cycle is not before:  # a request head is complete: it is being served
                idle.pop(self, None)
                if cycle.more_body:  # and its body is still to come
                    self._body_due = True
                    self._arm(self.loop.time() + body_timeout)
                else:
                    self._head_deadline = None
            elif waiting:
                self._head_bytes = True
            elif self._body_due and not cycle.more_body:  # the body is complete
                self._body_due = False
                self._head_deadline = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self._waiting_for_head():
                idle[self] = None  # the most recently idle goes last
                self._head_bytes = False

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _arm(self, deadline: float) -> None:
            self._head_deadline = deadline
            timer = self._head_timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._head_timer = self.loop.call_at(deadline, self._head_timeout)

        def _head_timeout(self) -> None:
            self._head_timer = None
            deadline = self._head_deadline
            if deadline is None or self.transport.is_closing():
                return
            if self.loop.time() < deadline:  # a later deadline: wait for it
                self._head_timer = self.loop.call_at(deadline, self._head_timeout)
                return
            self._head_deadline = None
            if self._body_due:  # the body did not arrive: 408 unless the app already answered, and close
                self._body_due = False
                cycle = self.cycle
                if cycle is not None and cycle.more_body and not cycle.response_started:
                    self.transport.write(body_timed_out)
                self.transport.close()
                return
            if not self._waiting_for_head():
                return
            if self._head_bytes:
                self.transport.write(timed_out)
            self.transport.close()

        def close_idle(self) -> None:
            """Close this connection (no request is in progress on it) to make room for a new one: at once when
            nothing is left to send (its descriptor is free before the next accept), else after the flush."""
            idle.pop(self, None)
            self._head_deadline = None  # the timer, if any, finds no deadline when it fires
            if self.transport.get_write_buffer_size() == 0:
                self.transport.abort()
            elif not self.transport.is_closing():
                self.transport.close()

    Hygienic.__name__ = Hygienic.__qualname__ = f"Hygienic{base.__name__}"
    return Hygienic


def fd_budget(servers: int) -> int:
    """Raise this process's soft descriptor limit to its hard limit, and return how many connections each
    of ``servers`` servers may hold so that the process never runs out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(16, (soft - RESERVED_FDS) // max(1, servers) - BACKLOG)


def connection_limits(settings: Settings, servers: int) -> ConnectionLimits:
    """The limits from the settings, the connection cap clamped to the descriptors this process has."""
    return ConnectionLimits(settings.header_timeout_s, settings.ingest_request_timeout_s, settings.keep_alive_s,
                            min(settings.max_connections, fd_budget(servers)))


def listening_socket(host: str, port: int, flag: str = "the port") -> socket.socket:
    """A listening TCP socket. Created with ``IPPROTO_TCP`` (not 0) so that asyncio, too, sets
    ``TCP_NODELAY`` on the connections it accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with {flag}") from None
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


class Server(uvicorn.Server):
    """uvicorn, with the loop's exception handler that keeps repeated errors to one-line summaries, and
    with its own SIGINT/SIGTERM handling only when asked (the local stack stops both its servers itself)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.handle_signals:
            with super().capture_signals():
                yield
        else:
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up, but every listening socket accepts through :class:`BoundedAccept` (what uvicorn
        does for the sockets given it, the loop's ``create_server``, accepts a whole flood in one turn)."""
        loop = asyncio.get_running_loop()
        install_loop_error_handler(loop)
        config = self.config
        if sockets is None:
            sockets = [listening_socket(config.host, config.port)]
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise SystemExit(STARTUP_FAILURE)

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=self.server_state,  # type: ignore[call-arg]
                                              app_state=self.lifespan.state, _loop=_loop)

        self.servers = [BoundedAccept(loop, create_protocol, sock) for sock in sockets]  # type: ignore[misc]
        self.started = True


# Connections accepted in one turn of the event loop at most. A loop's own server (uvloop's, libuv's) accepts
# until the kernel's queue is empty, and a connection's descriptor exists from its accept, while the cap above
# closes an idle one only when the new one's connection_made runs, after the accepting is done: under a flood
# of connections the descriptors grew by a whole burst past the cap (tests/e2e/test_abuse.py: 16,600 of the
# 20,000 the process had, two servers capped at 4,096 each), as long as connections kept arriving. A few per
# turn keep the descriptors within the cap and this many, the closes of the turn before done meanwhile.
ACCEPTS_PER_TURN = 64


class BoundedAccept:
    """A listening socket served by the event loop: at most :data:`ACCEPTS_PER_TURN` connections accepted
    each time it is readable, each handed to the loop as an accepted socket (``connect_accepted_socket``);
    what uvicorn's shutdown needs of a server (``close``, ``wait_closed``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol],
                 sock: socket.socket) -> None:
        self.loop, self.factory, self.sock = loop, factory, sock
        sock.setblocking(False)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._paused: asyncio.TimerHandle | None = None
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # out of descriptors or memory: stop accepting for a moment (the queue waits in the kernel)
                    log.warning("accept failed (%s); accepting again in 0.1 s", exc.strerror)
                    self.loop.remove_reader(self.sock.fileno())
                    self._paused = self.loop.call_later(0.1, self._resume)
                    return
                continue  # that connection was gone before its accept (ECONNABORTED): the next one
            conn.setblocking(False)
            task = self.loop.create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resume(self) -> None:
        self._paused = None
        if self.sock.fileno() != -1:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _serve(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except Exception:  # noqa: BLE001 - the client went away meanwhile, or the loop is closing
            conn.close()

    def close(self) -> None:
        if self.sock.fileno() != -1:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        if self._paused is not None:
            self._paused.cancel()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def build_server(app: Any, *, host: str, port: int, limits: ConnectionLimits, graceful_s: float = 25.0,
                 proxy_headers: bool = False, handle_signals: bool = False) -> Server:
    """A uvicorn server for ``app`` with the connection hygiene of :class:`ConnectionLimits`."""
    config = uvicorn.Config(
        # httptools parses HTTP (AutoHTTPProtocol picks it when installed), on uvloop. Under a flood of idle
        # connections the cap above closes an idle one per accepted one: at once (Hygienic.close_idle aborts a
        # connection with nothing left to send; closed after a flush, the flood held 14,000 of 20,000
        # descriptors in tests/e2e/test_abuse.py), a few accepted per turn (BoundedAccept).
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on", backlog=BACKLOG,
        loop=LOOP, http=hygienic_protocol(AutoHTTPProtocol, limits), ws="none",
        timeout_keep_alive=max(1, round(limits.keep_alive_s)), timeout_graceful_shutdown=int(graceful_s),
        proxy_headers=proxy_headers, log_config=None,
    )
    return Server(config, handle_signals=handle_signals)


# --- request bodies ---------------------------------------------------------------------------------------


class BodyGuard:
    """ASGI middleware: each route's request body is capped, and refused before it is read when its declared
    length is over the cap; a body that arrives chunked is cut off once it passes the cap (the app sees
    :class:`PayloadTooLarge` from ``receive``). Any response sent before the request body was read to its end
    closes the connection, so the rest of an unwanted body is never read."""

    def __init__(self, app: Any, body_limit: Callable[[str, str], int]) -> None:
        self.app, self.body_limit = app, body_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.body_limit(scope["method"], scope["path"])
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() and len(value) < 19 else -1
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and (declared < 0 or declared > limit):
            what = "this route takes no request body" if limit <= NO_BODY_ALLOWANCE else \
                f"the request body is over the limit of {limit} bytes"
            await _send_error(send, 413, f"{what} (content-length: {declared if declared >= 0 else 'invalid'})")
            return
        has_body = chunked or bool(declared)
        if not has_body:
            await self.app(scope, receive, send)
            return
        state = {"read": 0, "done": False}

        async def guarded_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    state["done"] = True
                if state["read"] > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        async def closing_send(message: Any) -> None:
            if message["type"] == "http.response.start" and not state["done"]:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, guarded_receive, closing_send)


async def _send_error(send: Any, status: int, error: str) -> None:
    body = _encode({"error": error})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --- logs -------------------------------------------------------------------------------------------------


def install_loop_error_handler(loop: asyncio.AbstractEventLoop) -> None:
    """The event loop's errors (say ``socket.accept() out of system resource``) as log records that the
    :class:`RepeatFilter` can rate-limit, instead of asyncio's default handler."""
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", "event loop error")).replace("%", "%%")  # the filter's key
        logging.getLogger("asyncio").error(message + (": %s: %s" if exc else ""),
                                           *((type(exc).__name__, exc) if exc else ()))

    loop.set_exception_handler(handler)
