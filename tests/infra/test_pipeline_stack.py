"""The synthesized dev stack has the properties the pipeline relies on (asserted by property, never logical id)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Capture, Match

from streamboard import settings as env
from streamboard.refresh import state_tables
from streamboard.registry import PARTITION_KEYS, REGISTRY
from streamboard.sql import load_views

from .conftest import Synth

pytestmark = pytest.mark.slow  # the session's synth of the dev app (about 10 s) is shared by this module


def _ref_of(synth: Synth, type_: str) -> dict[str, str]:
    (logical_id,) = synth.resources(type_)
    return {"Ref": logical_id}


def _functions(synth: Synth) -> dict[str, dict[str, Any]]:
    """Lambda functions by handler."""
    return {f["Properties"]["Handler"]: f for f in synth.resources("AWS::Lambda::Function").values()}


def _statements(synth: Synth, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of the IAM policies attached to one role."""
    out: list[dict[str, Any]] = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            out.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- stream and router ---------------------------------------------------------------------------------------------

def test_router_event_source_mapping(dev: Synth) -> None:
    failures_queue = Capture()
    dev.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "EventSourceArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 5,
        "ParallelizationFactor": 2,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 5,
        "MaximumRecordAgeInSeconds": 24 * 3600,
        "StartingPosition": "TRIM_HORIZON",
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [failures_queue, "Arn"]}}},
    })
    assert dev.template_json["Resources"][failures_queue.as_string()]["Type"] == "AWS::SQS::Queue"
    (mapping,) = dev.resources("AWS::Lambda::EventSourceMapping").values()
    stream_id = mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
    assert dev.template_json["Resources"][stream_id]["Type"] == "AWS::Kinesis::Stream"
    router = _functions(dev)["processors.router.handler"]
    assert mapping["Properties"]["FunctionName"] == {"Ref": next(
        k for k, v in dev.resources("AWS::Lambda::Function").items() if v is router)}
    assert router["Properties"]["ReservedConcurrentExecutions"] == 10


def test_stream_is_encrypted_and_on_demand_in_dev(dev: Synth) -> None:
    dev.template.has_resource_properties("AWS::Kinesis::Stream", {
        "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
        "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
    })


def test_prod_stream_is_provisioned_with_shard_limit_alarms(prod: Synth) -> None:
    prod.template.has_resource_properties("AWS::Kinesis::Stream", {
        "ShardCount": 4, "StreamModeDetails": {"StreamMode": "PROVISIONED"}, "RetentionPeriodHours": 168})
    # Kinesis limits are per second and per shard; the alarms compare one-minute sums with 80% of them.
    prod.template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "IncomingBytes", "Namespace": "AWS/Kinesis", "Period": 60, "Statistic": "Sum",
        "Threshold": 0.8 * 4 * 1024 * 1024 * 60})
    prod.template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "IncomingRecords", "Namespace": "AWS/Kinesis", "Period": 60, "Threshold": 0.8 * 4 * 1000 * 60})


# --- delivery, lake, catalog ---------------------------------------------------------------------------------------

def test_one_parquet_delivery_stream_per_registered_type(dev: Synth) -> None:
    streams = dev.resources("AWS::KinesisFirehose::DeliveryStream")
    assert len(streams) == len(REGISTRY.names())
    partitions = "".join(f"{k}=!{{timestamp:{f}}}/" for k, f in zip(PARTITION_KEYS, ("yyyy", "MM", "dd", "HH"),
                                                                      strict=True))
    for event_type in REGISTRY:
        dev.template.has_resource_properties("AWS::KinesisFirehose::DeliveryStream", {
            "DeliveryStreamName": f"streamboard-dev-{event_type.name}",
            "DeliveryStreamType": "DirectPut",
            "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "AWS_OWNED_CMK"},
            "ExtendedS3DestinationConfiguration": Match.object_like({
                "Prefix": f"lake/{event_type.name}/{partitions}",
                "ErrorOutputPrefix": f"lake/errors/!{{firehose:error-output-type}}/{event_type.name}/{partitions}",
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
                "ProcessingConfiguration": {"Enabled": True, "Processors": [Match.object_like({"Type": "Lambda"})]},
                "DataFormatConversionConfiguration": Match.object_like({
                    "Enabled": True,
                    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": Match.object_like({})}},
                    "SchemaConfiguration": Match.object_like({
                        "DatabaseName": "streamboard_dev", "TableName": event_type.name, "VersionId": "LATEST"}),
                }),
            }),
        })


def test_the_transform_lambda_processes_every_delivery_stream(dev: Synth) -> None:
    transform_id = next(k for k, v in dev.resources("AWS::Lambda::Function").items()
                        if v["Properties"]["Handler"] == "processors.transform.handler")
    for stream in dev.resources("AWS::KinesisFirehose::DeliveryStream").values():
        (processor,) = stream["Properties"]["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"][
            "Processors"]
        params = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
        assert params["LambdaArn"] == {"Fn::GetAtt": [transform_id, "Arn"]}


def test_glue_tables_come_from_the_registry(dev: Synth) -> None:
    from glue.tables import event_table_input

    tables = {t["Properties"]["TableInput"]["Name"]: t["Properties"]
              for t in dev.resources("AWS::Glue::Table").values()}
    assert sorted(tables) == sorted(REGISTRY.names())
    for event_type in REGISTRY:
        table_input = tables[event_type.name]["TableInput"]
        expected = event_table_input(event_type, "s3://BUCKET/lake")
        assert table_input["StorageDescriptor"]["Columns"] == expected["StorageDescriptor"]["Columns"]
        assert table_input["PartitionKeys"] == [{"Name": k, "Type": "string"} for k in PARTITION_KEYS]
        location = json.dumps(table_input["StorageDescriptor"]["Location"])
        assert f"/lake/{event_type.name}/" in location
        assert tables[event_type.name]["DatabaseName"] == "streamboard_dev"


def test_crawler_runs_hourly_over_the_registered_tables(dev: Synth) -> None:
    dev.template.has_resource_properties("AWS::Glue::Crawler", {
        "Schedule": {"ScheduleExpression": Match.string_like_regexp(r"^cron\(\d+ \* \* \* \? \*\)$")},
        "Targets": {"CatalogTargets": [{"DatabaseName": "streamboard_dev", "Tables": REGISTRY.names()}]},
        "SchemaChangePolicy": {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"},
    })


def test_buckets_are_private_encrypted_ssl_only_and_logged(dev: Synth) -> None:
    buckets = dev.resources("AWS::S3::Bucket")
    assert len(buckets) == 4  # lake, Athena results, access logs, CloudFront logs
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"}
        assert props.get("LifecycleConfiguration", {}).get("Rules"), f"{logical_id} has no lifecycle"
        policy = next(p for p in dev.resources("AWS::S3::BucketPolicy").values()
                      if p["Properties"]["Bucket"] == {"Ref": logical_id})
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in policy["Properties"]["PolicyDocument"]["Statement"])
    logged = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(logged) == 3  # all but the access-log bucket itself
    dev.template.has_resource_properties("AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})


def test_queues_and_tables_are_encrypted(dev: Synth) -> None:
    queues = dev.resources("AWS::SQS::Queue")
    # the ingest DLQ, the router's on-failure destination, and one failure queue per asynchronously invoked
    # function (refresh query, board writer, redrive: their rules' DLQ and their on-failure destination)
    assert len(queues) == 5
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    tables = dev.resources("AWS::DynamoDB::Table")
    assert len(tables) == 3  # boards, profiles, apps (streamboard.adapters.aws.stores)
    for table in tables.values():
        props = table["Properties"]
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
    # No table expires items: the profiles keep one item per user, no dedupe marker per event.
    assert [t["Properties"].get("TimeToLiveSpecification") for t in tables.values()] == [None, None, None]


def test_profile_writes_are_single_item_updates_without_transactions(dev: Synth) -> None:
    """The router and the reconcile only update profile items; the read API only gets them."""
    actions = {a for policy in dev.resources("AWS::IAM::Policy").values()
               for st in policy["Properties"]["PolicyDocument"]["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert not any(a.startswith("dynamodb:TransactWrite") for a in actions)
    assert "dynamodb:UpdateItem" in actions and "dynamodb:BatchGetItem" in actions


# --- analytics and leaderboards ------------------------------------------------------------------------------------

def test_athena_workgroups_encrypt_results_and_limit_bytes_scanned(dev: Synth) -> None:
    workgroups = dev.resources("AWS::Athena::WorkGroup")
    assert sorted(w["Properties"]["Name"] for w in workgroups.values()) == [
        "streamboard-dev", "streamboard-dev-leaderboards"]
    for workgroup in workgroups.values():
        config = workgroup["Properties"]["WorkGroupConfiguration"]
        assert config["EnforceWorkGroupConfiguration"] is True
        assert config["BytesScannedCutoffPerQuery"] == 10 * 1024**3
        assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
        assert config["ResultConfiguration"]["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}


def test_the_views_are_created_in_dependency_order_from_the_sql_files(dev: Synth) -> None:
    (views,) = dev.resources("Custom::AthenaViews").values()
    props = views["Properties"]
    assert [v["Name"] for v in props["Views"]] == [v.name for v in load_views()]
    assert [v["Sql"] for v in props["Views"]] == [v.sql for v in load_views()]
    assert props["WorkGroup"] == "streamboard-dev"
    assert props["Database"] == "streamboard_dev"


def test_the_refresh_state_tables_are_iceberg_tables_from_the_state_files(dev: Synth) -> None:
    (views,) = dev.resources("Custom::AthenaViews").values()
    tables = {t["Name"]: json.dumps(t["Sql"]) for t in views["Properties"]["Tables"]}
    assert set(tables) == set(state_tables())
    for name, sql in tables.items():
        assert f"CREATE TABLE IF NOT EXISTS {name} (" in sql
        assert "'table_type'='ICEBERG'" in sql and f"/state/{name}/'" in sql


def test_the_refresh_lambdas_write_the_state_tables_and_no_other_part_of_the_lake(dev: Synth) -> None:
    roles = {f["Properties"]["Handler"]: f["Properties"]["Role"]["Fn::GetAtt"][0]
             for f in dev.resources("AWS::Lambda::Function").values()}
    for handler in ("processors.leaderboards.query_handler", "processors.leaderboards.writer_handler"):
        statements = _statements(dev, roles[handler])
        updates = [st for st in statements if "glue:UpdateTable" in _as_list(st["Action"])]
        assert updates, handler
        updated = {r["Fn::Join"][1][-1].rsplit("/", 1)[-1] for st in updates for r in _as_list(st["Resource"])
                   if isinstance(r, dict) and "Fn::Join" in r and "table/" in json.dumps(r)}
        assert updated == set(state_tables()), (handler, updated)
        lake_writes = [st for st in statements if "s3:PutObject" in _as_list(st["Action"])
                       and "AthenaResults" not in json.dumps(st["Resource"]) and "Results" not in json.dumps(st)]
        assert lake_writes and all(json.dumps(st["Resource"]).endswith('/state/*"]]}') for st in lake_writes), \
            lake_writes


def test_refresh_runs_hourly_after_each_crawl_and_writes_on_query_state_change(dev: Synth) -> None:
    query_fn = next(k for k, v in dev.resources("AWS::Lambda::Function").items()
                    if v["Properties"]["Handler"] == "processors.leaderboards.query_handler")
    writer_fn = next(k for k, v in dev.resources("AWS::Lambda::Function").items()
                     if v["Properties"]["Handler"] == "processors.leaderboards.writer_handler")
    target_query = [Match.object_like({"Arn": {"Fn::GetAtt": [query_fn, "Arn"]}})]
    dev.template.has_resource_properties("AWS::Events::Rule", {
        "ScheduleExpression": "rate(1 hour)", "Targets": target_query})
    (crawler,) = dev.resources("AWS::Glue::Crawler").values()
    dev.template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.glue"], "detail-type": ["Glue Crawler State Change"],
                         "detail": {"crawlerName": [crawler["Properties"]["Name"]], "state": ["Succeeded"]}},
        "Targets": target_query})
    dev.template.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {"source": ["aws.athena"], "detail-type": ["Athena Query State Change"],
                         "detail": {"workgroupName": ["streamboard-dev-leaderboards"],
                                    "currentState": Match.array_with(["SUCCEEDED"])}},
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [writer_fn, "Arn"]}})]})


def test_read_api_is_throttled_with_access_logs(dev: Synth) -> None:
    dev.template.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "StageName": "$default", "AutoDeploy": True,
        "DefaultRouteSettings": {"ThrottlingRateLimit": 200, "ThrottlingBurstLimit": 400},
        "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
    })
    routes = {r["Properties"]["RouteKey"] for r in dev.resources("AWS::ApiGatewayV2::Route").values()}
    assert {"GET /v1/leaderboards/{scope}", "GET /v1/users/{user_id}", "POST /v1/admin/refresh"} <= routes


def test_read_api_preflights_reach_the_handler_and_it_knows_the_refresh_schedule(dev: Synth) -> None:
    """The handler's CORS headers are the only ones: no CORS configuration on the HTTP API (it would answer
    preflights itself and drop the handler's headers), an OPTIONS route beside each GET, none for the admin
    POST; and the read API Lambda gets the refresh interval its boards' max-age counts down to."""
    routes = {r["Properties"]["RouteKey"] for r in dev.resources("AWS::ApiGatewayV2::Route").values()}
    gets = {key.removeprefix("GET ") for key in routes if key.startswith("GET ")}
    assert gets and {f"OPTIONS {path}" for path in gets} <= routes
    assert "OPTIONS /v1/admin/refresh" not in routes
    for api in dev.resources("AWS::ApiGatewayV2::Api").values():
        assert "CorsConfiguration" not in api["Properties"]
    dev.template.has_resource_properties("AWS::Lambda::Function", {
        "Handler": "processors.read_api.handler",
        "Environment": {"Variables": Match.object_like({"STREAMBOARD_REFRESH_SECONDS": "3600"})},
    })


# --- ingest --------------------------------------------------------------------------------------------------------

def test_ingest_service_health_check_stop_timeout_and_autoscaling(dev: Synth) -> None:
    dev.template.has_resource_properties("AWS::ElasticLoadBalancingV2::TargetGroup", {
        "HealthCheckPath": "/healthz", "Port": 8080, "TargetType": "ip",
        "TargetGroupAttributes": Match.array_with([{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]),
    })
    dev.template.has_resource_properties("AWS::ECS::TaskDefinition", {
        "ContainerDefinitions": [Match.object_like({
            "StopTimeout": 30,
            "PortMappings": [Match.object_like({"ContainerPort": 8080})],
            "HealthCheck": Match.object_like({"Command": Match.array_with([Match.string_like_regexp("/healthz")])}),
            "ReadonlyRootFilesystem": True,
        })],
    })
    dev.template.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {
        "MinCapacity": 1, "MaxCapacity": 4})
    dev.template.has_resource_properties("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "TargetTrackingScalingPolicyConfiguration": Match.object_like({
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})})
    dev.template.has_resource_properties("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "TargetTrackingScalingPolicyConfiguration": Match.object_like({
            "PredefinedMetricSpecification": Match.object_like({"PredefinedMetricType": "ALBRequestCountPerTarget"}),
            "TargetValue": 2000})})
    dev.template.has_resource_properties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
        "LoadBalancerAttributes": Match.array_with([{"Key": "access_logs.s3.enabled", "Value": "true"}])})


def test_the_ingest_service_keeps_connections_alive_longer_than_the_alb(dev: Synth) -> None:
    """Otherwise the ALB may reuse a connection the task is closing, and the client gets a 502."""
    idle = Capture()
    dev.template.has_resource_properties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
        "LoadBalancerAttributes": Match.array_with([{"Key": "idle_timeout.timeout_seconds", "Value": idle}])})
    keep_alive = Capture()
    dev.template.has_resource_properties("AWS::ECS::TaskDefinition", {
        "ContainerDefinitions": [Match.object_like({"Environment": Match.array_with([
            {"Name": "STREAMBOARD_KEEP_ALIVE_S", "Value": keep_alive}])})]})
    assert float(keep_alive.as_string()) > float(idle.as_string())


def test_prod_prescales_for_the_evening_peak_and_serves_https(prod: Synth) -> None:
    target = Capture()
    prod.template.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {
        "MinCapacity": 2, "MaxCapacity": 20, "ScheduledActions": target})
    actions = {a["ScheduledActionName"]: a for a in target.as_array()}
    start = next(a for name, a in actions.items() if name.endswith("start"))
    assert start["Schedule"] == "cron(30 17 * * ? *)"
    assert start["ScalableTargetAction"]["MinCapacity"] == 6
    end = next(a for name, a in actions.items() if name.endswith("end"))
    assert end["ScalableTargetAction"]["MinCapacity"] == 2
    prod.template.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {
        "Protocol": "HTTPS", "Port": 443})
    prod.template.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {
        "Protocol": "HTTP", "Port": 80,
        "DefaultActions": [Match.object_like({"Type": "redirect"})]})


# --- environment and secrets ---------------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)
RESOURCE_NAMES = (env.ENV_STREAM_NAME, env.ENV_DLQ_NAME, env.ENV_ROUTER_FAILURES_NAME, env.ENV_DELIVERY_PREFIX,
                  env.ENV_LAKE_BUCKET, env.ENV_LAKE_PREFIX, env.ENV_GLUE_DATABASE, env.ENV_ATHENA_WORKGROUP,
                  env.ENV_ATHENA_OUTPUT, env.ENV_BOARDS_TABLE, env.ENV_PROFILES_TABLE, env.ENV_APPS_TABLE)


def _environments(synth: Synth) -> dict[str, dict[str, Any]]:
    envs = {h: f["Properties"].get("Environment", {}).get("Variables", {}) for h, f in _functions(synth).items()}
    for task in synth.resources("AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            envs[f"container:{container['Name']}"] = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
    return envs


def test_no_secret_in_any_environment(dev: Synth) -> None:
    for owner, variables in _environments(dev).items():
        assert env.ENV_API_KEY not in variables and env.ENV_ADMIN_KEY not in variables, owner
        for name, value in variables.items():
            assert not SECRET_NAME.search(name), f"{owner}: {name} looks like a secret"
            assert "local-dev-key" not in json.dumps(value) and "local-admin-key" not in json.dumps(value), owner
    for task in dev.resources("AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            assert "Secrets" not in container


def test_the_cdk_writes_every_setting_the_aws_backend_reads(dev: Synth) -> None:
    stream, (workgroup,) = _ref_of(dev, "AWS::Kinesis::Stream"), [
        w["Properties"]["Name"] for w in dev.resources("AWS::Athena::WorkGroup").values()
        if w["Properties"]["Name"].endswith("-leaderboards")]
    environments = _environments(dev)
    for owner, variables in environments.items():
        if owner == "processors.transform.handler":  # it touches only the lake's bad-events sink
            assert set(variables) == {env.ENV_BACKEND, env.ENV_LAKE_BUCKET, env.ENV_LAKE_PREFIX}, variables
            assert variables[env.ENV_BACKEND] == "aws" and variables[env.ENV_LAKE_PREFIX] == "lake"
            assert variables[env.ENV_LAKE_BUCKET] == environments["processors.router.handler"][env.ENV_LAKE_BUCKET]
            continue
        if owner == "athena_views.handler":
            continue
        assert variables[env.ENV_BACKEND] == "aws", owner
        assert set(RESOURCE_NAMES) <= set(variables), owner
        assert variables[env.ENV_STREAM_NAME] == stream
        assert variables[env.ENV_DELIVERY_PREFIX] == "streamboard-dev-"
        assert variables[env.ENV_ATHENA_WORKGROUP] == workgroup
        assert variables[env.ENV_GLUE_DATABASE] == "streamboard_dev"
    # Delivery stream names are the prefix plus the type: what the router's FirehoseDelivery computes.
    names = {s["Properties"]["DeliveryStreamName"]
             for s in dev.resources("AWS::KinesisFirehose::DeliveryStream").values()}
    assert names == {f"streamboard-dev-{t}" for t in REGISTRY.names()}


# --- IAM -----------------------------------------------------------------------------------------------------------

def test_no_wildcard_actions_and_star_resources_only_where_aws_requires_them(dev: Synth) -> None:
    for logical_id, policy in dev.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{logical_id}: wildcard action {action}"
            if "*" in _as_list(statement["Resource"]):  # actions that support no resource-level permissions
                assert _as_list(statement["Action"]) in (
                    ["ecr:GetAuthorizationToken"], ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                    ["cloudwatch:GetMetricData"],  # the read API's /v1/health
                ), (logical_id, statement)
    for role in dev.resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"], "no AWS managed policies: every grant is explicit"


def test_grants_follow_the_wiring(dev: Synth) -> None:
    roles = {f["Properties"]["Handler"]: f["Properties"]["Role"]["Fn::GetAtt"][0]
             for f in dev.resources("AWS::Lambda::Function").values()}
    router = _statements(dev, roles["processors.router.handler"])
    firehose_actions = {a for s in router for a in _as_list(s["Action"]) if a.startswith("firehose:")}
    assert firehose_actions == {"firehose:PutRecordBatch", "firehose:PutRecord"}
    ddb_actions = {a for s in router for a in _as_list(s["Action"]) if a.startswith("dynamodb:")}
    assert ddb_actions == {"dynamodb:UpdateItem"}  # one profile update per user per batch, nothing else
    transform = _statements(dev, roles["processors.transform.handler"])
    assert {a for s in transform for a in _as_list(s["Action"])} == {"logs:CreateLogStream", "logs:PutLogEvents",
                                                                     "xray:PutTraceSegments",  # active tracing
                                                                     "xray:PutTelemetryRecords", "s3:PutObject"}
    (put,) = [s for s in transform if "s3:PutObject" in _as_list(s["Action"])]
    assert _as_list(put["Action"]) == ["s3:PutObject"]  # writes bad events, never reads the lake
    (resource,) = _as_list(put["Resource"])
    assert resource["Fn::Join"][1][-1] == "/lake/bad-events/*", resource  # that prefix of the lake only
    variables = {f["Properties"]["Handler"]: f["Properties"].get("Environment", {}).get("Variables", {})
                 for f in dev.resources("AWS::Lambda::Function").values()}
    read_env = variables["processors.read_api.handler"]
    tables = {read_env[name]["Ref"]: table for name, table in ((env.ENV_BOARDS_TABLE, "boards"),
                                                               (env.ENV_PROFILES_TABLE, "profiles"),
                                                               (env.ENV_APPS_TABLE, "apps"))}

    def ddb_actions(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
        """The DynamoDB actions of a role's statements, by the table they are granted on."""
        out: dict[str, set[str]] = {}
        for s in statements:
            actions = {a for a in _as_list(s["Action"]) if a.startswith("dynamodb:")}
            for resource in _as_list(s["Resource"]) if actions else []:
                out.setdefault(tables[resource["Fn::GetAtt"][0]], set()).update(actions)
        return out

    writer = _statements(dev, roles["processors.leaderboards.writer_handler"])
    # a board's head read (the current version), the new version's pages and head copies, the old pages deleted;
    # the ranks' head, the nodes of the changed users' paths and the retired lists read (BatchGetItem), their new
    # nodes and head copies written, the retired nodes deleted; profiles are read and updated by the reconcile
    assert ddb_actions(writer) == {
        "boards": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"},
        "profiles": {"dynamodb:GetItem", "dynamodb:UpdateItem"}}
    query = _statements(dev, roles["processors.leaderboards.query_handler"])
    assert ddb_actions(query) == {"boards": {"dynamodb:GetItem"}}  # a plan reads the ranks' head, nothing else
    read_api = _statements(dev, roles["processors.read_api.handler"])
    # heads, the pages of longer reads, the heads of every board (scopes); the ranks' head and the nodes of a
    # user's paths (GetItem, BatchGetItem); profiles and their firsts
    assert ddb_actions(read_api) == {
        "boards": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"},
        "profiles": {"dynamodb:GetItem", "dynamodb:BatchGetItem"},
        "apps": {"dynamodb:GetItem"}}, "the read API never writes a table"
    assert variables["processors.leaderboards.writer_handler"][env.ENV_BOARD_COPIES] == \
        read_env[env.ENV_BOARD_COPIES] == "2"  # the copies one writes, the other reads
    # GET /v1/health: the ingest DLQ's depth (no other queue, no receive or delete) and CloudWatch metric reads
    queues = [s for s in read_api if any(a.startswith("sqs:") for a in _as_list(s["Action"]))]
    assert [set(_as_list(s["Action"])) for s in queues] == [{"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}]
    dlq_id = dev.stack.resolve(dev.stack.ingest_dlq.queue.node.default_child.logical_id)
    assert queues[0]["Resource"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert {a for s in read_api for a in _as_list(s["Action"]) if a.startswith("cloudwatch:")} == \
        {"cloudwatch:GetMetricData"}
    anywhere = {a for s in read_api if s["Resource"] == "*" for a in _as_list(s["Action"])}
    assert anywhere == {"cloudwatch:GetMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}, \
        "only actions without resource-level permissions are granted on *"


# --- monitoring ----------------------------------------------------------------------------------------------------

def test_alarms_notify_one_encrypted_topic(dev: Synth) -> None:
    (topic_id,) = dev.resources("AWS::SNS::Topic")
    dev.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    alarms = dev.resources("AWS::CloudWatch::Alarm")
    assert alarms
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]


def test_alarms_cover_dlqs_iterator_age_throttles_errors_firehose_and_alb(dev: Synth) -> None:
    alarms = list(dev.resources("AWS::CloudWatch::Alarm").values())

    def metric_alarms(namespace: str, metric: str) -> list[dict[str, Any]]:
        return [a["Properties"] for a in alarms
                if a["Properties"].get("Namespace") == namespace and a["Properties"].get("MetricName") == metric]

    dlq = metric_alarms("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert len(dlq) == len(dev.resources("AWS::SQS::Queue")) == 5  # one per queue: each holds what could not go on
    assert all(a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold" for a in dlq)
    (age,) = metric_alarms("AWS/Lambda", "IteratorAge")
    assert age["Threshold"] == 300_000 and age["Period"] == 60
    (throttled,) = metric_alarms("AWS/Kinesis", "PutRecords.ThrottledRecords")
    assert throttled["Period"] == 60
    lambda_throttles = metric_alarms("AWS/Lambda", "Throttles")
    assert len(lambda_throttles) == len(dev.resources("AWS::Lambda::Function"))
    assert all(a["Period"] == 60 for a in lambda_throttles)
    error_rates = [a["Properties"] for a in alarms if "Metrics" in a["Properties"]
                   and any("errors" in m.get("Expression", "") for m in a["Properties"]["Metrics"])]
    assert len(error_rates) == len(dev.resources("AWS::Lambda::Function"))
    assert len(metric_alarms("AWS/Firehose", "FailedConversion.Records")) == len(REGISTRY.names())
    assert len(metric_alarms("AWS/Firehose", "DeliveryToS3.DataFreshness")) == len(REGISTRY.names())
    alb = [a["Properties"] for a in alarms if "Metrics" in a["Properties"] and any(
        m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "HTTPCode_ELB_5XX_Count"
        for m in a["Properties"]["Metrics"])]
    assert len(alb) == 1


def test_dashboard_shows_the_pipeline(dev: Synth) -> None:
    (dashboard,) = dev.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in ("IteratorAge", "PutRecords.ThrottledRecords", "FailedConversion.Records",
                   "DeliveryToS3.DataFreshness", "ApproximateNumberOfMessagesVisible", "HTTPCode_ELB_5XX_Count"):
        assert metric in body, metric
    # The ingest service's own metrics (EMF): the names and dimension ingest/metrics.py writes.
    from ingest.metrics import NAMESPACE, UNITS

    for metric in ("EventsAccepted", "EventsRejected", "PutRecordsLatency", "PutRecordsFailedRecords", "DlqFallbacks",
                   "BreakerOpen", "BufferDepth", "Throttled"):
        assert metric in UNITS and metric in body, metric
    assert NAMESPACE in body and '\\"Service\\",\\"ingest\\"' in body



# --- no silent drops, tracing --------------------------------------------------------------------------------------

def _queue_of(synth: Synth, arn: Any) -> str:
    """The logical id of the SQS queue an ``Fn::GetAtt [queue, Arn]`` names."""
    logical_id = arn["Fn::GetAtt"][0]
    assert arn == {"Fn::GetAtt": [logical_id, "Arn"]}
    assert synth.template_json["Resources"][logical_id]["Type"] == "AWS::SQS::Queue"
    return logical_id  # type: ignore[no-any-return]


def _async_functions(synth: Synth) -> set[str]:
    """The functions EventBridge rules invoke (asynchronously, as EventBridge invokes every Lambda target)."""
    return {t["Arn"]["Fn::GetAtt"][0] for rule in synth.resources("AWS::Events::Rule").values()
            for t in rule["Properties"]["Targets"]
            if synth.template_json["Resources"][t["Arn"]["Fn::GetAtt"][0]]["Type"] == "AWS::Lambda::Function"}


@pytest.mark.parametrize("app", ["dev", "prod"])
def test_every_rule_target_retries_then_keeps_what_it_could_not_deliver(app: str,
                                                                        request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(app)
    rules = synth.resources("AWS::Events::Rule")
    assert len(rules) == 4  # hourly refresh, refresh after a crawl, query done -> writer, redrive schedule
    policies = list(synth.resources("AWS::SQS::QueuePolicy").values())
    for rule_id, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            retry = target["RetryPolicy"]
            assert 0 <= retry["MaximumRetryAttempts"] <= 185 and 60 <= retry["MaximumEventAgeInSeconds"] <= 86400
            queue = _queue_of(synth, target["DeadLetterConfig"]["Arn"])
            # EventBridge may send to the queue for this rule only (the queue policy the CDK adds)
            statements = [st for p in policies if p["Properties"]["Queues"] == [{"Ref": queue}]
                          for st in p["Properties"]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
            assert {"Action": "sqs:SendMessage", "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}},
                    "Resource": {"Fn::GetAtt": [queue, "Arn"]}} in [
                {k: v for k, v in st.items() if k != "Sid"} for st in statements]


@pytest.mark.parametrize("app", ["dev", "prod"])
def test_every_async_function_retries_then_sends_its_failures_to_an_alarmed_queue(
        app: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(app)
    functions = synth.resources("AWS::Lambda::Function")
    handlers = {functions[f]["Properties"]["Handler"] for f in _async_functions(synth)}
    assert handlers == {"processors.leaderboards.query_handler", "processors.leaderboards.writer_handler",
                        "processors.redrive.handler"}
    configs = {c["Properties"]["FunctionName"]["Fn::GetAtt"][0]: c["Properties"]
               for c in synth.resources("AWS::Lambda::EventInvokeConfig").values()}
    alarmed = {json.dumps(a["Properties"]["Dimensions"]) for a in synth.resources("AWS::CloudWatch::Alarm").values()
               if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"}
    roles = {f: p["Properties"]["Role"]["Fn::GetAtt"][0] for f, p in functions.items()}
    for function in _async_functions(synth):
        config = configs[function]
        assert config["Qualifier"] == "$LATEST"
        assert 0 <= config["MaximumRetryAttempts"] <= 2 and 60 <= config["MaximumEventAgeInSeconds"] <= 6 * 3600
        queue = _queue_of(synth, config["DestinationConfig"]["OnFailure"]["Destination"])
        assert json.dumps([{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]) in alarmed
        # the function's own role sends its failure records (Lambda destinations), to that queue only
        sends = [st for st in _statements(synth, roles[function]) if "sqs:SendMessage" in _as_list(st["Action"])]
        assert [st["Resource"] for st in sends] == [{"Fn::GetAtt": [queue, "Arn"]}], sends
        # and the function's rules keep what EventBridge could not deliver in that same queue
        for rule in synth.resources("AWS::Events::Rule").values():
            for target in rule["Properties"]["Targets"]:
                if target["Arn"] == {"Fn::GetAtt": [function, "Arn"]}:
                    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue, "Arn"]}


def test_a_failed_board_write_is_retried_then_alarms(dev: Synth) -> None:
    """The writer's "query done" events: tried 3 times within the hour, then kept in a queue that alarms."""
    writer = next(k for k, v in dev.resources("AWS::Lambda::Function").items()
                  if v["Properties"]["Handler"] == "processors.leaderboards.writer_handler")
    dev.template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "FunctionName": {"Fn::GetAtt": [writer, "Arn"]}, "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600,
        "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}}})
    dev.template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "AlarmDescription": Match.string_like_regexp("writer dead-letter queue is not empty"),
        "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"})


def test_every_failure_queue_is_on_the_dashboard(dev: Synth) -> None:
    (dashboard,) = dev.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for queue in dev.resources("AWS::SQS::Queue"):
        assert json.dumps({"Fn::GetAtt": [queue, "QueueName"]}) in body, queue


@pytest.mark.parametrize("app", ["dev", "prod"])
def test_every_function_is_traced(app: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(app)
    functions = synth.resources("AWS::Lambda::Function")
    assert len(functions) == 7
    for logical_id, function in functions.items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, logical_id
