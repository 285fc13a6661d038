"""The S3 data lake: Parquet per event type under ``<prefix>/<type>/year=/month=/day=/hour=/``."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from streamboard.badevents import BAD_EVENTS_PREFIX
from streamboard.overflow import OVERFLOW_PREFIX
from streamboard_infra import nag, scan

ERRORS_PREFIX = "errors"


def secure_bucket(scope: Construct, construct_id: str, *, retain: bool, access_logs: s3.IBucket | None,
                  access_logs_prefix: str = "",
                  object_ownership: s3.ObjectOwnership = s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                  **kwargs: object) -> s3.Bucket:
    """A private, SSL-only bucket, encrypted with S3-managed keys, its access logged to ``access_logs``.

    Its objects belong to the bucket owner and ACLs are off, unless ``object_ownership`` says otherwise (a
    writer that only knows ACLs, such as CloudFront's standard logs, needs them on)."""
    return s3.Bucket(
        scope, construct_id,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        object_ownership=object_ownership,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=access_logs_prefix or None,
        removal_policy=cdk.RemovalPolicy.RETAIN if retain else cdk.RemovalPolicy.DESTROY,
        **kwargs,  # type: ignore[arg-type]
    )


class Lake(Construct):
    """The lake bucket, plus the bucket that receives S3 server access logs and ALB access logs."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, retain: bool,
                 infrequent_access_days: int, logs_expiry_days: int) -> None:
        super().__init__(scope, construct_id)
        self.prefix = prefix.strip("/")
        # SSE-S3 (not KMS) because ALB access logs can only be written to SSE-S3 buckets.
        self.access_logs = secure_bucket(
            self, "AccessLogs", retain=retain, access_logs=None,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(logs_expiry_days),
                                              abort_incomplete_multipart_upload_after=cdk.Duration.days(1))],
        )
        nag.acknowledge(self.access_logs, {
            "AwsSolutions-S1": "This is the access-log bucket itself; logging its own access would loop.",
        })
        scan.skip_checkov(self.access_logs, {
            "CKV_AWS_18": "This is the access-log bucket itself; logging its own access would log every delivery "
                          "of a log, in a loop.",
            "CKV_AWS_21": "Logs are written once and expire after logs_expiry_days; versions would keep every "
                          "expired log as well, with nothing to recover.",
        })
        self.bucket = secure_bucket(
            self, "Bucket", retain=retain, access_logs=self.access_logs, access_logs_prefix="s3/lake/",
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="tiering",
                    transitions=[s3.Transition(storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                                               transition_after=cdk.Duration.days(infrequent_access_days))],
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                ),
            ],
        )

    @property
    def location(self) -> str:
        """``s3://<bucket>/<prefix>``: the root of the event tables (what ``glue.tables`` calls lake_location)."""
        return f"s3://{self.bucket.bucket_name}/{self.prefix}"

    def type_prefix(self, event_type: str) -> str:
        return f"{self.prefix}/{event_type}/"

    def error_prefix(self, event_type: str) -> str:
        return f"{self.prefix}/{ERRORS_PREFIX}/!{{firehose:error-output-type}}/{event_type}/"

    def objects_arn(self, key_prefix: str) -> str:
        return self.bucket.arn_for_objects(f"{key_prefix.strip('/')}/*")

    def grant_objects(self, grantee: iam.IGrantable, key_prefix: str, *actions: str) -> None:
        """Object ``actions`` under ``<prefix>/<key_prefix>/`` of the lake, and nowhere else."""
        full = f"{self.prefix}/{key_prefix.strip('/')}"
        iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=[self.objects_arn(full)])
        nag.acknowledge(nag.policy_owner(grantee), {
            f"AwsSolutions-IAM5[Resource::<{nag.logical_ref(self.bucket)}.Arn>/{full}/*]": nag.OBJECT_PREFIX,
        })

    def grant_put_bad_events(self, grantee: iam.IGrantable) -> None:
        """Write rejected or unroutable events to the bad-events sink (never read them)."""
        self.grant_objects(grantee, BAD_EVENTS_PREFIX, "s3:PutObject")

    def grant_put_overflow(self, grantee: iam.IGrantable) -> None:
        """Keep records too large for the DLQ in the lake (ingest); the queue gets a pointer."""
        self.grant_objects(grantee, OVERFLOW_PREFIX, "s3:PutObject")

    def grant_read_overflow(self, grantee: iam.IGrantable) -> None:
        """Follow a DLQ pointer to its record (redrive)."""
        self.grant_objects(grantee, OVERFLOW_PREFIX, "s3:GetObject")

    def grant_read_tables(self, grantee: iam.IGrantable, event_types: list[str]) -> None:
        """Read the Parquet of these event types (what Athena and the crawler do with the caller's rights)."""
        grant_list_prefixes(grantee, self.bucket, [self.type_prefix(t) for t in event_types])
        iam.Grant.add_to_principal(grantee=grantee, actions=["s3:GetObject"],
                                   resource_arns=[self.objects_arn(self.type_prefix(t)) for t in event_types])
        bucket = nag.logical_ref(self.bucket)
        nag.acknowledge(nag.policy_owner(grantee), {
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{self.type_prefix(t)}*]": nag.OBJECT_PREFIX
            for t in event_types
        })


def grant_list_prefixes(grantee: iam.IGrantable, bucket: s3.IBucket, prefixes: list[str]) -> None:
    """ListBucket limited by condition to the given key prefixes, and GetBucketLocation."""
    iam.Grant.add_to_principal(grantee=grantee, actions=["s3:GetBucketLocation"], resource_arns=[bucket.bucket_arn])
    grantee.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [*prefixes, *(p + "*" for p in prefixes)]}},
    ))

