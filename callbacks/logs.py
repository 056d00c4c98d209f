"""Logging setup: structlog, JSON lines on stdout by default, a readable console in development.

Log lines carry ids (route, key id, delivery id), outcomes and reasons. Keys, signatures, tokens
and callback bodies are never passed to a logger; ``redact_secrets`` is the belt to those braces,
masking any field whose name says it holds a secret should one ever be added by mistake.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import orjson
import structlog

_SECRET_FIELDS = frozenset(
    {"key", "secret", "signature", "token", "auth_key", "body", "raw", "stream_key", "password"}
)


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in _SECRET_FIELDS.intersection(event_dict):
        event_dict[name] = "***"
    return event_dict


def _orjson_text(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure_logging(
    fmt: Literal["json", "console"] = "json", *, level: int = logging.INFO
) -> None:
    """Send structlog (and stdlib logging, e.g. uvicorn's) to stdout in one format.

    JSON lines go out as orjson bytes through structlog's bytes logger, the cheap path for a line
    per request; stdlib records take the same processors and a text renderer.
    """
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    logger_factory: Any
    if fmt == "console":
        renderer: Any = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        text_renderer: Any = renderer
        logger_factory = structlog.PrintLoggerFactory(sys.stdout)
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        text_renderer = structlog.processors.JSONRenderer(serializer=_orjson_text)
        logger_factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, text_renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
