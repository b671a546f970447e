"""How a failed call reads: aiohttp failures and non-2xx answers as errors.

Each becomes the `errors.KeepinCRMError` subclass of its cause, saying whether
the CRM may have the request; the aiohttp exception is kept as its cause by the
caller that raises it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import msgspec

from projections.keepincrm.errors import (
    KeepinCRMError,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    UnexpectedAnswer,
    UnverifiedCertificate,
    ValidationFailed,
)


def transport_error(
    where: str, exc: Exception, timeout: float | None
) -> TransportError:
    """Translate an aiohttp failure, saying whether the CRM may have the request."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return UnverifiedCertificate(
            f"{where}: the CRM's TLS certificate cannot be verified, so the token "
            f"was not sent: {exc.certificate_error}"
        )
    # The connection never opened, so the CRM cannot have seen the request.
    if isinstance(
        exc,
        aiohttp.ClientConnectorError
        | aiohttp.ConnectionTimeoutError
        | aiohttp.InvalidURL,
    ):
        return TransportError(f"{where}: could not connect: {exc}", request_sent=False)
    if isinstance(exc, TimeoutError):
        return TransportError(
            f"{where}: no answer within {timeout}s", request_sent=True
        )
    return TransportError(
        f"{where}: connection lost: {type(exc).__name__}: {exc}", request_sent=True
    )


def answer_error(
    where: str, status: int, retry_after: str | None, payload: bytes
) -> KeepinCRMError:
    """The error for an answer whose status is not 2xx."""
    if status in (401, 403):
        return Unauthorized(
            f"{where}: {status} the CRM refused the API key", status=status
        )
    if status == 402:
        return PaymentRequired(
            f"{where}: 402 the account is on KeepinCRM's free plan, which has no API",
            status=status,
        )
    if status == 404:
        return NotFound(f"{where}: 404 not found", status=status)
    if status == 429:
        return RateLimited(
            f"{where}: 429 too many requests",
            status=status,
            retry_after=_seconds_to_wait(retry_after),
        )

    detail = _refusal_detail(payload)
    if status in (400, 422) and detail is not None:
        message, errors = detail
        return ValidationFailed(message, status=status, errors=errors)
    if status == 422:
        return ValidationFailed(f"{where}: refused without detail", status=status)
    if status == 400 or status >= 500:
        return ServerError(
            f"{where}: {status} {_excerpt(payload)}".rstrip(), status=status
        )
    return UnexpectedAnswer(
        f"{where}: unexpected {status} {_excerpt(payload)}", status=status
    )


def _refusal_detail(payload: bytes) -> tuple[str, Any] | None:
    """The message and `errors` of a refusal, or None when the body says nothing."""
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    if isinstance(body, list) and body:
        return ("refused", body)
    if not isinstance(body, dict):
        return None

    errors = body.get("errors")
    message = body.get("message") or body.get("error")
    if not errors and not message:
        return None
    return (
        str(message or "refused"),
        errors if isinstance(errors, dict | list) else None,
    )


def _seconds_to_wait(retry_after: str | None) -> float | None:
    """Read Retry-After, given either as seconds or as an HTTP date."""
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _excerpt(payload: bytes) -> str:
    return payload[:200].decode("utf-8", errors="replace").strip()
