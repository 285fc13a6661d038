"""cdk-nag (AwsSolutions) acknowledgments: each one names the finding and says why it is accepted."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

#: Reasons that recur across constructs, written once.
LAMBDA_RUNTIME = ("The pipeline Lambdas run the Python of the virtualenv the asset is staged from, because the "
                  "asset carries msgspec's compiled wheel for that CPython ABI; move both together.")
OBJECT_PREFIX = ("S3 object ARNs can only be scoped by key prefix: the wildcard covers the objects under one "
                 "prefix of one bucket, never the bucket or other prefixes.")
LOG_STREAMS = "CloudWatch Logs names log streams at run time; the wildcard stays within one log group."
XRAY = ("Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level "
        "permissions, only Resource '*' (the statement has these two actions and nothing else).")
XRAY_AND_METRICS = ("Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords, and the health "
                    "route's cloudwatch:GetMetricData, support no resource-level permissions, only Resource '*' (the "
                    "two statements have these three actions and nothing else).")


def acknowledge(construct: IConstruct, findings: Mapping[str, str]) -> None:
    """Acknowledge cdk-nag findings on ``construct`` (and its children), each with a written reason."""
    for finding, reason in findings.items():
        if not finding.startswith("AwsSolutions-") or len(reason.strip()) < 20:
            raise ValueError(f"acknowledge {finding!r} with an AwsSolutions rule id and a real reason")
        cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


def logical_ref(construct: IConstruct) -> str:
    """The logical id cdk-nag prints for a resource's attributes (``<LakeBucket1234.Arn>``)."""
    child = construct.node.default_child
    if not isinstance(child, cdk.CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource of its own")
    return cdk.Stack.of(construct).resolve(child.logical_id)  # type: ignore[no-any-return]


def policy_owner(grantee: iam.IGrantable) -> IConstruct:
    """The construct (a role) whose default policy receives a grant: acknowledgments go there."""
    principal = grantee.grant_principal
    if not isinstance(principal, Construct):
        raise TypeError("grants go to roles defined in this app")
    return principal
