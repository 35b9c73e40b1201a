"""The ``httpx`` integration, for ``httpx.Client`` and ``httpx.AsyncClient``: every request carries
the client's current token, and a request refused because of the token itself is retried once
with its replacement (RFC 6750 §3, §3.1)."""

from __future__ import annotations

from typing import AsyncGenerator, Generator, NoReturn

import httpx

from ._http import DEFAULT_REFRESH_TIMEOUT, authorization, refusal_reason, sent_traceparent
from .async_reader import AsyncTokenReader
from .reader import TokenReader
from .www_authenticate import calls_for_new_token


class HttpxBearerAuth(httpx.Auth):
    """``httpx.Client`` authentication with the current token of ``client_id``::

        client = httpx.Client(auth=HttpxBearerAuth(reader, "orders-service"))

    The same rules as :class:`token_lifecycle.RequestsBearerAuth`: ONE refresh and ONE retry on a
    401 ``invalid_token``, nothing on any other answer, one shared refresh for concurrent refusals
    of the same token, and the refresh request carries the refused request's ``traceparent`` header
    when it has one, else the active OpenTelemetry span's. The request body is read first, so that
    it can be sent again. For ``httpx.AsyncClient`` use :class:`AsyncHttpxBearerAuth`.
    """

    def __init__(self, reader: TokenReader, client_id: str, *, refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT) -> None:
        self.reader = reader
        self.client_id = client_id
        self.refresh_timeout = refresh_timeout

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        sent = self.reader.get_token(self.client_id)
        request.headers["Authorization"] = authorization(sent)
        response = yield request
        if not calls_for_new_token(response.status_code, response.headers.get_list("WWW-Authenticate")):
            return
        replacement = self.reader.replace_rejected_token(
            self.client_id,
            sent,
            reason=refusal_reason(str(request.url)),
            timeout=self.refresh_timeout,
            traceparent=sent_traceparent(request.headers.get("traceparent")),
        )
        if replacement is not None:
            request.headers["Authorization"] = authorization(replacement)
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        _wrong_client("HttpxBearerAuth", "httpx.AsyncClient", "AsyncHttpxBearerAuth with an AsyncTokenReader")
        yield request  # pragma: no cover (makes this an async generator, as httpx expects)


class AsyncHttpxBearerAuth(httpx.Auth):
    """``httpx.AsyncClient`` authentication with the current token of ``client_id``, from an
    :class:`~token_lifecycle.AsyncTokenReader`; otherwise exactly :class:`HttpxBearerAuth`."""

    def __init__(self, reader: AsyncTokenReader, client_id: str, *, refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT) -> None:
        self.reader = reader
        self.client_id = client_id
        self.refresh_timeout = refresh_timeout

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        sent = await self.reader.get_token(self.client_id)
        request.headers["Authorization"] = authorization(sent)
        response = yield request
        if not calls_for_new_token(response.status_code, response.headers.get_list("WWW-Authenticate")):
            return
        replacement = await self.reader.replace_rejected_token(
            self.client_id,
            sent,
            reason=refusal_reason(str(request.url)),
            timeout=self.refresh_timeout,
            traceparent=sent_traceparent(request.headers.get("traceparent")),
        )
        if replacement is not None:
            request.headers["Authorization"] = authorization(replacement)
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        _wrong_client("AsyncHttpxBearerAuth", "httpx.Client", "HttpxBearerAuth with a TokenReader")
        yield request  # pragma: no cover


def _wrong_client(auth: str, client: str, instead: str) -> NoReturn:
    raise TypeError(f"{auth} cannot authenticate requests of {client}: use {instead}")
