"""Ingest: the HTTP service on ECS Fargate behind an ALB, autoscaled on CPU and requests, pre-scaled for peaks.

On SIGTERM the container stops accepting, flushes its group commit and exits (uvicorn's 20 s grace):
the ALB first drains the task (deregistration delay), then ECS waits ``stop_timeout`` before SIGKILL.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from streamboard_infra import nag, scan
from streamboard_infra.config import Prescale
from streamboard_infra.functions import retention

CONTAINER_PORT = 8080
# The ALB keeps connections to the tasks open while idle for this long; the service's own keep-alive must
# outlast it, or the ALB may send a request on a connection the task is closing (a 502 to the client).
ALB_IDLE_TIMEOUT_S = 60
CONTAINER_KEEP_ALIVE_S = ALB_IDLE_TIMEOUT_S + 15
HEALTH_PATH = "/healthz"


class IngestService(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, image: ecs.ContainerImage,
                 cpu: int, memory_mib: int, min_tasks: int, max_tasks: int, cpu_target_percent: int,
                 requests_per_target: int, stop_timeout_seconds: int, deregistration_delay_seconds: int,
                 prescale: tuple[Prescale, ...], certificate_arn: str, access_logs: s3.IBucket,
                 log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(self, "Cluster", vpc=vpc,
                                   container_insights_v2=ecs.ContainerInsights.ENABLED)
        self.task_definition = ecs.FargateTaskDefinition(
            self, "Task", cpu=cpu, memory_limit_mib=memory_mib,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.X86_64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX),
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=retention(log_retention_days),
                                       removal_policy=cdk.RemovalPolicy.DESTROY)
        scan.skip_checkov(self.log_group, {"CKV_AWS_158": scan.LOG_GROUP_KMS})
        self.container = self.task_definition.add_container(
            "ingest",
            image=image,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="ingest", log_group=self.log_group),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
            stop_timeout=cdk.Duration.seconds(stop_timeout_seconds),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c",
                         f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}"
                         f"{HEALTH_PATH}', timeout=3)"],
                interval=cdk.Duration.seconds(15), timeout=cdk.Duration.seconds(5), retries=3,
                start_period=cdk.Duration.seconds(20)),
            readonly_root_filesystem=True,
        )
        # The root filesystem is read-only; /tmp is task-local scratch space.
        self.task_definition.add_volume(name="tmp")
        self.container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
        nag.acknowledge(self.task_definition, {
            "AwsSolutions-ECS2": "The environment holds resource names only (stream, queue, table, bucket); "
                                 "there are no secrets: API keys are stored hashed in DynamoDB.",
        })
        nag.acknowledge(self.task_definition.obtain_execution_role(), {
            "AwsSolutions-IAM5[Resource::*]": "ecr:GetAuthorizationToken, which pulls the image, supports only "
                                              "Resource '*'; the repository actions are scoped to the asset "
                                              "repository.",
        })
        self.service = ecs.FargateService(
            self, "Service", cluster=self.cluster, task_definition=self.task_definition,
            desired_count=min_tasks, min_healthy_percent=100, max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            health_check_grace_period=cdk.Duration.seconds(60),
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self, "Alb", vpc=vpc, internet_facing=True, drop_invalid_header_fields=True,
            idle_timeout=cdk.Duration.seconds(ALB_IDLE_TIMEOUT_S))
        self.load_balancer.log_access_logs(access_logs, prefix="alb/ingest")
        nag.acknowledge(self.load_balancer, {
            "AwsSolutions-EC23": "The ingest API is public: apps post events from anywhere, authenticated by "
                                 "their API key; the tasks accept traffic from the ALB only.",
        })
        self.https = bool(certificate_arn)
        if certificate_arn:
            listener = self.load_balancer.add_listener(
                "Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS)
            self.load_balancer.add_redirect()
            port_80 = "Port 80 only redirects to HTTPS on 443 (a client that types http:// is sent there)"
        else:
            listener = self.load_balancer.add_listener("Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP)
            no_certificate = ("This deployment has no certificate_arn (the dev default), and an ALB serves HTTPS "
                              "only with an ACM certificate; set certificate_arn for HTTPS on 443.")
            scan.skip_checkov(listener, {"CKV_AWS_2": no_certificate, "CKV_AWS_103": no_certificate})
            port_80 = "Without a certificate the public ingest API is served on port 80 (see the listener)"
        for group in self.load_balancer.connections.security_groups:
            scan.skip_checkov(group, {
                "CKV_AWS_260": f"{port_80}; apps post events from anywhere, authenticated by their API key.",
            })
        self.listener = listener
        self.target_group = listener.add_targets(
            "Tasks", port=CONTAINER_PORT, protocol=elbv2.ApplicationProtocol.HTTP, targets=[self.service],
            deregistration_delay=cdk.Duration.seconds(deregistration_delay_seconds),
            health_check=elbv2.HealthCheck(path=HEALTH_PATH, healthy_http_codes="200",
                                           interval=cdk.Duration.seconds(15), healthy_threshold_count=2,
                                           unhealthy_threshold_count=3),
        )
        self.scaling = self.service.auto_scale_task_count(min_capacity=min_tasks, max_capacity=max_tasks)
        self.scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=cpu_target_percent,
                                              scale_in_cooldown=cdk.Duration.minutes(5),
                                              scale_out_cooldown=cdk.Duration.minutes(1))
        self.scaling.scale_on_request_count("Requests", requests_per_target=requests_per_target,
                                            target_group=self.target_group,
                                            scale_in_cooldown=cdk.Duration.minutes(5),
                                            scale_out_cooldown=cdk.Duration.minutes(1))
        for peak in prescale:
            self.scaling.scale_on_schedule(
                f"{peak.name}-start",
                schedule=appscaling.Schedule.cron(hour=str(peak.start_hour), minute=str(peak.start_minute)),
                min_capacity=max(peak.min_tasks, min_tasks), max_capacity=max(peak.min_tasks, max_tasks))
            self.scaling.scale_on_schedule(
                f"{peak.name}-end",
                schedule=appscaling.Schedule.cron(hour=str(peak.end_hour), minute=str(peak.end_minute)),
                min_capacity=min_tasks, max_capacity=max_tasks)

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.load_balancer.load_balancer_dns_name}"
