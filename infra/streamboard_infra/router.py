"""The router: a Lambda on the Kinesis stream that fans events out to the delivery streams and updates profiles."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from streamboard_infra import scan
from streamboard_infra.dead_letter import DeadLetterQueue
from streamboard_infra.functions import PipelineFunction
from streamboard_infra.stream import EventStream


class Router(Construct):
    """Event source mapping: batches with a window, bisect on error, bounded retries and record age, partial
    batch responses, and an SQS on-failure destination for the records that still fail."""

    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, stream: EventStream,
                 failures: DeadLetterQueue, batch_size: int, batching_window_seconds: int,
                 parallelization_factor: int, max_retries: int, max_record_age_hours: int,
                 reserved_concurrency: int, memory_mb: int, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        # A batch can reach Lambda's 6 MB payload: each record carries a whole ingest request, so thousands
        # of events (a user's events share profile transactions); 5 minutes leaves room, bisect does the rest.
        self.handler = PipelineFunction(
            self, "Router", handler="processors.router.handler", code=code,
            description="Streamboard: route stream records to the delivery streams; update profiles",
            timeout=cdk.Duration.minutes(5), memory_mb=memory_mb, reserved_concurrency=reserved_concurrency,
            log_retention_days=log_retention_days,
        )
        self.function = self.handler.function
        self.event_source = sources.KinesisEventSource(
            stream.stream,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=batch_size,
            max_batching_window=cdk.Duration.seconds(batching_window_seconds),
            parallelization_factor=parallelization_factor,
            bisect_batch_on_error=True,
            retry_attempts=max_retries,
            max_record_age=cdk.Duration.hours(max_record_age_hours),
            report_batch_item_failures=True,
            on_failure=sources.SqsDlq(failures.queue),
        )
        self.function.add_event_source(self.event_source)
        scan.skip_checkov(self.function, {
            "CKV_AWS_116": "Invoked synchronously by its Kinesis event source mapping, whose on-failure destination "
                           "(the router failure queue) takes the records that fail every retry.",
        })
        if not reserved_concurrency:
            scan.skip_checkov(self.function, {
                "CKV_AWS_115": "router_reserved_concurrency is 0 in this deployment's config: the router takes "
                               "account concurrency as its shards and parallelization factor demand.",
            })
