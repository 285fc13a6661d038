"""Create the AWS resources the adapters use, for moto and for `streamboard up --backend aws`.

On a real account the CDK app creates these (with encryption, alarms and IAM);
this is the minimal equivalent for an AWS-compatible endpoint on loopback.
"""

from __future__ import annotations

import contextlib

from streamboard.adapters.aws.clients import Clients
from streamboard.registry import Registry
from streamboard.settings import Settings


def _table(ddb, name: str) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(ddb.exceptions.ResourceInUseException):  # exists already
        ddb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )


def provision(settings: Settings, registry: Registry, clients: Clients | None = None) -> Clients:
    clients = clients or Clients(settings.region, settings.endpoint_url)
    s3 = clients("s3")
    try:
        if settings.region == "us-east-1":
            s3.create_bucket(Bucket=settings.lake_bucket)
        else:
            s3.create_bucket(Bucket=settings.lake_bucket,
                             CreateBucketConfiguration={"LocationConstraint": settings.region})
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    kinesis = clients("kinesis")
    try:
        kinesis.create_stream(StreamName=settings.stream_name, ShardCount=settings.shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=settings.stream_name,
                                                 WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    except kinesis.exceptions.ResourceInUseException:
        pass
    sqs = clients("sqs")
    for q in (settings.dlq_name, settings.router_failures_name):
        sqs.create_queue(QueueName=q, Attributes={"SqsManagedSseEnabled": "true"})
    firehose = clients("firehose")
    iam_role = "arn:aws:iam::123456789012:role/streamboard-firehose"
    existing = set(firehose.list_delivery_streams(Limit=100)["DeliveryStreamNames"])
    for t in registry:
        name = settings.delivery_prefix + t.name
        if name in existing:
            continue
        firehose.create_delivery_stream(
            DeliveryStreamName=name, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": iam_role,
                "BucketARN": f"arn:aws:s3:::{settings.lake_bucket}",
                # moto writes raw batches here at once (it ignores processing and conversion settings);
                # the emulation turns them into Parquet under the lake layout. The CDK app configures
                # the real stream: transform Lambda, Parquet conversion, year=/month=/day=/hour= prefixes.
                "Prefix": f"{settings.lake_prefix}/firehose-raw/{name}/",
                "ErrorOutputPrefix": f"{settings.lake_prefix}/errors/!{{firehose:error-output-type}}/{name}/",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
            },
        )
    athena = clients("athena")
    with contextlib.suppress(athena.exceptions.InvalidRequestException):  # exists already
        athena.create_work_group(Name=settings.athena_workgroup, Configuration={
            "ResultConfiguration": {"OutputLocation": settings.athena_output}})
    ddb = clients("dynamodb")
    for table in (settings.boards_table, settings.profiles_table, settings.apps_table):
        _table(ddb, table)
    return clients
