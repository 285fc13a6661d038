"""SQS behind the DeadLetterQueue port: batches of at most 10 entries and 256 KiB."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from streamboard.adapters.aws.clients import Clients
from streamboard.errors import SinkError
from streamboard.overflow import queue_safe
from streamboard.ports import QueueMessage

MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024


class SqsQueue:
    def __init__(self, clients: Clients, queue_name: str) -> None:
        self.clients = clients
        self.queue_name = queue_name
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.clients("sqs").get_queue_url(QueueName=self.queue_name)["QueueUrl"]
        return self._url

    def send(self, bodies: Sequence[bytes]) -> None:
        sqs = self.clients("sqs")
        batch: list[dict[str, str]] = []
        size = 0
        for body in bodies:
            text = queue_safe(body).decode("utf-8")
            if len(text.encode()) > MAX_BATCH_BYTES:
                raise SinkError(f"a message of {len(text.encode())} bytes exceeds SQS's 256 KiB limit")
            if batch and (len(batch) == MAX_ENTRIES or size + len(text.encode()) > MAX_BATCH_BYTES):
                self._send_batch(sqs, batch)
                batch, size = [], 0
            batch.append({"Id": uuid.uuid4().hex, "MessageBody": text})
            size += len(text.encode())
        if batch:
            self._send_batch(sqs, batch)

    def _send_batch(self, sqs, entries: list[dict[str, str]]) -> None:  # type: ignore[no-untyped-def]
        pending = entries
        for _ in range(5):
            resp = sqs.send_message_batch(QueueUrl=self.url, Entries=pending)
            failed_ids = {f["Id"] for f in resp.get("Failed", [])}
            pending = [e for e in pending if e["Id"] in failed_ids]
            if not pending:
                return
        raise SinkError(f"SQS refused {len(pending)} messages after retries")

    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        resp = self.clients("sqs").receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=max(1, min(MAX_ENTRIES, max_messages)), WaitTimeSeconds=0)
        return [QueueMessage(m["ReceiptHandle"], m["Body"].encode()) for m in resp.get("Messages", [])]

    def delete(self, receipts: Sequence[str]) -> None:
        sqs = self.clients("sqs")
        for i in range(0, len(receipts), MAX_ENTRIES):
            chunk = receipts[i:i + MAX_ENTRIES]
            resp = sqs.delete_message_batch(
                QueueUrl=self.url, Entries=[{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(chunk)])
            if resp.get("Failed"):
                raise SinkError(f"SQS could not delete {len(resp['Failed'])} messages")

    def release(self, receipts: Sequence[str]) -> None:
        sqs = self.clients("sqs")
        for i in range(0, len(receipts), MAX_ENTRIES):
            chunk = receipts[i:i + MAX_ENTRIES]
            sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(n), "ReceiptHandle": r, "VisibilityTimeout": 0} for n, r in enumerate(chunk)])

    def depth(self) -> int:
        attrs = self.clients("sqs").get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
