"""What the tests share: the stack's variables and control API, the contract vectors, and one
facade over the three ways to use the library (requests, httpx.Client, httpx.AsyncClient) so that
every scenario runs through each of them.

The tests need the stack of test/support/consumer-stack.ts (a real redis-server, the worker,
Temporal and the IAM emulator); `make test-consumers` runs them through
test/support/with-consumer-stack.ts, which sets the TOKEN_STACK_* variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterator, Optional, TypeVar

import httpx
import pytest
import redis
import redis.asyncio
import requests

from token_lifecycle import AsyncHttpxBearerAuth, AsyncTokenReader, CurrentToken, HttpxBearerAuth, RequestsBearerAuth, TokenReader
from token_lifecycle.contract import unix_ms

VECTORS: dict[str, Any] = json.loads((Path(__file__).resolve().parents[3] / "test" / "contract" / "vectors.json").read_text())

#: The ways to call an API with the library; every HTTP scenario runs through each.
HTTP_KINDS = ("requests", "httpx", "httpx-async")
#: The readers; every reader scenario runs through each.
READER_KINDS = ("sync", "async")

T = TypeVar("T")


def stack_variable(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run these tests against the stack, from the repository root: "
            "npx tsx test/support/with-consumer-stack.ts --cwd consumers/python -- /usr/bin/python3 -m pytest (or make test-consumers)",
            pytrace=False,
        )
    return value


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack_variable("TOKEN_STACK_REDIS_URL"))
    yield client
    client.close()


class Control:
    """The stack's control API (test/support/consumer-stack-control.ts)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Optional[dict[str, Any]] = None, expect: int = 200) -> Any:
        response = requests.request(method, self.url + path, json=body, timeout=60)
        assert response.status_code == expect, f"control {method} {path}: {response.status_code} {response.text}"
        return response.json()

    def register(self, min_forced_refresh_interval_ms: int) -> str:
        """Registers a fresh client with the stack's worker; returns its ID."""
        return self.call("POST", "/clients", {"minForcedRefreshIntervalMs": min_forced_refresh_interval_ms}, expect=201)["clientId"]

    def revoke(self, token: CurrentToken) -> None:
        assert self.call("POST", "/revoke", {"accessToken": token.access_token})["revoked"]

    def store_token(self, client_id: str, generation: int, lifetime_ms: int) -> dict[str, Any]:
        """Stores a token through the worker's write script (with its expiry and announcement)."""
        return self.call("POST", "/tokens", {"clientId": client_id, "generation": generation, "lifetimeMs": lifetime_ms}, expect=201)

    def resource_requests(self, client_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/clients/{client_id}/resource-requests")

    def outcomes(self, client_id: str) -> list[str]:
        return [request["outcome"] for request in self.resource_requests(client_id)]

    def issued(self, client_id: str) -> int:
        """How many tokens the emulator issued to the client."""
        return sum(request["outcome"] == "issued" for request in self.call("GET", f"/clients/{client_id}/token-requests"))

    def force_refresh_signals(self, client_id: str) -> list[dict[str, Any]]:
        """The forceRefresh signals in the client's workflow history: what reached the workflow."""
        return self.call("GET", f"/clients/{client_id}/force-refresh-signals")

    def node_token(self, client_id: str) -> dict[str, Any]:
        """The client's token as the Node library reads it."""
        return self.call("GET", f"/clients/{client_id}/node-token")


@pytest.fixture(scope="session")
def control() -> Control:
    return Control(stack_variable("TOKEN_STACK_CONTROL_URL"))


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    www_authenticate: str


class Consumer:
    """One reader and the HTTP client of ``kind`` on it, behind the same blocking calls whatever
    the kind: the asyncio kind runs its reader and client on an event loop of its own, so that
    concurrent calls are concurrent on that loop."""

    def __init__(self, kind: str, *, prefix: str, cache: bool = True, now: Callable[[], int] = unix_ms, url_variable: str = "TOKEN_STACK_REDIS_URL") -> None:
        self.kind = kind
        self.prefix = prefix
        url = stack_variable(url_variable)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        if kind in ("async", "httpx-async"):
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()

            async def create() -> AsyncTokenReader:
                self._async_redis = redis.asyncio.Redis.from_url(url)
                return AsyncTokenReader(self._async_redis, prefix=prefix, cache=cache, now=now)

            self.async_reader = self._run(create())
        else:
            self._redis = redis.Redis.from_url(url)
            self.reader = TokenReader(self._redis, prefix=prefix, cache=cache, now=now)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def get_token(self, client_id: str) -> CurrentToken:
        return self._run(self.async_reader.get_token(client_id)) if self._loop else self.reader.get_token(client_id)

    def wait_for_token(self, client_id: str, newer_than: int, timeout: float) -> CurrentToken:
        if self._loop:
            return self._run(self.async_reader.wait_for_token(client_id, newer_than=newer_than, timeout=timeout))
        return self.reader.wait_for_token(client_id, newer_than=newer_than, timeout=timeout)

    def request_refresh(self, client_id: str, **request: Optional[str]) -> str:
        return self._run(self.async_reader.request_refresh(client_id, **request)) if self._loop else self.reader.request_refresh(client_id, **request)

    def get(self, url: str, client_id: str, refresh_timeout: float = 30.0, headers: Optional[dict[str, str]] = None) -> Answer:
        """GET ``url`` with the token of ``client_id``, through this kind's HTTP client."""
        return self.get_many(url, client_id, 1, refresh_timeout, headers)[0]

    def get_many(self, url: str, client_id: str, count: int, refresh_timeout: float = 30.0, headers: Optional[dict[str, str]] = None) -> list[Answer]:
        """``count`` concurrent GETs of ``url``, with ``headers`` besides Authorization."""
        if self.kind == "httpx-async":

            async def get_all() -> list[Answer]:
                async with httpx.AsyncClient(auth=AsyncHttpxBearerAuth(self.async_reader, client_id, refresh_timeout=refresh_timeout), timeout=60) as client:
                    responses = await asyncio.gather(*(client.get(url, headers=headers) for _ in range(count)))
                    return [_answer(response.status_code, response.text, response.headers) for response in responses]

            return self._run(get_all())
        if self.kind == "httpx":
            with httpx.Client(auth=HttpxBearerAuth(self.reader, client_id, refresh_timeout=refresh_timeout), timeout=60, limits=httpx.Limits(max_connections=count)) as client:
                with ThreadPoolExecutor(count) as pool:
                    return list(pool.map(lambda _: _answer_of(client.get(url, headers=headers)), range(count)))
        auth = RequestsBearerAuth(self.reader, client_id, refresh_timeout=refresh_timeout)
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: _answer_of(requests.get(url, auth=auth, headers=headers, timeout=60)), range(count)))

    def close(self) -> None:
        if self._loop:

            async def close() -> None:
                await self.async_reader.aclose()
                await self._async_redis.close()

            self._run(close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        else:
            self.reader.close()
            self._redis.close()


def _answer_of(response: requests.Response | httpx.Response) -> Answer:
    return _answer(response.status_code, response.text, response.headers)


def _answer(status: int, text: str, headers: Any) -> Answer:
    return Answer(status, text, headers.get("WWW-Authenticate", ""))


@pytest.fixture
def consumers() -> Iterator[Callable[..., Consumer]]:
    """Makes consumers (``Consumer`` arguments), closed when the test ends."""
    made: list[Consumer] = []

    def make(kind: str, **options: Any) -> Consumer:
        consumer = Consumer(kind, **options)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


def as_json(token: CurrentToken) -> dict[str, Any]:
    """A token as the Node library and the vectors write it."""
    return {
        "accessToken": token.access_token,
        "tokenType": token.token_type,
        "expiresAt": token.expires_at,
        "obtainedAt": token.obtained_at,
        "scope": token.scope,
        "generation": token.generation,
        "fingerprint": token.fingerprint,
        "clientId": token.client_id,
    }


def token_fields(client_id: str, generation: int) -> dict[str, str]:
    """A complete hash as the worker writes it, valid for a minute by the real clock."""
    now = unix_ms()
    return {
        "access_token": f"token-{client_id}-{generation}",
        "token_type": "Bearer",
        "expires_at": str(now + 60_000),
        "obtained_at": str(now),
        "scope": "",
        "generation": str(generation),
        "fingerprint": f"{generation:016x}",
        "client_id": client_id,
    }


def store_hash(client: redis.Redis, key: str, fields: dict[str, str]) -> None:
    client.delete(key)
    client.hset(key, mapping=fields)


def stream_entries(client: redis.Redis, stream: str, start: str = "-", end: str = "+") -> list[list[str]]:
    """XRANGE's answer as each entry's fields, in order."""
    return [[part.decode() for pair in fields.items() for part in pair] for _id, fields in client.xrange(stream, start, end)]


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
