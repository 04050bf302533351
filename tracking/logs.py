"""Logging hygiene: no credentials in the logs.

Share links and browser WebSockets carry a JWT in `?token=`, and uvicorn
logs every WebSocket's path with its query string at INFO. A filter on the
handlers rewrites such records before they are written anywhere.
"""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"((?:[?&]token=)|(?:Bearer\s+))[^\s&\"']+", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with token query parameters and bearer credentials blanked out."""
    return _SECRET.sub(lambda m: m.group(1) + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message when it contains a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_redaction() -> None:
    """Adds the filter to every handler of the root and uvicorn loggers."""
    secret_filter = RedactSecrets()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(secret_filter)
