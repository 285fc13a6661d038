"""The Glue Data Catalog behind the Catalog port."""

from __future__ import annotations

from collections.abc import Sequence

from glue.tables import table_input
from streamboard.adapters.aws.clients import Clients
from streamboard.ports import Partition


class GlueCatalog:
    def __init__(self, clients: Clients, database: str, lake_location: str) -> None:
        self.clients = clients
        self.database = database
        self.lake_location = lake_location.rstrip("/") + "/"

    def _ensure_database(self) -> None:
        glue = self.clients("glue")
        try:
            glue.get_database(Name=self.database)
        except glue.exceptions.EntityNotFoundException:
            glue.create_database(DatabaseInput={"Name": self.database})

    def ensure_table(self, name: str, columns: list[dict[str, str]], partition_keys: list[dict[str, str]]) -> None:
        glue = self.clients("glue")
        self._ensure_database()
        table = table_input(name, columns, partition_keys, f"{self.lake_location}{name}")
        try:
            glue.create_table(DatabaseName=self.database, TableInput=table)
        except glue.exceptions.AlreadyExistsException:
            glue.update_table(DatabaseName=self.database, TableInput=table)

    def table_names(self) -> list[str]:
        names: list[str] = []
        for page in self.clients("glue").get_paginator("get_tables").paginate(DatabaseName=self.database):
            names.extend(t["Name"] for t in page["TableList"])
        return sorted(names)

    def columns(self, name: str) -> list[dict[str, str]]:
        table = self.clients("glue").get_table(DatabaseName=self.database, Name=name)["Table"]
        return [{"Name": c["Name"], "Type": c["Type"]} for c in table["StorageDescriptor"]["Columns"]]

    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> int:
        glue = self.clients("glue")
        sd = glue.get_table(DatabaseName=self.database, Name=table)["Table"]["StorageDescriptor"]
        added = 0
        for i in range(0, len(partitions), 100):
            chunk = partitions[i:i + 100]
            resp = glue.batch_create_partition(
                DatabaseName=self.database,
                TableName=table,
                PartitionInputList=[
                    {"Values": list(p.values),
                     "StorageDescriptor": {**sd, "Location": f"{self.lake_location}{p.location}/"}}
                    for p in chunk
                ],
            )
            errors = resp.get("Errors", [])
            added += len(chunk) - len(errors)
            unexpected = [e for e in errors if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"]
            if unexpected:
                raise RuntimeError(f"Glue refused partitions of {table}: {unexpected[0]['ErrorDetail']}")
        return added

    def partitions(self, table: str) -> list[Partition]:
        out: list[Partition] = []
        pages = self.clients("glue").get_paginator("get_partitions").paginate(DatabaseName=self.database,
                                                                               TableName=table)
        for page in pages:
            for p in page["Partitions"]:
                loc = p["StorageDescriptor"]["Location"]
                rel = loc[len(self.lake_location):] if loc.startswith(self.lake_location) else loc
                created = p.get("CreationTime")
                out.append(Partition(tuple(p["Values"]), rel.rstrip("/"),
                                     created.timestamp() if created is not None else None))
        return sorted(out, key=lambda p: p.values)
