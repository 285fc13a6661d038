"""The gates every synth must pass: cfn-lint with no errors, cdk-nag AwsSolutions with every finding acknowledged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Synth

pytestmark = pytest.mark.slow


def test_cfn_lint_reports_no_errors_on_every_template(dev: Synth, prod: Synth, three_types: Synth,
                                                      elsewhere: Synth) -> None:
    templates = [str(s.template_path) for s in (dev, prod, three_types, elsewhere)]
    templates += [str(elsewhere.outdir / edge.template_file) for edge in elsewhere.stack.dependencies]
    # cfn-lint exits with a bit mask: 2 = errors, 4 = warnings, 8 = informational. Warnings are allowed
    # (the CDK's explicit DependsOn gives W3005); errors are not.
    cfn_lint = Path(sys.executable).parent / "cfn-lint"  # the virtualenv's, as `make test` runs it
    result = subprocess.run([str(cfn_lint), "--format", "parseable", *templates], capture_output=True, text=True,
                            timeout=300)
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert result.returncode & 2 == 0 and not errors, result.stdout + result.stderr
    assert result.returncode & ~(2 | 4 | 8) == 0, result.stdout + result.stderr


def _acknowledgments(synth: Synth) -> list[tuple[str, str, str]]:
    """(construct path, finding id, reason) of every cdk-nag acknowledgment in the app."""
    import aws_cdk as cdk

    out = []
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                # {"<source>::<rule id>": reason}; the CDK adds its own for CloudFormation-Validate rules.
                out.extend((construct.node.path, rule.split("::", 1)[-1], reason)
                           for rule, reason in entry.data.items() if "AwsSolutions-" in rule)
    return out


@pytest.mark.parametrize("app", ["dev", "prod", "three_types", "elsewhere"])
def test_cdk_nag_findings_are_all_acknowledged_with_a_reason(app: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(app)
    # The synth fails on an unacknowledged error; a report, when written, must hold no violation either.
    report_path = synth.outdir / "validation-report.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        violations = [v for r in report["pluginReports"] for v in r["violations"]]
        assert not violations, json.dumps(violations, indent=1)[:4000]
    acknowledgments = _acknowledgments(synth)
    assert acknowledgments, "the AwsSolutions pack always finds something to acknowledge in this stack"
    for path, finding, reason in acknowledgments:
        assert finding.startswith("AwsSolutions-"), (path, finding)
        assert len(reason.split()) >= 5, f"{path} {finding}: the reason must say why ({reason!r})"


def test_an_unacknowledged_finding_fails_the_synth(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import aws_cdk as cdk
    from aws_cdk import aws_sqs as sqs
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    sqs.Queue(stack, "Plain")  # no DLQ, no SSL policy: AwsSolutions-SQS3 and -SQS4
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert "AwsSolutions-SQS4" in rules
