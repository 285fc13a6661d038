"""S3 behind the Lake port (keys relative to a bucket prefix)."""

from __future__ import annotations

from streamboard.adapters.aws.clients import Clients
from streamboard.errors import NotFound


class S3Lake:
    def __init__(self, clients: Clients, bucket: str, prefix: str = "") -> None:
        self.clients = clients
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def put_object(self, key: str, body: bytes) -> None:
        self.clients("s3").put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body,
                                      ServerSideEncryption="AES256")

    def delete_object(self, key: str) -> None:
        self.clients("s3").delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def get_object(self, key: str) -> bytes:
        s3 = self.clients("s3")
        try:
            return bytes(s3.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            raise NotFound(f"no object {key!r} in the lake") from None

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self.clients("s3").get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys.extend(o["Key"][len(self.prefix):] for o in page.get("Contents", []))
        return sorted(keys)
