"""The asyncio twin of :mod:`token_lifecycle.reader` (for httpx.AsyncClient and other asyncio code),
on ``redis.asyncio``: the same contract, cache rules and errors, nothing that blocks the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Callable, Union

import redis
import redis.asyncio

from ._cache import TokenCache, Waiter
from ._trace_context import current_traceparent
from .contract import (
    DEFAULT_PREFIX,
    DEFAULT_REFRESH_REQUESTS_MAX_LEN,
    STORED_FIELDS,
    CurrentToken,
    parse_announcement,
    parse_stored_token,
    refresh_request_fields,
    refresh_requests_stream,
    token_key,
    token_updated_channel,
    unix_ms,
)
from .errors import (
    MalformedStoredTokenError,
    RedisUnavailableError,
    RefreshRequestError,
    TokenReaderClosedError,
    TokenUnavailableError,
    TokenWaitTimeoutError,
)
from .reader import HEALTH_CHECK_SECONDS, NO_TOKEN_TO_PROVE_WITH, PROOF_READ_FAILED, SUBSCRIBE_TIMEOUT_SECONDS

AsyncRedis = Union[redis.asyncio.Redis, redis.asyncio.RedisCluster]


class AsyncTokenReader:
    """Reads tokens from Redis in the contract's layout and asks the worker for new ones, on asyncio.
    Use it from one event loop; share one per process, and ``await reader.aclose()`` (or use it as
    an async context manager). The parameters are those of :class:`token_lifecycle.TokenReader`.

    ::

        async with AsyncTokenReader(redis.asyncio.Redis.from_url(url), cache=True) as reader:
            token = await reader.get_token("orders-service")
    """

    def __init__(
        self,
        redis_client: AsyncRedis,
        *,
        prefix: str = DEFAULT_PREFIX,
        cache: bool = False,
        wait_poll_interval: float = 1.0,
        refresh_requests_max_len: int = DEFAULT_REFRESH_REQUESTS_MAX_LEN,
        now: Callable[[], int] = unix_ms,
    ) -> None:
        self.prefix = prefix
        self._redis = redis_client
        self._poll = wait_poll_interval
        self._max_len = refresh_requests_max_len
        self._now = now
        self._closed = False
        self._subscription = _AsyncSubscription(redis_client, token_updated_channel(prefix), self._on_message, self._on_connection_lost)
        self._cache = TokenCache(cache, now, lambda: self._subscription.live)
        self._replacements: dict[tuple[str, str], asyncio.Future[CurrentToken | None]] = {}

    async def __aenter__(self) -> AsyncTokenReader:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def get_token(self, client_id: str) -> CurrentToken:
        """See :meth:`token_lifecycle.TokenReader.get_token`."""
        return await self._get_token(client_id, skip_cache=False)

    async def request_refresh(
        self,
        client_id: str,
        *,
        rejected_fingerprint: str | None = None,
        reason: str | None = None,
        access_token: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """See :meth:`token_lifecycle.TokenReader.request_refresh`."""
        self._assert_open()
        stream = refresh_requests_stream(self.prefix)
        if traceparent is None:
            traceparent = current_traceparent()
        if access_token is None:
            try:
                current = await self._read(client_id)
            except (RedisUnavailableError, MalformedStoredTokenError) as error:
                raise RefreshRequestError(client_id, stream, error, problem=PROOF_READ_FAILED) from error
            if current is None:
                raise RefreshRequestError(client_id, stream, problem=NO_TOKEN_TO_PROVE_WITH)
            access_token = current.access_token
        try:
            entry_id = await self._redis.xadd(
                stream, dict(refresh_request_fields(client_id, rejected_fingerprint, reason, access_token, traceparent)), id="*", maxlen=self._max_len, approximate=True
            )
        except redis.RedisError as error:
            raise RefreshRequestError(client_id, stream, error) from error
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def wait_for_token(self, client_id: str, *, newer_than: int, timeout: float) -> CurrentToken:
        """See :meth:`token_lifecycle.TokenReader.wait_for_token`."""
        self._assert_open()
        await self._start_subscription(client_id)
        wake = asyncio.Event()
        waiter = Waiter(client_id, newer_than, wake.set)
        self._cache.add_waiter(waiter)
        try:
            deadline = time.monotonic() + timeout
            while True:
                wake.clear()
                token = await self._read_or_none(client_id)
                if token is not None and token.generation > newer_than:
                    return token
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TokenWaitTimeoutError(client_id, newer_than, timeout)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), min(remaining, self._poll))
                self._assert_open()
        finally:
            self._cache.remove_waiter(waiter)

    async def replace_rejected_token(
        self, client_id: str, rejected: CurrentToken, *, reason: str | None = None, timeout: float, traceparent: str | None = None
    ) -> CurrentToken | None:
        """See :meth:`token_lifecycle.TokenReader.replace_rejected_token`: concurrent calls about the
        same refused token share one refresh request and one wait."""
        key = (client_id, rejected.fingerprint)
        shared = self._replacements.get(key)
        if shared is None:
            shared = self._replacements[key] = asyncio.ensure_future(self._replace(client_id, rejected, reason, timeout, traceparent))
            shared.add_done_callback(lambda done: self._replacements.pop(key) if self._replacements.get(key) is done else None)
        # One caller's cancellation must not cancel the others' shared work.
        return await asyncio.shield(shared)

    async def aclose(self) -> None:
        """Closes the subscriber connection and ends pending waits with :class:`TokenReaderClosedError`.
        The Redis client given to the reader stays open."""
        if self._closed:
            return
        self._closed = True
        self._cache.wake_all()
        await self._subscription.aclose()
        self._cache.clear()

    async def _replace(self, client_id: str, rejected: CurrentToken, reason: str | None, timeout: float, traceparent: str | None) -> CurrentToken | None:
        # A caller whose request was in flight while the token rotated needs no new refresh.
        try:
            current: CurrentToken | None = await self._get_token(client_id, skip_cache=True)
        except TokenUnavailableError:
            current = None
        if current is not None and current.generation > rejected.generation:
            return current
        await self.request_refresh(
            client_id, rejected_fingerprint=rejected.fingerprint, reason=reason, access_token=rejected.access_token, traceparent=traceparent
        )
        try:
            return await self.wait_for_token(client_id, newer_than=rejected.generation, timeout=timeout)
        except TokenWaitTimeoutError:
            return None

    async def _get_token(self, client_id: str, *, skip_cache: bool) -> CurrentToken:
        self._assert_open()
        if self._cache.enabled:
            await self._start_subscription(client_id)
            cached = self._cache.fresh(client_id)
            if cached is not None and not skip_cache:
                return cached
        token = await self._read(client_id)
        if token is None:
            raise TokenUnavailableError(client_id, token_key(self.prefix, client_id))
        return token

    async def _read(self, client_id: str) -> CurrentToken | None:
        key = token_key(self.prefix, client_id)
        announcements_before = self._cache.read_started(client_id)
        try:
            values = await self._redis.hmget(key, STORED_FIELDS)
        except redis.ResponseError as error:
            if str(error).startswith("WRONGTYPE"):
                raise MalformedStoredTokenError(key, "is not a hash") from None
            raise RedisUnavailableError(client_id, error) from error
        except (redis.RedisError, OSError) as error:
            raise RedisUnavailableError(client_id, error) from error
        token = parse_stored_token(key, values, self._now())
        if token is not None:
            self._cache.read_finished(token, announcements_before)
        return token

    async def _read_or_none(self, client_id: str) -> CurrentToken | None:
        try:
            return await self._read(client_id)
        except (RedisUnavailableError, MalformedStoredTokenError):
            return None

    async def _start_subscription(self, client_id: str) -> None:
        try:
            await self._subscription.start()
        except (redis.RedisError, OSError) as error:
            raise RedisUnavailableError(client_id, error) from error

    def _on_message(self, data: bytes | str) -> None:
        announcement = parse_announcement(data)
        if announcement is not None:
            self._cache.on_announcement(announcement)

    def _on_connection_lost(self) -> None:
        self._cache.clear()

    def _assert_open(self) -> None:
        if self._closed:
            raise TokenReaderClosedError()


class _AsyncSubscription:
    """One lazily opened subscription to the token-updated channel, read by a task of its own."""

    def __init__(self, redis_client: AsyncRedis, channel: str, on_message: Callable[[bytes | str], None], on_connection_lost: Callable[[], None]) -> None:
        self._redis = redis_client
        self._channel = channel
        self._on_message = on_message
        self._on_connection_lost = on_connection_lost
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.live = False

    async def start(self) -> None:
        """Opens the subscription once; returns when Redis has confirmed it. A failure is not kept."""
        async with self._lock:
            if self._task is not None:
                return
            if self._closing:
                raise TokenReaderClosedError()
            pubsub = await self._subscribe()
            self.live = True
            self._task = asyncio.create_task(self._run(pubsub), name=f"token-updates {self._channel}")

    async def aclose(self) -> None:
        self._closing = True
        self.live = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _subscribe(self) -> redis.asyncio.client.PubSub:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_SECONDS
            while True:
                message = await pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message is not None and message["type"] == "subscribe":
                    return pubsub
                if time.monotonic() >= deadline:
                    raise redis.TimeoutError(f"Redis did not confirm SUBSCRIBE {self._channel} within {SUBSCRIBE_TIMEOUT_SECONDS:g} s")
        except BaseException:
            await pubsub.reset()
            raise

    async def _run(self, pubsub: redis.asyncio.client.PubSub) -> None:
        pinged = False
        try:
            while True:
                try:
                    message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                    if message is None:
                        if pinged:
                            raise redis.ConnectionError(f"no answer to PING on the subscription to {self._channel}")
                        await pubsub.ping()
                        pinged = True
                        continue
                except (redis.RedisError, OSError):
                    await pubsub.reset()
                    pubsub = await self._resubscribe()
                    pinged = False
                    continue
                pinged = False
                if message["type"] == "message":
                    self._on_message(message["data"])
        finally:
            await pubsub.reset()

    async def _resubscribe(self) -> redis.asyncio.client.PubSub:
        """Reports the loss, then subscribes again on a new connection, backing off while Redis is away."""
        self.live = False
        self._on_connection_lost()
        backoff = 0.1
        while True:
            await asyncio.sleep(backoff)
            try:
                pubsub = await self._subscribe()
            except (redis.RedisError, OSError):
                backoff = min(2 * backoff, 5.0)
                continue
            self.live = True
            return pubsub
