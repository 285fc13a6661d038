"""The local stack: ingest and read API over HTTP, and the pipeline AWS would run, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processors import leaderboards, router, transform
from streamboard.adapters.local.health import LocalHealth
from streamboard.adapters.local.stream import LocalEventStream
from streamboard.backend import Backend, build_emulated_aws_backend, build_local_backend
from streamboard.errors import ConfigError
from streamboard.runtime.compaction import compact_partitions
from streamboard.runtime.crawler import crawl, ensure_tables
from streamboard.runtime.esm import EventSourceMapping
from streamboard.runtime.firehose import FirehoseEmulator
from streamboard.settings import Settings
from streamboard.usage import Usage

if TYPE_CHECKING:  # the HTTP services are imported where they are built: `streamboard refresh` needs none

    from streamboard.serving import Server

log = logging.getLogger("streamboard.stack")
COMPACT_SECONDS = 3600  # the lake's closed hours are compacted hourly


class DataDirLock:
    """One running stack per data directory (the pipeline's consumers are not shared)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "stack.lock"
        self._fh: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the life of the stack
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(f"another streamboard stack is running on {self.path.parent}") from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @staticmethod
    def held(data_dir: Path) -> bool:
        path = Path(data_dir) / "stack.lock"
        if not path.exists():
            return False
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def invoked(usage: Usage | None, handler: Handler) -> Handler:
    """``handler``, with each invocation counted as a Lambda invocation (failed ones are billed too)."""
    if usage is None:
        return handler

    def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
        usage.add(lambda_invocations=1)
        return handler(event, context)
    return invoke


class Pipeline:
    """Stream -> router -> delivery buffers -> Parquet -> crawl -> query -> boards, on the local backend."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        if backend is None:
            backend = build_local_backend(settings) if settings.backend == "local" else \
                build_emulated_aws_backend(settings)
        self.backend = backend
        b = self.backend
        ensure_tables(b.catalog, b.registry)
        b.apps.create("local", "app", key=settings.api_key)
        b.apps.create("admin", "admin", key=settings.admin_key)
        self.esm = EventSourceMapping(
            b.stream,
            invoked(b.usage, lambda event, context: router.handle(event, b)),
            Path(settings.data_dir) / "runtime.db",
            b.router_failures,
            batch_size=settings.router_batch_size,
            max_retries=settings.router_max_retries,
            bisect_on_error=settings.router_bisect_on_error,
            retry_backoff_seconds=settings.router_retry_backoff_seconds,
        )
        delivery: Any = b.delivery
        if settings.backend == "aws":
            from streamboard.runtime.aws_emulation import RawDeliverySource

            delivery = RawDeliverySource(b.lake)  # type: ignore[arg-type]
        self.firehose = FirehoseEmulator(
            delivery, b.lake, b.registry, invoked(b.usage, lambda event, context: transform.handle(event, b)),
            settings.firehose_buffer_bytes, settings.firehose_buffer_seconds,
        )
        self.lock = threading.RLock()
        self.health: LocalHealth | None = None
        self._last_crawl = time.monotonic()
        self._last_refresh = time.monotonic()
        self._last_trim = 0.0
        self._last_compaction = time.monotonic()
        b.refresh = self.refresh
        if isinstance(b.stream, LocalEventStream):  # the emulated AWS backend keeps its CloudWatch figures
            b.health = self.health = LocalHealth(b.stream, self.esm, b.dlq, b.lake, b.usage)
            self.health.sample(force=True)  # the baseline of the accepted-events rate

    def pump_once(self) -> int:
        """One round of the background work; returns how many records moved."""
        if self.health is not None:
            self.health.sample()
        with self.lock:
            moved = self.esm.poll_all()
            moved += self.firehose.flush()
            now = time.monotonic()
            crawled = False
            trim = getattr(self.backend.stream, "trim", None)  # the local stream keeps Kinesis's retention
            if trim is not None and now - self._last_trim >= 600:
                self._last_trim = now
                trim(time.time() - self.settings.stream_retention_hours * 3600)
            if now - self._last_crawl >= self.settings.crawl_seconds:
                self._last_crawl = now
                crawled = crawl(self.backend.lake, self.backend.catalog, self.backend.registry) > 0
            root = getattr(self.backend.lake, "root", None)  # the local lake (on S3, Firehose's files are large)
            if root is not None and now - self._last_compaction >= COMPACT_SECONDS:
                self._last_compaction = now
                compact_partitions(root, self.backend.catalog, self.backend.registry, dt.datetime.now(dt.UTC))
        if crawled or now - self._last_refresh >= self.settings.refresh_seconds:
            self.refresh(drain=False)
        return moved

    def drain(self) -> dict[str, int]:
        """Take everything acknowledged so far through the stream, the router, the delivery buffers and
        the crawl."""
        started = time.time()
        with self.lock:
            routed = 0
            deadline = time.monotonic() + 600
            while not self.esm.caught_up_until(started):
                n = self.esm.poll_all()
                routed += n
                if n == 0:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the router did not catch up with the stream within 10 minutes")
                    time.sleep(0.05)  # a shard is retrying a failed batch
            delivered = self.firehose.flush(force=True)
            partitions = crawl(self.backend.lake, self.backend.catalog, self.backend.registry)
            self._last_crawl = time.monotonic()
        return {"routed": routed, "delivered": delivered, "new_partitions": partitions}

    def refresh(self, drain: bool = True, full: bool = False) -> dict[str, Any]:
        """Drain (by default), run (or resume) an incremental refresh batch, and write its boards (as soon as
        they are computed: ``boards_published_s`` says when, ``seconds`` when the per-player writes ended too);
        ``full`` builds the refresh's state again from the whole lake."""
        started = time.monotonic()
        drained = self.drain() if drain else {}
        with self.lock:
            begun = time.monotonic()
            result = leaderboards.refresh_now(self.backend, full=full)
        self._last_refresh = time.monotonic()
        summary = {**drained, **result, "seconds": round(time.monotonic() - started, 3),
                   # from the start of this call, the drain included
                   "boards_published_s": round(result["boards_published_s"] + begun - started, 3)}
        log.info("refresh: %s", summary)
        return summary


def read_api_app(backend: Backend) -> Any:
    """Serve the read API Lambda locally: each request becomes an API Gateway HTTP API (v2) event. No route
    takes a request body, so one is capped at a few bytes and refused before it is read when it says it is
    larger (:class:`BodyGuard`); API Gateway would cap it at 10 MB. A board read answered less than
    ``board_cache_seconds`` ago is answered again from memory (:mod:`streamboard.microcache`)."""
    import msgspec
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from processors import read_api
    from streamboard.errors import PayloadTooLarge
    from streamboard.microcache import MicroCache
    from streamboard.serving import BodyGuard

    async def endpoint(request: Request) -> Response:
        try:
            body = b"".join([chunk async for chunk in request.stream()])
        except PayloadTooLarge as exc:
            return Response(msgspec.json.encode({"error": str(exc)}), 413, media_type="application/json")
        # The path as decoded by the server, not request.url's: URL parsing drops tabs and newlines
        # (puzzle%0a would become puzzle).
        path = request.scope["path"]
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": request.scope["query_string"].decode("latin-1"),
            "headers": dict(request.headers),
            "requestContext": {
                "http": {"method": request.method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": request.client.host if request.client else "127.0.0.1"},
                "requestId": str(time.time_ns()),
                "timeEpoch": int(time.time() * 1000),
            },
            "body": body.decode("utf-8", "replace") if body else None,
            "isBase64Encoded": False,
        }
        result = await asyncio.to_thread(invoked(backend.usage, read_api.handle), event, backend)
        return Response(result["body"], status_code=result["statusCode"], headers=result["headers"])

    async def unrouted(request: Request, exc: Exception) -> Response:
        # Starlette's `{path:path}` is `.*`, which stops at a newline inside a path (a%0Ab): the handler
        # answers those too, as API Gateway would pass them on
        return await endpoint(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=list(read_api.METHODS))],
                    middleware=[Middleware(BodyGuard, body_limit=lambda method, path: read_api.MAX_BODY)],
                    exception_handlers={404: unrouted})
    return MicroCache(app, backend.settings.board_cache_seconds,
                      generation=lambda: (getattr(backend.boards, "writes", 0), getattr(backend.ranks, "writes", 0)))


class LocalStack:
    """``streamboard up``: both HTTP services and the pipeline, until SIGINT/SIGTERM or :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = DataDirLock(settings.data_dir)
        self.lock.acquire()
        try:
            self.pipeline = Pipeline(settings)
        except BaseException:
            self.lock.release()
            raise
        self.backend = self.pipeline.backend
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._servers: list[Server] = []

    @property
    def ingest_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.ingest_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.api_port}"

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.pipeline.pump_once()
            except Exception:  # noqa: BLE001 - keep the pipeline running; the error is logged
                log.exception("pipeline round failed; retrying")
                moved = 0
            if not moved:
                self._stop.wait(self.settings.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        for s in self._servers:
            s.should_exit = True

    async def serve(self) -> None:
        from ingest.app import IngestSinks, create_app
        from streamboard.serving import build_server, connection_limits, listening_socket

        backend = self.backend
        sinks = IngestSinks(backend.stream, backend.dlq, backend.apps, backend.lake, backend.usage)
        if self.settings.fault_file is not None:
            from streamboard.faults import FaultPlan, FaultyQueue, FaultyStream

            log.warning("fault injection is ON, driven by %s", self.settings.fault_file)
            plan = FaultPlan(self.settings.fault_file)
            sinks = IngestSinks(FaultyStream(backend.stream, plan), FaultyQueue(backend.dlq, plan), backend.apps,
                                backend.lake, backend.usage)
        limits = connection_limits(self.settings, servers=2)
        ingest = build_server(create_app(self.settings, sinks, backend.registry), host=self.settings.host,
                              port=self.settings.ingest_port, limits=limits, graceful_s=25)
        api = build_server(read_api_app(backend), host=self.settings.host, port=self.settings.api_port,
                           limits=limits, graceful_s=25)
        self._servers = [ingest, api]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError, ValueError):  # not the main thread: the caller stops us
                loop.add_signal_handler(sig, self.stop)
        sockets = [listening_socket(self.settings.host, self.settings.ingest_port, "--ingest-port"),
                   listening_socket(self.settings.host, self.settings.api_port, "--api-port")]
        pump = threading.Thread(target=self._pump, name="pipeline", daemon=True)
        pump.start()
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(self._servers, sockets, strict=True)]
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                self.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise ConfigError("the HTTP servers failed to start; see the log above")
            await asyncio.sleep(0.02)
        (Path(self.settings.data_dir) / "stack.json").write_text(json.dumps({
            "pid": os.getpid(), "ingest_url": self.ingest_url, "api_url": self.api_url,
            "started_at": dt.datetime.now(dt.UTC).isoformat()}))
        self.ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            self._stop.set()
            pump.join(timeout=30)
            # Flush: what the router already handed to the delivery buffers stays durable in them;
            # deliver it now so the lake is complete on a clean stop.
            with self.pipeline.lock:
                self.pipeline.firehose.flush(force=True)
            self.lock.release()

    def run(self) -> None:
        try:
            asyncio.run(self.serve())
        finally:
            self.lock.release()
