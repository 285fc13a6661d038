"""DynamoDB tables of the stores (``streamboard.adapters.aws.stores``): string ``pk``/``sk``, on demand, PITR."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from streamboard_infra import scan


def store_table(scope: Construct, construct_id: str, *, retain: bool) -> dynamodb.Table:
    """A pay-per-request table with point-in-time recovery, encrypted with the AWS-managed key."""
    table = dynamodb.Table(
        scope, construct_id,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        deletion_protection=retain,
        removal_policy=cdk.RemovalPolicy.RETAIN if retain else cdk.RemovalPolicy.DESTROY,
    )
    scan.skip_checkov(table, {
        "CKV_AWS_119": "Encrypted at rest with the AWS-managed key (aws/dynamodb); the tables hold scores, public "
                       "profiles and hashed API keys, and a customer key would add its cost to every request.",
    })
    return table


def grant_items(table: dynamodb.ITable, grantee: iam.IGrantable, *actions: str) -> None:
    """Exactly these item actions on the table (CDK's grant_read_data adds scans and wildcards)."""
    iam.Grant.add_to_principal(grantee=grantee, actions=[f"dynamodb:{a}" for a in actions],
                               resource_arns=[table.table_arn])

