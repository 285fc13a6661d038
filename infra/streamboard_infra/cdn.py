"""The CDN in front of the read API: a CloudFront distribution (edge cache, compression, HTTPS only) and the
WAF web ACL that guards it (a request limit per client IP, AWS's common rule set).

What the cache may keep is the handler's to say (processors/read_api.py, DESIGN section 5): a board's
``max-age`` ends at the next scheduled refresh and is at most 300 s, a profile's is 5 s, health, admin and
errors are ``no-store``. The cache policy honours that (minimum TTL 0, so ``no-store`` is never cached; default
TTL 0, so an answer without ``Cache-Control``, which only API Gateway itself sends, is never cached either;
maximum TTL the handler's own ceiling) and keys each answer on what the handler reads: the path and the board
query strings, nothing else. CORS answers are ``Access-Control-Allow-Origin: *`` whatever the ``Origin``, so
the ``Origin`` header need not be in the key. ``If-None-Match`` needs no key either: CloudFront answers it
from the cached ``ETag`` and revalidates with the origin by itself. The web console (``/`` and ``/console/...``,
processors/webconsole.py) goes through the same behavior: its page is ``no-cache``, its script and style sheet
are addressed by their content and ``immutable``, so the maximum TTL keeps them and a deployment changes URLs.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from processors.read_api import ADMIN_KEY_HEADER, BOARD_MAX_AGE
from streamboard_infra import nag, scan
from streamboard_infra.lake import secure_bucket

#: CLOUDFRONT-scoped WAF resources exist only in this region, wherever the rest of the stack is.
WAF_REGION = "us-east-1"
#: Every query string a read answer depends on (DESIGN section 5: a board's window, its length, and the user a
#: page of it is centred on). Any other query string is dropped before the origin: it cannot split the cache.
READ_QUERY_STRINGS = ("window", "limit", "around")
ADMIN_PATH = "/v1/admin/*"
ADMIN_QUERY_STRINGS = ("full",)  # POST /v1/admin/refresh?full=true
#: The AWS managed rule that blocks requests without a User-Agent: counted only (see CdnFirewall).
NO_USER_AGENT_RULE = "NoUserAgent_HEADER"
LOG_PREFIX = "cloudfront/"
#: CloudFront delivers no standard logs to buckets in these regions (AWS docs, "Choosing an S3 bucket for your
#: standard logs"); a stack there would synthesize and then fail to deploy.
NO_LOG_DELIVERY_REGIONS = ("af-south-1", "ap-east-1", "eu-south-1", "me-south-1")
#: The config names price classes as CloudFront does (streamboard_infra.config.CDN_PRICE_CLASSES).
PRICE_CLASSES = {"PriceClass_100": cloudfront.PriceClass.PRICE_CLASS_100,
                 "PriceClass_200": cloudfront.PriceClass.PRICE_CLASS_200,
                 "PriceClass_All": cloudfront.PriceClass.PRICE_CLASS_ALL}


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True)


class CdnFirewall(Construct):
    """The distribution's WAF web ACL. CloudFront takes only a web ACL made in us-east-1: a stack elsewhere
    gets its ARN from a small us-east-1 stack (``EdgeStack``; infra/app.py builds it)."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, rate_limit_per_ip: int) -> None:
        super().__init__(scope, construct_id)
        region = cdk.Stack.of(self).region
        if cdk.Token.is_unresolved(region) or region != WAF_REGION:
            raise ValueError(f"a CloudFront web ACL must be created in {WAF_REGION}, and this stack's region is "
                             f"{region!r}: build it in a {WAF_REGION} stack and pass its ARN (infra/app.py does)")
        self.web_acl = wafv2.CfnWebACL(
            self, "WebAcl", scope="CLOUDFRONT",
            description=f"{name}: read API CDN - per-IP request limit, AWS common rule set",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow=wafv2.CfnWebACL.AllowActionProperty()),
            visibility_config=_visibility(f"{name}-cdn"),
            rules=[
                # First, so a flood is turned away before anything else looks at it. Cache hits count too:
                # WAF sees every request CloudFront receives. 429, as the API's own throttle answers.
                wafv2.CfnWebACL.RuleProperty(
                    name="rate-per-ip", priority=0,
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=rate_limit_per_ip, evaluation_window_sec=300)),
                    action=wafv2.CfnWebACL.RuleActionProperty(block=wafv2.CfnWebACL.BlockActionProperty(
                        custom_response=wafv2.CfnWebACL.CustomResponseProperty(response_code=429))),
                    visibility_config=_visibility(f"{name}-cdn-rate-per-ip"),
                ),
                # Known-bad inputs (path traversal, XSS, SSRF to the metadata address, oversized query strings,
                # bodies over 8 KB): no read takes a body, and every parameter is a short slug or number, so
                # its rules do not touch well-formed calls. The one exception, requests without a User-Agent,
                # is counted only: game servers and scripts read boards too, and some send none.
                wafv2.CfnWebACL.RuleProperty(
                    name="aws-common-rule-set", priority=1,
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name="AWSManagedRulesCommonRuleSet",
                            rule_action_overrides=[wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=NO_USER_AGENT_RULE,
                                action_to_use=wafv2.CfnWebACL.RuleActionProperty(
                                    count=wafv2.CfnWebACL.CountActionProperty()))])),
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    visibility_config=_visibility(f"{name}-cdn-common-rule-set"),
                ),
            ],
        )
        scan.skip_checkov(self.web_acl, {
            "CKV_AWS_192": "The origin is a Python Lambda behind API Gateway, with no Java and no Log4j; the "
                           "common rule set and the per-IP limit cover what the read routes are exposed to.",
        })

    @property
    def web_acl_arn(self) -> str:
        return self.web_acl.attr_arn


class Cdn(Construct):
    """CloudFront in front of the read API's HTTP API: reads cached by the origin's ``Cache-Control``, the admin
    route passed through uncached with its key header, standard logs to a bucket of their own."""

    def __init__(self, scope: Construct, construct_id: str, *, name: str, api_domain: str, web_acl_arn: str,
                 price_class: str, access_logs: s3.IBucket, retain: bool, logs_expiry_days: int) -> None:
        super().__init__(scope, construct_id)
        region = cdk.Stack.of(self).region
        if region in NO_LOG_DELIVERY_REGIONS:
            raise ValueError(f"CloudFront does not deliver standard logs to a bucket in {region}: deploy the "
                             "stack in another region (infra/README.md, The CDN)")
        # CloudFront's standard logs are written with an ACL grant to its log-delivery account, so the target
        # bucket needs ACLs on; the shared access-log bucket has them off (bucket owner enforced, writers go
        # through its bucket policy) and keeps them off: these logs get a bucket of their own.
        self.log_bucket = secure_bucket(
            self, "Logs", retain=retain, access_logs=access_logs, access_logs_prefix="s3/cdn-logs/",
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(logs_expiry_days),
                                              abort_incomplete_multipart_upload_after=cdk.Duration.days(1))],
        )
        scan.skip_checkov(self.log_bucket, {
            "CKV_AWS_21": "Logs are written once and expire after logs_expiry_days; versions would keep every "
                          "expired log as well, with nothing to recover.",
        })
        origin = origins.HttpOrigin(
            api_domain, protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
        )
        self.read_cache = cloudfront.CachePolicy(
            self, "ReadCache", comment=f"{name}: read API, as long as its Cache-Control says (at most "
                                       f"{BOARD_MAX_AGE} s), keyed on the path and {', '.join(READ_QUERY_STRINGS)}",
            query_string_behavior=cloudfront.CacheQueryStringBehavior.allow_list(*READ_QUERY_STRINGS),
            header_behavior=cloudfront.CacheHeaderBehavior.none(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            min_ttl=cdk.Duration.seconds(0), default_ttl=cdk.Duration.seconds(0),
            max_ttl=cdk.Duration.seconds(BOARD_MAX_AGE),
            enable_accept_encoding_gzip=True, enable_accept_encoding_brotli=True,
        )
        # The admin route's request as the handler reads it: its key header and `full`, no cookie, no other
        # header (least of all Host: API Gateway routes on its own host name).
        self.admin_requests = cloudfront.OriginRequestPolicy(
            self, "AdminRequests", comment=f"{name}: POST /v1/admin/refresh, its {ADMIN_KEY_HEADER} header and "
                                           f"{', '.join(ADMIN_QUERY_STRINGS)}",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(ADMIN_KEY_HEADER),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.allow_list(*ADMIN_QUERY_STRINGS),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )
        # HTTPS only, no redirect: API Gateway never served plain HTTP, and a redirect would hide a client that
        # sends its admin key in clear text (and turn its POST into a GET) instead of failing it.
        https_only = cloudfront.ViewerProtocolPolicy.HTTPS_ONLY
        self.distribution = cloudfront.Distribution(
            self, "Distribution", comment=f"{name}: read API",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin, viewer_protocol_policy=https_only, compress=True,
                # OPTIONS: the handler answers CORS preflights (never cached: they are no-store)
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                cache_policy=self.read_cache,
            ),
            additional_behaviors={ADMIN_PATH: cloudfront.BehaviorOptions(
                origin=origin, viewer_protocol_policy=https_only, compress=True,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=self.admin_requests,
            )},
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=PRICE_CLASSES[price_class],
            web_acl_id=web_acl_arn,
            enable_logging=True, log_bucket=self.log_bucket, log_file_prefix=LOG_PREFIX,
        )
        scan.skip_checkov(self.distribution, {
            "CKV_AWS_174": "The distribution has no custom domain, so it serves the default *.cloudfront.net "
                           "certificate, whose viewer TLS policy CloudFront fixes (as cdk-nag CFR4 above).",
        })
        nag.acknowledge(self.distribution, {
            "AwsSolutions-CFR1": "Leaderboards are public to read from anywhere (DESIGN section 5); no country "
                                 "is to be refused, so there is no geo restriction.",
            "AwsSolutions-CFR4": "The distribution has no custom domain, so it serves the default "
                                 "*.cloudfront.net certificate, whose viewer security policy CloudFront fixes; "
                                 "a custom domain with an ACM certificate in us-east-1 would allow TLSv1.2_2021 "
                                 "(not built, infra/README.md).",
        })

    @property
    def url(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}"
