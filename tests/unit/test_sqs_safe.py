"""Dead-letter messages carry the client's JSON; SQS refuses two characters that JSON strings may hold."""

from __future__ import annotations

import json

from streamboard.adapters.aws.queue import sqs_safe


def test_characters_sqs_refuses_are_escaped_and_the_json_reads_the_same() -> None:
    record = json.dumps({"events": [{"name": "a\ufffeb\uffff\\\uffff", "n": "é"}]}, ensure_ascii=False)
    safe = sqs_safe(record)
    assert "\ufffe" not in safe and "\uffff" not in safe
    assert json.loads(safe) == json.loads(record)
    assert sqs_safe('{"a": "é"}') == '{"a": "é"}'  # nothing to escape: unchanged
