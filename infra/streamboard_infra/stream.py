"""The event stream: one Kinesis data stream, on-demand or provisioned, encrypted with the Kinesis-managed key."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from constructs import Construct


class EventStream(Construct):
    """Kinesis between ingest and the router. ``shard_count`` applies in provisioned mode only."""

    def __init__(self, scope: Construct, construct_id: str, *, mode: str, shard_count: int, retention_hours: int,
                 retain: bool) -> None:
        super().__init__(scope, construct_id)
        provisioned = mode == "provisioned"
        self.provisioned_shards = shard_count if provisioned else None
        # The aws/kinesis key: producers and consumers need no KMS grants, and cdk-nag's KDS3 prefers it
        # over a customer key, whose cost grows with every producer and consumer call.
        self.stream = kinesis.Stream(
            self, "Stream",
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=shard_count if provisioned else None,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=cdk.Duration.hours(retention_hours),
            removal_policy=cdk.RemovalPolicy.RETAIN if retain else cdk.RemovalPolicy.DESTROY,
        )

    def grant_put(self, grantee: iam.IGrantable) -> None:
        """PutRecords (ingest, redrive)."""
        self.stream.grant_write(grantee)
