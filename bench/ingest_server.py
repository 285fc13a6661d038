"""The server side of bench/ingest.py: our ingest app with a null stream sink, or a bare endpoint that only
reads and decodes the body; same server (uvicorn), same worker count, same port handling."""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest.app import IngestSinks, create_app, json_response
from streamboard.adapters.local.lake import LocalLake
from streamboard.adapters.local.queue import LocalQueue
from streamboard.adapters.local.stores import LocalAppRegistry
from streamboard.ports import PutResult, ReadRecord, StreamRecord
from streamboard.settings import Settings

KEY = "bench-key"
OK = PutResult("shardId-000000000000", "1")


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


def bare_app() -> Starlette:
    decoder = msgspec.json.Decoder()

    async def events(request: Request) -> Response:
        body = await request.body()
        doc = decoder.decode(body)
        n = len(doc["events"]) if isinstance(doc, dict) and "events" in doc else 1
        return json_response({"accepted": n, "rejected": []}, 202)  # the same response helper as ours

    return Starlette(routes=[Route("/v1/events", events, methods=["POST"])])


def full_app(data: Path) -> Starlette:
    apps = LocalAppRegistry(data / "apps.db")
    apps.create("bench", key=KEY)
    settings = Settings(data_dir=data, rate_limit_events_per_s=0)
    sinks = IngestSinks(NullStream(), LocalQueue(data / "queues.db", "dlq"), apps, LocalLake(data / "lake"))
    return create_app(settings, sinks)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("full", "bare"), required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        app = full_app(Path(tmp)) if args.mode == "full" else bare_app()
        gc.collect()
        gc.freeze()  # as python -m ingest does (both modes: the same server set-up)
        uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
