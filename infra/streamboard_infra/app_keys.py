"""App keys: the app registry table, holding only SHA-256 hashes of API keys."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from streamboard_infra.tables import grant_items, store_table


class AppKeys(Construct):
    """The app registry: only SHA-256 hashes of API keys (``streamboard.keys``), never a key itself.

    An operator creates keys against the deployed table (``DynamoAppRegistry.create``, see
    infra/README.md); no key or secret is ever in an environment variable."""

    def __init__(self, scope: Construct, construct_id: str, *, retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.table = store_table(self, "Apps", retain=retain)

    def grant_authenticate(self, grantee: iam.IGrantable) -> None:
        """Look a key's hash up (ingest, the read API's admin routes)."""
        grant_items(self.table, grantee, "GetItem")
