"""Errors of the KeepinCRM client, one class per cause.

    KeepinCRMError                  status, retryable, attempts
    ├── Unauthorized                401/403: the API key is wrong or revoked
    ├── PaymentRequired             402: the account is on the free plan
    ├── NotFound                    404: no such deal, client or material
    ├── ValidationFailed            422 (or 400 with detail): the CRM refused the body
    ├── RateLimited                 429: slow down, maybe for `retry_after` seconds
    ├── ServerError                 5xx, or a bare 400 without detail
    ├── UnexpectedAnswer            a status or body this client does not know
    └── TransportError              no answer: timeout, refused, reset
        └── UnverifiedCertificate   TLS certificate failed verification; nothing sent

`retryable` says whether sending the same request again may succeed. Whether it
is *safe* to send it again is a separate question for creates: a
`TransportError` with `request_sent` (and any 5xx) may hide a deal the CRM did
store, so the caller reconciles by searching before it creates again.

The client already retries where that is safe (see `transport`), so a retryable
error that reaches the caller has used up its `attempts`, or is a 429 asking
for a longer pause than the client waits in place, or comes from a POST or
PATCH whose outcome is uncertain and which the client would not send twice, or
is a certificate that failed verification (the same each time, not retried).

aiohttp exceptions never leave the client: they are translated here, at the
edge, and kept as `__cause__`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class KeepinCRMError(Exception):
    """Base of every error the KeepinCRM client raises."""

    retryable: bool = False
    # How many times the client sent the request before raising this.
    attempts: int = 1

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        # 0 when the CRM never answered.
        self.status = status


class Unauthorized(KeepinCRMError):
    """The CRM refused the API key (401), or the key may not do this (403)."""


class PaymentRequired(KeepinCRMError):
    """The account is on the free plan, which answers 402 to every call."""


class NotFound(KeepinCRMError):
    """The CRM knows no record with this id (its 404 body is not JSON)."""


class ValidationFailed(KeepinCRMError):
    """The CRM refused the request body and said why.

    `errors` is kept as the CRM sent it: a mapping of field to messages, or a
    flat list of messages.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        errors: Mapping[str, Any] | Sequence[Any] | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.message = message
        self.errors: Mapping[str, Any] | Sequence[Any] = (
            errors if errors is not None else []
        )

    def __str__(self) -> str:
        details = _describe_errors(self.errors)
        if not details:
            return f"{self.status} {self.message}"
        return f"{self.status} {'; '.join(details)}"


class RateLimited(KeepinCRMError):
    """The CRM answered 429; `retry_after` is its Retry-After in seconds, if any."""

    retryable = True

    def __init__(
        self, message: str, *, status: int = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(KeepinCRMError):
    """The CRM failed (5xx) or refused without saying why (a bare 400).

    A 5xx may pass; a bare 400 is the CRM refusing what we sent, and the same
    body gets the same answer, so it is not retryable.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, status=status)
        self.retryable = status >= 500


class UnexpectedAnswer(KeepinCRMError):
    """A status this client does not expect, or a body it cannot read."""


class TransportError(KeepinCRMError):
    """No answer came back: timeout, connection refused, reset or dropped.

    `request_sent` is False only when the request certainly never left (the
    connection could not be opened); otherwise the CRM may have received and
    acted on it, and the outcome is uncertain.
    """

    retryable = True

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message, status=0)
        self.request_sent = request_sent


def _describe_errors(errors: Mapping[str, Any] | Sequence[Any]) -> list[str]:
    """Turn the CRM's `errors` into "field: message" phrases."""
    if isinstance(errors, Mapping):
        phrases: list[str] = []
        for field, messages in errors.items():
            if isinstance(messages, str) or not isinstance(messages, Sequence):
                messages = [messages]
            phrases.extend(f"{field}: {message}" for message in messages)
        return phrases
    if isinstance(errors, str):
        return [errors]
    return [str(error) for error in errors]


class UnverifiedCertificate(TransportError):
    """The CRM's TLS certificate failed verification, so the token was not sent.

    Retryable for the caller (the CRM's certificate or the trust store may be
    fixed), but never retried in place: it would fail the same way at once.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, request_sent=False)
