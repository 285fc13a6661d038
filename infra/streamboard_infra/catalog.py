"""The Glue Data Catalog: the database, one table per registered event type, and the hourly crawler."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from constructs import Construct

from glue.tables import event_table_input
from streamboard.registry import Registry
from streamboard_infra import nag, scan
from streamboard_infra.lake import Lake

# The crawler only adds partitions to the tables the registry defines; it never changes their schema.
CRAWLER_CONFIGURATION = {
    "Version": 1.0,
    "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
}
# Glue writes every crawler's log to this group, one stream per crawler.
CRAWLER_LOG_GROUP = "/aws-glue/crawlers"


class Catalog(Construct):
    """Tables are generated from the registry (``glue.tables.event_table_input``): a new type is a new table."""

    def __init__(self, scope: Construct, construct_id: str, *, database_name: str, registry: Registry, lake: Lake,
                 crawler_schedule: str) -> None:
        super().__init__(scope, construct_id)
        self.database_name = database_name
        self.database = glue.CfnDatabase(
            self, "Database", catalog_id=cdk.Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=database_name, description="Streamboard event lake: one table per event type, and the views"),
        )
        self.tables: dict[str, glue.CfnTable] = {}
        for event_type in registry:
            table = glue.CfnTable(
                self, f"Table-{event_type.name}",
                catalog_id=cdk.Aws.ACCOUNT_ID,
                database_name=database_name,
                table_input=glue.CfnTable.TableInputProperty(name=event_type.name),
            )
            # The whole TableInput comes from glue.tables, the same function the aws catalog adapter uses.
            table.add_property_override("TableInput", event_table_input(event_type, lake.location))
            table.node.add_dependency(self.database)
            self.tables[event_type.name] = table

        self.crawler_role = iam.Role(self, "CrawlerRole", assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
                                     description="Streamboard crawler: adds new hourly partitions to the lake tables")
        self.grant_read_tables(self.crawler_role, list(self.tables))
        self.crawler_role.add_to_policy(iam.PolicyStatement(
            actions=["glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition", "glue:CreatePartition",
                     "glue:BatchCreatePartition", "glue:UpdatePartition", "glue:BatchUpdatePartition",
                     "glue:UpdateTable"],
            resources=[self.catalog_arn, self.database_arn, *(self.table_arn(t) for t in self.tables)],
        ))
        lake.grant_read_tables(self.crawler_role, list(self.tables))
        self.crawler_name = f"{database_name}-partitions"
        self.crawler = glue.CfnCrawler(
            self, "Crawler",
            name=self.crawler_name,
            role=self.crawler_role.role_arn,
            description="Adds the lake's new year/month/day/hour partitions to the event tables, hourly",
            targets=glue.CfnCrawler.TargetsProperty(catalog_targets=[
                glue.CfnCrawler.CatalogTargetProperty(database_name=database_name, tables=list(self.tables)),
            ]),
            schedule=glue.CfnCrawler.ScheduleProperty(schedule_expression=crawler_schedule),
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="LOG", delete_behavior="LOG"),
            configuration=json.dumps(CRAWLER_CONFIGURATION),
        )
        for table in self.tables.values():
            self.crawler.node.add_dependency(table)
        log_stream = cdk.Stack.of(self).format_arn(
            service="logs", resource="log-group", resource_name=f"{CRAWLER_LOG_GROUP}:log-stream:{self.crawler_name}",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        log_group = cdk.Stack.of(self).format_arn(
            service="logs", resource="log-group", resource_name=CRAWLER_LOG_GROUP,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        self.crawler_role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream"], resources=[log_group, log_stream]))
        self.crawler_role.add_to_policy(iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=[log_stream]))
        nag.acknowledge(self.crawler, {
            "AwsSolutions-GL1": "The crawler's log holds table and partition names only, no event data; "
                                "CloudWatch Logs encrypts it at rest with service-managed keys.",
        })
        scan.skip_checkov(self.crawler, {
            "CKV_AWS_195": "The crawler writes nothing to S3 (catalog targets only) and its log holds table and "
                           "partition names; a security configuration's KMS log encryption would move the log "
                           "group and need a customer key for no data worth it.",
        })

    @property
    def catalog_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(service="glue", resource="catalog")

    @property
    def database_arn(self) -> str:
        return cdk.Stack.of(self).format_arn(service="glue", resource="database", resource_name=self.database_name)

    def table_arn(self, name: str) -> str:
        return cdk.Stack.of(self).format_arn(service="glue", resource="table",
                                             resource_name=f"{self.database_name}/{name}")

    def grant_read_tables(self, grantee: iam.IGrantable, names: list[str]) -> None:
        """Read the definitions of these tables or views (not their data: see ``Lake.grant_read_tables``)."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions",
                     "glue:BatchGetPartition"],
            resource_arns=[self.catalog_arn, self.database_arn, *(self.table_arn(n) for n in names)],
        )
