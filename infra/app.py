"""The Streamboard CDK app: ``python infra/app.py [-c env=prod] [-c key=value ...]`` synthesizes to ``cdk.out/``.

Offline: no Docker (the ingest image is only staged; the CDK CLI builds it on deploy), no network,
no credentials. The stack names its region (``-c region=...``, else the CLI's default region, else
us-east-1: ALB access logging needs the region's log-delivery principal) but not its account, so
availability zones stay ``Fn::GetAZs`` and synth needs no lookups; ``cdk deploy`` uses the account of
its credentials. Outside us-east-1 a second stack there holds the CDN's WAF web ACL (CloudFront takes
no other). Every synth runs the cdk-nag AwsSolutions checks; a finding without
a written acknowledgment fails the synth.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The app imports the product code (registry, Glue tables, views, settings) and dashboards/.
REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from streamboard.registry import REGISTRY, Registry  # noqa: E402
from streamboard_infra.cdn import WAF_REGION  # noqa: E402
from streamboard_infra.config import DeploymentConfig, config_from_context  # noqa: E402
from streamboard_infra.stack import EdgeStack, StreamboardStack  # noqa: E402

DEFAULT_REGION = "us-east-1"
# Feature flags this app relies on (also in cdk.json, so the CLI and a plain `python infra/app.py` agree).
FEATURE_FLAGS = {
    # S3 server access logs delivered under a bucket policy, not the LogDeliveryWrite ACL (buckets own their objects).
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    # References between stacks read the producer's output (Fn::GetStackOutput) instead of an export, or across
    # regions instead of a pair of custom-resource Lambdas: the only one is the CDN's web ACL ARN (EdgeStack).
    "@aws-cdk/core:defaultCrossStackReferences": "weak",
}


def context_from_argv(argv: list[str]) -> dict[str, str]:
    """``-c key=value`` / ``--context key=value`` pairs, as the CDK CLI takes them."""
    context: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--context"):
            pair = next(args, "")
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise SystemExit(f"error: {arg} expects key=value, got {pair!r}")
            context[key] = value
        else:
            raise SystemExit(f"error: unknown argument {arg!r} (use -c key=value)")
    return context


def build_app(context: dict[str, str] | None = None, *, outdir: str | None = None, registry: Registry = REGISTRY,
              nag: bool = True, **stack_kwargs: object) -> tuple[cdk.App, StreamboardStack]:
    """The app with one stack (``Streamboard-<env>``), its config read from the context; outside us-east-1, also
    ``Streamboard-<env>-edge`` in us-east-1 with the CDN's WAF web ACL (CloudFront takes no other)."""
    if outdir is None and "CDK_OUTDIR" not in os.environ:
        outdir = str(REPO_ROOT / "cdk.out")
    app = cdk.App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    config: DeploymentConfig = config_from_context(app.node.try_get_context)
    region = app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION") or DEFAULT_REGION
    edge = None
    if region != WAF_REGION:
        edge = EdgeStack(app, f"Streamboard-{config.env_name}-edge", config=config,
                         env=cdk.Environment(region=WAF_REGION),
                         description=f"Streamboard ({config.env_name}): the read API CDN's WAF web ACL")
    stack = StreamboardStack(
        app, f"Streamboard-{config.env_name}", config=config, registry=registry,
        env=cdk.Environment(region=region),
        description=f"Streamboard ({config.env_name}): streaming analytics and leaderboards",
        web_acl_arn=edge.firewall.web_acl_arn if edge else None,
        **stack_kwargs,  # type: ignore[arg-type]
    )
    cdk.Tags.of(app).add("project", "streamboard")  # every stack's resources
    cdk.Tags.of(app).add("environment", config.env_name)
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main(argv: list[str]) -> None:
    app, _ = build_app(context_from_argv(argv))
    app.synth()


if __name__ == "__main__":
    main(sys.argv[1:])
