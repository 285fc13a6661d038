"""Dead-letter messages carry the client's JSON; SQS refuses two characters that JSON strings may hold."""

from __future__ import annotations

import json

from streamboard.overflow import queue_safe


def test_characters_sqs_refuses_are_escaped_and_the_json_reads_the_same() -> None:
    record = json.dumps({"events": [{"name": "a\ufffeb\uffff\\\uffff", "n": "é"}]}, ensure_ascii=False).encode()
    safe = queue_safe(record)
    assert "\ufffe" not in safe.decode() and "\uffff" not in safe.decode()
    assert json.loads(safe) == json.loads(record)
    assert queue_safe('{"a": "é"}'.encode()) == '{"a": "é"}'.encode()  # nothing to escape: unchanged
