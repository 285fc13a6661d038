"""Records too large for the dead-letter queue (SQS: 256 KiB) are kept in the lake; the queue gets a pointer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from streamboard.ports import Lake

OVERFLOW_PREFIX = "dlq-overflow"
POINTER_KEY = "streamboard_overflow_key"


def overflow_pointer(lake: Lake) -> Callable[[bytes], bytes]:
    """A function that stores a record in the lake and returns the small message that points to it."""

    def keep(body: bytes) -> bytes:
        key = f"{OVERFLOW_PREFIX}/{uuid.uuid4()}.json"
        lake.put_object(key, body)
        return json.dumps({POINTER_KEY: key}).encode()

    return keep


# SQS refuses U+FFFE and U+FFFF in a message: valid UTF-8, and valid inside JSON strings.
_SQS_ESCAPES = {"\ufffe".encode(): b"\\ufffe", "\uffff".encode(): b"\\uffff"}


def queue_safe(body: bytes) -> bytes:
    """A JSON message as SQS takes it. The refused characters can only sit inside JSON strings: written as
    escapes there, the JSON reads the same."""
    for raw, escaped in _SQS_ESCAPES.items():
        if raw in body:
            body = body.replace(raw, escaped)
    return body
