"""Analytics: Athena workgroups (engine v3, encrypted results, a bytes-scanned limit) and the views.

Two workgroups: ``<name>`` for analysts and the view definitions, ``<name>-leaderboards`` for the
refresh query only, so the writer Lambda's EventBridge rule sees no one else's queries.
The views of ``athena_sql/`` are created (``CREATE OR REPLACE VIEW``, in dependency order) by a
custom resource whenever their SQL changes, and dropped with the stack. The same custom resource creates
the incremental refresh's state tables (Iceberg, from ``athena_sql/state/``) first; they are never dropped
by an update (the next refresh would rebuild them, but at the cost of a full scan).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from streamboard.refresh import STATE_PREFIX, athena_state_ddl
from streamboard.sql import View
from streamboard_infra import assets, nag, scan
from streamboard_infra.catalog import Catalog
from streamboard_infra.functions import PipelineFunction
from streamboard_infra.lake import Lake, grant_list_prefixes, secure_bucket

RESULTS_PREFIX = "athena-results"


class Analytics(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, name: str, catalog: Catalog, lake: Lake,
                 views: tuple[View, ...], bytes_scanned_limit: int, results_days: int, retain: bool,
                 log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.catalog = catalog
        self.lake = lake
        self.view_names = [v.name for v in views]
        self.results_bucket = secure_bucket(
            self, "Results", retain=retain, access_logs=lake.access_logs, access_logs_prefix="s3/athena-results/",
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(results_days),
                                              abort_incomplete_multipart_upload_after=cdk.Duration.days(1))],
        )
        scan.skip_checkov(self.results_bucket, {
            "CKV_AWS_21": "Query results are rewritten by running the query again and expire after "
                          "athena_results_days; versions would keep every expired result as well.",
        })
        self.workgroup = self._workgroup("Analysts", name, "Streamboard: ad hoc analysis and the view definitions",
                                         bytes_scanned_limit)
        self.refresh_workgroup = self._workgroup("Refresh", f"{name}-leaderboards",
                                                 "Streamboard: the leaderboard refresh query only", bytes_scanned_limit)

        self.views_function = PipelineFunction(
            self, "ViewsFunction", handler="athena_views.handler", code=assets.handlers_code(),
            runtime=assets.HANDLERS_RUNTIME, timeout=cdk.Duration.minutes(10), log_retention_days=log_retention_days,
            description="Streamboard: CloudFormation custom resource that creates the Athena views",
        )
        scan.skip_checkov(self.views_function.function, {
            "CKV_AWS_116": "A CloudFormation custom resource: the handler always answers CloudFormation, and a "
                           "failure fails the stack operation where the deployer sees it.",
            "CKV_AWS_115": "It runs only when a deployment changes the views, once per change; a reservation "
                           "would take account concurrency for nothing.",
        })
        self.grant_queries(self.views_function.role, self.workgroup)
        # Views are tables in the Glue catalog: the DDL creates, replaces and drops exactly these.
        self.views_function.role.add_to_policy(iam.PolicyStatement(
            actions=["glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable"],
            resources=[catalog.catalog_arn, catalog.database_arn, *(catalog.table_arn(v) for v in self.view_names)],
        ))
        self.state_tables = athena_state_ddl(lake.location)
        self.state_table_names = [n for n, _ in self.state_tables]
        # Creating an Iceberg table writes its first metadata file under the table's location.
        self.views_function.role.add_to_policy(iam.PolicyStatement(
            actions=["glue:CreateTable", "glue:GetTable"],
            resources=[catalog.catalog_arn, catalog.database_arn,
                       *(catalog.table_arn(t) for t in self.state_table_names)],
        ))
        lake.grant_objects(self.views_function.role, STATE_PREFIX, "s3:GetObject", "s3:PutObject")
        self.views = cdk.CustomResource(
            self, "Views",
            service_token=self.views_function.function.function_arn,
            resource_type="Custom::AthenaViews",
            properties={
                "Database": catalog.database_name,
                "WorkGroup": self.workgroup.name,
                "Views": [{"Name": v.name, "Sql": v.sql} for v in views],
                "Tables": [{"Name": n, "Sql": sql} for n, sql in self.state_tables],
            },
        )
        self.views.node.add_dependency(self.workgroup, *catalog.tables.values(), self.views_function.role)

    def _workgroup(self, construct_id: str, name: str, description: str, limit: int) -> athena.CfnWorkGroup:
        return athena.CfnWorkGroup(
            self, construct_id,
            name=name,
            description=description,
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=limit,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.output_location(name),
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"),
                ),
            ),
        )

    def output_location(self, workgroup: str) -> str:
        return f"s3://{self.results_bucket.bucket_name}/{RESULTS_PREFIX}/{workgroup}/"

    def workgroup_arn(self, workgroup: athena.CfnWorkGroup) -> str:
        return cdk.Stack.of(self).format_arn(service="athena", resource="workgroup", resource_name=workgroup.name)

    def grant_refresh(self, grantee: iam.IGrantable) -> None:
        """Run the incremental refresh's statements: queries in the refresh workgroup, and reading and
        writing the state tables (Iceberg commits update the table in Glue and write files under it)."""
        self.grant_queries(grantee, self.refresh_workgroup)
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["glue:GetTable", "glue:UpdateTable"],
            resource_arns=[self.catalog.catalog_arn, self.catalog.database_arn,
                           *(self.catalog.table_arn(t) for t in self.state_table_names)])
        grant_list_prefixes(grantee, self.lake.bucket, [f"{self.lake.prefix}/{STATE_PREFIX}/"])
        self.lake.grant_objects(grantee, STATE_PREFIX, "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                "s3:AbortMultipartUpload")

    def grant_queries(self, grantee: iam.IGrantable, workgroup: athena.CfnWorkGroup) -> None:
        """Run queries in ``workgroup`` over the event tables and views, and read their results.

        Athena reads the catalog and the lake, and writes the results, with the caller's rights."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
                     "athena:StopQueryExecution", "athena:GetWorkGroup"],
            resource_arns=[self.workgroup_arn(workgroup)])
        tables = list(self.catalog.tables)
        self.catalog.grant_read_tables(grantee, [*tables, *self.view_names])
        self.lake.grant_read_tables(grantee, tables)
        results = f"{RESULTS_PREFIX}/{workgroup.name}/"
        grant_list_prefixes(grantee, self.results_bucket, [results])
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            resource_arns=[self.results_bucket.arn_for_objects(f"{results}*")])
        iam.Grant.add_to_principal(grantee=grantee, actions=["s3:ListBucketMultipartUploads"],
                                   resource_arns=[self.results_bucket.bucket_arn])
        nag.acknowledge(nag.policy_owner(grantee), {
            f"AwsSolutions-IAM5[Resource::<{nag.logical_ref(self.results_bucket)}.Arn>/{RESULTS_PREFIX}/"
            f"{workgroup.name}/*]": nag.OBJECT_PREFIX,
        })
