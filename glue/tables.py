"""Glue table definitions, derived from the event-type registry (used by the catalog adapters and the CDK)."""

from __future__ import annotations

from typing import Any

from streamboard.registry import EventType

DATABASE = "streamboard"


def table_input(event_type: EventType, location: str) -> dict[str, Any]:
    """The Glue ``TableInput`` of one event type: Parquet under ``location``, partitioned by arrival hour."""
    return {
        "Name": event_type.name,
        "Description": event_type.doc,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "SNAPPY"},
        "PartitionKeys": event_type.glue_partition_keys(),
        "StorageDescriptor": {
            "Columns": event_type.glue_columns(),
            "Location": location.rstrip("/") + "/",
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
        },
    }
