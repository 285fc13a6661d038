"""The CDN in front of the read API: what it caches and by which key, the admin route, HTTPS, logs, the WAF."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_s3 as s3

from processors import read_api as handler
from streamboard_infra.cdn import Cdn, CdnFirewall
from streamboard_infra.read_api import ROUTES

from .conftest import Synth

pytestmark = pytest.mark.slow  # the session's synths are shared with the other infra modules


def _distribution(synth: Synth) -> dict[str, Any]:
    (distribution,) = synth.resources("AWS::CloudFront::Distribution").values()
    return distribution["Properties"]["DistributionConfig"]  # type: ignore[no-any-return]


def _resource(synth: Synth, ref: dict[str, str]) -> dict[str, Any]:
    return synth.template_json["Resources"][ref["Ref"]]  # type: ignore[no-any-return]


def _behaviors(synth: Synth) -> dict[str, dict[str, Any]]:
    """Cache behaviors by path pattern; the default behavior under ``*``."""
    config = _distribution(synth)
    return {"*": config["DefaultCacheBehavior"], **{b["PathPattern"]: b for b in config.get("CacheBehaviors", [])}}


def _behavior_for(synth: Synth, path: str) -> dict[str, Any]:
    """The behavior CloudFront picks for ``path``: the first pattern that matches, else the default."""
    config = _distribution(synth)
    return next((b for b in config.get("CacheBehaviors", []) if fnmatchcase(path, b["PathPattern"])),
                config["DefaultCacheBehavior"])


def _api_route_path(template_path: str) -> str:
    return (template_path.replace("{scope}", "overall").replace("{user_id}", "ada")
            .replace("{proxy+}", "0123456789abcdef/app.js"))


# --- origin and transport ------------------------------------------------------------------------------------------

def test_the_cdn_fronts_the_read_api_over_https_only(dev: Synth) -> None:
    (origin,) = _distribution(dev)["Origins"]
    # the origin is the HTTP API's own host name, taken from its endpoint URL
    endpoint = origin["DomainName"]["Fn::Select"][1]["Fn::Split"][1]["Fn::GetAtt"]
    assert origin["DomainName"]["Fn::Select"][0] == 2 and endpoint[1] == "ApiEndpoint"
    assert dev.template_json["Resources"][endpoint[0]]["Type"] == "AWS::ApiGatewayV2::Api"
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    assert "OriginPath" not in origin  # the $default stage: paths go through as they are
    for pattern, behavior in _behaviors(dev).items():
        assert behavior["ViewerProtocolPolicy"] == "https-only", pattern
        assert behavior["Compress"] is True, pattern


def test_the_stack_outputs_the_cdn_url(dev: Synth) -> None:
    (distribution_id,) = dev.resources("AWS::CloudFront::Distribution")
    assert dev.template_json["Outputs"]["CdnUrl"]["Value"] == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}


# --- the read cache ------------------------------------------------------------------------------------------------

def test_reads_are_cached_as_long_as_the_api_says_keyed_on_the_path_and_the_board_query_strings(dev: Synth) -> None:
    reads = _behaviors(dev)["*"]
    assert reads["AllowedMethods"] == ["GET", "HEAD", "OPTIONS"]  # OPTIONS: the handler answers preflights
    assert reads["CachedMethods"] == ["GET", "HEAD"]
    policy = _resource(dev, reads["CachePolicyId"])["Properties"]["CachePolicyConfig"]
    # min 0: a no-store answer (health, errors, preflights) is never kept; default 0: nor is one without
    # Cache-Control (only API Gateway's own 404/429 lack it); max: the handler's own ceiling for a board
    assert (policy["MinTTL"], policy["DefaultTTL"], policy["MaxTTL"]) == (0, 0, handler.BOARD_MAX_AGE) == (0, 0, 300)
    key = policy["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "whitelist"
    assert sorted(key["QueryStringsConfig"]["QueryStrings"]) == ["around", "limit", "window"]
    assert key["HeadersConfig"] == {"HeaderBehavior": "none"}
    assert key["CookiesConfig"] == {"CookieBehavior": "none"}
    assert key["EnableAcceptEncodingGzip"] is True and key["EnableAcceptEncodingBrotli"] is True
    # nothing but the key reaches the origin on this behavior
    assert "OriginRequestPolicyId" not in reads


def test_every_query_string_the_api_documents_for_a_read_is_in_the_cache_key(dev: Synth) -> None:
    """A documented parameter left out of the key would serve one variant's cached answer for all of them."""
    policy = _resource(dev, _behaviors(dev)["*"]["CachePolicyId"])["Properties"]["CachePolicyConfig"]
    keyed = set(policy["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"]["QueryStrings"])
    for path, operations in handler.OPENAPI["paths"].items():
        if "get" in operations:
            documented = {p["name"] for p in operations["get"].get("parameters", []) if p["in"] == "query"}
            assert documented <= keyed, path


def test_the_cors_answer_does_not_vary_with_the_origin_so_the_key_leaves_it_out() -> None:
    def answer(method: str, path: str, origin: str) -> dict[str, Any]:
        event = {"requestContext": {"http": {"method": method}}, "rawPath": path, "headers": {"Origin": origin}}
        return handler.handle(event, backend=None, now=0.0)  # type: ignore[arg-type]  # neither reads the backend

    for method, path in (("GET", "/healthz"), ("OPTIONS", "/v1/leaderboards/overall")):
        one, other = answer(method, path, "https://one.example"), answer(method, path, "https://other.example")
        assert one == other
        assert one["headers"]["access-control-allow-origin"] == "*"
        assert "vary" not in {h.lower() for h in one["headers"]}


def test_every_read_route_is_served_by_the_read_cache(dev: Synth) -> None:
    for path, method in ROUTES:
        if method.value == "GET":
            assert _behavior_for(dev, _api_route_path(path)) is _behaviors(dev)["*"], path


def test_the_console_page_and_its_files_are_routed_to_the_read_api_and_served_by_the_read_cache(dev: Synth) -> None:
    from processors import webconsole

    paths = {path for path, method in ROUTES if method.value == "GET"}
    assert {"/", "/console/{proxy+}", "/v1/health"} <= paths
    reads = _behaviors(dev)["*"]
    for path in ("/", webconsole.asset_url("app.js"), webconsole.asset_url("style.css"), "/v1/health"):
        assert _behavior_for(dev, path) is reads, path
    routes = {r["Properties"]["RouteKey"] for r in dev.resources("AWS::ApiGatewayV2::Route").values()}
    assert {"GET /", "GET /console/{proxy+}", "GET /v1/health"} <= routes
    # what the policy does with the console's answers: the page (no-cache) is fetched each time, its
    # content-addressed files are kept up to the policy's maximum TTL
    policy = _resource(dev, reads["CachePolicyId"])["Properties"]["CachePolicyConfig"]
    assert policy["MinTTL"] == 0 and webconsole.REVALIDATE == "no-cache"
    assert webconsole.IMMUTABLE.startswith("public, max-age=")


# --- the admin route -----------------------------------------------------------------------------------------------

def test_the_admin_route_goes_through_uncached_with_its_key_header_and_nothing_else(dev: Synth) -> None:
    admin_routes = [path for path, method in ROUTES if method.value == "POST"]
    assert admin_routes == ["/v1/admin/refresh"]
    admin = _behavior_for(dev, admin_routes[0])
    assert admin is not _behaviors(dev)["*"]
    assert "POST" in admin["AllowedMethods"]
    assert admin["CachePolicyId"] == cloudfront.CachePolicy.CACHING_DISABLED.cache_policy_id
    forwarded = _resource(dev, admin["OriginRequestPolicyId"])["Properties"]["OriginRequestPolicyConfig"]
    # the header the handler authenticates, and `full`; no Host (API Gateway routes on its own), no cookie
    assert forwarded["HeadersConfig"] == {"HeaderBehavior": "whitelist", "Headers": [handler.ADMIN_KEY_HEADER]}
    assert handler.ADMIN_KEY_HEADER == "x-api-key"
    assert forwarded["QueryStringsConfig"] == {"QueryStringBehavior": "whitelist", "QueryStrings": ["full"]}
    assert forwarded["CookiesConfig"] == {"CookieBehavior": "none"}
    assert _behavior_for(dev, "/v1/leaderboards/overall") is not admin


# --- logs ----------------------------------------------------------------------------------------------------------

def test_cdn_logs_go_to_a_private_expiring_bucket_that_accepts_cloudfront_log_delivery(dev: Synth) -> None:
    logging = _distribution(dev)["Logging"]
    bucket_id, attribute = logging["Bucket"]["Fn::GetAtt"]
    assert attribute == "RegionalDomainName" and logging["Prefix"] == "cloudfront/"
    bucket = dev.template_json["Resources"][bucket_id]["Properties"]
    # CloudFront's standard logs are delivered with an ACL grant: ACLs must be on (the bucket still owns the
    # objects); the shared access-log bucket keeps them off.
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}
    assert all(v is True for v in bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90
    access_logs = bucket["LoggingConfiguration"]["DestinationBucketName"]
    assert _resource(dev, access_logs)["Properties"]["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


# --- WAF -----------------------------------------------------------------------------------------------------------

def _web_acl(synth: Synth) -> tuple[str, dict[str, Any]]:
    ((logical_id, acl),) = synth.resources("AWS::WAFv2::WebACL").items()
    return logical_id, acl["Properties"]


def _rules(acl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Name"]: r for r in acl["Rules"]}


def test_the_waf_blocks_a_client_ip_over_the_rate_limit_and_guards_the_distribution(dev: Synth) -> None:
    logical_id, acl = _web_acl(dev)
    assert acl["Scope"] == "CLOUDFRONT" and acl["DefaultAction"] == {"Allow": {}}
    assert _distribution(dev)["WebACLId"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    rate = _rules(acl)["rate-per-ip"]
    assert rate["Statement"] == {"RateBasedStatement": {
        "AggregateKeyType": "IP", "Limit": dev.stack.config.cdn_rate_limit_per_ip, "EvaluationWindowSec": 300}}
    assert dev.stack.config.cdn_rate_limit_per_ip == 2000
    assert rate["Action"] == {"Block": {"CustomResponse": {"ResponseCode": 429}}}
    assert rate["Priority"] == min(r["Priority"] for r in acl["Rules"])  # floods are turned away first
    for rule in acl["Rules"]:
        assert rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True, rule["Name"]


def test_the_waf_runs_the_aws_common_rule_set_but_lets_clients_without_a_user_agent_through(dev: Synth) -> None:
    _, acl = _web_acl(dev)
    common = _rules(acl)["aws-common-rule-set"]
    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert (group["VendorName"], group["Name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    assert common["OverrideAction"] == {"None": {}}  # the group's own block actions apply
    assert group["RuleActionOverrides"] == [{"Name": "NoUserAgent_HEADER", "ActionToUse": {"Count": {}}}]


def test_prod_serves_from_every_edge_location(dev: Synth, prod: Synth) -> None:
    assert _distribution(dev)["PriceClass"] == "PriceClass_100"
    assert _distribution(prod)["PriceClass"] == "PriceClass_All"


def test_outside_us_east_1_the_web_acl_lives_in_a_us_east_1_stack_the_main_stack_reads(elsewhere: Synth) -> None:
    assert elsewhere.stack.region == "eu-west-1"
    assert not elsewhere.resources("AWS::WAFv2::WebACL")
    (edge,) = elsewhere.stack.dependencies  # so `cdk deploy` deploys it first
    assert edge.region == "us-east-1"
    edge_template = json.loads((elsewhere.outdir / edge.template_file).read_text())
    ((acl_id, acl),) = edge_template["Resources"].items()  # the edge stack holds the web ACL and nothing else
    assert acl["Type"] == "AWS::WAFv2::WebACL" and acl["Properties"]["Scope"] == "CLOUDFRONT"
    assert acl["Properties"]["Rules"][0]["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    reference = _distribution(elsewhere)["WebACLId"]["Fn::GetStackOutput"]
    assert (reference["StackName"], reference["Region"]) == (edge.stack_name, "us-east-1")
    assert edge_template["Outputs"][reference["OutputName"]]["Value"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    # a weak reference: no export to lock the ACL, no custom-resource Lambdas to carry the ARN across regions
    types = {r["Type"] for r in elsewhere.template_json["Resources"].values()}
    assert not any(t.startswith("Custom::CrossRegion") for t in types)
    assert "Export" not in edge_template["Outputs"][reference["OutputName"]]


def test_a_cloudfront_web_acl_outside_us_east_1_fails_the_synth_with_the_way_out() -> None:
    stack = cdk.Stack(cdk.App(), "Elsewhere", env=cdk.Environment(region="eu-west-1"))
    with pytest.raises(ValueError, match="must be created in us-east-1.*'eu-west-1'.*pass its ARN"):
        CdnFirewall(stack, "Firewall", name="probe", rate_limit_per_ip=100)


def test_a_region_cloudfront_cannot_log_to_fails_the_synth_before_the_deploy_would() -> None:
    stack = cdk.Stack(cdk.App(), "CapeTown", env=cdk.Environment(region="af-south-1"))
    with pytest.raises(ValueError, match="does not deliver standard logs to a bucket in af-south-1"):
        Cdn(stack, "Cdn", name="probe", api_domain="example.com", web_acl_arn="arn", price_class="PriceClass_100",
            access_logs=s3.Bucket(stack, "AccessLogs"), retain=False, logs_expiry_days=1)
