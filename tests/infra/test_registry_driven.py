"""Adding an event type to the registry adds its Firehose stream, Glue table and routing, with no change in infra/."""

from __future__ import annotations

import pytest

from .conftest import Synth

pytestmark = pytest.mark.slow


def test_the_new_type_gets_a_parquet_delivery_stream(three_types: Synth) -> None:
    streams = {s["Properties"]["DeliveryStreamName"]: s["Properties"]
               for s in three_types.resources("AWS::KinesisFirehose::DeliveryStream").values()}
    assert set(streams) == {"streamboard-dev-score", "streamboard-dev-action", "streamboard-dev-level_up"}
    destination = streams["streamboard-dev-level_up"]["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"].startswith("lake/level_up/year=!{timestamp:yyyy}/")
    assert destination["ErrorOutputPrefix"].startswith("lake/errors/!{firehose:error-output-type}/level_up/")
    schema = destination["DataFormatConversionConfiguration"]["SchemaConfiguration"]
    assert schema["TableName"] == "level_up"


def test_the_new_type_gets_a_glue_table_and_is_crawled(three_types: Synth) -> None:
    tables = {t["Properties"]["TableInput"]["Name"]: t["Properties"]["TableInput"]
              for t in three_types.resources("AWS::Glue::Table").values()}
    assert set(tables) == {"score", "action", "level_up"}
    columns = [c["Name"] for c in tables["level_up"]["StorageDescriptor"]["Columns"]]
    assert columns[-3:] == ["level", "character", "routed_at"]  # the router's stamp comes last
    assert {"Name": "level", "Type": "bigint", "Comment": "the level reached"} in tables["level_up"][
        "StorageDescriptor"]["Columns"]
    (crawler,) = three_types.resources("AWS::Glue::Crawler").values()
    assert "level_up" in crawler["Properties"]["Targets"]["CatalogTargets"][0]["Tables"]


def test_the_router_may_put_to_the_new_stream(three_types: Synth) -> None:
    stream_id = next(k for k, s in three_types.resources("AWS::KinesisFirehose::DeliveryStream").items()
                     if s["Properties"]["DeliveryStreamName"].endswith("-level_up"))
    router_role = next(f["Properties"]["Role"]["Fn::GetAtt"][0]
                       for f in three_types.resources("AWS::Lambda::Function").values()
                       if f["Properties"]["Handler"] == "processors.router.handler")
    statements = [s for p in three_types.resources("AWS::IAM::Policy").values()
                  if {"Ref": router_role} in p["Properties"]["Roles"]
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    put = next(s for s in statements if "firehose:PutRecordBatch" in s["Action"])
    assert {"Fn::GetAtt": [stream_id, "Arn"]} in put["Resource"]
    # ... and the new type has its own alarms.
    alarms = [a["Properties"] for a in three_types.resources("AWS::CloudWatch::Alarm").values()]
    assert any(a.get("MetricName") == "FailedConversion.Records"
               and {"Name": "DeliveryStreamName", "Value": "streamboard-dev-level_up"} in a["Dimensions"]
               for a in alarms)
