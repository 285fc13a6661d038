"""One Lambda function of the pipeline: its own role, its own log group, active X-Ray tracing, nothing else
granted by default."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from streamboard_infra import assets, nag, scan


class PipelineFunction(Construct):
    """A Python Lambda with a dedicated role that may only write its own logs and traces until a stage grants
    more. Tracing is active: Lambda records a segment per invocation (its init, its duration, its errors) and
    continues the caller's trace where the caller sends one."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        code: lambda_.Code,
        runtime: lambda_.Runtime | None = None,
        timeout: cdk.Duration | None = None,
        memory_mb: int = 256,
        reserved_concurrency: int | None = None,
        log_retention_days: int = 30,
        environment: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs",
            retention=retention(log_retention_days),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        scan.skip_checkov(self.log_group, {"CKV_AWS_158": scan.LOG_GROUP_KMS})
        # No AWSLambdaBasicExecutionRole: that managed policy may write to every log group of the account.
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{description} (Lambda)")
        self.function = lambda_.Function(
            self, "Function",
            handler=handler,
            description=description,
            code=code,
            runtime=runtime or assets.lambda_runtime(),
            architecture=lambda_.Architecture.X86_64,
            timeout=timeout or cdk.Duration.seconds(60),
            memory_size=memory_mb,
            reserved_concurrent_executions=reserved_concurrency or None,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            environment=environment or {},
            tracing=lambda_.Tracing.ACTIVE,  # the CDK grants the role xray:PutTraceSegments/PutTelemetryRecords
        )
        nag.acknowledge(self.role, {"AwsSolutions-IAM5[Resource::*]": nag.XRAY})
        scan.skip_checkov(self.function, {"CKV_AWS_117": scan.NO_VPC, "CKV_AWS_173": scan.ENVIRONMENT_NAMES})
        scan.ignore_serverless(self.function, {"WS1004": scan.LOG_GROUP_NAME})
        # The log group exists before the function runs, so only stream creation and writes are needed.
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_group.log_group_arn],
        ))
        if runtime is None:
            nag.acknowledge(self.function, {"AwsSolutions-L1": nag.LAMBDA_RUNTIME})


_RETENTIONS: tuple[tuple[int, logs.RetentionDays], ...] = (
    (1, logs.RetentionDays.ONE_DAY), (3, logs.RetentionDays.THREE_DAYS), (5, logs.RetentionDays.FIVE_DAYS),
    (7, logs.RetentionDays.ONE_WEEK), (14, logs.RetentionDays.TWO_WEEKS), (30, logs.RetentionDays.ONE_MONTH),
    (60, logs.RetentionDays.TWO_MONTHS), (90, logs.RetentionDays.THREE_MONTHS),
    (180, logs.RetentionDays.SIX_MONTHS), (365, logs.RetentionDays.ONE_YEAR), (731, logs.RetentionDays.TWO_YEARS),
    (1827, logs.RetentionDays.FIVE_YEARS), (3653, logs.RetentionDays.TEN_YEARS),
)


def retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention of at least ``days`` days."""
    return next((r for d, r in _RETENTIONS if d >= days), _RETENTIONS[-1][1])
