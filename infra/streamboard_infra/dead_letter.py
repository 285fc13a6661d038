"""Dead-letter queues (SQS, SQS-managed encryption, SSL only) and the redrive of the ingest DLQ into the stream."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from streamboard_infra import nag
from streamboard_infra.functions import PipelineFunction


class DeadLetterQueue(Construct):
    """A queue that holds what could not go on; monitoring alarms as soon as it is not empty."""

    def __init__(self, scope: Construct, construct_id: str, *, purpose: str, retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.purpose = purpose
        self.queue = sqs.Queue(
            self, "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
            visibility_timeout=cdk.Duration.minutes(5),
            removal_policy=cdk.RemovalPolicy.RETAIN if retain else cdk.RemovalPolicy.DESTROY,
        )
        nag.acknowledge(self.queue, {
            "AwsSolutions-SQS3": f"This queue is itself a dead-letter queue ({purpose}); its depth alarms.",
        })

    def grant_send(self, grantee: iam.IGrantable) -> None:
        self.queue.grant_send_messages(grantee)

    def grant_consume(self, grantee: iam.IGrantable) -> None:
        self.queue.grant_consume_messages(grantee)


class Redrive(Construct):
    """The redrive Lambda (DLQ -> stream), on a schedule and on demand (``aws lambda invoke``)."""

    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, every_minutes: int,
                 log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.handler = PipelineFunction(
            self, "Redrive", handler="processors.redrive.handler", code=code,
            description="Streamboard: replay the ingest dead-letter queue into the stream",
            timeout=cdk.Duration.minutes(5), log_retention_days=log_retention_days,
            reserved_concurrency=1,  # one redrive at a time keeps the order of the replay simple
        )
        self.function = self.handler.function
        self.schedule: events.Rule | None = None
        if every_minutes > 0:
            self.schedule = events.Rule(
                self, "Schedule", schedule=events.Schedule.rate(cdk.Duration.minutes(every_minutes)),
                description="Replay the ingest DLQ into the stream (a no-op when the queue is empty)",
                targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
            )
