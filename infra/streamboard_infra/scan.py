"""Template scanner acknowledgments: checkov and the AWS Serverless Rules (cfn-lint), written into the template.

Each acknowledgment lands in the resource's ``Metadata``, where the scanner reads it and a reviewer sees it
next to the resource: checkov's ``{"checkov": {"skip": [{"id", "comment"}]}}`` and cfn-lint's
``{"cfn-lint": {"config": {"ignore_checks": [...]}, "reasons": {id: reason}}}`` (cfn-lint reads only
``config``; ``reasons`` is ours). ``tests/infra/test_scanners.py`` fails on any finding without one, and
infra/README.md lists them all. cdk-nag's acknowledgments are in ``nag.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

CHECKOV_KEY = "checkov"
CFN_LINT_KEY = "cfn-lint"
_CHECKOV_ID = re.compile(r"^CKV2?_AWS_\d+$")
_SERVERLESS_ID = re.compile(r"^[EW]S\d{4}$")

#: Reasons that recur across constructs, written once.
NO_VPC = ("The function calls only AWS service APIs (Kinesis, Firehose, S3, Glue, Athena, DynamoDB, SQS) and "
          "nothing in a VPC; a VPC would add ENIs, NAT or endpoint costs and cold-start time, and protect nothing.")
ENVIRONMENT_NAMES = ("The environment holds resource names only (stream, queue, table, bucket, workgroup), never "
                     "a secret; Lambda encrypts it at rest with its service key, and a customer key adds nothing.")
LOG_GROUP_KMS = ("CloudWatch Logs encrypts every log group at rest with service keys; these logs hold request "
                 "metadata and errors, no secret, and a customer key would need a key policy for the Logs service.")
LOG_GROUP_NAME = ("The function logs to its own log group, with a retention, through its LoggingConfig; the rule "
                  "only recognizes groups named /aws/lambda/<function name>.")
QUEUE_ENCRYPTION = ("SQS-managed server-side encryption (SqsManagedSseEnabled) encrypts the queue at rest; the "
                    "check only recognizes a KMS key, and a customer key would add key grants to every sender "
                    "(EventBridge cannot use the aws/sqs key).")
DEAD_LETTER_QUEUE = ("This queue is itself a dead-letter queue: its depth alarms, and a queue behind it would "
                     "only move the messages.")


def _resource(construct: IConstruct) -> cdk.CfnResource:
    if isinstance(construct, cdk.CfnResource):
        return construct
    child = construct.node.default_child
    if not isinstance(child, cdk.CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource of its own")
    return child


def _check_reason(finding: str, reason: str) -> None:
    if len(reason.split()) < 8:
        raise ValueError(f"acknowledge {finding} with a reason that says why ({reason!r})")


def skip_checkov(construct: IConstruct, findings: Mapping[str, str]) -> None:
    """Acknowledge checkov checks on ``construct``'s CloudFormation resource, each with a written reason."""
    resource = _resource(construct)
    current: Any = resource.get_metadata(CHECKOV_KEY) or {}
    skips = {s["id"]: s["comment"] for s in current.get("skip", [])}
    for finding, reason in findings.items():
        if not _CHECKOV_ID.match(finding):
            raise ValueError(f"{finding!r} is not a checkov AWS check id")
        _check_reason(finding, reason)
        skips[finding] = reason
    resource.add_metadata(CHECKOV_KEY, {"skip": [{"id": i, "comment": c} for i, c in sorted(skips.items())]})


def ignore_serverless(construct: IConstruct, findings: Mapping[str, str]) -> None:
    """Acknowledge AWS Serverless Rules (cfn-lint) findings on ``construct``'s resource, each with a reason."""
    resource = _resource(construct)
    current: Any = resource.get_metadata(CFN_LINT_KEY) or {}
    reasons = dict(current.get("reasons", {}))
    for finding, reason in findings.items():
        if not _SERVERLESS_ID.match(finding):
            raise ValueError(f"{finding!r} is not an AWS Serverless Rules id")
        _check_reason(finding, reason)
        reasons[finding] = reason
    resource.add_metadata(CFN_LINT_KEY, {"config": {"ignore_checks": sorted(reasons)},
                                         "reasons": dict(sorted(reasons.items()))})
