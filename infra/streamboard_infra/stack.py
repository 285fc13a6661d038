"""The Streamboard stack: composes the stages, wires them with grants, and writes the runtime environment.

Nothing here creates a resource itself. Everything per event type (delivery streams, Glue tables,
routing) comes from the ``registry`` parameter, :data:`streamboard.registry.REGISTRY` by default.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from dashboards.pipeline import PipelineResources
from streamboard import settings as env
from streamboard.registry import REGISTRY, Registry
from streamboard.sql import View, load_views
from streamboard_infra import assets
from streamboard_infra.analytics import Analytics
from streamboard_infra.app_keys import AppKeys
from streamboard_infra.catalog import Catalog
from streamboard_infra.cdn import Cdn, CdnFirewall
from streamboard_infra.config import DeploymentConfig
from streamboard_infra.dead_letter import DeadLetterQueue, Redrive
from streamboard_infra.delivery import Delivery
from streamboard_infra.functions import PipelineFunction
from streamboard_infra.ingest import CONTAINER_KEEP_ALIVE_S, CONTAINER_PORT, IngestService
from streamboard_infra.lake import Lake
from streamboard_infra.leaderboards import Leaderboards
from streamboard_infra.monitoring import Monitoring
from streamboard_infra.network import Network
from streamboard_infra.read_api import ReadApi
from streamboard_infra.router import Router
from streamboard_infra.stream import EventStream
from streamboard_infra.tables import grant_items


class StreamboardStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig,
                 registry: Registry = REGISTRY, views: tuple[View, ...] | None = None,
                 ingest_image: Any = None, web_acl_arn: str | None = None, **kwargs: Any) -> None:
        """``web_acl_arn``: the CDN's WAF web ACL, made by a us-east-1 stack (:class:`EdgeStack`); without one the
        stack makes it, which only a us-east-1 stack can."""
        super().__init__(scope, construct_id, **kwargs)
        c = config
        retain = c.retain_data
        logs_days = c.log_retention_days
        code = assets.lambda_code()
        views = load_views() if views is None else views

        # --- storage and streams
        network = Network(self, "Network", max_azs=c.max_azs, nat_gateways=c.nat_gateways)
        lake = Lake(self, "Lake", prefix=c.lake_prefix, retain=retain,
                    infrequent_access_days=c.lake_infrequent_access_days, logs_expiry_days=c.logs_expiry_days)
        stream = EventStream(self, "Stream", mode=c.stream_mode, shard_count=c.shard_count,
                             retention_hours=c.stream_retention_hours, retain=retain)
        ingest_dlq = DeadLetterQueue(self, "IngestDlq", purpose="ingest", retain=retain)
        router_failures = DeadLetterQueue(self, "RouterFailures", purpose="router", retain=retain)
        # What the asynchronously invoked functions could not run (dead_letter.async_failures): one queue each.
        refresh_failures = DeadLetterQueue(self, "RefreshFailures", purpose="refresh", retain=retain)
        writer_failures = DeadLetterQueue(self, "WriterFailures", purpose="writer", retain=retain)
        redrive_failures = DeadLetterQueue(self, "RedriveFailures", purpose="redrive", retain=retain)
        catalog = Catalog(self, "Catalog", database_name=c.glue_database, registry=registry, lake=lake,
                          crawler_schedule=c.crawler_schedule)
        delivery = Delivery(self, "Delivery", registry=registry, lake=lake, catalog=catalog,
                            name_prefix=c.delivery_prefix, buffer_mib=c.firehose_buffer_mib,
                            buffer_seconds=c.firehose_buffer_seconds, code=code, log_retention_days=logs_days)
        analytics = Analytics(self, "Analytics", name=c.name, catalog=catalog, lake=lake, views=views,
                              bytes_scanned_limit=c.athena_bytes_scanned_limit, results_days=c.athena_results_days,
                              retain=retain, log_retention_days=logs_days)
        app_keys = AppKeys(self, "AppKeys", retain=retain)

        # --- compute
        router = Router(self, "Router", code=code, stream=stream, failures=router_failures,
                        batch_size=c.router_batch_size, batching_window_seconds=c.router_batching_window_seconds,
                        parallelization_factor=c.router_parallelization_factor, max_retries=c.router_max_retries,
                        max_record_age_hours=c.router_max_record_age_hours,
                        reserved_concurrency=c.router_reserved_concurrency, memory_mb=c.router_memory_mb,
                        log_retention_days=logs_days)
        leaderboards = Leaderboards(self, "Leaderboards", code=code, refresh_workgroup=analytics.refresh_workgroup,
                                    crawler_name=catalog.crawler_name, refresh_minutes=c.refresh_schedule_minutes,
                                    retain=retain, query_failures=refresh_failures,
                                    writer_failures=writer_failures, log_retention_days=logs_days)
        read_api = ReadApi(self, "ReadApi", code=code, rate_limit=c.api_rate_limit, burst_limit=c.api_burst_limit,
                           log_retention_days=logs_days, refresh_minutes=c.refresh_schedule_minutes)
        if web_acl_arn is None:
            web_acl_arn = CdnFirewall(self, "CdnFirewall", name=c.name,
                                      rate_limit_per_ip=c.cdn_rate_limit_per_ip).web_acl_arn
        cdn = Cdn(self, "Cdn", name=c.name, api_domain=read_api.domain_name, web_acl_arn=web_acl_arn,
                  price_class=c.cdn_price_class, access_logs=lake.access_logs, retain=retain,
                  logs_expiry_days=c.logs_expiry_days)
        redrive = Redrive(self, "Redrive", code=code, every_minutes=c.redrive_every_minutes,
                          failures=redrive_failures, log_retention_days=logs_days)
        ingest = IngestService(
            self, "Ingest", vpc=network.vpc, image=ingest_image or assets.ingest_image(), cpu=c.ingest_cpu,
            memory_mib=c.ingest_memory_mib, min_tasks=c.ingest_min_tasks, max_tasks=c.ingest_max_tasks,
            cpu_target_percent=c.ingest_cpu_target_percent, requests_per_target=c.ingest_requests_per_target,
            stop_timeout_seconds=c.ingest_stop_timeout_seconds,
            deregistration_delay_seconds=c.ingest_deregistration_delay_seconds, prescale=c.prescale,
            certificate_arn=c.certificate_arn, access_logs=lake.access_logs, log_retention_days=logs_days)

        # --- wiring: each grant is what the receiving code calls, on the resources it calls it on
        task_role = ingest.task_definition.task_role
        stream.grant_put(task_role)                        # group commit: PutRecords
        ingest_dlq.grant_send(task_role)                   # Kinesis unavailable: the DLQ
        app_keys.grant_authenticate(task_role)             # x-api-key -> app
        lake.grant_put_bad_events(task_role)               # rejected events, with their reason
        lake.grant_put_overflow(task_role)                 # records too large for the DLQ, behind a pointer

        delivery.grant_put(router.function)                # fan-out per event type
        grant_items(leaderboards.profiles_table, router.function, "UpdateItem")  # one per user per batch
        lake.grant_put_bad_events(router.handler.role)     # unroutable records
        lake.grant_put_bad_events(delivery.transform.role)  # events of a packed record that fit no row

        analytics.grant_refresh(leaderboards.query.role)
        analytics.grant_refresh(leaderboards.writer.role)

        read_api_role = read_api.handler.role
        grant_items(leaderboards.boards_table, read_api_role, "GetItem", "Query", "BatchGetItem")  # heads, pages
        grant_items(leaderboards.profiles_table, read_api_role, "GetItem", "BatchGetItem")
        app_keys.grant_authenticate(read_api_role)
        analytics.grant_refresh(read_api_role)  # POST /v1/admin/refresh plans and starts a batch
        ingest_dlq.grant_depth(read_api_role)  # GET /v1/health: events waiting for a redrive
        read_api.grant_health_metrics()         # GET /v1/health: events per minute, iterator age, bad events

        ingest_dlq.grant_consume(redrive.function)
        stream.grant_put(redrive.function)
        lake.grant_put_bad_events(redrive.handler.role)    # DLQ messages that are not events
        lake.grant_read_overflow(redrive.handler.role)     # DLQ pointers to records kept in the lake

        # --- the runtime environment: resource names only (streamboard.settings reads them), never a secret
        environment = {
            env.ENV_BACKEND: "aws",
            env.ENV_STREAM_NAME: stream.stream.stream_name,
            env.ENV_DLQ_NAME: ingest_dlq.queue.queue_name,
            env.ENV_ROUTER_FAILURES_NAME: router_failures.queue.queue_name,
            env.ENV_DELIVERY_PREFIX: c.delivery_prefix,
            env.ENV_LAKE_BUCKET: lake.bucket.bucket_name,
            env.ENV_LAKE_PREFIX: lake.prefix,
            env.ENV_GLUE_DATABASE: catalog.database_name,
            env.ENV_ATHENA_WORKGROUP: analytics.refresh_workgroup.name,
            env.ENV_ATHENA_OUTPUT: analytics.output_location(analytics.refresh_workgroup.name),
            env.ENV_BOARDS_TABLE: leaderboards.boards_table.table_name,
            env.ENV_PROFILES_TABLE: leaderboards.profiles_table.table_name,
            env.ENV_APPS_TABLE: app_keys.table.table_name,
            env.ENV_BOARD_COPIES: str(c.board_copies),  # the writer writes them, the read API spreads over them
        }
        functions: dict[str, PipelineFunction] = {
            "router": router.handler, "transform": delivery.transform, "leaderboard-query": leaderboards.query,
            "leaderboard-writer": leaderboards.writer, "read-api": read_api.handler, "redrive": redrive.handler,
        }
        # The transform touches only the lake's bad-events sink: it gets the lake's names and nothing else.
        transform_environment = {k: environment[k] for k in (env.ENV_BACKEND, env.ENV_LAKE_BUCKET, env.ENV_LAKE_PREFIX)}
        for name, fn in functions.items():
            for key, value in (transform_environment if name == "transform" else environment).items():
                fn.function.add_environment(key, value)
        for key, value in {**environment, env.ENV_REGION: cdk.Aws.REGION,
                           env.ENV_INGEST_PORT: str(CONTAINER_PORT),
                           env.ENV_KEEP_ALIVE: str(CONTAINER_KEEP_ALIVE_S)}.items():
            ingest.container.add_environment(key, value)

        # --- monitoring
        self.monitoring = Monitoring(self, "Monitoring", name=c.name, alarm_email=c.alarm_email,
                                     resources=PipelineResources(
            stream=stream.stream,
            provisioned_shards=stream.provisioned_shards,
            dead_letter_queues={q.purpose: q.queue for q in (ingest_dlq, router_failures, refresh_failures,
                                                              writer_failures, redrive_failures)},
            router=router.function,
            functions={**{n: f.function for n, f in functions.items()},
                       "athena-views": analytics.views_function.function},
            delivery_streams=delivery.metrics,
            load_balancer=ingest.load_balancer,
            target_group=ingest.target_group,
            service=ingest.service,
            read_api=read_api.api,
            tables={"boards": leaderboards.boards_table, "profiles": leaderboards.profiles_table,
                    "apps": app_keys.table},
            iterator_age_seconds=c.iterator_age_alarm_seconds,
            freshness_seconds=c.freshness_alarm_seconds,
        ))

        # Public attributes for tests and for whoever extends the stack.
        self.config, self.registry = config, registry
        self.network, self.lake, self.stream, self.catalog, self.delivery = network, lake, stream, catalog, delivery
        self.ingest_dlq, self.router_failures, self.analytics, self.app_keys = (
            ingest_dlq, router_failures, analytics, app_keys)
        self.router, self.leaderboards, self.read_api, self.redrive, self.ingest = (
            router, leaderboards, read_api, redrive, ingest)
        self.cdn = cdn
        self.refresh_failures, self.writer_failures, self.redrive_failures = (
            refresh_failures, writer_failures, redrive_failures)
        self.functions = functions

        cdk.CfnOutput(self, "IngestUrl", value=ingest.url, description="POST /v1/events here (x-api-key)")
        cdk.CfnOutput(self, "ReadApiUrl", value=read_api.url,
                      description="The read API itself (uncached, no WAF); clients use CdnUrl")
        cdk.CfnOutput(self, "CdnUrl", value=cdn.url,
                      description="GET /v1/leaderboards/{scope} through CloudFront (cached, WAF rate limit per IP)")
        cdk.CfnOutput(self, "AppsTable", value=app_keys.table.table_name,
                      description=f"{env.ENV_APPS_TABLE} for `streamboard apps create`")
        cdk.CfnOutput(self, "LakeBucket", value=lake.bucket.bucket_name)
        cdk.CfnOutput(self, "AthenaWorkGroup", value=analytics.workgroup.name)
        cdk.CfnOutput(self, "RedriveFunction", value=redrive.function.function_name)
        cdk.CfnOutput(self, "AlarmTopic", value=self.monitoring.topic.topic_arn)


class EdgeStack(cdk.Stack):
    """What the CDN needs from us-east-1 when the main stack is in another region: the WAF web ACL.

    The main stack reads the ACL's ARN with ``Fn::GetStackOutput`` (a weak reference, the app's feature flag
    ``@aws-cdk/core:defaultCrossStackReferences``: no export, no custom resource); ``cdk deploy`` deploys this
    stack first, as the main stack depends on it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.firewall = CdnFirewall(self, "CdnFirewall", name=config.name,
                                    rate_limit_per_ip=config.cdn_rate_limit_per_ip)
