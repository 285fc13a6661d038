"""A synthetic score lake, written straight to Parquet in the local stack's layout (no HTTP, no stream).

``<data_dir>/lake/score/year=YYYY/month=MM/day=DD/hour=HH/<name>.parquet`` with the registry's Arrow schema
(``arrow_schema``, snappy as ``to_parquet``), partitions registered in ``<data_dir>/catalog.db`` by the crawl,
so that ``streamboard refresh --data-dir D`` runs over it offline. Only ``score`` has data; the ``action``
table exists in the catalog without partitions.

Shape (defaults): N rows over 401 consecutive arrival hours ending at the current hour, spread evenly;
200,000 users (``u000123``), 5 categories, points 1..1000; 10% of events carry one of 500 challenge ids;
30% a user_name, which changes weekly per user; received_at inside its arrival hour, never after the
build's now in the current hour (3% a few minutes before the hour, as a buffer flushed late);
ts = received_at minus seconds to minutes (log-uniform 1 s..17 min), or for 5% of events ("late") minus
1..400 days; 1% of rows are duplicate deliveries of an earlier event (same event_id, same content): half
a re-delivery of the same record (same received_at, a second file in the same partition, as a retried
Firehose delivery), half a client retry (received_at 2 s..4 days after the original's, log-uniform, in
the partition of the hour it arrived in).

Each unique event's fields are a hash of its index (splitmix64 of seed and index), so a duplicate is
regenerated anywhere without keeping the lake in memory; one partition is built at a time, vectorised with
numpy and written with pyarrow. ``synthetic_lake.json`` in the data dir records the layout, so that
:func:`append_new_data` adds new arrival hours (and retries of recent events) after the existing ones.

Usage: python -m bench.synthetic_lake --data-dir D --events N [--seed S]
       python -m bench.synthetic_lake --data-dir D --append N   (the next arrival hour)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamboard.badevents import hour_prefix
from streamboard.registry import REGISTRY
from streamboard.runtime.firehose import arrow_schema

MANIFEST = "synthetic_lake.json"
TABLE = "score"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CATEGORY_NAMES = ("arcade", "puzzle", "racing", "strategy", "trivia")
NAME_PERIOD_HOURS = 168  # a user's display name changes weekly (at a phase of its own)
EARLY_SHARE, EARLY_MS = 0.03, 5 * 60_000  # received a few minutes before its arrival hour
RETRY_DELAY_MS = (2_000, 4 * DAY_MS)  # a client retry arrives 2 s .. 4 days after the original

_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True)
class Shape:
    """The lake's parameters besides its size."""

    users: int = 200_000
    categories: int = 5
    challenges: int = 500
    challenge_share: float = 0.10
    name_share: float = 0.30
    duplicate_share: float = 0.01
    late_share: float = 0.05
    max_late_days: int = 400
    hours: int = 401
    app_id: str = "local"


# --- deterministic per-event randomness -------------------------------------------------------------------


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> np.uint64(31))
    return out


class _Draws:
    """Independent 64-bit draws per event index and field number: the same index always gives the same
    event, which is what makes a duplicate an exact copy."""

    def __init__(self, seed: int, idx: np.ndarray) -> None:
        self.base = _mix(idx.astype(np.uint64) + np.uint64((seed * _GOLDEN + 1) & _M64))

    def bits(self, field_no: int) -> np.ndarray:
        return _mix(self.base + np.uint64((field_no * _GOLDEN) & _M64))

    def unit(self, field_no: int) -> np.ndarray:
        """Uniform in [0, 1)."""
        return (self.bits(field_no) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53

    def below(self, field_no: int, n: int) -> np.ndarray:
        return (self.bits(field_no) % np.uint64(n)).astype(np.int64)


# --- fixed-width strings, built as Arrow buffers -----------------------------------------------------------


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def _text(prefix: bytes, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(prefix, dtype=np.uint8), (n, len(prefix)))


def _strings(chars: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A string array from an (n, width) uint8 matrix, one value a row; rows not ``valid`` are null."""
    n, width = chars.shape
    if valid is None:
        offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
        data = np.ascontiguousarray(chars)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(valid.astype(np.int32) * width, out=offsets[1:])
    data = np.ascontiguousarray(chars[valid])
    bitmap = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(pa.string(), n, [pa.py_buffer(bitmap), pa.py_buffer(offsets), pa.py_buffer(data)],
                                 null_count=int(n - valid.sum()))


def _uuids(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Version-4 UUID text (36 bytes a row) from two 64-bit words a row."""
    n = len(hi)
    words = np.empty((n, 2), dtype=">u8")
    words[:, 0], words[:, 1] = hi, lo
    raw = words.view(np.uint8).reshape(n, 16)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 15
    nibbles[:, 12] = 4  # version
    nibbles[:, 16] = 8 | (nibbles[:, 16] & 3)  # RFC 4122 variant
    hexed = _HEX[nibbles]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, 0:8], out[:, 9:13], out[:, 14:18] = hexed[:, 0:8], hexed[:, 8:12], hexed[:, 12:16]
    out[:, 19:23], out[:, 24:36] = hexed[:, 16:20], hexed[:, 20:32]
    return out


def _width(count: int, least: int) -> int:
    return max(least, len(str(max(count - 1, 0))))


# --- the layout -------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """What is in the lake: each arrival hour (offset from the first) and the unique event indices that
    arrived in it. Saved as ``synthetic_lake.json`` in the data dir."""

    seed: int
    shape: Shape
    first_hour_ms: int  # epoch ms of the first arrival hour (UTC)
    built_at_ms: int  # the build's "now": nothing in the hour it falls in was received later
    hour_offsets: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    rows: int = 0  # every row written, duplicates included
    appends: list[dict[str, Any]] = field(default_factory=list)

    def span(self, hour_start_ms: np.ndarray) -> np.ndarray:
        """How much of each arrival hour had passed at the build (all of it, but for the current hour)."""
        current = self.built_at_ms // HOUR_MS * HOUR_MS
        return np.where(hour_start_ms == current, max(self.built_at_ms - current, 1000), HOUR_MS)

    @property
    def unique_events(self) -> int:
        return self.ends[-1] if self.ends else 0

    def hour_of(self, idx: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(np.asarray(self.starts, dtype=np.int64), idx, side="right") - 1
        return np.asarray(self.hour_offsets, dtype=np.int64)[pos]

    def pick(self, hour_offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random unique event from each given arrival hour (or the nearest earlier one written)."""
        offsets = np.asarray(self.hour_offsets, dtype=np.int64)
        pos = np.clip(np.searchsorted(offsets, hour_offsets, side="right") - 1, 0, len(offsets) - 1)
        lo, hi = np.asarray(self.starts, dtype=np.int64)[pos], np.asarray(self.ends, dtype=np.int64)[pos]
        return lo + (rng.random(len(pos)) * (hi - lo)).astype(np.int64)

    def save(self, data_dir: Path) -> None:
        doc = {**asdict(self), "first_hour": _iso(self.first_hour_ms)}
        tmp = data_dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(doc) + "\n")
        os.replace(tmp, data_dir / MANIFEST)

    @classmethod
    def load(cls, data_dir: Path) -> Layout:
        path = Path(data_dir) / MANIFEST
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: build the lake with python -m bench.synthetic_lake first")
        doc = json.loads(path.read_text())
        doc.pop("first_hour", None)
        doc["shape"] = Shape(**doc["shape"])
        return cls(**doc)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def _events(layout: Layout, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The numeric form of the unique events ``idx`` (the same every time for the same index)."""
    s, d = layout.shape, _Draws(layout.seed, idx)
    hour_start = layout.first_hour_ms + layout.hour_of(idx) * HOUR_MS
    early = d.unit(1) < EARLY_SHARE
    within = d.unit(2)
    received = hour_start + np.where(early, -within * EARLY_MS, within * layout.span(hour_start)).astype(np.int64)
    late = d.unit(3) < s.late_share
    lag_unit = d.unit(4)
    lag = np.where(late, DAY_MS + lag_unit * (s.max_late_days - 1) * DAY_MS, 1000 * 2.0 ** (lag_unit * 10))
    ts = received - lag.astype(np.int64)
    user = d.below(5, s.users)
    challenge = np.where(d.unit(8) < s.challenge_share, d.below(9, s.challenges), -1)
    phase = (_mix(user.astype(np.uint64) + np.uint64(12345)) % np.uint64(NAME_PERIOD_HOURS)).astype(np.int64)
    name_version = np.where(d.unit(10) < s.name_share, ((ts // HOUR_MS + phase) // NAME_PERIOD_HOURS) % 100, -1)
    return {"id_hi": d.bits(11), "id_lo": d.bits(12), "user": user, "category": d.below(6, s.categories),
            "points": 1 + d.below(7, 1000), "challenge": challenge, "name_version": name_version,
            "ts": ts, "received": received}


def _table(layout: Layout, ev: dict[str, np.ndarray]) -> pa.Table:
    """Numeric events to an Arrow table with the registry's ``score`` schema (the lake's column order)."""
    s, n = layout.shape, len(ev["ts"])
    user_width = _width(s.users, 6)
    user_ids = _strings(np.hstack([_text(b"u", n), _digits(ev["user"], user_width)]))
    categories = [CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category{c}" for c in range(s.categories)]
    has_challenge, named = ev["challenge"] >= 0, ev["name_version"] >= 0
    challenge_ids = _strings(np.hstack([_text(b"ch", n), _digits(np.maximum(ev["challenge"], 0),
                                                                   _width(s.challenges, 3))]), has_challenge)
    names = _strings(np.hstack([_text(b"player-", n), _digits(ev["user"], user_width), _text(b"-v", n),
                                _digits(np.maximum(ev["name_version"], 0), 2)]), named)
    columns = {
        "event_id": _strings(_uuids(ev["id_hi"], ev["id_lo"])),
        "event_type": _strings(_text(TABLE.encode(), n)),
        "user_id": user_ids,
        "ts": pa.array(ev["ts"], type=pa.timestamp("ms")),
        "app_id": _strings(_text(s.app_id.encode(), n)),
        "received_at": pa.array(ev["received"], type=pa.timestamp("ms")),
        # the router stamps a batch when it routes it, a moment after receipt
        "routed_at": pa.array(ev["received"] + 1000, type=pa.timestamp("ms")),
        "category": pa.array(categories, type=pa.string()).take(pa.array(ev["category"])),
        "points": pa.array(ev["points"], type=pa.int64()),
        "challenge_id": challenge_ids,
        "user_name": names,
    }
    schema = arrow_schema(REGISTRY.get(TABLE))
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _sorted(ev: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(ev["received"], kind="stable")
    return {k: v[order] for k, v in ev.items()}


def _write(folder: Path, table: pa.Table, stamp_ms: int) -> int:
    """One Parquet file named as Firehose names them, written whole or not at all; returns its size."""
    stamp = dt.datetime.fromtimestamp(stamp_ms / 1000, dt.UTC)
    target = folder / f"streamboard-{TABLE}-{stamp:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"
    tmp = folder / f".{target.name}.tmp"
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, target)
    return target.stat().st_size


def _write_hour(data_dir: Path, layout: Layout, offset: int, unique: int, duplicates: int) -> tuple[int, int, int]:
    """One arrival hour: ``unique`` new events and ``duplicates`` re-deliveries; returns rows, files, bytes."""
    start = layout.unique_events
    layout.hour_offsets.append(offset)
    layout.starts.append(start)
    layout.ends.append(start + unique)
    rng = np.random.default_rng([layout.seed, offset, 1])
    hour_ms = layout.first_hour_ms + offset * HOUR_MS
    span = int(layout.span(np.array([hour_ms]))[0])
    parts = [_events(layout, np.arange(start, start + unique, dtype=np.int64))]
    redelivered = duplicates // 2 if unique else 0
    retries = duplicates - redelivered
    if retries:
        # A client retry: the original was received `delay` before an instant of this hour.
        at = hour_ms + (rng.random(retries) * span).astype(np.int64)
        delay = np.exp(rng.uniform(math.log(RETRY_DELAY_MS[0]), math.log(RETRY_DELAY_MS[1]), retries))
        original_hour = (at - delay.astype(np.int64) - layout.first_hour_ms) // HOUR_MS
        retry = _events(layout, layout.pick(original_hour, rng))
        retry["received"] = np.minimum(np.maximum(at, retry["received"] + RETRY_DELAY_MS[0]), hour_ms + span - 1)
        parts.append(retry)
    folder = data_dir / "lake" / TABLE / hour_prefix(dt.datetime.fromtimestamp(hour_ms / 1000, dt.UTC))
    folder.mkdir(parents=True, exist_ok=True)
    main = _sorted(_concat(parts))
    rows, files, size = len(main["ts"]), 1, _write(folder, _table(layout, main), int(main["received"][-1]))
    if redelivered:
        # The same records delivered twice (same received_at): a second file in the same partition.
        again = _sorted(_events(layout, start + rng.integers(0, unique, redelivered)))
        size += _write(folder, _table(layout, again), hour_ms + span - 1)
        rows, files = rows + redelivered, files + 1
    layout.rows += rows
    return rows, files, size


def _split(total: int, parts: int) -> list[int]:
    return [(i + 1) * total // parts - i * total // parts for i in range(parts)]


# What register() does, run by another checkout's interpreter (``-c`` imports from the working directory).
_REGISTER = """import sys
from pathlib import Path
from streamboard.backend import build_local_backend
from streamboard.runtime.crawler import crawl, ensure_tables
from streamboard.settings import Settings
backend = build_local_backend(Settings(data_dir=Path(sys.argv[1])))
ensure_tables(backend.catalog, backend.registry)
print(crawl(backend.lake, backend.catalog, backend.registry))
"""


def register(data_dir: Path, checkout: Path | None = None) -> int:
    """Create the tables (``score`` and ``action``) and crawl the lake into the catalog; returns new partitions.
    With ``checkout``, that streamboard checkout's code does it, in a subprocess (its catalog may differ)."""
    if checkout is not None:
        done = subprocess.run([sys.executable, "-c", _REGISTER, str(data_dir)], cwd=checkout, capture_output=True,
                              text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"registering {data_dir} with {checkout}'s code failed:\n{done.stderr[-3000:]}")
        return int(done.stdout.strip().splitlines()[-1])
    from streamboard.backend import build_local_backend
    from streamboard.runtime.crawler import crawl, ensure_tables
    from streamboard.settings import Settings

    backend = build_local_backend(Settings(data_dir=Path(data_dir)))
    ensure_tables(backend.catalog, backend.registry)
    return crawl(backend.lake, backend.catalog, backend.registry)


class _Progress:
    def __init__(self, total: int, label: str, quiet: bool) -> None:
        self.total, self.label, self.quiet = total, label, quiet
        self.done, self.started, self.last = 0, time.monotonic(), 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if not self.quiet and (now - self.last >= 1 or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            end = "\n" if self.done >= self.total else ""
            print(f"\r{self.label}: {self.done:,} / {self.total:,} events ({rate:,.0f}/s)", end=end,
                  file=sys.stderr, flush=True)


def build_lake(data_dir: Path | str, events: int, seed: int = 0, shape: Shape | None = None,
               now: dt.datetime | None = None, quiet: bool = False, checkout: Path | None = None) -> dict[str, Any]:
    """Write a lake of ``events`` rows (duplicates included) into an empty data dir and catalog it (with
    ``checkout``'s code when given, see :func:`register`)."""
    data_dir, shape = Path(data_dir), shape or Shape()
    if events < 2 * shape.hours:
        raise ValueError(f"at least {2 * shape.hours} events, two per arrival hour")
    lake = data_dir / "lake" / TABLE
    if lake.exists() and any(lake.iterdir()):
        raise FileExistsError(f"{lake} already holds data: build into an empty data dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    now_ms = int((now or dt.datetime.now(dt.UTC)).timestamp() * 1000)
    current_hour = now_ms // HOUR_MS * HOUR_MS
    layout = Layout(seed, shape, current_hour - (shape.hours - 1) * HOUR_MS, now_ms)
    started = time.monotonic()
    duplicates = round(events * shape.duplicate_share)
    progress = _Progress(events, "synthetic lake", quiet)
    files = size = 0
    for offset, (unique, dups) in enumerate(zip(_split(events - duplicates, shape.hours),
                                                 _split(duplicates, shape.hours), strict=True)):
        rows, f, b = _write_hour(data_dir, layout, offset, unique, dups)
        files, size = files + f, size + b
        progress.add(rows)
    written = time.monotonic() - started
    partitions = register(data_dir, checkout)
    layout.save(data_dir)
    return {"events": layout.rows, "unique_events": layout.unique_events, "duplicates": duplicates,
            "partitions": partitions, "files": files, "parquet_bytes": size, "first_hour": _iso(layout.first_hour_ms),
            "last_hour": _iso(layout.first_hour_ms + (shape.hours - 1) * HOUR_MS), "seed": seed,
            "write_seconds": round(written, 2), "seconds": round(time.monotonic() - started, 2)}


def append_new_data(data_dir: Path | str, events: int, hour_offset: int = 1, hours: int = 1,
                    quiet: bool = True, checkout: Path | None = None) -> dict[str, Any]:
    """Write about ``events`` new rows into ``hours`` new arrival partitions, the first ``hour_offset`` hours
    after the last one written (perhaps in the future, which is fine): new events, re-deliveries of them,
    and client retries of recent events (2 s..4 days old); then crawl them into the catalog."""
    data_dir = Path(data_dir)
    layout = Layout.load(data_dir)
    if hour_offset < 1 or hours < 1:
        raise ValueError("hour_offset and hours must be at least 1")
    started = time.monotonic()
    duplicates = round(events * layout.shape.duplicate_share)
    first = layout.hour_offsets[-1] + hour_offset
    files = size = rows = 0
    progress = _Progress(events, "appending", quiet)
    for i, (unique, dups) in enumerate(zip(_split(events - duplicates, hours), _split(duplicates, hours),
                                           strict=True)):
        r, f, b = _write_hour(data_dir, layout, first + i, max(unique, 1), dups)
        rows, files, size = rows + r, files + f, size + b
        progress.add(r)
    partitions = register(data_dir, checkout)
    summary = {"events": rows, "partitions": partitions, "files": files, "parquet_bytes": size,
               "first_hour": _iso(layout.first_hour_ms + first * HOUR_MS),
               "last_hour": _iso(layout.first_hour_ms + (first + hours - 1) * HOUR_MS),
               "seconds": round(time.monotonic() - started, 2)}
    layout.appends.append(summary)
    layout.save(data_dir)
    return summary


def lake_bytes(data_dir: Path | str) -> tuple[int, int]:
    """Parquet files and bytes under the lake's ``score`` table."""
    paths = list((Path(data_dir) / "lake" / TABLE).rglob("*.parquet"))
    return len(paths), sum(p.stat().st_size for p in paths)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="an empty (or new) data dir; with --append, an existing lake")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--events", type=int, help="rows to write, duplicate deliveries included")
    what.add_argument("--append", type=int, metavar="EVENTS", help="add about EVENTS rows in the next arrival hour")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=Shape.users)
    p.add_argument("--hours", type=int, default=Shape.hours, help="arrival hours, ending at the current one")
    args = p.parse_args()
    if args.append is not None:
        summary = append_new_data(args.data_dir, args.append, quiet=False)
    else:
        summary = build_lake(args.data_dir, args.events, args.seed, Shape(users=args.users, hours=args.hours))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
