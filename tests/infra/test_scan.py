"""Scanner acknowledgments land in the resource's Metadata, merge across calls, and refuse a missing reason."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_sqs as sqs

from streamboard_infra import scan

REASON = "A reason long enough to say why this finding does not apply here."


def _queue() -> tuple[cdk.Stack, sqs.Queue]:
    stack = cdk.Stack(cdk.App(), "Probe")
    return stack, sqs.Queue(stack, "Queue")


def test_acknowledgments_merge_into_the_resource_metadata() -> None:
    stack, queue = _queue()
    scan.skip_checkov(queue, {"CKV_AWS_27": REASON})
    scan.skip_checkov(queue, {"CKV_AWS_27": REASON + " Again.", "CKV2_AWS_73": REASON})
    scan.ignore_serverless(queue, {"ES6000": REASON})
    scan.ignore_serverless(queue, {"WS1000": REASON})
    (resource,) = assertions.Template.from_stack(stack).to_json()["Resources"].values()
    assert resource["Metadata"]["checkov"] == {"skip": [{"id": "CKV2_AWS_73", "comment": REASON},
                                                        {"id": "CKV_AWS_27", "comment": REASON + " Again."}]}
    assert resource["Metadata"]["cfn-lint"] == {"config": {"ignore_checks": ["ES6000", "WS1000"]},
                                                "reasons": {"ES6000": REASON, "WS1000": REASON}}


@pytest.mark.parametrize("call, finding, reason", [
    (scan.skip_checkov, "CKV_AWS_27", "too short"),
    (scan.skip_checkov, "AwsSolutions-SQS3", REASON),
    (scan.ignore_serverless, "E3002", REASON),
    (scan.ignore_serverless, "ES6000", ""),
])
def test_an_acknowledgment_needs_a_scanner_rule_id_and_a_reason(call, finding, reason) -> None:  # type: ignore[no-untyped-def]
    _, queue = _queue()
    with pytest.raises(ValueError):
        call(queue, {finding: reason})
