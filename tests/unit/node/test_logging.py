"""JSON logs: one object per line, secrets redacted by key and bearer tokens masked in text."""

from __future__ import annotations

import json
import logging

from d4h.node.logging import JsonFormatter, redact


def test_secret_fields_and_bearer_tokens_are_redacted() -> None:
    record = logging.makeLogRecord(
        {"msg": "call with Authorization: Bearer abc.def.ghi", "levelname": "INFO", "name": "t"}
    )
    record.admin_token = "s3cret"
    record.peer = "did:web:x"
    line = JsonFormatter("node-a").format(record)
    doc = json.loads(line)
    assert "abc.def.ghi" not in line and "s3cret" not in line
    assert doc["admin_token"] == "[redacted]" and doc["peer"] == "did:web:x" and doc["node"] == "node-a"


def test_nested_secrets_are_redacted() -> None:
    assert redact({"a": {"password": "p", "ok": 1}}) == {"a": {"password": "[redacted]", "ok": 1}}
