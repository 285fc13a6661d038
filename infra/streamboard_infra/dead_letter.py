"""Dead-letter queues (SQS, SQS-managed encryption, SSL only), how asynchronously invoked Lambdas end in one,
and the redrive of the ingest DLQ into the stream.

An asynchronously invoked function (the target of an EventBridge rule) can lose an event in two places, and
each ends in the function's failure queue, never in silence:
- EventBridge cannot deliver it (throttled, permissions, the function gone): the rule target's retry policy,
  then its dead-letter queue (the event itself as the body; RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE
  as message attributes; the queue policy lets only that rule send);
- Lambda accepted it and the function failed every attempt, or the event grew too old in Lambda's own queue:
  the function's EventInvokeConfig (retries, maximum age), then its on-failure destination (an invocation
  record: the event under ``requestPayload``, the error under ``responsePayload``; sent with the function's
  role, which may send to that queue and no other).
Monitoring alarms on each queue as soon as it holds a message; infra/README.md says how to replay each.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from streamboard_infra import nag, scan
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
        scan.skip_checkov(self.queue, {"CKV_AWS_27": scan.QUEUE_ENCRYPTION})
        scan.ignore_serverless(self.queue, {"ES6000": scan.DEAD_LETTER_QUEUE})

    def grant_send(self, grantee: iam.IGrantable) -> None:
        self.queue.grant_send_messages(grantee)

    def grant_consume(self, grantee: iam.IGrantable) -> None:
        self.queue.grant_consume_messages(grantee)

    def grant_depth(self, grantee: iam.IGrantable) -> None:
        """Read how many messages wait (GET /v1/health): the queue's attributes and, to find it, its URL."""
        self.queue.grant(grantee, "sqs:GetQueueAttributes", "sqs:GetQueueUrl")


#: Lambda keeps an asynchronous event at most 6 hours (EventBridge's own limit, 24 hours, is never the lower).
MAX_ASYNC_EVENT_AGE_MINUTES = 6 * 60


def async_failures(handler: PipelineFunction, failures: DeadLetterQueue, *, retry_attempts: int,
                   max_event_age: cdk.Duration) -> lambda_.EventInvokeConfig:
    """Lambda's handling of the function's asynchronous invocations: ``retry_attempts`` more tries of a failed
    one, events older than ``max_event_age`` not run, and either case sent to ``failures``."""
    config = lambda_.EventInvokeConfig(
        handler, "AsyncInvoke", function=handler.function, qualifier="$LATEST",
        retry_attempts=retry_attempts, max_event_age=max_event_age,
        on_failure=destinations.SqsDestination(failures.queue),  # grants the function's role SendMessage on it
    )
    # The function's ARN, as the EventBridge permissions name it: the same function either way, and the
    # AWS Serverless Rules (ES1007) match an invoke config to its async permission by this value.
    resource = config.node.default_child
    if not isinstance(resource, cdk.CfnResource):
        raise TypeError("EventInvokeConfig has no CloudFormation resource")
    resource.add_property_override("FunctionName", handler.function.function_arn)
    scan.skip_checkov(handler.function, {
        "CKV_AWS_116": f"Failed asynchronous invocations go to the on-failure destination of the function's "
                       f"EventInvokeConfig, the {failures.purpose} failure queue (a richer record than a DLQ's).",
    })
    return config


def rule_target(handler: PipelineFunction, failures: DeadLetterQueue, *, retry_attempts: int,
                max_event_age: cdk.Duration) -> targets.LambdaFunction:
    """The function as an EventBridge rule target: EventBridge retries a delivery ``retry_attempts`` times
    within ``max_event_age``, then sends the event to ``failures`` (the CDK adds the queue policy statement
    that lets only this rule send)."""
    return targets.LambdaFunction(handler.function, retry_attempts=retry_attempts, max_event_age=max_event_age,
                                  dead_letter_queue=failures.queue)


class Redrive(Construct):
    """The redrive Lambda (DLQ -> stream), on a schedule and on demand (``aws lambda invoke``)."""

    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, every_minutes: int,
                 failures: DeadLetterQueue, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.handler = PipelineFunction(
            self, "Redrive", handler="processors.redrive.handler", code=code,
            description="Streamboard: replay the ingest dead-letter queue into the stream",
            timeout=cdk.Duration.minutes(5), log_retention_days=log_retention_days,
            reserved_concurrency=1,  # one redrive at a time keeps the order of the replay simple
        )
        self.function = self.handler.function
        self.failures = failures
        # A scheduled run that fails is not tried again: the next one replays the same queue (and a run older
        # than the schedule's period would only race it). Manual runs (`aws lambda invoke`) are synchronous.
        period = cdk.Duration.minutes(min(max(every_minutes, 1), MAX_ASYNC_EVENT_AGE_MINUTES))
        async_failures(self.handler, failures, retry_attempts=0, max_event_age=period)
        self.schedule: events.Rule | None = None
        if every_minutes > 0:
            self.schedule = events.Rule(
                self, "Schedule", schedule=events.Schedule.rate(cdk.Duration.minutes(every_minutes)),
                description="Replay the ingest DLQ into the stream (a no-op when the queue is empty)",
                targets=[rule_target(self.handler, failures, retry_attempts=2, max_event_age=period)],
            )
