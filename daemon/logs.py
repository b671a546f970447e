"""The one logging configuration, made by the entry point.

JSON lines when stderr is not a terminal (for a log store), readable lines when
it is. structlog's lines and the standard library's (aiohttp, aiomysql,
asyncio) go through the same processors, so both are rendered alike and both
have the secrets known from the settings masked, wherever in the line they sit:
a nested value, an exception's text or its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

MASK = "***"

# The handler this module put on the root logger, replaced on reconfiguration.
_handler: logging.Handler | None = None


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret replaced, longest first.

    Longest first, so a secret that holds a shorter one is masked whole. Even a
    one-character secret is masked: a line made hard to read beats a leak.
    """
    for secret in sorted({secret for secret in secrets if secret}, key=len)[::-1]:
        text = text.replace(secret, MASK)
    return text


def mask_value(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with secrets masked in its strings, however deeply nested.

    Values that are neither text nor containers (an exception, a path) are
    rendered by `repr`, as the renderers would; such a value is replaced by its
    masked `repr` only when that holds a secret.
    """
    if isinstance(value, str):
        return mask_text(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {
            mask_value(key, secrets): mask_value(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(item, secrets) for item in value]
    text = repr(value)
    masked = mask_text(text, secrets)
    return value if masked == text else masked


def configure_logging(secrets: Iterable[str] = (), level: str = "INFO") -> None:
    """Configure logging once for the process; call again to add secrets."""
    global _handler
    known = tuple(secret for secret in secrets if secret)
    threshold = logging.getLevelNamesMapping()[level.upper()]

    def mask_secrets(
        _logger: object, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            event[key] = mask_value(value, known)
        return event

    on_terminal = sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if on_terminal
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    # Added to structlog's lines when made, to the standard library's when
    # formatted; the rest runs on both in the formatter.
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        # A library's line names the library it came from.
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before masking, so secrets in them go too.
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(threshold)
    _handler = handler

    structlog.configure(
        processors=[
            *shared,
            # Rendered while the exception is being handled, not later.
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
