"""API keys: generated with enough entropy that a fast hash is safe; only the hash is ever stored."""

from __future__ import annotations

import hashlib
import secrets


def new_key() -> str:
    return "sb_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(b"streamboard-api-key:v1:" + key.encode()).hexdigest()

