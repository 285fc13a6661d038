"""Shared fixtures: a local backend or pipeline in a temporary data directory, free ports, sample events."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from streamboard.backend import Backend, build_local_backend
from streamboard.ports import StreamRecord
from streamboard.registry import REGISTRY, format_ts
from streamboard.runtime.stack import Pipeline
from streamboard.settings import Settings

EVENTS_DIR = Path(__file__).parent / "events"


def load_event(name: str) -> Any:
    """A sample AWS-shaped event from tests/events/<name>.json."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def stream_record(events: list[dict[str, Any]], *, app_id: str = "local",
                  received_at: dt.datetime | None = None) -> StreamRecord:
    """The stream record ingest writes for these (valid) client events of one request."""
    received_at = received_at or dt.datetime.now(dt.UTC)
    checked = [REGISTRY.check(e, app_id=app_id, received_at=received_at) for e in events]
    [(key, data)] = REGISTRY.records(checked, app_id=app_id, received_at_text=format_ts(received_at))
    return StreamRecord(key, data)


def events_of(records: Iterable[bytes]) -> list[dict[str, Any]]:
    """The events (normalized, as the lake stores them) that stream records carry, in order."""
    out: list[dict[str, Any]] = []
    for data in records:
        events, invalid = REGISTRY.read_record(data)
        assert not invalid, invalid
        out.extend(events)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and a region for boto3 under moto: nothing can reach a real account."""
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def backend(settings: Settings) -> Backend:
    return build_local_backend(settings)


@pytest.fixture
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline(settings)
