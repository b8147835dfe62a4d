"""Logging setup: text or one-JSON-object-per-line output, each line tagged with its request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Final, TextIO

REQUEST_ID_KEY: Final = "x-request-id"
NO_REQUEST: Final = "-"

# Set by the gRPC guard for the duration of a call; asyncio tasks and asyncio.to_thread copy
# it, so everything a call logs carries its id.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=NO_REQUEST)

# Visible ASCII only: a caller's id goes verbatim into log lines and trailing metadata, so it
# must not carry spaces, control characters or line breaks, and its length is bounded.
_ACCEPTABLE_ID = re.compile(r"[\x21-\x7e]{1,128}")

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS: Final = ("text", "json")


def new_request_id(metadata_value: str | None) -> str:
    """The caller's x-request-id when it is 1..128 visible ASCII characters, else a fresh one."""
    if metadata_value is not None and _ACCEPTABLE_ID.fullmatch(metadata_value):
        return metadata_value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current call's request id (NO_REQUEST outside calls)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Handler filters run synchronously in the logging call's context, so the contextvar
        # is the caller's. An explicit extra={"request_id": ...} is left alone.
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


def _request_id_of(record: logging.LogRecord) -> str:
    value = getattr(record, "request_id", NO_REQUEST)
    return value if isinstance(value, str) else str(value)


def _message_of(record: logging.LogRecord) -> str:
    # getMessage() raises on a mismatched format string or a failing __str__; a log line
    # must still come out, so fall back to the raw parts.
    try:
        return record.getMessage()
    except Exception:
        try:
            return f"{record.msg!r} % {record.args!r}"
        except Exception:
            return "<unformattable log message>"


class TextFormatter(logging.Formatter):
    """The classic text format, plus " [req=ID]" after the message when inside a call."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # formatMessage, not format: the suffix belongs to the message line, before any
        # traceback that format() appends.
        line = super().formatMessage(record)
        rid = _request_id_of(record)
        return line if rid == NO_REQUEST else f"{line} [req={rid}]"

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception:
            # A mismatched format string or a failing __str__: format a copy holding the raw
            # parts, leaving the record other handlers see untouched.
            safe = logging.makeLogRecord(record.__dict__)
            safe.msg, safe.args = _message_of(record), None
            return super().format(safe)


def _utc_iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message_of(record),
            "request_id": _request_id_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes newlines (and, with ensure_ascii, U+2028/2029), so a traceback
        # or a hostile message cannot split the line.
        return json.dumps(entry, ensure_ascii=True)


class _ServiceHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def make_handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with the request-id filter and the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = _ServiceHandler(stream)  # None: stderr
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure_logging(level: str, fmt: str) -> None:
    """Send the root logger's records to stderr as fmt ("text" or "json") at level."""
    handler = make_handler(fmt)
    root = logging.getLogger()
    # Replace only our own earlier handler: other handlers (pytest's capture, say) stay.
    for old in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
