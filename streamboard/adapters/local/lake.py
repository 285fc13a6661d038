"""Local lake: S3-like objects as files under one root directory."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from streamboard.errors import NotFound


class LocalLake:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} escapes the lake")
        return p

    def put_object(self, key: str, body: bytes) -> None:
        """Write whole or not at all: a temporary file renamed into place (readers never see half a file)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def delete_object(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def get_object(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no object {key!r} in the lake") from None

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root
        start = self.path(prefix) if prefix else base
        search = start if start.is_dir() else start.parent
        if not search.exists():
            return []
        keys = []
        for p in search.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                key = p.relative_to(base).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)
