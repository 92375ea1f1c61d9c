"""Service logging: JSON lines on stderr, one object per record, ``extra`` fields included.

Used by ``triage serve`` and by each worker process (spawned processes do not inherit the
parent's logging set-up). Fields come only from what the code logs — hashed study UIDs, job ids,
AE titles — never patient names or IDs (STYLE H22); a test greps a service log for them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields.

    Fields come only from what the code logs (hashed study UIDs, job ids, AE titles); no code path
    passes patient names or IDs (STYLE H22), and a test greps a service log for them.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(
            {
                k: v
                for k, v in record.__dict__.items()
                if k not in _STD_ATTRS and not k.startswith("color_")
            }
        )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_service_logging(fmt: str) -> None:
    """Log INFO and above to stderr, as JSON lines (default) or text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("pynetdicom", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
