"""What AWS would do, emulated against an AWS-compatible endpoint (a moto server) for ``up --backend aws``.

moto stores Firehose's processing settings but ignores them: it writes each batch's raw bytes to S3
at once, its records joined. :class:`RawDeliverySource` treats those raw objects as Firehose's buffer, so the
same Firehose emulation (transform Lambda, Parquet, key layout, error prefix) runs on them.
moto runs no SQL: :class:`MirroredQueryEngine` copies the cataloged Parquet files to local disk and
runs the Athena views on DuckDB there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamboard.adapters.aws.lake import S3Lake
from streamboard.packing import pack
from streamboard.ports import Catalog, QueryStatus

RAW_PREFIX = "firehose-raw"


class RawDeliverySource:
    """The raw objects a delivery stream wrote under ``firehose-raw/<stream>/``, as a Firehose buffer.

    moto joins a call's records, so their bounds are lost. Every record ends a line, and packing an object's
    lines again as the router packed them (:func:`streamboard.packing.pack`) gives back the router's records."""

    def __init__(self, lake: S3Lake) -> None:
        self.lake = lake
        self._taken: dict[str, list[str]] = {}

    def _keys(self, stream: str) -> list[str]:
        return self.lake.list_keys(f"{RAW_PREFIX}/{stream}/")

    def buffered(self, stream: str) -> tuple[int, int, float | None]:
        keys = self._keys(stream)
        return len(keys), 0, (0.0 if keys else None)  # moto has delivered them: they are due now

    def take(self, stream: str, max_bytes: int, max_records: int) -> list[tuple[int, bytes, float]]:
        out: list[tuple[int, bytes, float]] = []
        taken: list[str] = []
        size = 0
        for key in self._keys(stream):
            lines = [line + b"\n" for line in self.lake.get_object(key).split(b"\n") if line.strip()]
            records = [b"".join(lines[r.start:r.stop]) for r in pack(lines)]
            if out and (size + sum(map(len, records)) > max_bytes or len(out) + len(records) > max_records):
                break
            now = time.time()
            first = len(out) + 1  # ids are positions in this take; computed before extending
            out.extend((first + i, record, now) for i, record in enumerate(records))
            size += sum(map(len, records))
            taken.append(key)
        self._taken[stream] = taken
        return out

    def ack(self, stream: str, up_to_id: int) -> None:
        for key in self._taken.pop(stream, []):
            self.lake.delete_object(key)


class MirroredQueryEngine:
    """The QueryEngine port on DuckDB over a local copy of the cataloged S3 partitions."""

    def __init__(self, lake: S3Lake, catalog: Catalog, cache_dir: Path, **engine_options: Any) -> None:
        from streamboard.adapters.local.query import LocalQueryEngine

        self.lake = lake
        self.catalog = catalog
        self.cache = Path(cache_dir)
        self.engine = LocalQueryEngine(self.cache, catalog, **engine_options)  # type: ignore[arg-type]

    def sync(self) -> int:
        """Download the Parquet files of every cataloged partition not yet on disk; return how many."""
        fetched = 0
        for table in self.catalog.table_names():
            for part in self.catalog.partitions(table):
                for key in self.lake.list_keys(part.location + "/"):
                    target = self.cache / key
                    if key.endswith(".parquet") and not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        tmp = target.with_suffix(".tmp")
                        tmp.write_bytes(self.lake.get_object(key))
                        tmp.rename(target)
                        fetched += 1
        return fetched

    def start_query(self, sql: str) -> str:
        # The refresh's statements name the lake tables they read (no views there): one on state tables
        # only needs no new files. An analyst's query may read them through a view: always synced.
        if self.engine.state_path is None or self.engine.lake_tables_in(sql):
            self.sync()
        return self.engine.start_query(sql)

    def status(self, query_id: str) -> QueryStatus:
        return self.engine.status(query_id)

    def results(self, query_id: str) -> list[dict[str, Any]]:
        return self.engine.results(query_id)

    def run(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        self.sync()
        return self.engine.run(sql)
