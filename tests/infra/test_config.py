"""Deployment knobs from CDK context: presets per environment, typed overrides, clear errors."""

from __future__ import annotations

import pytest

from streamboard_infra.config import PRESETS, Prescale, config_from_context


def _get(context: dict[str, object]):  # type: ignore[no-untyped-def]
    return context.get


def test_no_context_is_dev() -> None:
    assert config_from_context(_get({})) == PRESETS["dev"]


def test_prod_preset_and_typed_overrides() -> None:
    config = config_from_context(_get({"env": "prod", "shard_count": "8", "stream_mode": "provisioned",
                                       "retain_data": "false", "alarm_email": "ops@example.com"}))
    assert (config.env_name, config.name, config.glue_database) == ("prod", "streamboard", "streamboard")
    assert config.shard_count == 8 and config.stream_mode == "provisioned" and config.retain_data is False
    assert config.alarm_email == "ops@example.com"
    assert config.delivery_prefix == "streamboard-"


def test_prescale_from_json_context() -> None:
    config = config_from_context(_get({"prescale": '[{"name": "launch", "start_hour": 9, "start_minute": 0, '
                                                   '"end_hour": 12, "end_minute": 0, "min_tasks": 10}]'}))
    assert config.prescale == (Prescale("launch", 9, 0, 12, 0, 10),)


@pytest.mark.parametrize(("context", "message"), [
    ({"env": "staging"}, "expected one of dev, prod"),
    ({"shard_count": "many"}, "expected an integer"),
    ({"stream_mode": "turbo"}, "expected on_demand or provisioned"),
    ({"firehose_buffer_mib": "1"}, "at least 64"),
    ({"retain_data": "maybe"}, "expected true or false"),
    ({"cdn_rate_limit_per_ip": "5"}, "cdn_rate_limit_per_ip must be from 10"),
    ({"cdn_price_class": "PriceClass_42"}, "expected one of PriceClass_100, PriceClass_200, PriceClass_All"),
    ({"board_copies": "0"}, "board_copies must be from 1 to 16"),
])
def test_bad_context_is_one_clear_error(context: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_from_context(_get(context))
