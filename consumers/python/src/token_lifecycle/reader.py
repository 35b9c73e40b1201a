"""The consumer's view of the token store, for threaded code (requests, httpx.Client): read a
client's current token from Redis, optionally through an in-process cache, ask for a refresh
when an API refused it, and wait for its replacement. ``async_reader`` is the same for asyncio."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Callable, Union

import redis

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

SyncRedis = Union[redis.Redis, redis.RedisCluster]

#: How long Redis may take to confirm a subscription.
SUBSCRIBE_TIMEOUT_SECONDS = 5.0
#: How long the subscription may stay silent before it is pinged: a connection that died without a
#: FIN would otherwise keep the cache alive on no news.
HEALTH_CHECK_SECONDS = 15.0
#: Why a refresh request without a token was not added (RefreshRequestError.problem).
PROOF_READ_FAILED = "reading its token to prove the request failed"
NO_TOKEN_TO_PROVE_WITH = "Redis holds no token of it to prove the request with (the worker refuses unproven requests)"
#: How often the subscription's thread looks up from its socket (to notice ``close``).
_POLL_SECONDS = 0.2


class TokenReader:
    """Reads tokens from Redis in the contract's layout (docs/redis-contract.md) and asks the worker
    for new ones. Thread-safe; share one per process, and close it (or use it as a context manager).

    ::

        reader = TokenReader(redis.Redis.from_url(url), cache=True)
        token = reader.get_token("orders-service")
        requests.get(api, headers={"Authorization": f"Bearer {token.access_token}"})
    """

    def __init__(
        self,
        redis_client: SyncRedis,
        *,
        prefix: str = DEFAULT_PREFIX,
        cache: bool = False,
        wait_poll_interval: float = 1.0,
        refresh_requests_max_len: int = DEFAULT_REFRESH_REQUESTS_MAX_LEN,
        now: Callable[[], int] = unix_ms,
    ) -> None:
        """
        :param redis_client: a redis-py client (standalone, Sentinel's ``master_for``, or
            ``RedisCluster``); the reader does not close it.
        :param prefix: the worker's ``TOKEN_KEY_PREFIX``.
        :param cache: keep each client's token in memory, so ``get_token`` usually costs no round
            trip. An entry is dropped when ``<prefix>token-updated`` announces a newer generation
            (read on a dedicated subscriber connection and thread), when that connection fails, and
            it is never served at or past its ``expires_at``.
        :param wait_poll_interval: seconds between reads of the key while ``wait_for_token`` also
            listens for announcements (in case one is missed).
        :param refresh_requests_max_len: the stream is trimmed to about this many entries
            (``XADD … MAXLEN ~ n``), so it stays bounded when no worker reads it.
        :param now: the clock, in Unix milliseconds, that decides whether a token has expired.
        """
        self.prefix = prefix
        self._redis = redis_client
        self._poll = wait_poll_interval
        self._max_len = refresh_requests_max_len
        self._now = now
        self._closed = False
        self._subscription = _Subscription(redis_client, token_updated_channel(prefix), self._on_message, self._on_connection_lost)
        self._cache = TokenCache(cache, now, lambda: self._subscription.live)
        self._replacements_lock = threading.Lock()
        self._replacements: dict[tuple[str, str], Future[CurrentToken | None]] = {}

    def __enter__(self) -> TokenReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get_token(self, client_id: str) -> CurrentToken:
        """The current token of ``client_id``: from the cache when enabled and still valid, else from
        the hash ``<prefix>token:<client_id>``. Never a token whose ``expires_at`` has passed.

        :raises TokenUnavailableError: when Redis holds no unexpired token for the client.
        :raises RedisUnavailableError: when Redis did not answer.
        :raises MalformedStoredTokenError: when the key holds something else than the contract's layout.
        """
        return self._get_token(client_id, skip_cache=False)

    def request_refresh(
        self,
        client_id: str,
        *,
        rejected_fingerprint: str | None = None,
        reason: str | None = None,
        access_token: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Asks the worker to replace the token of ``client_id`` by adding an entry to the stream
        ``<prefix>refresh-requests`` with the fields ``clientId``, then ``rejectedFingerprint``
        (the refused token's fingerprint: a request about a token already replaced is ignored) and
        ``reason`` (free text for operators, never a token) when given, then ``proof``: the origin
        proof the worker requires (docs/redis-contract.md), made with ``access_token`` (the
        refused token; it never leaves the process) or, when ``None``, with the token Redis holds
        for the client. Between ``reason`` and ``proof`` comes ``traceparent``, so that the worker's
        spans of the forced refresh join the caller's trace: ``traceparent`` when given (W3C Trace
        Context, for an application that propagates trace context by hand), else the active
        OpenTelemetry span's when ``opentelemetry`` is installed; a malformed one is not sent (the
        worker would drop it). The worker turns the entry into a ``forceRefresh`` signal, coalesced
        and held to the client's minimum interval. Returns the entry ID; it does not wait for the
        new token: see :meth:`wait_for_token`.

        :raises RefreshRequestError: when Redis refused the entry or, without ``access_token``,
            when Redis holds no token of the client to prove the request with or could not be read.
        """
        self._assert_open()
        stream = refresh_requests_stream(self.prefix)
        if traceparent is None:
            traceparent = current_traceparent()
        if access_token is None:
            try:
                current = self._read(client_id)
            except (RedisUnavailableError, MalformedStoredTokenError) as error:
                raise RefreshRequestError(client_id, stream, error, problem=PROOF_READ_FAILED) from error
            if current is None:
                raise RefreshRequestError(client_id, stream, problem=NO_TOKEN_TO_PROVE_WITH)
            access_token = current.access_token
        try:
            entry_id = self._redis.xadd(
                stream, dict(refresh_request_fields(client_id, rejected_fingerprint, reason, access_token, traceparent)), id="*", maxlen=self._max_len, approximate=True
            )
        except redis.RedisError as error:
            raise RefreshRequestError(client_id, stream, error) from error
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def wait_for_token(self, client_id: str, *, newer_than: int, timeout: float) -> CurrentToken:
        """The first unexpired token of ``client_id`` whose generation is above ``newer_than`` (0: any).
        It subscribes to ``<prefix>token-updated`` first and then reads the key, so a token stored in
        between is not missed; it reads the key again on every announcement for the client and every
        ``wait_poll_interval``.

        :raises TokenWaitTimeoutError: after ``timeout`` seconds without such a token.
        :raises RedisUnavailableError: when Redis did not answer the subscription.
        :raises TokenReaderClosedError: when the reader is closed meanwhile.
        """
        self._assert_open()
        self._start_subscription(client_id)
        wake = threading.Event()
        waiter = Waiter(client_id, newer_than, wake.set)
        self._cache.add_waiter(waiter)
        try:
            deadline = time.monotonic() + timeout
            while True:
                wake.clear()
                token = self._read_or_none(client_id)
                if token is not None and token.generation > newer_than:
                    return token
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TokenWaitTimeoutError(client_id, newer_than, timeout)
                wake.wait(min(remaining, self._poll))
                self._assert_open()
        finally:
            self._cache.remove_waiter(waiter)

    def replace_rejected_token(
        self, client_id: str, rejected: CurrentToken, *, reason: str | None = None, timeout: float, traceparent: str | None = None
    ) -> CurrentToken | None:
        """After an API refused ``rejected`` (RFC 6750 §3.1 ``invalid_token``): the token that
        replaces it, asking for one only if it has not been replaced already. Concurrent calls about
        the same refused token share one refresh request and one wait, so a burst of refusals in
        this process sends one request (with the first caller's ``traceparent``, see
        :meth:`request_refresh`). ``None`` when no newer token arrived within ``timeout`` seconds
        (for example because the worker holds forced refreshes to their minimum interval).

        :raises RefreshRequestError: when the request could not be delivered.
        """
        key = (client_id, rejected.fingerprint)
        with self._replacements_lock:
            shared = self._replacements.get(key)
            owner = shared is None
            if shared is None:
                shared = self._replacements[key] = Future()
        if owner:
            try:
                shared.set_result(self._replace(client_id, rejected, reason, timeout, traceparent))
            except BaseException as error:
                shared.set_exception(error)
            finally:
                with self._replacements_lock:
                    del self._replacements[key]
        return shared.result()

    def close(self) -> None:
        """Closes the subscriber connection and ends pending waits with :class:`TokenReaderClosedError`.
        The Redis client given to the reader stays open."""
        if self._closed:
            return
        self._closed = True
        self._cache.wake_all()
        self._subscription.close()
        self._cache.clear()

    def _replace(self, client_id: str, rejected: CurrentToken, reason: str | None, timeout: float, traceparent: str | None) -> CurrentToken | None:
        # A caller whose request was in flight while the token rotated needs no new refresh.
        try:
            current: CurrentToken | None = self._get_token(client_id, skip_cache=True)
        except TokenUnavailableError:
            current = None
        if current is not None and current.generation > rejected.generation:
            return current
        self.request_refresh(
            client_id, rejected_fingerprint=rejected.fingerprint, reason=reason, access_token=rejected.access_token, traceparent=traceparent
        )
        try:
            return self.wait_for_token(client_id, newer_than=rejected.generation, timeout=timeout)
        except TokenWaitTimeoutError:
            return None

    def _get_token(self, client_id: str, *, skip_cache: bool) -> CurrentToken:
        self._assert_open()
        if self._cache.enabled:
            self._start_subscription(client_id)
            cached = self._cache.fresh(client_id)
            if cached is not None and not skip_cache:
                return cached
        token = self._read(client_id)
        if token is None:
            raise TokenUnavailableError(client_id, token_key(self.prefix, client_id))
        return token

    def _read(self, client_id: str) -> CurrentToken | None:
        key = token_key(self.prefix, client_id)
        announcements_before = self._cache.read_started(client_id)
        try:
            values = self._redis.hmget(key, STORED_FIELDS)
        except redis.ResponseError as error:
            if str(error).startswith("WRONGTYPE"):
                raise MalformedStoredTokenError(key, "is not a hash") from None
            raise RedisUnavailableError(client_id, error) from error
        except redis.RedisError as error:
            raise RedisUnavailableError(client_id, error) from error
        token = parse_stored_token(key, values, self._now())
        if token is not None:
            self._cache.read_finished(token, announcements_before)
        return token

    def _read_or_none(self, client_id: str) -> CurrentToken | None:
        """A failed read is retried on the next wake-up; the deadline ends a wait if Redis stays away."""
        try:
            return self._read(client_id)
        except (RedisUnavailableError, MalformedStoredTokenError):
            return None

    def _start_subscription(self, client_id: str) -> None:
        try:
            self._subscription.start()
        except redis.RedisError as error:
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


class _Subscription:
    """One lazily opened subscription to the token-updated channel. A connection that subscribes can
    run nothing else, so it holds its own, read by a daemon thread."""

    def __init__(self, redis_client: SyncRedis, channel: str, on_message: Callable[[bytes | str], None], on_connection_lost: Callable[[], None]) -> None:
        self._redis = redis_client
        self._channel = channel
        self._on_message = on_message
        # Announcements made while the connection is down are lost: what was kept because none
        # said otherwise must be dropped.
        self._on_connection_lost = on_connection_lost
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.live = False

    def start(self) -> None:
        """Opens the subscription once; returns when Redis has confirmed it. A failure is not kept:
        the next call tries again, so a reader created while Redis was down works once it is back."""
        with self._lock:
            if self._thread is not None:
                return
            if self._closing.is_set():
                raise TokenReaderClosedError()
            pubsub = self._subscribe()
            self.live = True
            self._thread = threading.Thread(target=self._run, args=(pubsub,), name=f"token-updates {self._channel}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self.live = False
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _subscribe(self) -> redis.client.PubSub:
        pubsub = self._redis.pubsub()
        try:
            pubsub.subscribe(self._channel)
            deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_SECONDS
            while True:
                message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message is not None and message["type"] == "subscribe":
                    return pubsub
                if time.monotonic() >= deadline:
                    raise redis.TimeoutError(f"Redis did not confirm SUBSCRIBE {self._channel} within {SUBSCRIBE_TIMEOUT_SECONDS:g} s")
        except BaseException:
            pubsub.close()
            raise

    def _run(self, pubsub: redis.client.PubSub) -> None:
        silent_since = time.monotonic()
        pinged = False
        while not self._closing.is_set():
            try:
                message = pubsub.get_message(timeout=_POLL_SECONDS)
                if message is None:
                    if time.monotonic() - silent_since < HEALTH_CHECK_SECONDS:
                        continue
                    if pinged:
                        raise redis.ConnectionError(f"no answer to PING on the subscription to {self._channel}")
                    pubsub.ping()
                    pinged, silent_since = True, time.monotonic()
                    continue
            except (redis.RedisError, OSError):
                pubsub.close()
                replacement = self._resubscribe()
                if replacement is None:
                    return
                pubsub, silent_since, pinged = replacement, time.monotonic(), False
                continue
            silent_since, pinged = time.monotonic(), False
            if message["type"] == "message":
                self._on_message(message["data"])
        pubsub.close()

    def _resubscribe(self) -> redis.client.PubSub | None:
        """Reports the loss, then subscribes again on a new connection, backing off while Redis is
        away; ``None`` when the reader closes first."""
        self.live = False
        self._on_connection_lost()
        backoff = 0.1
        while not self._closing.wait(backoff):
            try:
                pubsub = self._subscribe()
            except (redis.RedisError, OSError):
                backoff = min(2 * backoff, 5.0)
                continue
            self.live = True
            return pubsub
        return None
