"""KeepinCRM: the API client, its errors, and a local sandbox that stands in for it."""

from projections.keepincrm.client import KeepinCRMClient
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
from projections.keepincrm.sandbox import create_sandbox_app, serve_sandbox

__all__ = [
    "KeepinCRMClient",
    "KeepinCRMError",
    "NotFound",
    "PaymentRequired",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "UnexpectedAnswer",
    "UnverifiedCertificate",
    "ValidationFailed",
    "create_sandbox_app",
    "serve_sandbox",
]
