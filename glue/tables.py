"""Glue table definitions, derived from the event-type registry (used by the catalog adapter and the CDK)."""

from __future__ import annotations

from typing import Any

from streamboard.registry import EventType

DATABASE = "streamboard"


def table_input(
    name: str, columns: list[dict[str, str]], partition_keys: list[dict[str, str]], location: str,
    description: str = "",
) -> dict[str, Any]:
    """A Glue ``TableInput``: Parquet under ``location``, partitioned by arrival hour."""
    return {
        "Name": name,
        "Description": description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "SNAPPY"},
        "PartitionKeys": partition_keys,
        "StorageDescriptor": {
            "Columns": columns,
            "Location": location.rstrip("/") + "/",
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
        },
    }


def event_table_input(event_type: EventType, lake_location: str) -> dict[str, Any]:
    """The table of one registered event type, under ``<lake_location>/<type>/``."""
    return table_input(event_type.name, event_type.glue_columns(), event_type.glue_partition_keys(),
                       f"{lake_location.rstrip('/')}/{event_type.name}", event_type.doc)
