"""Consumer library of token-lifecycle-worker for Python services: read the OAuth 2.0 token the
worker keeps fresh in Redis (never an expired one), and recover once from a refused one, following
the Redis contract of docs/redis-contract.md exactly as the Node and Go libraries do.

- :class:`TokenReader` (threads) and :class:`AsyncTokenReader` (asyncio): ``get_token``, an optional
  cache dropped on ``<prefix>token-updated``, ``request_refresh``, ``wait_for_token``;
- :class:`RequestsBearerAuth` (requests), :class:`HttpxBearerAuth` (httpx.Client) and
  :class:`AsyncHttpxBearerAuth` (httpx.AsyncClient): ``Authorization`` and the one-retry rule for
  a 401 ``invalid_token`` (RFC 6750 §3.1);
- the WWW-Authenticate parser (RFC 9110 §11.6.1), for other HTTP clients.

Every error is a :class:`TokenLifecycleError` with a stable ``code``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .async_reader import AsyncTokenReader
from .contract import (
    DEFAULT_PREFIX,
    DEFAULT_REFRESH_REQUESTS_MAX_LEN,
    CurrentToken,
    refresh_requests_stream,
    token_key,
    token_updated_channel,
)
from .errors import (
    MalformedStoredTokenError,
    RedisUnavailableError,
    RefreshRequestError,
    TokenLifecycleError,
    TokenReaderClosedError,
    TokenUnavailableError,
    TokenWaitTimeoutError,
    WwwAuthenticateSyntaxError,
)
from .reader import TokenReader
from .www_authenticate import (
    AuthChallenge,
    BearerChallenge,
    calls_for_new_token,
    find_bearer_challenge,
    is_invalid_token_challenge,
    parse_www_authenticate,
)

if TYPE_CHECKING:
    from .httpx_auth import AsyncHttpxBearerAuth, HttpxBearerAuth
    from .requests_auth import RequestsBearerAuth

# The HTTP integrations are imported on first use, so a service needs only the HTTP client it uses
# (the extras "requests" and "httpx").
_LAZY = {"RequestsBearerAuth": ".requests_auth", "HttpxBearerAuth": ".httpx_auth", "AsyncHttpxBearerAuth": ".httpx_auth"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_REFRESH_REQUESTS_MAX_LEN",
    "AsyncHttpxBearerAuth",
    "AsyncTokenReader",
    "AuthChallenge",
    "BearerChallenge",
    "CurrentToken",
    "HttpxBearerAuth",
    "MalformedStoredTokenError",
    "RedisUnavailableError",
    "RefreshRequestError",
    "RequestsBearerAuth",
    "TokenLifecycleError",
    "TokenReader",
    "TokenReaderClosedError",
    "TokenUnavailableError",
    "TokenWaitTimeoutError",
    "WwwAuthenticateSyntaxError",
    "calls_for_new_token",
    "find_bearer_challenge",
    "is_invalid_token_challenge",
    "parse_www_authenticate",
    "refresh_requests_stream",
    "token_key",
    "token_updated_channel",
]
