"""The ``requests`` integration: every request carries the client's current token, and a request
refused because of the token itself is retried once with its replacement (RFC 6750 §3, §3.1)."""

from __future__ import annotations

from typing import Any

import requests
from requests.cookies import extract_cookies_to_jar

from ._http import DEFAULT_REFRESH_TIMEOUT, authorization, refusal_reason, sent_traceparent
from .contract import CurrentToken
from .reader import TokenReader
from .www_authenticate import calls_for_new_token


class RequestsBearerAuth(requests.auth.AuthBase):
    """``requests`` authentication with the current token of ``client_id``::

        session.auth = RequestsBearerAuth(reader, "orders-service")

    - every request gets ``Authorization: Bearer <token>`` from ``reader``;
    - on a 401 whose Bearer challenge says ``error="invalid_token"`` it asks for ONE refresh naming
      the refused token's fingerprint (unless it was already replaced), waits for a newer
      generation and retries ONCE; a second refusal goes to the caller, so it never loops.
      Concurrent requests refused with the same token share one refresh request and one wait; when
      no newer token arrives within ``refresh_timeout`` seconds the caller gets the 401;
    - other 401s, 403 ``insufficient_scope`` and every other answer go to the caller untouched.

    The refresh request carries the refused request's ``traceparent`` header when it has one, else
    the active OpenTelemetry span's (see :meth:`TokenReader.request_refresh`). A request whose body
    is a stream or a file is not retried (it cannot be sent again). Errors of the reader
    (``TokenUnavailableError``, ``RedisUnavailableError``, …) reach the caller as they are.
    """

    def __init__(self, reader: TokenReader, client_id: str, *, refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT) -> None:
        self.reader = reader
        self.client_id = client_id
        self.refresh_timeout = refresh_timeout

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        sent = self.reader.get_token(self.client_id)
        request.headers["Authorization"] = authorization(sent)

        def retry_once(response: requests.Response, **send_options: Any) -> requests.Response:
            return self._retry_once(response, sent, retry_once, send_options)

        request.register_hook("response", retry_once)
        return request

    def _retry_once(self, response: requests.Response, sent: CurrentToken, hook: Any, send_options: dict[str, Any]) -> requests.Response:
        refused = response.request
        if not calls_for_new_token(response.status_code, response.headers.get("WWW-Authenticate")) or not _can_send_again(refused):
            return response
        replacement = self.reader.replace_rejected_token(
            self.client_id,
            sent,
            reason=refusal_reason(response.url),
            timeout=self.refresh_timeout,
            traceparent=sent_traceparent(refused.headers.get("traceparent")),
        )
        if replacement is None:
            return response

        # Release the connection of the refused answer, as requests' own digest auth does.
        _ = response.content
        response.close()
        retry = refused.copy()
        # A copy shares the hook lists; this hook must not run on the retry (that is what makes it
        # the only one), and the list being dispatched must not change under requests' feet.
        retry.hooks = {event: [other for other in hooks if other is not hook] for event, hooks in refused.hooks.items()}
        extract_cookies_to_jar(retry._cookies, refused, response.raw)  # type: ignore[attr-defined]
        retry.prepare_cookies(retry._cookies)  # type: ignore[attr-defined]
        retry.headers["Authorization"] = authorization(replacement)
        answer = response.connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        return answer


def _can_send_again(request: requests.PreparedRequest) -> bool:
    return request.body is None or isinstance(request.body, (bytes, str))
