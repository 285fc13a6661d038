"""The gates every synth must pass: cfn-lint with no errors, cdk-nag AwsSolutions, checkov and the AWS Serverless
Rules (cfn-lint-serverless) with every finding fixed or acknowledged, with its reason, in the template."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from .conftest import Synth

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "infra" / "README.md"
#: A template with one finding of each scanner nobody acknowledged: proof that each gate really runs its rules.
PROBE = {"Resources": {"Plain": {"Type": "AWS::SQS::Queue", "Properties": {}}}}
PROBE_FINDINGS = {"checkov": "CKV_AWS_27", "serverless": "ES6000"}  # no KMS key; no redrive policy
#: ``path:line:col:line:col:RULE:message``, cfn-lint's parseable format.
LINT_LINE = re.compile(r"^(?P<path>.+?):\d+:\d+:\d+:\d+:(?P<rule>[A-Z]+\d+):(?P<message>.*)$")
SERVERLESS_RULE = re.compile(r"^[EW]S\d{4}$")


@pytest.fixture(scope="module")
def templates(dev: Synth, prod: Synth, three_types: Synth, elsewhere: Synth) -> dict[str, Path]:
    """Every synthesized template by a short name: dev, prod, three types, eu-west-1 and its us-east-1 edge."""
    out = {name: s.template_path for name, s in (("dev", dev), ("prod", prod), ("three_types", three_types),
                                                 ("elsewhere", elsewhere))}
    (edge,) = elsewhere.stack.dependencies
    out["edge"] = elsewhere.outdir / edge.template_file
    return out


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "Probe.template.json"
    path.write_text(json.dumps(PROBE))
    return path


@pytest.fixture(scope="module")
def cfn_lint(templates: dict[str, Path], probe: Path) -> dict[Path, list[tuple[str, str]]]:
    """cfn-lint with the AWS Serverless Rules appended, once over every template and the probe: the
    (rule, message) findings of each file."""
    cfn_lint = Path(sys.executable).parent / "cfn-lint"  # the virtualenv's, as `make test` runs it
    result = subprocess.run([str(cfn_lint), "--append-rules", "cfn_lint_serverless.rules", "--format", "parseable",
                             "--", *map(str, templates.values()), str(probe)],
                            capture_output=True, text=True, timeout=300)
    # cfn-lint exits with a bit mask: 2 = errors, 4 = warnings, 8 = informational; anything else is a crash.
    assert result.returncode & ~(2 | 4 | 8) == 0, result.stdout + result.stderr
    findings: dict[Path, list[tuple[str, str]]] = defaultdict(list)
    for line in result.stdout.splitlines():
        match = LINT_LINE.match(line)
        assert match, f"unparsed cfn-lint output: {line}"
        findings[Path(match["path"])].append((match["rule"], match["message"]))
    return findings


def test_cfn_lint_reports_no_errors_on_every_template(templates: dict[str, Path],
                                                      cfn_lint: dict[Path, list[tuple[str, str]]]) -> None:
    # Warnings are allowed (the CDK's explicit DependsOn gives W3005); errors are not.
    for name, path in templates.items():
        errors = [f for f in cfn_lint[path] if re.match(r"^E\d", f[0])]
        assert not errors, (name, errors)


def test_serverless_rules_find_nothing_unacknowledged(templates: dict[str, Path], probe: Path,
                                                      cfn_lint: dict[Path, list[tuple[str, str]]]) -> None:
    """Every AWS Serverless Rules finding is fixed, or ignored in its resource's Metadata with a reason."""
    assert PROBE_FINDINGS["serverless"] in {rule for rule, _ in cfn_lint[probe]}, "the serverless rules did not run"
    for name, path in templates.items():
        findings = [f for f in cfn_lint[path] if SERVERLESS_RULE.match(f[0])]
        assert not findings, (name, findings)


def _checkov() -> Path:
    path = Path(sys.prefix) / "checkov" / "bin" / "checkov"  # the Makefile's .venv/checkov
    assert path.exists(), f"checkov is not installed at {path}: run `make install`"
    return path


@pytest.fixture(scope="module")
def checkov(templates: dict[str, Path], probe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's CloudFormation checks, once over every template and the probe (offline: --skip-download)."""
    files = [a for path in (*templates.values(), probe) for a in ("-f", str(path))]
    result = subprocess.run([str(_checkov()), *files, "--framework", "cloudformation", "--output", "json",
                             "--skip-download"], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path_factory.mktemp("checkov"))
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-4000:]  # 1: failed checks
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["results"]["parsing_errors"]
    return report  # type: ignore[no-any-return]


def _by_file(checks: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    return [c for c in checks if Path(c["file_abs_path"]).resolve() == path.resolve()]


def test_checkov_finds_nothing_unacknowledged(templates: dict[str, Path], probe: Path,
                                              checkov: dict[str, Any]) -> None:
    """Every checkov finding is fixed, or skipped in its resource's Metadata with a reason."""
    results = checkov["results"]
    assert PROBE_FINDINGS["checkov"] in {c["check_id"] for c in _by_file(results["failed_checks"], probe)}
    for name, path in templates.items():
        checked = _by_file(results["passed_checks"] + results["skipped_checks"], path)
        assert checked, f"checkov checked nothing in {name}"
        failed = [(c["check_id"], c["resource"], c["check_name"]) for c in _by_file(results["failed_checks"], path)]
        assert not failed, (name, failed)
        for check in _by_file(results["skipped_checks"], path):
            comment = check["check_result"].get("suppress_comment") or ""
            assert len(comment.split()) >= 8, f"{name} {check['resource']} {check['check_id']}: say why ({comment!r})"


def _scanner_acknowledgments(path: Path) -> list[tuple[str, str, str]]:
    """(resource, scanner rule, reason) of every checkov and cfn-lint acknowledgment in a template's Metadata."""
    out = []
    for logical_id, resource in json.loads(path.read_text())["Resources"].items():
        metadata = resource.get("Metadata", {})
        skips = metadata.get("checkov", {}).get("skip", [])
        out += [(logical_id, skip["id"], skip.get("comment", "")) for skip in skips]
        lint = metadata.get("cfn-lint", {})
        reasons = lint.get("reasons", {})
        out += [(logical_id, rule, reasons.get(rule, "")) for rule in lint.get("config", {}).get("ignore_checks", [])]
    return out


def test_every_scanner_acknowledgment_has_a_reason_and_a_row_in_the_readme(templates: dict[str, Path]) -> None:
    readme = README.read_text()
    acknowledged = set()
    for name, path in templates.items():
        for resource, rule, reason in _scanner_acknowledgments(path):
            assert len(reason.split()) >= 8, f"{name} {resource} {rule}: the reason must say why ({reason!r})"
            acknowledged.add(rule)
    assert acknowledged
    missing = sorted(rule for rule in acknowledged if f"`{rule}`" not in readme)
    assert not missing, f"infra/README.md (Scanner acknowledgments) has no row for {missing}"


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
