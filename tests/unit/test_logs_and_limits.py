"""Log redaction and the per-IP connection counter: pure, no server."""

from __future__ import annotations

import logging

from tracking.core.limits import ConnectionCounter
from tracking.logs import REDACTED, RedactSecrets, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyIn0.c2lnbmF0dXJl"


def test_redact_blanks_query_tokens_and_bearer_credentials() -> None:
    """Share-link tokens and Authorization values never reach a log line."""
    line = f'127.0.0.1 - "WebSocket /v1/trips/t-1/ws?since=4&token={JWT}" [accepted]'
    assert JWT not in redact(line) and f"token={REDACTED}" in redact(line)
    assert redact(f"/track/t-1?token={JWT}&x=1").endswith(f"token={REDACTED}&x=1")
    assert redact(f"Authorization: Bearer {JWT}") == f"Authorization: Bearer {REDACTED}"
    assert redact("GET /v1/trips/t-1 200") == "GET /v1/trips/t-1 200"


def test_the_filter_rewrites_formatted_records() -> None:
    """Arguments are merged and redacted, so %s-formatted tokens are caught too."""
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, "%s %s", ("x", JWT), None
    )
    record.msg = "path /ws?token=%s"
    record.args = (JWT,)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == f"path /ws?token={REDACTED}"


def test_connection_counter_caps_each_address_and_frees_slots() -> None:
    """The limit holds per key; a release frees exactly one slot; unknown keys are harmless."""
    counter = ConnectionCounter(limit=2)
    assert counter.acquire("a") and counter.acquire("a")
    assert not counter.acquire("a")
    assert counter.acquire("b")
    counter.release("a")
    assert counter.count("a") == 1 and counter.acquire("a")
    counter.release("zzz")
    for _ in range(3):
        counter.release("a")
    assert counter.count("a") == 0
