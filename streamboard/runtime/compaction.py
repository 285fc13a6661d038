"""Hourly compaction of the local lake: the small Parquet files that the delivery emulation writes into an
arrival-hour partition (one a flush) become one file once the hour is closed, so that the file count does
not grow with every flush (every query opens every file of the partitions it reads).

The swap is atomic: the compacted file is written into a sibling folder, which then trades places with the
partition's folder in one ``renameat2(RENAME_EXCHANGE)``; a query that lists the partition sees the old
files or the new one, never both (which would count rows twice) and never neither.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import os
import shutil
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from streamboard.ports import Catalog
from streamboard.refresh import partition_hour
from streamboard.registry import Registry
from streamboard.runtime.firehose import arrow_schema

log = logging.getLogger("streamboard.compaction")

# Firehose (and its local emulation) may still write into an hour's partition for one buffer interval
# (at most 15 minutes) after the hour: a partition is compacted only once it is this long past its hour.
SETTLE = dt.timedelta(hours=1, minutes=15)
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically (Linux ``renameat2``). Where the call does not exist, two renames: a
    reader in between sees the partition empty for an instant, never doubled."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        errno = ctypes.get_errno()
        if errno not in (22, 38):  # EINVAL/ENOSYS: the file system or kernel cannot exchange
            raise OSError(errno, os.strerror(errno), str(a))
    parked = b.with_name(b.name + f".old-{uuid.uuid4().hex}")
    b.rename(parked)
    a.rename(b)
    parked.rename(a)


def compact_partitions(lake_root: Path, catalog: Catalog, registry: Registry, now: dt.datetime) -> int:
    """Compact every closed partition that holds more than one file; return how many were compacted."""
    compacted = 0
    for event_type in registry:
        schema = arrow_schema(event_type)
        for part in catalog.partitions(event_type.name):
            if partition_hour(part.values) + SETTLE > now:
                continue
            folder = Path(lake_root) / part.location
            files = sorted(folder.glob("*.parquet"))
            if len(files) < 2:
                continue
            staging = folder.with_name(f".{folder.name}.compacting-{uuid.uuid4().hex}")
            staging.mkdir()
            try:
                target = staging / f"compacted-{uuid.uuid4()}.parquet"
                with pq.ParquetWriter(target, schema, compression="snappy") as writer:
                    for f in files:  # one file at a time: memory stays at one flush's worth
                        writer.write_table(pq.read_table(f, schema=schema))
                exchange(staging, folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(staging)  # now the old files
            compacted += 1
            log.info("compacted %d files of %s into one", len(files), part.location)
    return compacted
