"""The read API: API Gateway HTTP API (payload 2.0) in front of one Lambda, throttled, with access logs."""

from __future__ import annotations

import json

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from streamboard.settings import ENV_REFRESH_SECONDS
from streamboard_infra import nag, scan
from streamboard_infra.functions import PipelineFunction, retention

# Every route the handler serves (processors.read_api.route); anything else is API Gateway's 404. Each GET
# route takes OPTIONS too: the handler answers CORS preflights itself (the HTTP API has no CORS configuration,
# which would answer them in its place and drop the handler's CORS headers), as the local server does.
ROUTES: tuple[tuple[str, apigw.HttpMethod], ...] = (
    ("/healthz", apigw.HttpMethod.GET),
    ("/openapi.json", apigw.HttpMethod.GET),
    ("/v1/leaderboards", apigw.HttpMethod.GET),
    ("/v1/leaderboards/{scope}", apigw.HttpMethod.GET),
    ("/v1/users/{user_id}", apigw.HttpMethod.GET),
    ("/v1/health", apigw.HttpMethod.GET),
    ("/v1/admin/refresh", apigw.HttpMethod.POST),
    # the web console (processors.webconsole): its page, and its script and style sheet under /console/
    ("/", apigw.HttpMethod.GET),
    ("/console/{proxy+}", apigw.HttpMethod.GET),
)
#: GET /v1/health reads these from CloudWatch (streamboard.adapters.aws.health); GetMetricData takes no resource.
HEALTH_METRIC_ACTIONS = ("cloudwatch:GetMetricData",)
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "time": "$context.requestTime",
    "method": "$context.httpMethod", "path": "$context.path", "status": "$context.status",
    "latencyMs": "$context.responseLatency", "integrationError": "$context.integrationErrorMessage",
}


class ReadApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, rate_limit: int, burst_limit: int,
                 log_retention_days: int, refresh_minutes: int) -> None:
        super().__init__(scope, construct_id)
        self.handler = PipelineFunction(
            self, "Handler", handler="processors.read_api.handler", code=code,
            description="Streamboard: read API (leaderboards, profiles, health, admin refresh, web console)",
            timeout=cdk.Duration.seconds(29), memory_mb=512, log_retention_days=log_retention_days,
            # the refresh schedule's interval: a board's max-age ends at the next scheduled refresh
            environment={ENV_REFRESH_SECONDS: str(refresh_minutes * 60)},
        )
        self.function = self.handler.function
        scan.skip_checkov(self.function, {
            "CKV_AWS_116": "Invoked synchronously by the HTTP API: a failure is the client's 5xx answer at once, "
                           "and the read API 5xx alarm fires; there is no event to keep.",
            "CKV_AWS_115": "The stage's rate and burst limits bound the read API; a reservation would cap reads "
                           "below them and take account concurrency from the pipeline.",
        })
        self.api = apigw.HttpApi(self, "Api", description="Streamboard read API", create_default_stage=False)
        integration = integrations.HttpLambdaIntegration("Handler", self.function,
                                                         payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0)
        for path, method in ROUTES:
            methods = [method, apigw.HttpMethod.OPTIONS] if method == apigw.HttpMethod.GET else [method]
            for route in self.api.add_routes(path=path, methods=methods, integration=integration):
                # Reads are public (DESIGN: "Leaderboards are public to read"); the admin route checks an
                # admin API key (its hash in the app registry) inside the handler.
                nag.acknowledge(route, {
                    "AwsSolutions-APIG4": "Leaderboards and profiles are public to read; POST /v1/admin/refresh "
                                          "authenticates the x-api-key header against the hashed app registry.",
                })
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=retention(log_retention_days),
                                         removal_policy=cdk.RemovalPolicy.DESTROY)
        scan.skip_checkov(self.access_logs, {"CKV_AWS_158": scan.LOG_GROUP_KMS})
        self.stage = apigw.HttpStage(
            self, "Stage", http_api=self.api, stage_name="$default", auto_deploy=True,
            throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            access_log_settings=_AccessLogs(self.access_logs),
        )

    def grant_health_metrics(self) -> None:
        """Let GET /v1/health read the pipeline's metrics: ``cloudwatch:GetMetricData`` supports no resource-level
        permissions (nor condition keys), so it is granted on ``*``; it reads metric values and nothing else."""
        self.handler.role.add_to_policy(iam.PolicyStatement(actions=list(HEALTH_METRIC_ACTIONS), resources=["*"]))
        nag.acknowledge(self.handler.role, {"AwsSolutions-IAM5[Resource::*]": nag.XRAY_AND_METRICS})

    @property
    def url(self) -> str:
        return self.stage.url

    @property
    def domain_name(self) -> str:
        """The API's host name (``<id>.execute-api.<region>.amazonaws.com``): what a CDN uses as its origin."""
        return cdk.Fn.select(2, cdk.Fn.split("/", self.api.api_endpoint))


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogs:
    """Access logs as one JSON object per request."""

    def __init__(self, group: logs.ILogGroup) -> None:
        self._destination = apigw.LogGroupLogDestination(group)

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return apigw_v1.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))
