"""What the HTTP integrations share: the Authorization header and how a refusal is reported."""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from .contract import CurrentToken, is_traceparent

#: How long a refused request waits for the replacement token by default, in seconds. The worker
#: holds forced refreshes to a minimum interval (10 s by default), so a token refused again soon
#: after a refresh is not replaced within this time and the caller gets the 401.
DEFAULT_REFRESH_TIMEOUT = 5.0

_DEFAULT_PORTS = {"http": 80, "https": 443}


def authorization(token: CurrentToken) -> str:
    """``Authorization`` for a token (RFC 6750 §2.1). Token types are case-insensitive (RFC 6749
    §5.1) but some servers compare the scheme byte for byte, so ``bearer`` is sent as ``Bearer``."""
    scheme = "Bearer" if token.token_type.lower() == "bearer" else token.token_type
    return f"{scheme} {token.access_token}"


def refusal_reason(url: str) -> str:
    """The refresh request's reason, naming the API's host as the Node and Go libraries do (the
    WHATWG URL ``host``: lower case, without a default port)."""
    parts = urlsplit(url)
    host = parts.hostname or "an API"
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and _DEFAULT_PORTS.get(parts.scheme) != parts.port:
        host = f"{host}:{parts.port}"
    return f"401 invalid_token from {host}"


def sent_traceparent(header: Optional[str]) -> Optional[str]:
    """The trace context of a refused request, for its refresh request: the ``traceparent`` header
    it was sent with, when that is one (an application that propagates trace context by hand sets
    it, as do OpenTelemetry's HTTP instrumentations); ``None`` otherwise, and the active
    OpenTelemetry span's is used, if any."""
    return header if is_traceparent(header) else None
