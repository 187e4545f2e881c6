"""Logging, configured once: structlog, pretty on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "quiet_access_log"]


def configure_logging(json: bool | None = None, *, level: int = logging.INFO) -> None:
    """Configure structlog and route the standard library's logs (FastStream's) through it.

    `json=None` chooses by the output: pretty when stderr is a terminal, JSON lines
    otherwise (containers, log shippers). Bind the correlation id with
    `structlog.contextvars.bound_contextvars(correlation_id=...)`: it joins every line.
    """
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if as_json else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replace, not add: configuring twice must not print every line twice.
    root.handlers = [handler]
    root.setLevel(level)


def quiet_access_log(broker: Any) -> None:
    """Log a FastStream broker's per-message lines (Received, Processed) at DEBUG.

    FastStream logs two INFO lines per message or batch on its own stdout handler; at
    thousands of events a second that is noise and CPU. Errors stay at ERROR.
    """
    broker.config.logger.log_level = logging.DEBUG
