"""The network: a VPC with public subnets (the ALB), private subnets with NAT egress (the ingest tasks),
gateway endpoints for S3 and DynamoDB, and flow logs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from streamboard_infra import scan


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, max_azs: int, nat_gateways: int) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self, "Vpc",
            max_azs=max_azs,
            nat_gateways=nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
        )
        self.flow_logs_group = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH,
                                             removal_policy=cdk.RemovalPolicy.DESTROY)
        scan.skip_checkov(self.flow_logs_group, {"CKV_AWS_158": scan.LOG_GROUP_KMS})
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_logs_group),
                              traffic_type=ec2.FlowLogTrafficType.REJECT)
