"""Delivery: one Firehose stream per registered event type, packed records of JSON lines in, Parquet in the
lake out.

Each stream runs the transform Lambda (the recordId/result/data contract; it keeps a record's bad events
in the lake's bad-events sink), converts JSON to Parquet with the schema of the type's Glue table (each
JSON object of a record is a row), buffers by size and time, writes under
``<prefix>/<type>/year=/month=/day=/hour=/`` (arrival time) and sends what fails, with its
reason, under ``<prefix>/errors/<error type>/<type>/``.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from streamboard.registry import PARTITION_KEYS, Registry
from streamboard_infra import nag, scan
from streamboard_infra.catalog import Catalog
from streamboard_infra.functions import PipelineFunction, retention
from streamboard_infra.lake import Lake

# Hive-style partitions of arrival time, in the order of streamboard.registry.PARTITION_KEYS.
_TIMESTAMP_FORMATS = {"year": "yyyy", "month": "MM", "day": "dd", "hour": "HH"}
PARTITION_PATH = "".join(f"{k}=!{{timestamp:{_TIMESTAMP_FORMATS[k]}}}/" for k in PARTITION_KEYS)
ERROR_PATH = "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"


class Delivery(Construct):
    """``streams[type]`` is the L1 delivery stream; ``metrics[type]`` the same stream with metric helpers."""

    def __init__(self, scope: Construct, construct_id: str, *, registry: Registry, lake: Lake, catalog: Catalog,
                 name_prefix: str, buffer_mib: int, buffer_seconds: int, code: lambda_.Code,
                 log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.name_prefix = name_prefix
        self.transform = PipelineFunction(
            self, "Transform", handler="processors.transform.handler", code=code,
            description="Streamboard: shape packed Firehose records for the Parquet conversion",
            timeout=cdk.Duration.minutes(1), memory_mb=512, log_retention_days=log_retention_days,
        )
        scan.skip_checkov(self.transform.function, {
            "CKV_AWS_116": "Firehose invokes the transform synchronously and retries it; records it still cannot "
                           "process are kept under the lake's errors prefix, not dropped.",
            "CKV_AWS_115": "Firehose sets the transform's concurrency by its streams' throughput; a reservation "
                           "would throttle delivery instead of bounding anything we pay for.",
        })
        self.log_group = logs.LogGroup(self, "Logs", retention=retention(log_retention_days),
                                       removal_policy=cdk.RemovalPolicy.DESTROY)
        scan.skip_checkov(self.log_group, {"CKV_AWS_158": scan.LOG_GROUP_KMS})
        self.streams: dict[str, firehose.CfnDeliveryStream] = {}
        self.metrics: dict[str, firehose.IDeliveryStream] = {}
        self.roles: dict[str, iam.Role] = {}
        for event_type in registry:
            name = f"{name_prefix}{event_type.name}"
            role = iam.Role(self, f"Role-{event_type.name}", assumed_by=iam.ServicePrincipal("firehose.amazonaws.com"),
                            description=f"Firehose {name}: transform, convert with the Glue schema, write to the lake")
            self._grant(role, event_type.name, name, lake, catalog)
            log_stream = logs.LogStream(self, f"LogStream-{event_type.name}", log_group=self.log_group,
                                        log_stream_name=name, removal_policy=cdk.RemovalPolicy.DESTROY)
            stream = firehose.CfnDeliveryStream(
                self, f"Stream-{event_type.name}",
                delivery_stream_name=name,
                delivery_stream_type="DirectPut",
                delivery_stream_encryption_configuration_input=(
                    firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                        key_type="AWS_OWNED_CMK")),
                extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                    bucket_arn=lake.bucket.bucket_arn,
                    role_arn=role.role_arn,
                    prefix=lake.type_prefix(event_type.name) + PARTITION_PATH,
                    error_output_prefix=lake.error_prefix(event_type.name) + ERROR_PATH,
                    buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                        size_in_m_bs=buffer_mib, interval_in_seconds=buffer_seconds),
                    # Parquet compresses itself (SNAPPY below); Firehose must not compress the files again.
                    compression_format="UNCOMPRESSED",
                    cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                        enabled=True, log_group_name=self.log_group.log_group_name,
                        log_stream_name=log_stream.log_stream_name),
                    processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                        enabled=True,
                        processors=[firehose.CfnDeliveryStream.ProcessorProperty(type="Lambda", parameters=[
                            firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                parameter_name="LambdaArn", parameter_value=self.transform.function.function_arn),
                            firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                parameter_name="NumberOfRetries", parameter_value="3"),
                            firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                parameter_name="BufferSizeInMBs", parameter_value="1"),
                            firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                parameter_name="BufferIntervalInSeconds", parameter_value="60"),
                        ])],
                    ),
                    data_format_conversion_configuration=(
                        firehose.CfnDeliveryStream.DataFormatConversionConfigurationProperty(
                            enabled=True,
                            input_format_configuration=firehose.CfnDeliveryStream.InputFormatConfigurationProperty(
                                deserializer=firehose.CfnDeliveryStream.DeserializerProperty(
                                    open_x_json_ser_de=firehose.CfnDeliveryStream.OpenXJsonSerDeProperty(
                                        case_insensitive=False,
                                        convert_dots_in_json_keys_to_underscores=False))),
                            output_format_configuration=firehose.CfnDeliveryStream.OutputFormatConfigurationProperty(
                                serializer=firehose.CfnDeliveryStream.SerializerProperty(
                                    parquet_ser_de=firehose.CfnDeliveryStream.ParquetSerDeProperty(
                                        compression="SNAPPY"))),
                            schema_configuration=firehose.CfnDeliveryStream.SchemaConfigurationProperty(
                                catalog_id=cdk.Aws.ACCOUNT_ID,
                                database_name=catalog.database_name,
                                table_name=event_type.name,
                                region=cdk.Aws.REGION,
                                role_arn=role.role_arn,
                                version_id="LATEST",
                            ),
                        )),
                ),
            )
            # The role's policy must exist before Firehose validates access to the bucket, table and Lambda.
            stream.node.add_dependency(role)
            stream.node.add_dependency(catalog.tables[event_type.name])
            self.streams[event_type.name] = stream
            self.roles[event_type.name] = role
            self.metrics[event_type.name] = firehose.DeliveryStream.from_delivery_stream_attributes(
                self, f"Metrics-{event_type.name}", delivery_stream_arn=stream.attr_arn, delivery_stream_name=name)

    def _grant(self, role: iam.Role, event_type: str, name: str, lake: Lake, catalog: Catalog) -> None:
        """What Firehose needs for one stream, and nothing of the other streams' prefixes or tables."""
        data, errors = lake.type_prefix(event_type), f"{lake.prefix}/errors/"
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            resources=[lake.bucket.bucket_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
            resources=[lake.objects_arn(data), lake.objects_arn(errors)]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
            resources=[self.transform.function.function_arn]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
            resources=[catalog.catalog_arn, catalog.database_arn, catalog.table_arn(event_type)]))
        self.log_group.grant_write(role)
        bucket = nag.logical_ref(lake.bucket)
        nag.acknowledge(role, {
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{data}*]": nag.OBJECT_PREFIX,
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{errors}*]": nag.OBJECT_PREFIX,
        })

    @property
    def stream_arns(self) -> list[str]:
        return [s.attr_arn for s in self.streams.values()]

    def grant_put(self, grantee: iam.IGrantable) -> None:
        """PutRecordBatch on every delivery stream (the router)."""
        iam.Grant.add_to_principal(grantee=grantee, actions=["firehose:PutRecordBatch", "firehose:PutRecord"],
                                   resource_arns=self.stream_arns)
