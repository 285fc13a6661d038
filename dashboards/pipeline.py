"""The pipeline's CloudWatch alarms and dashboard, built from the resources' own metric helpers.

``alarm_specs`` says what to alarm on and when; ``dashboard_rows`` lays out the widgets. The
monitoring construct (``infra/streamboard_infra/monitoring.py``) turns the specs into alarms that
notify one SNS topic and puts the rows on one dashboard. Limits that AWS states per second
(Kinesis shard throughput, Lambda and API throttles) are checked on one-minute sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from ingest.metrics import NAMESPACE

MINUTE = cdk.Duration.minutes(1)
FIVE_MINUTES = cdk.Duration.minutes(5)
# Kinesis per-shard write limits (per second), and the share of them that should page someone.
SHARD_BYTES_PER_SECOND = 1024 * 1024
SHARD_RECORDS_PER_SECOND = 1000
SHARD_ALARM_SHARE = 0.8


@dataclass(frozen=True)
class PipelineResources:
    """What the dashboard and alarms look at; every field comes from the stage that owns it."""

    stream: kinesis.IStream
    provisioned_shards: int | None
    dead_letter_queues: Mapping[str, sqs.IQueue]
    router: lambda_.IFunction
    functions: Mapping[str, lambda_.IFunction]
    delivery_streams: Mapping[str, firehose.IDeliveryStream]
    load_balancer: elbv2.ApplicationLoadBalancer
    target_group: elbv2.ApplicationTargetGroup
    service: ecs.FargateService
    read_api: apigw.HttpApi
    tables: Mapping[str, dynamodb.ITable]
    iterator_age_seconds: int = 300
    freshness_seconds: int = 900


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: the metric (or expression), how it breaches, and what a person should know."""

    id: str
    description: str
    metric: cw.IMetric
    threshold: float
    comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    treat_missing_data: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING
    tags: tuple[str, ...] = field(default=())


def _error_rate(fn: lambda_.IFunction, period: cdk.Duration) -> cw.MathExpression:
    return cw.MathExpression(
        expression="100 * errors / MAX([errors, invocations])",
        using_metrics={"errors": fn.metric_errors(period=period, statistic="Sum"),
                       "invocations": fn.metric_invocations(period=period, statistic="Sum")},
        label="error rate (%)", period=period)


def _alb_5xx_rate(r: PipelineResources) -> cw.MathExpression:
    return cw.MathExpression(
        expression="100 * (FILL(elb, 0) + FILL(target, 0)) / MAX([FILL(requests, 0), 1])",
        using_metrics={
            "elb": r.load_balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=MINUTE),
            "target": r.target_group.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=MINUTE),
            "requests": r.load_balancer.metrics.request_count(period=MINUTE),
        },
        label="ALB 5xx (%)", period=MINUTE)


def alarm_specs(r: PipelineResources) -> list[AlarmSpec]:
    """Every alarm of the pipeline."""
    specs: list[AlarmSpec] = []
    for purpose, queue in r.dead_letter_queues.items():
        specs.append(AlarmSpec(
            f"Dlq-{purpose}", f"The {purpose} dead-letter queue is not empty: something could not go on "
                              f"(infra/README.md, Dead letters: how to replay the {purpose} queue)",
            queue.metric_approximate_number_of_messages_visible(period=MINUTE, statistic="Maximum"), 0))
    specs.append(AlarmSpec(
        "RouterIteratorAge", f"The router is more than {r.iterator_age_seconds} s behind the stream",
        r.router.metric("IteratorAge", period=MINUTE, statistic="Maximum"), r.iterator_age_seconds * 1000,
        evaluation_periods=5, datapoints_to_alarm=3))
    specs.append(AlarmSpec(
        "StreamWriteThrottles", "Kinesis throttles writes (ingest falls back to the DLQ): add shards or use "
                                "on-demand mode",
        r.stream.metric_put_records_throttled_records(period=MINUTE, statistic="Sum"), 0,
        evaluation_periods=5, datapoints_to_alarm=3))
    if r.provisioned_shards:
        shards = r.provisioned_shards
        specs.append(AlarmSpec(
            "StreamBytesNearLimit", f"Writes above {int(SHARD_ALARM_SHARE * 100)}% of {shards} shards x 1 MiB/s",
            r.stream.metric_incoming_bytes(period=MINUTE, statistic="Sum"),
            SHARD_ALARM_SHARE * shards * SHARD_BYTES_PER_SECOND * 60, evaluation_periods=5, datapoints_to_alarm=3))
        specs.append(AlarmSpec(
            "StreamRecordsNearLimit",
            f"Writes above {int(SHARD_ALARM_SHARE * 100)}% of {shards} shards x 1000 records/s",
            r.stream.metric_incoming_records(period=MINUTE, statistic="Sum"),
            SHARD_ALARM_SHARE * shards * SHARD_RECORDS_PER_SECOND * 60, evaluation_periods=5, datapoints_to_alarm=3))
    for name, fn in r.functions.items():
        specs.append(AlarmSpec(f"{name}-Errors", f"Lambda {name}: more than 1% of invocations failed",
                               _error_rate(fn, FIVE_MINUTES), 1))
        specs.append(AlarmSpec(f"{name}-Throttles", f"Lambda {name} is throttled (reserved or account concurrency)",
                               fn.metric_throttles(period=MINUTE, statistic="Sum"), 0,
                               evaluation_periods=5, datapoints_to_alarm=3))
    for event_type, stream in r.delivery_streams.items():
        specs.append(AlarmSpec(
            f"Firehose-{event_type}-ConversionFailures",
            f"Firehose {event_type}: records failed the Parquet conversion (kept under the errors prefix)",
            stream.metric("FailedConversion.Records", period=FIVE_MINUTES, statistic="Sum"), 0))
        specs.append(AlarmSpec(
            f"Firehose-{event_type}-Freshness",
            f"Firehose {event_type}: the oldest record is more than {r.freshness_seconds} s from the lake",
            stream.metric("DeliveryToS3.DataFreshness", period=FIVE_MINUTES, statistic="Maximum"),
            r.freshness_seconds))
    specs.append(AlarmSpec("Alb5xx", "Ingest: more than 1% of requests end in a 5xx", _alb_5xx_rate(r), 1,
                           evaluation_periods=5, datapoints_to_alarm=3))
    specs.append(AlarmSpec(
        "IngestUnhealthyTasks", "Ingest: a task fails its /healthz check",
        r.target_group.metrics.unhealthy_host_count(period=MINUTE, statistic="Maximum"), 0,
        evaluation_periods=5, datapoints_to_alarm=5))
    specs.append(AlarmSpec(
        "ReadApi5xx", "Read API: 5xx responses",
        r.read_api.metric_server_error(period=MINUTE, statistic="Sum"), 0, evaluation_periods=5,
        datapoints_to_alarm=3))
    return specs


def _ingest(name: str, statistic: str = "Sum") -> cw.Metric:
    """One of the ingest service's own metrics (CloudWatch Embedded Metric Format, from ingest/metrics.py)."""
    return cw.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map={"Service": "ingest"},
                     period=MINUTE, statistic=statistic, label=name)


def _graph(title: str, left: Sequence[cw.IMetric], right: Sequence[cw.IMetric] = (), width: int = 8) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=list(left), right=list(right), width=width, height=6)


def dashboard_rows(r: PipelineResources, alarms: Sequence[cw.IAlarm]) -> list[list[cw.IWidget]]:
    """The dashboard, top to bottom in the order events flow."""
    router = r.router
    rows: list[list[cw.IWidget]] = [
        [cw.TextWidget(markdown="# Streamboard pipeline\nIngest → Kinesis → router → Firehose → S3/Glue → "
                                "Athena → leaderboards → read API", width=24, height=2)],
        [cw.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24, height=4)],
        [
            _graph("Ingest requests and 5xx rate", [r.load_balancer.metrics.request_count(period=MINUTE)],
                   [_alb_5xx_rate(r)]),
            _graph("Ingest latency (p99, s)", [r.load_balancer.metrics.target_response_time(
                period=MINUTE, statistic="p99")]),
            _graph("Ingest tasks: CPU and memory (%)", [r.service.metric_cpu_utilization(period=MINUTE),
                                                         r.service.metric_memory_utilization(period=MINUTE)]),
        ],
        [
            _graph("Ingest events (per minute)", [_ingest("EventsAccepted"), _ingest("EventsRejected")],
                   [_ingest("Throttled")]),
            _graph("Ingest PutRecords: latency (p99, ms) and failed records",
                   [_ingest("PutRecordsLatency", "p99")], [_ingest("PutRecordsFailedRecords")]),
            _graph("Ingest fallbacks: records to the DLQ, breaker open, buffer depth",
                   [_ingest("DlqFallbacks"), _ingest("BreakerOpen", "Maximum")], [_ingest("BufferDepth", "Maximum")]),
        ],
        [
            _graph("Stream writes (per minute)", [r.stream.metric_incoming_records(period=MINUTE, statistic="Sum")],
                   [r.stream.metric_incoming_bytes(period=MINUTE, statistic="Sum")]),
            _graph("Stream throttled records (per minute)",
                   [r.stream.metric_put_records_throttled_records(period=MINUTE, statistic="Sum")]),
            _graph("Router iterator age (ms)", [router.metric("IteratorAge", period=MINUTE, statistic="Maximum")]),
        ],
        [
            _graph("Router invocations and errors", [router.metric_invocations(period=MINUTE),
                                                      router.metric_errors(period=MINUTE)],
                   [_error_rate(router, MINUTE)]),
            _graph("Router duration (p99, ms)", [router.metric_duration(period=MINUTE, statistic="p99")]),
            _graph("Router throttles and concurrency", [router.metric_throttles(period=MINUTE)],
                   [router.metric("ConcurrentExecutions", period=MINUTE, statistic="Maximum")]),
        ],
        [
            _graph("Firehose records in", [s.metric_incoming_records(period=FIVE_MINUTES, statistic="Sum", label=t)
                                           for t, s in r.delivery_streams.items()]),
            _graph("Firehose freshness (s)", [s.metric("DeliveryToS3.DataFreshness", period=FIVE_MINUTES,
                                                       statistic="Maximum", label=t)
                                              for t, s in r.delivery_streams.items()]),
            _graph("Firehose conversion failures", [s.metric("FailedConversion.Records", period=FIVE_MINUTES,
                                                             statistic="Sum", label=t)
                                                    for t, s in r.delivery_streams.items()]),
        ],
        [
            _graph("Dead-letter queues (messages)",
                   [q.metric_approximate_number_of_messages_visible(period=MINUTE, statistic="Maximum", label=p)
                    for p, q in r.dead_letter_queues.items()]),
            _graph("Lambda errors (all)", [fn.metric_errors(period=FIVE_MINUTES, label=n)
                                           for n, fn in r.functions.items()]),
            _graph("Lambda throttles (all)", [fn.metric_throttles(period=MINUTE, label=n)
                                              for n, fn in r.functions.items()]),
        ],
        [
            _graph("Read API requests and errors", [r.read_api.metric_count(period=MINUTE)],
                   [r.read_api.metric_client_error(period=MINUTE), r.read_api.metric_server_error(period=MINUTE)]),
            _graph("Read API latency (p99, ms)", [r.read_api.metric_latency(period=MINUTE, statistic="p99")]),
            _graph("DynamoDB consumed capacity (per minute)",
                   [t.metric_consumed_write_capacity_units(period=MINUTE, statistic="Sum", label=f"{n} writes")
                    for n, t in r.tables.items()],
                   [t.metric_consumed_read_capacity_units(period=MINUTE, statistic="Sum", label=f"{n} reads")
                    for n, t in r.tables.items()]),
        ],
    ]
    return rows
