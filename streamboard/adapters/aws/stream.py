"""Kinesis Data Streams behind the EventStream port."""

from __future__ import annotations

from collections.abc import Sequence

from streamboard.adapters.aws.clients import Clients
from streamboard.ports import PutResult, ReadRecord, StreamRecord

MAX_RECORDS = 500
MAX_BYTES = 5 * 1024 * 1024


class KinesisEventStream:
    def __init__(self, clients: Clients, stream_name: str) -> None:
        self.clients = clients
        self.stream_name = stream_name

    @property
    def _kinesis(self):  # type: ignore[no-untyped-def]
        return self.clients("kinesis")

    def put_records(self, records: Sequence[StreamRecord]) -> list[PutResult]:
        """PutRecords in calls of at most 500 records / 5 MiB; one result per record, in order."""
        results: list[PutResult] = []
        for chunk in _chunks(records):
            resp = self._kinesis.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in chunk],
            )
            for rec in resp["Records"]:
                if "ErrorCode" in rec:
                    results.append(PutResult(error_code=rec["ErrorCode"], error_message=rec.get("ErrorMessage")))
                else:
                    results.append(PutResult(shard_id=rec["ShardId"], sequence_number=rec["SequenceNumber"]))
        return results

    def shard_ids(self) -> list[str]:
        shards: list[str] = []
        kwargs: dict[str, str] = {"StreamName": self.stream_name}
        while True:
            resp = self._kinesis.list_shards(**kwargs)
            shards.extend(s["ShardId"] for s in resp["Shards"])
            token = resp.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def read(self, shard_id: str, after: str | None, limit: int) -> list[ReadRecord]:
        if after is None:
            it = self._kinesis.get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
        else:
            it = self._kinesis.get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=after)
        iterator = it["ShardIterator"]
        out: list[ReadRecord] = []
        # GetRecords may return nothing while records lie further on; follow a few iterators.
        for _ in range(5):
            resp = self._kinesis.get_records(ShardIterator=iterator, Limit=min(10_000, limit - len(out)))
            for r in resp["Records"]:
                out.append(ReadRecord(shard_id, r["SequenceNumber"], r["PartitionKey"], bytes(r["Data"]),
                                      r["ApproximateArrivalTimestamp"].timestamp()))
            iterator = resp.get("NextShardIterator")
            if out or not iterator or not resp.get("MillisBehindLatest"):
                break
        return out[:limit]

    def latest(self, shard_id: str) -> str | None:
        last: str | None = None
        while True:
            batch = self.read(shard_id, last, 10_000)
            if not batch:
                return last
            last = batch[-1].sequence_number


def _chunks(records: Sequence[StreamRecord]) -> list[Sequence[StreamRecord]]:
    chunks: list[Sequence[StreamRecord]] = []
    start, size = 0, 0
    for i, r in enumerate(records):
        rsize = len(r.data) + len(r.partition_key.encode())
        if i - start >= MAX_RECORDS or (size + rsize > MAX_BYTES and i > start):
            chunks.append(records[start:i])
            start, size = i, 0
        size += rsize
    if start < len(records):
        chunks.append(records[start:])
    return chunks
