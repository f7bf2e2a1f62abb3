"""structlog set-up: one key-value event per state change, on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(output: str = "console", level: int = logging.INFO) -> None:
    """Render events as aligned text (``console``) or one JSON object a line."""
    renderer = (
        structlog.processors.JSONRenderer()
        if output == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
