"""boto3 clients, created lazily (never at import time) with the standard retry mode."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


class Clients:
    """One client per service, shared by the adapters; thread-safe creation."""

    def __init__(self, region: str, endpoint_url: str | None = None, session: Any = None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with self._lock:
                client = self._clients.get(service)
                if client is None:
                    session = self._session or boto3.session.Session()
                    client = session.client(service, region_name=self.region, endpoint_url=self.endpoint_url,
                                            config=RETRY_CONFIG)
                    self._clients[service] = client
        return client
