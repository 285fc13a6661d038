"""CDK test fixtures: each app is synthesized once per session (a synth takes several seconds).

A synth here is the real one: cdk-nag AwsSolutions runs on it (an unacknowledged finding fails
it) and the template under test is the file written to the cloud assembly, the one cfn-lint reads.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # before aws_cdk starts its runtime
INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))

from aws_cdk import assertions  # noqa: E402

from streamboard.registry import REGISTRY, EventType, Field, Registry  # noqa: E402


@dataclass
class Synth:
    """One synthesized app: the stack object, the cloud assembly folder and the template it holds."""

    stack: Any
    outdir: Path
    template_json: dict[str, Any]
    template: assertions.Template

    @property
    def template_path(self) -> Path:
        return self.outdir / self.stack.template_file

    def resources(self, type_: str) -> dict[str, Any]:
        return {k: v for k, v in self.template_json["Resources"].items() if v["Type"] == type_}


def synthesize(outdir: Path, context: dict[str, str] | None = None, registry: Registry = REGISTRY) -> Synth:
    from app import build_app

    app, stack = build_app(context or {}, outdir=str(outdir), registry=registry)
    app.synth()
    template_json = json.loads((outdir / stack.template_file).read_text())
    return Synth(stack, outdir, template_json, assertions.Template.from_json(template_json))


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default app (``python infra/app.py`` with no context): the dev environment."""
    return synthesize(tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The prod environment, provisioned Kinesis, HTTPS and an alarm address: the other branches of the stack."""
    return synthesize(tmp_path_factory.mktemp("cdk-prod"), {
        "env": "prod", "stream_mode": "provisioned", "shard_count": "4", "alarm_email": "oncall@example.com",
        "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
    })


@pytest.fixture(scope="session")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The dev app deployed to eu-west-1: the CDN's WAF web ACL goes to a us-east-1 stack of its own."""
    return synthesize(tmp_path_factory.mktemp("cdk-eu-west-1"), {"region": "eu-west-1"})


#: A third event type, registered in a copy of the registry (infra/ must need no change for it).
LEVEL_UP = EventType("level_up", (
    Field("level", "bigint", int, doc="the level reached"),
    Field("character", "string", str, required=False, doc="which character"),
), doc="A user reached a new level.")


@pytest.fixture(scope="session")
def three_types(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The dev app with a registry of the registered types plus ``level_up``."""
    return synthesize(tmp_path_factory.mktemp("cdk-three-types"), registry=Registry([*REGISTRY, LEVEL_UP]))
