"""Leaderboards: the refresh query Lambda, the snapshot writer Lambda, and the board and profile tables.

query  <- every ``refresh_minutes``, after each successful crawl, and on demand (the read API's admin route)
writer <- EventBridge "Athena Query State Change" of the refresh workgroup (SUCCEEDED, FAILED, CANCELLED)

Both are invoked asynchronously by their rules: an event EventBridge cannot deliver, or that the function fails
on every attempt, ends in the function's failure queue (``dead_letter.async_failures``), which alarms.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from streamboard_infra import scan
from streamboard_infra.dead_letter import MAX_ASYNC_EVENT_AGE_MINUTES, DeadLetterQueue, async_failures, rule_target
from streamboard_infra.functions import PipelineFunction
from streamboard_infra.tables import grant_items, store_table


class Leaderboards(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code,
                 refresh_workgroup: athena.CfnWorkGroup, crawler_name: str, refresh_minutes: int, retain: bool,
                 query_failures: DeadLetterQueue, writer_failures: DeadLetterQueue, log_retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.boards_table = store_table(self, "Boards", retain=retain)
        # One item per user (streamboard.profiles), and one per challenge first completion: nothing expires.
        self.profiles_table = store_table(self, "Profiles", retain=retain)
        self.query = PipelineFunction(
            self, "Query", handler="processors.leaderboards.query_handler", code=code,
            description="Streamboard: start the leaderboard snapshot query in Athena",
            timeout=cdk.Duration.seconds(30), log_retention_days=log_retention_days,
        )
        self.writer = PipelineFunction(
            self, "Writer", handler="processors.leaderboards.writer_handler", code=code,
            description="Streamboard: replace the boards with a finished snapshot query's rows, reconcile the"
                        " profiles",
            # the reconcile writes every profile a batch covered, 16 at a time: up to about a million an hour;
            # 3 GB: a first build of a million players' ranks holds their rows and trees (streamboard.ranks)
            timeout=cdk.Duration.minutes(15), memory_mb=3008, log_retention_days=log_retention_days,
            reserved_concurrency=2,  # snapshots replace whole boards: two writers at most, never a stampede
        )
        # a board's current head, its new version's pages and head copies, then the old pages (streamboard.boards);
        # the ranks (streamboard.ranks, in the same table): their head, the nodes the changed users' paths go
        # through and the retired lists (BatchGetItem), the new nodes, the head copies, the retired nodes' deletes
        grant_items(self.boards_table, self.writer.role, "GetItem", "BatchGetItem", "PutItem", "BatchWriteItem")
        # a batch's plan says which batch's ranks it steps from: the ranks' head
        grant_items(self.boards_table, self.query.role, "GetItem")
        grant_items(self.profiles_table, self.writer.role, "GetItem", "UpdateItem")  # the profiles' reconcile
        scan.skip_checkov(self.query.function, {
            "CKV_AWS_115": "Invoked by the refresh schedule, a crawl's end and rare manual runs: a few times an "
                           "hour; a reservation would take account concurrency from the functions that need it.",
        })
        self.query_failures, self.writer_failures = query_failures, writer_failures
        # Starting a batch takes seconds: an attempt that failed is tried twice more within half an hour.
        query_age = cdk.Duration.minutes(30)
        async_failures(self.query, query_failures, retry_attempts=2, max_event_age=query_age)
        query_target = rule_target(self.query, query_failures, retry_attempts=2, max_event_age=query_age)
        self.schedule = events.Rule(
            self, "Schedule", schedule=events.Schedule.rate(cdk.Duration.minutes(refresh_minutes)),
            description="Refresh the leaderboards on schedule", targets=[query_target],
        )
        self.after_crawl = events.Rule(
            self, "AfterCrawl",
            description="Refresh the leaderboards when the crawler has added the new partitions",
            event_pattern=events.EventPattern(
                source=["aws.glue"], detail_type=["Glue Crawler State Change"],
                detail={"crawlerName": [crawler_name], "state": ["Succeeded"]}),
            targets=[query_target],
        )
        # Every step is idempotent (README, The incremental refresh), so a failed write is tried twice more: three
        # 15-minute attempts and Lambda's backoff fit in an hour. An event still not written after an hour (or
        # the refresh interval, if longer) goes to the queue, which alarms; the next refresh resumes the batch.
        writer_age = cdk.Duration.minutes(min(max(refresh_minutes, 60), MAX_ASYNC_EVENT_AGE_MINUTES))
        async_failures(self.writer, writer_failures, retry_attempts=2, max_event_age=writer_age)
        self.on_query_done = events.Rule(
            self, "OnQueryDone",
            description="Write the boards when a refresh query ends (a failure is logged; boards stay as they were)",
            event_pattern=events.EventPattern(
                source=["aws.athena"], detail_type=["Athena Query State Change"],
                detail={"workgroupName": [refresh_workgroup.name],
                        "currentState": ["SUCCEEDED", "FAILED", "CANCELLED"]}),
            targets=[rule_target(self.writer, writer_failures, retry_attempts=2, max_event_age=writer_age)],
        )
