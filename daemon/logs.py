"""The one structlog configuration, made by the entry point.

JSON lines when stderr is not a terminal (for a log store), readable lines when
it is. Secrets known from the settings are masked in every line, whatever code
put them there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_MASK = "***"


def configure_logging(secrets: Iterable[str] = (), level: str = "INFO") -> None:
    """Configure structlog once for the process; call again to add secrets."""
    known = sorted({secret for secret in secrets if len(secret) >= 4}, key=len)

    def mask_secrets(
        _logger: object, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                for secret in reversed(known):
                    value = value.replace(secret, _MASK)
                event[key] = value
        return event

    on_terminal = sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if on_terminal
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
