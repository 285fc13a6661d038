"""The crawl: registers the lake's new ``year=/month=/day=/hour=`` partitions in the catalog."""

from __future__ import annotations

import re

from streamboard.ports import Catalog, Lake, Partition
from streamboard.registry import PARTITION_KEYS, Registry

_PART = re.compile(r"^year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/[^/]+\.parquet$")


def ensure_tables(catalog: Catalog, registry: Registry) -> None:
    """One table per registered event type, with the registry's columns (what the CDK creates on AWS)."""
    for t in registry:
        catalog.ensure_table(t.name, t.glue_columns(), t.glue_partition_keys())


def crawl(lake: Lake, catalog: Catalog, registry: Registry) -> int:
    """Add every partition of the lake that holds Parquet files; return how many were new."""
    added = 0
    for t in registry:
        found: dict[tuple[str, ...], str] = {}
        for key in lake.list_keys(t.name + "/"):
            m = _PART.match(key[len(t.name) + 1:])
            if m:
                values = m.groups()
                found[values] = f"{t.name}/" + "/".join(f"{k}={v}" for k, v in zip(PARTITION_KEYS, values, strict=True))
        if found:
            added += catalog.add_partitions(t.name, [Partition(v, loc) for v, loc in sorted(found.items())])
    return added
